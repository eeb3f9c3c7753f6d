"""Waitroom HTTP benchmark: ``.venv/bin/python -m benchmarks.waitroom.bench_http``."""
