"""The CI smoke load test: the whole system under a small surge, judged end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from loadtests.profiles import PROFILES


def test_smoke_profile_holds(tmp_path: Path) -> None:
    profile = PROFILES["smoke"]
    result = subprocess.run(
        [sys.executable, "-m", "machiai.cli", "loadtest", "smoke", "--report-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=profile.duration_s + 240,
    )
    reports = list(tmp_path.iterdir())
    assert len(reports) == 1, result.stdout + result.stderr
    verdict = json.loads((reports[0] / "verdict.json").read_text("utf-8"))
    assert verdict["violations"] == {name: 0 for name in verdict["violations"]}, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    # A flow broken anywhere (join, enter, session, hold, confirm, staff lanes) fails here,
    # rather than passing vacuously with nobody booked.
    assert verdict["failed_requests"] == 0, (reports[0] / "locust_failures.csv").read_text()
    assert verdict["admitted"] >= profile.residents * 0.9
    # Every actor of the surge did its part: residents, operators, clinic staff, the admin.
    for endpoint in (
        "POST booking confirm",
        "POST operator confirm",
        "POST clinic preview plan",
        "POST clinic publish plan",
        "PATCH clinic change capacity",
        "PATCH admin change rate",
    ):
        assert verdict["latency_ms"].get(endpoint, {}).get("requests", 0) > 0, endpoint
    # The probe outside locust polled both services all along, without a failure.
    for name in ("waitroom status", "booking availability"):
        assert verdict["probe_ms"][name]["n"] > 100, verdict["probe_ms"]
        assert verdict["probe_ms"][name]["failures"] == 0, verdict["probe_ms"]
    assert verdict["published_slots"] > 0  # a new day of slots went on sale mid-surge
    assert verdict["confirmed"] >= profile.capacity * 0.5
    assert sum(verdict["bookings_per_minute"]) >= verdict["confirmed"]
    for name in (
        "summary.md",
        "summary.html",
        "locust.html",
        "line_length.png",
        "admitted.png",
        "bookings.png",
        "latency.png",
    ):
        assert (reports[0] / name).exists(), name
