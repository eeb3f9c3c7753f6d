"""`machiai loadtest --target`: load a deployment someone else runs, twice, without collisions."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from machiai.embedded import free_port
from tests.machiai.test_processes import _wait_banner


def _loadtest(urls: tuple[str, str], database_url: str, report_dir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "machiai.cli",
            "loadtest",
            "smoke",
            "--target",
            urls[0],
            "--booking-url",
            urls[1],
            "--database-url",
            database_url,
            "--set",
            "residents=15",
            "--set",
            "duration_s=15",
            "--report-dir",
            str(report_dir),
        ],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (report,) = report_dir.iterdir()
    verdict: dict[str, Any] = json.loads((report / "verdict.json").read_text("utf-8"))
    return verdict


async def test_loadtest_targets_a_running_deployment(
    env_vars: dict[str, str], tmp_path: Path
) -> None:
    ports = (free_port(), free_port())
    env = {
        **os.environ,
        **env_vars,
        "WAITROOM_PORT": str(ports[0]),
        "BOOKING_PORT": str(ports[1]),
        "WAITROOM_TRUST_FORWARDED": "true",
        "BOOKING_TRUST_FORWARDED": "true",
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "machiai.cli", "run"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    urls = (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
    try:
        await asyncio.to_thread(_wait_banner, run)
        runs = []
        for n in range(2):
            runs.append(
                await asyncio.to_thread(
                    _loadtest, urls, env_vars["DATABASE_URL"], tmp_path / f"run{n}"
                )
            )
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    for verdict in runs:
        assert verdict["held"] and verdict["target"] == urls[0]
        assert verdict["failed_requests"] == 0
        assert verdict["joined"] == 15 and verdict["confirmed"] > 0
        # The harness does not own the services: it does not pretend to know their CPU.
        assert set(verdict["cpu_s"]) == {"locust"}
    # The second run seeded its own event and vouchers: nothing the first booked got in its way.
    assert runs[0]["event_id"] != runs[1]["event_id"]
    assert runs[1]["admitted"] == 15
