"""`machiai run`: backing servers, migrations, then both services and the delivery worker
(`machiai deliver`, a third child serving no port), stopped in order.

The services run as child processes (one uvicorn each) in their own process
groups; the supervisor alone receives a terminal's Ctrl-C and stops them
first, then the data servers. A service that exits on its own is started again
after a pause that grows while it keeps failing; the other keeps serving. Every child
also carries the kernel's parent-death signal, so a killed supervisor leaves nothing
running.

Before anything starts, every setting of both services is read once as the
services will read it (``check_settings``): a bad value then costs one line
and exit code 2, not a started Redis and Postgres and a service's traceback.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from booking.delivery.settings import DeliverySettings
from booking.settings import BookingSettings
from machiai.backends import (
    Backends,
    open_backends,
    remove_run_file,
    running_owner,
    write_run_file,
)
from machiai.config import MIN_SECRET_LENGTH, Env, Mode, SettingsError, shown_url
from machiai.embedded import child_preexec
from machiai.migrate import apply_migrations
from machiai.settings import RunnerSettings
from waitroom.settings import WaitroomSettings

SERVICE_START_TIMEOUT_S = 60.0
SERVICE_STOP_TIMEOUT_S = 15.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
RESTART_STABLE_S = 60.0


# Stand-ins for what is only known once the embedded servers run; never connected to.
_PENDING_REDIS_URL = "redis://127.0.0.1:6379/0"
_PENDING_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/machiai"


class ServiceStartError(RuntimeError):
    """A service exited or did not answer while starting; its own output says why."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    factory: str
    port: int
    # A child that serves no port (the delivery worker): what follows `python -m`.
    command: tuple[str, ...] = ()
    # uvicorn worker processes; with more than one, they share one metrics directory
    # (machiai/metrics.py) that is emptied whenever the service (re)starts.
    workers: int = 1
    metrics_dir: Path | None = None


def check_service_settings(environ: Mapping[str, str]) -> None:
    """Read both services' settings from the environment they will be given, and drop them.

    Raises ``SettingsError`` naming the first bad variable. Writes nothing: backend URLs
    that only the embedded servers will provide are stood in for, and so is the
    development signing key that each data dir generates on first use.
    """
    env = dict(environ)
    env.setdefault("REDIS_URL", _PENDING_REDIS_URL)
    env.setdefault("DATABASE_URL", _PENDING_DATABASE_URL)
    checked = Env(env)
    if checked.raw("MACHIAI_SECRET_KEYS") is None and checked.mode() is Mode.DEVELOPMENT:
        env["MACHIAI_SECRET_KEYS"] = "k" * MIN_SECRET_LENGTH
    if checked.raw("MACHIAI_WEBHOOK_SECRET") is None and checked.mode() is Mode.DEVELOPMENT:
        env["MACHIAI_WEBHOOK_SECRET"] = "k" * MIN_SECRET_LENGTH
    WaitroomSettings.from_env(env)
    BookingSettings.from_env(env)
    DeliverySettings.from_env(env)


def check_settings(settings: RunnerSettings, environ: Mapping[str, str]) -> None:
    """Everything `machiai run` will need, checked before it starts anything.

    The services' settings as they will see them, and both ports free on MACHIAI_HOST
    (a port in use would otherwise be found after Redis and Postgres had started).
    """
    pending = Backends(
        settings.redis_url or _PENDING_REDIS_URL,
        settings.database_url or _PENDING_DATABASE_URL,
        embedded=False,
    )
    check_service_settings(service_env(environ, settings, pending))
    embedded = settings.redis_url is None or settings.database_url is None
    if embedded and running_owner(settings.data_dir) is not None:
        return  # its ports are taken by that run; open_backends says so, before starting
    for name, port in (
        ("WAITROOM_PORT", settings.waitroom_port),
        ("BOOKING_PORT", settings.booking_port),
    ):
        _check_port_free(settings.host, name, port)


