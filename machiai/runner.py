"""`machiai run`: backing servers, migrations, then both services, stopped in order.

The services run as child processes (one uvicorn each) in their own process
groups; the supervisor alone receives a terminal's Ctrl-C and stops them
first, then the data servers. Every child also carries the kernel's
parent-death signal, so a killed supervisor leaves nothing running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from machiai.backends import Backends, open_backends, remove_run_file, write_run_file
from machiai.embedded import child_preexec
from machiai.migrate import apply_migrations
from machiai.settings import RunnerSettings

SERVICE_START_TIMEOUT_S = 60.0
SERVICE_STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    factory: str
    port: int


def service_env(
    base: Mapping[str, str], settings: RunnerSettings, backends: Backends
) -> dict[str, str]:
    env = dict(base)
    env.update(
        REDIS_URL=backends.redis_url,
        DATABASE_URL=backends.database_url,
        MACHIAI_DATA_DIR=str(settings.data_dir),
        MACHIAI_ENV=settings.mode.value,
    )
    env.setdefault("MACHIAI_BOOKING_URL", settings.booking_url)
    return env


def spawn_service(spec: ServiceSpec, host: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        spec.factory,
        "--host",
        host,
        "--port",
        str(spec.port),
        "--no-access-log",
        # The client address is the app's business (WAITROOM_/BOOKING_TRUST_FORWARDED):
        # uvicorn would otherwise trust X-Forwarded-For from 127.0.0.1 on its own.
        "--no-proxy-headers",
        "--lifespan",
        "on",
        "--timeout-graceful-shutdown",
        "10",
    ]
    return subprocess.Popen(
        argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: child_preexec(None, None),  # noqa: PLW1509
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with code {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready within {timeout_s}s")


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def run_system(settings: RunnerSettings, *, out: TextIO = sys.stdout) -> int:
    """Run everything until SIGINT/SIGTERM; returns the exit code."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    services: list[tuple[ServiceSpec, subprocess.Popen[bytes]]] = []
    exit_code = 0
    try:
        with open_backends(settings, owner=True) as backends:
            if backends.embedded:
                write_run_file(settings.data_dir, backends, settings)
            try:
                applied = asyncio.run(apply_migrations(backends.database_url))
                if applied:
                    _say(out, f"applied migrations: {', '.join(applied)}")
                env = service_env(os.environ, settings, backends)
                specs = [
                    ServiceSpec("waitroom", "waitroom.app:app_from_env", settings.waitroom_port),
                    ServiceSpec("booking", "booking.app:app_from_env", settings.booking_port),
                ]
                for spec in specs:
                    services.append((spec, spawn_service(spec, settings.host, env)))
                for spec, process in services:
                    url = f"http://{settings.host}:{spec.port}"
                    wait_healthy(url, process, SERVICE_START_TIMEOUT_S)
                _say(out, _banner(settings, backends))
                while not stop.wait(0.5):
                    for spec, process in services:
                        if process.poll() is not None:
                            _say(
                                out,
                                f"{spec.name} exited with code {process.returncode}; "
                                "stopping machiai",
                            )
                            exit_code = 1
                            stop.set()
            finally:
                for _, process in reversed(services):
                    stop_process(process, SERVICE_STOP_TIMEOUT_S)
                if backends.embedded:
                    remove_run_file(settings.data_dir)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _say(out, "machiai stopped.")
    return exit_code


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _banner(settings: RunnerSettings, backends: Backends) -> str:
    where = f"embedded, data in {settings.data_dir}" if backends.embedded else "given by URL"
    return "\n".join(
        [
            "machiai is running (Ctrl-C stops everything).",
            f"  waitroom  {settings.waitroom_url}",
            f"  booking   {settings.booking_url}",
            f"  redis     {backends.redis_url}  ({where})",
            f"  postgres  {backends.database_url}",
            "Try it: ./machiai.sh seed-demo   (in another terminal)",
        ]
    )
