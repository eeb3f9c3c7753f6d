"""The README's two commands, as root, from a clone in a private (mode 700) directory —
where root clones by default (its home) and the embedded Postgres's user may not enter.

Slow: each command runs as a newcomer's would, so the clone makes its own .venv
(pip install from the package index, a few minutes).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from machiai.embedded import free_port
from tests.servers import port_free

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 1500.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another user"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git to clone the repository"),
]


def _clone(into: Path) -> None:
    """The repository as it stands: HEAD, plus the working tree's uncommitted changes, so the
    test checks the code under test (once committed, the overlay changes nothing)."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True, timeout=300)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--modified", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, into / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif not source.exists():
            target.unlink(missing_ok=True)


def _newcomer_env(ports: tuple[int, int]) -> dict[str, str]:
    """Our environment without anything that points at our servers, venv or test run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MACHIAI_", "WAITROOM_", "BOOKING_", "TEST_", "PYTEST_"))
        and k not in {"REDIS_URL", "DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH"}
    }
    env.update(WAITROOM_PORT=str(ports[0]), BOOKING_PORT=str(ports[1]))
    return env


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.mark.timeout(3600)
def test_run_and_test_work_as_root_from_a_private_clone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o700)
    clone = home / "machiai"
    _clone(clone)
    ports = (free_port(), free_port())
    env = _newcomer_env(ports)
    log = tmp_path / "run.log"
    started: list[psutil.Process] = []
    try:
        # 1. ./machiai.sh run: both services healthy, then Ctrl-C stops everything.
        with open(log, "wb") as out:
            run = subprocess.Popen(
                ["./machiai.sh", "run"],
                cwd=clone,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as a terminal gives it
            )
        started.append(psutil.Process(run.pid))
        deadline = time.monotonic() + INSTALL_TIMEOUT_S
        while not all(_ready(port) for port in ports):
            assert run.poll() is None, f"./machiai.sh run exited {run.returncode}:\n{_tail(log)}"
            assert time.monotonic() < deadline, "no healthy services:\n" + _tail(log)
            time.sleep(1)
        started += psutil.Process(run.pid).children(recursive=True)
        assert len(started) >= 5, started  # supervisor, redis, postgres, two services
        pgdata = clone / ".machiai" / "postgres" / "pgdata"
        assert pgdata.is_symlink() and pgdata.readlink().is_relative_to("/var/lib/machiai")

        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert run.wait(90) == 0, _tail(log)
        deadline = time.monotonic() + 30
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive(started) == []
        assert "machiai stopped." in log.read_text()
        assert all(port_free(port) for port in ports)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700

        # 2. ./machiai.sh test (ruff, mypy, then a part of pytest that needs Postgres).
        tested = subprocess.run(
            [
                "./machiai.sh",
                "test",
                "tests/machiai/test_migrate.py",
                "-q",
                "-p",
                "no:cacheprovider",
            ],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        output = tested.stdout + tested.stderr
        assert tested.returncode == 0, output[-4000:]
        assert "==> ruff" in tested.stderr and "==> mypy" in tested.stderr, output[-4000:]
        assert " passed" in tested.stdout and "failed" not in tested.stdout, output[-4000:]
        assert "skipped" not in tested.stdout, output[-4000:]  # it used the embedded Postgres
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
    finally:
        for process in _alive(started):
            process.kill()
        link = clone / ".machiai" / "postgres" / "pgdata"
        if link.is_symlink():  # the run's Postgres data, kept for the clone in /var/lib/machiai
            shutil.rmtree(link.readlink().parent, ignore_errors=True)
