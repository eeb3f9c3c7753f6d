"""`machiai loadtest --target`: load a deployment someone else runs, twice, without collisions,
the second time with locust distributed over a master and workers."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from machiai.embedded import free_port
from tests.machiai.test_processes import _wait_banner

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"


def _loadtest(
    urls: tuple[str, str], database_url: str, report_dir: Path, external_workers: int = 0
) -> dict[str, Any]:
    argv = [
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
    ]
    master_port = free_port()
    if external_workers:
        argv += ["--external-workers", str(external_workers), "--master-port", str(master_port)]
    master = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers: list[subprocess.Popen[Any]] = []
    printed: list[str] = []
    try:
        if external_workers:
            # Start the workers the way the printed instructions tell an engineer to.
            assert master.stdout is not None
            for line in master.stdout:
                printed.append(line)
                if "set -a;" in line:
                    break
            env_file = Path(printed[-1].split(". ", 1)[1].split(";", 1)[0])
            scenario = dict(
                shlex.split(line)[0].split("=", 1)
                for line in env_file.read_text("utf-8").splitlines()
            )
            for _ in range(external_workers):
                workers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "locust",
                            "-f",
                            str(LOCUSTFILE),
                            "--worker",
                            "--master-host",
                            "127.0.0.1",
                            "--master-port",
                            str(master_port),
                        ],
                        env={**os.environ, **scenario},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        rest, _ = master.communicate(timeout=200)
        printed.append(rest)
    finally:
        processes: list[subprocess.Popen[Any]] = [master, *workers]
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
    assert master.returncode == 0, "".join(printed)
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
        "WAITROOM_TRUSTED_PROXIES": "127.0.0.1,::1",
        "BOOKING_TRUSTED_PROXIES": "127.0.0.1,::1",
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
        # The second run is distributed: a locust master here and two workers that join it
        # (as on other machines); every resident's journey must come back to the judge.
        for n in range(2):
            runs.append(
                await asyncio.to_thread(
                    _loadtest, urls, env_vars["DATABASE_URL"], tmp_path / f"run{n}", 2 * n
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
    # Every journey came back from the workers: each resident was admitted or gave up waiting
    # (the profile makes 5 % give up, so a run of 15 loses one about half the time).
    assert runs[1]["admitted"] + runs[1]["abandoned_waiting"] == 15