def _check_port_free(host: str, name: str, port: int) -> None:
    # Bound as uvicorn binds it (IPv6 only for an address with a colon), with
    # SO_REUSEADDR as uvicorn sets it, so a port in TIME_WAIT after a restart is free.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except (socket.gaierror, UnicodeError):
            raise SettingsError(
                f"MACHIAI_HOST {host!r} is not an address or known host name"
            ) from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SettingsError(
                    f"{name} {port} is already in use on {host}; "
                    f"stop what uses it or set {name} to a free port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise SettingsError(
                    f"MACHIAI_HOST {host!r} is not an address of this machine"
                ) from None
            if exc.errno == errno.EACCES:
                raise SettingsError(
                    f"{name} {port} needs privileges to bind; choose a port above 1023"
                ) from None
            raise


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
    if spec.command:
        return subprocess.Popen(
            [sys.executable, "-m", *spec.command],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: child_preexec(None, None),  # noqa: PLW1509
        )
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
        # The client address is the app's business (WAITROOM_/BOOKING_TRUSTED_PROXIES):
        # uvicorn would otherwise trust X-Forwarded-For from 127.0.0.1 on its own.
        "--no-proxy-headers",
        "--lifespan",
        "on",
        "--timeout-graceful-shutdown",
        "10",
    ]
    env = dict(env)
    if spec.workers > 1:
        argv += ["--workers", str(spec.workers)]
        if spec.metrics_dir is not None:
            # One scrape reports every worker; files of processes gone would be summed in.
            shutil.rmtree(spec.metrics_dir, ignore_errors=True)
            spec.metrics_dir.mkdir(parents=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(spec.metrics_dir)
    return subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: child_preexec(None, None),  # noqa: PLW1509
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceStartError(
                f"{url} exited with code {process.returncode} while starting (its output is above)"
            )
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ServiceStartError(f"{url} did not become ready within {timeout_s}s")


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass(slots=True)
class _Child:
    """A running service and, once it exited, when it starts again.

    Promise: one service crashing never stops the other, and it comes back by itself;
    only Ctrl-C (or SIGTERM) stops everything. Restarts back off (1 s, 2 s, 4 s ... up to
    RESTART_MAX_S) so a service that cannot stay up does not spin; one that stayed up for
    RESTART_STABLE_S starts over at 1 s."""

    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    started: float
    failures: int = 0
    restart_at: float | None = None

    def tend(self, host: str, env: Mapping[str, str], now: float) -> str | None:
        """Notice an exit or restart when due; what to tell the operator, if anything."""
        if self.restart_at is None:
            code = self.process.poll()
            if code is None:
                return None
            self.failures = 1 if now - self.started >= RESTART_STABLE_S else self.failures + 1
            delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** (self.failures - 1))
            self.restart_at = now + delay
            return (
                f"{self.spec.name} exited with code {code}; starting it again in {delay:g} s "
                "(the rest keeps running; Ctrl-C stops everything)"
            )
        if now < self.restart_at:
            return None
        self.process = spawn_service(self.spec, host, env)
        self.started, self.restart_at = now, None
        return f"{self.spec.name} started again (pid {self.process.pid})"


def run_system(settings: RunnerSettings, *, out: TextIO = sys.stdout) -> int:
    """Run everything until SIGINT/SIGTERM; returns the exit code.

    Raises ``SettingsError`` before starting anything when a setting is bad.
    """
    check_settings(settings, os.environ)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    services: list[_Child] = []
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
                    ServiceSpec(
                        "waitroom",
                        "waitroom.app:app_from_env",
                        settings.waitroom_port,
                        workers=settings.workers,
                        metrics_dir=settings.data_dir / "metrics" / "waitroom",
                    ),
                    ServiceSpec(
                        "booking",
                        "booking.app:app_from_env",
                        settings.booking_port,
                        workers=settings.workers,
                        metrics_dir=settings.data_dir / "metrics" / "booking",
                    ),
                    # The outbox's delivery worker (README "Notifications"): no port; it is
                    # restarted like the services when it exits.
                    ServiceSpec("delivery", "", 0, command=("machiai.cli", "deliver")),
                ]
                for spec in specs:
                    process = spawn_service(spec, settings.host, env)
                    services.append(_Child(spec, process, time.monotonic()))
                for child in services:
                    if child.spec.command:
                        continue  # serves nothing to wait for
                    url = f"http://{settings.host}:{child.spec.port}"
                    wait_healthy(url, child.process, SERVICE_START_TIMEOUT_S)
                _say(out, _banner(settings, backends))
                while not stop.wait(0.5):
                    for child in services:
                        message = child.tend(settings.host, env, time.monotonic())
                        if message:
                            _say(out, message)
            finally:
                for child in reversed(services):
                    stop_process(child.process, SERVICE_STOP_TIMEOUT_S)
                if backends.embedded:
                    remove_run_file(settings.data_dir)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _say(out, "machiai stopped.")
    return 0


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _banner(settings: RunnerSettings, backends: Backends) -> str:
    embedded = f"embedded, data in {settings.data_dir}"

    def where(given: str | None) -> str:
        # Each backend on its own: one may be given by URL while the other is embedded.
        return "given by URL" if given or not backends.embedded else embedded

    return "\n".join(
        [
            "machiai is running (Ctrl-C stops everything).",
            f"  waitroom  {settings.waitroom_url}",
            f"  booking   {settings.booking_url}",
            # A URL given in the environment may carry a password: never printed.
            f"  redis     {shown_url(backends.redis_url)}  ({where(settings.redis_url)})",
            f"  postgres  {shown_url(backends.database_url)}  ({where(settings.database_url)})",
            "Try it: ./machiai.sh seed-demo   (in another terminal)",
        ]
    )
