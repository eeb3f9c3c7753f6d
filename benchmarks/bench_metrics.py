"""What the metrics and request-id middlewares add to one request, in-process (no HTTP):

    .venv/bin/python -m benchmarks.bench_metrics [--requests 200000]

An ASGI app that answers at once, called directly, with and without
machiai.metrics.RequestMetrics in front, alternated over rounds (best of each), in the
default (single-process) mode and in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, in a
child process). The difference is the middleware's CPU per request, to set against a
status poll's (benchmarks.waitroom.bench_http: about 40 us of server CPU) and a confirm's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from machiai import metrics
from machiai.request_id import RequestId

ROUNDS = 5


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message: Any) -> None:
    return None


async def _receive() -> Any:
    return {"type": "http.request", "body": b""}


# A status poll's headers as a phone sends them (the request-id middleware reads them all).
HEADERS = [
    (b"host", b"machiai.example"),
    (b"user-agent", b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)"),
    (b"accept", b"application/json"),
    (b"accept-language", b"ja-JP,ja;q=0.9"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"x-machiai-ticket", b"x" * 120),
    (b"connection", b"keep-alive"),
]


async def _per_request_us(app: Any, n: int) -> float:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/events/x/status",
        "query_string": b"",
        "headers": HEADERS,
        metrics.ROUTE_KEY: "/s",
    }
    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), _receive, _send)
    return (time.perf_counter() - started) / n * 1e6


async def _measure(n: int) -> tuple[float, float, float]:
    measured = metrics.RequestMetrics(_answer, metrics.RequestTally("bench"))
    both = RequestId(measured, frozenset({"/enter"}))
    bare = on = with_id = float("inf")
    for _ in range(ROUNDS):
        bare = min(bare, await _per_request_us(_answer, n))
        on = min(on, await _per_request_us(measured, n))
        with_id = min(with_id, await _per_request_us(both, n))
    return bare, on, with_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    bare, on, with_id = asyncio.run(_measure(args.requests))
    mode = "multiprocess" if metrics.multiprocess() else "single process"
    line = (
        f"{mode:>14}: bare {bare:.2f} us; with metrics {on:.2f} us (+{on - bare:.2f}); "
        f"and the request id {with_id:.2f} us (+{with_id - bare:.2f} us/request in all)"
    )
    if args.child:
        print(line)
        return
    print(f"{args.requests:,} requests x {ROUNDS} rounds, best of each")
    print(line)
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        argv = [sys.executable, "-m", "benchmarks.bench_metrics", "--child"]
        argv += ["--requests", str(args.requests)]
        subprocess.run(argv, env=env, check=True)


if __name__ == "__main__":
    main()
