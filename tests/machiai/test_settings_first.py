"""A bad setting stops `machiai` before anything starts: one line naming the variable and
the rule, exit code 2, no traceback, no server, no data dir, no secret in the message."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from machiai.embedded import free_port
from machiai.runner import check_service_settings
from tests.servers import port_free

MACHIAI = str(Path(sys.executable).parent / "machiai")
GOOD_KEY = "g" * 40


class Refused:
    """One CLI run in a fresh data dir, on two ports that were free before it."""

    def __init__(self, tmp_path: Path, *args: str, **env: str) -> None:
        self.data_dir = tmp_path / "data"
        self.ports = [free_port(), free_port()]
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MACHIAI_", "WAITROOM_", "BOOKING_"))
            and k not in {"REDIS_URL", "DATABASE_URL"}
        }
        ports = {"WAITROOM_PORT": str(self.ports[0]), "BOOKING_PORT": str(self.ports[1])}
        self.result = subprocess.run(
            [MACHIAI, *args],
            env={**base, "MACHIAI_DATA_DIR": str(self.data_dir), **ports, **env},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        self.output = self.result.stdout + self.result.stderr

    def assert_nothing_started(self, variable: str) -> None:
        assert self.result.returncode == 2, self.output
        assert variable in self.result.stderr
        assert "Traceback" not in self.output
        assert len(self.output.splitlines()) < 5, self.output
        # Nothing started: no data dir (Redis and Postgres would have made theirs), nobody
        # left running with it, the service ports still free.
        assert not self.data_dir.exists()
        leftovers = [
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if any(str(self.data_dir) in part for part in p.info["cmdline"] or [])
        ]
        assert leftovers == []
        assert all(port_free(port) for port in self.ports)


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        # core (machiai/config.py), read by both services
        ("MACHIAI_SECRET_KEYS", "short", "shorter than 32 characters"),
        ("MACHIAI_REDIS_PREFIX", "a{b}", "without braces"),
        # waitroom only
        ("WAITROOM_POLL_SPLIT", "fast", "must be a number"),
        ("WAITROOM_HOLD_S", "1", "between 5 and 3600"),
        ("MACHIAI_BOOKING_URL", "ftp://booking", "must start with one of http://"),
        # booking only
        ("BOOKING_HOLD_MS", "5", "between 1000 and 3600000"),
        ("BOOKING_TRUSTED_PROXIES", "10.0.0.0/33", "not an IP address or network"),
        # the runner's own
        ("WAITROOM_PORT", "70000", "between 1 and 65535"),
        ("MACHIAI_ENV", "staging", "must be one of"),
        ("MACHIAI_HOST", "no-such-host.invalid", "not an address"),
    ],
)
def test_run_refuses_a_bad_setting_before_starting_anything(
    tmp_path: Path, variable: str, value: str, rule: str
) -> None:
    run = Refused(tmp_path, "run", **{variable: value})
    run.assert_nothing_started(variable)
    assert rule in run.output


def test_run_refuses_a_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run = Refused(tmp_path, "run", BOOKING_PORT=str(taken.getsockname()[1]))
        assert "already in use" in run.output
    run.assert_nothing_started("BOOKING_PORT")


@pytest.mark.parametrize(
    ("variable", "value", "secret"),
    [
        ("MACHIAI_SECRET_KEYS", f"{GOOD_KEY},too-short-secret", "too-short-secret"),
        ("MACHIAI_SECRET_KEYS", f"{GOOD_KEY},too-short-secret", GOOD_KEY),
        ("DATABASE_URL", "postgresql://app:hunter2hunter2@/machiai", "hunter2hunter2"),
        ("DATABASE_URL", "mysql://app:hunter2hunter2@db/machiai", "hunter2hunter2"),
        ("REDIS_URL", "redis://:hunter2hunter2@cache:port/0", "hunter2hunter2"),
    ],
)
def test_a_secret_is_never_printed(tmp_path: Path, variable: str, value: str, secret: str) -> None:
    run = Refused(tmp_path, "run", **{variable: value})
    run.assert_nothing_started(variable)
    assert secret not in run.output


def test_production_without_urls_refuses_before_starting(tmp_path: Path) -> None:
    Refused(tmp_path, "run", MACHIAI_ENV="production").assert_nothing_started("REDIS_URL")


@pytest.mark.parametrize("command", ["migrate", "seed-demo"])
def test_other_commands_refuse_before_starting(tmp_path: Path, command: str) -> None:
    run = Refused(tmp_path, command, DATABASE_URL="mysql://db/machiai")
    run.assert_nothing_started("DATABASE_URL")


def test_loadtest_checks_the_services_settings_before_seeding(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run = Refused(
        tmp_path, "loadtest", "smoke", "--report-dir", str(reports), BOOKING_DB_POOL_MIN="0"
    )
    run.assert_nothing_started("BOOKING_DB_POOL_MIN")
    assert not reports.exists()


def test_the_check_writes_nothing(tmp_path: Path) -> None:
    """In development the key is generated per data dir on first use: not by the check."""
    check_service_settings({"MACHIAI_DATA_DIR": str(tmp_path / "data")})
    assert not (tmp_path / "data").exists()
