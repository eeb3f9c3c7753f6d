"""Embedded servers and `machiai run`: real processes, real HTTP, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio.cluster import RedisCluster

from machiai import metrics
from machiai.cluster_url import is_cluster_url
from machiai.embedded import EmbeddedPostgres, EmbeddedRedis, PostgresTuning, free_port
from tests import report
from tests.servers import redis_client_for_tests, session_tmpdir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with session_tmpdir() as path:
        yield path / "data"


def processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(path) in part for part in cmdline):
            found.append(proc)
    return found


def wait_gone(pids: list[int], timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [
            p
            for p in alive
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        time.sleep(0.05)
    return alive


def test_embedded_start_stop_leaves_no_process(data_dir: Path) -> None:
    redis_server = EmbeddedRedis(data_dir / "redis").start()
    postgres = EmbeddedPostgres(data_dir / "pg", tuning=PostgresTuning(fsync=False)).start()
    pids = [redis_server.pid, postgres.pid]
    assert all(p is not None and psutil.pid_exists(p) for p in pids)
    children = [c.pid for c in psutil.Process(postgres.pid).children()]
    assert children, "postgres should have started its background workers"
    postgres.stop()
    redis_server.stop()
    postgres.stop()  # idempotent
    assert wait_gone([p for p in pids if p is not None] + children) == []
    assert processes_using(data_dir) == []


def test_killed_parent_takes_its_servers_along(data_dir: Path) -> None:
    """Even kill -9 of the owner leaves no orphan: the kernel's parent-death signal."""
    script = (
        "import sys, time, json\n"
        "from pathlib import Path\n"
        "from machiai.embedded import EmbeddedRedis, EmbeddedPostgres, PostgresTuning\n"
        "d = Path(sys.argv[1])\n"
        "r = EmbeddedRedis(d / 'redis').start()\n"
        "p = EmbeddedPostgres(d / 'pg', tuning=PostgresTuning(fsync=False)).start()\n"
        "print(json.dumps([r.pid, p.pid]), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None
        pids = json.loads(owner.stdout.readline())
        assert all(psutil.pid_exists(p) for p in pids)
    finally:
        owner.kill()
        owner.communicate()
    assert wait_gone(pids) == []
    assert wait_gone([p.pid for p in processes_using(data_dir)]) == []


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def _start_run(data_dir: Path, ports: tuple[int, int], *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(
        MACHIAI_DATA_DIR=str(data_dir),
        WAITROOM_PORT=str(ports[0]),
        BOOKING_PORT=str(ports[1]),
        MACHIAI_ENV="development",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "machiai.cli", "run", *extra],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_banner(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "machiai is running" in line:
            return lines
    raise AssertionError("machiai run did not start:\n" + "".join(lines))


def test_machiai_run_serves_both_apps_and_stops_cleanly(data_dir: Path) -> None:
    ports = (free_port(), free_port())
    run = _start_run(data_dir, ports)
    try:
        _wait_banner(run)
        for port, service in zip(ports, ("waitroom", "booking"), strict=True):
            status, body = _get(f"http://127.0.0.1:{port}/health/ready")
            assert status == 200
            assert body == {
                "status": "ok",
                "service": service,
                "checks": {"redis": "ok", "postgres": "ok"},
            }
        # seed-demo finds the running system and prints a waiting-room address that works.
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
        seeded = subprocess.run(
            [sys.executable, "-m", "machiai.cli", "seed-demo"],
            env={**env, "MACHIAI_DATA_DIR": str(data_dir)},
            text=True,
            capture_output=True,
            timeout=120,
        )
        assert seeded.returncode == 0, seeded.stderr
        (page_url,) = [
            line.split()[-1] for line in seeded.stdout.splitlines() if "Waiting room:" in line
        ]
        assert page_url.startswith(f"http://127.0.0.1:{ports[0]}/")
        with urllib.request.urlopen(page_url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/html")
        tree = [p.pid for p in psutil.Process(run.pid).children(recursive=True)]
        assert len(tree) >= 4  # redis, postgres (+ workers), two uvicorns
        # A second run on the same data dir is refused instead of corrupting it.
        second = _start_run(data_dir, (free_port(), free_port()))
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 1
        assert "already running" in out
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    assert run.returncode == 0
    assert wait_gone(tree) == []
    assert processes_using(data_dir) == []
    assert not (data_dir / "run.json").exists()


def test_data_survives_a_restart(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env["MACHIAI_DATA_DIR"] = str(data_dir)
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "machiai.cli", "seed-demo"],
            env=env,
            text=True,
            capture_output=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "336 slots, 1000 residents" in result.stdout
    assert processes_using(data_dir) == []


def test_cli_help_everywhere() -> None:
    for args in ([], ["run"], ["migrate"], ["seed-demo"]):
        result = subprocess.run(
            [sys.executable, "-m", "machiai.cli", *args, "--help"], capture_output=True, text=True
        )
        assert result.returncode == 0
        assert "usage: machiai" in result.stdout


async def test_machiai_run_never_prints_a_password(
    data_dir: Path, redis_url: str, database_url: str, redis_prefix: str
) -> None:
    """Given REDIS_URL and DATABASE_URL with passwords, nothing `machiai run` or its
    services print (banner, logs, the stop) contains them: run output ends up in terminals,
    CI logs and tickets."""
    redis_password, pg_password = "r-" + uuid.uuid4().hex, "p-" + uuid.uuid4().hex
    user = f"machiai-test-{uuid.uuid4().hex[:8]}"
    admin = redis_client_for_tests(redis_url)
    # Users are each node's own: every node of a cluster learns this one.
    nodes: dict[str, Any] = {}
    if isinstance(admin, RedisCluster):
        nodes["target_nodes"] = RedisCluster.ALL_NODES
    await admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{redis_password}"],
        keys=["*"],
        commands=["+@all"],
        **nodes,
    )
    try:
        p = urlsplit(database_url)
        if is_cluster_url(redis_url):
            scheme, _, seeds = redis_url.partition("://")
            authed_redis_url = f"{scheme}://{user}:{redis_password}@{seeds}"
        else:
            r = urlsplit(redis_url)
            authed_redis_url = r._replace(
                netloc=f"{user}:{redis_password}@{r.hostname}:{r.port}"
            ).geturl()
        pg_user = p.username or "postgres"
        pg_password = p.password or pg_password  # a trust-auth server ignores a made-up one
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
        ports = (free_port(), free_port())
        env.update(
            MACHIAI_DATA_DIR=str(data_dir),
            WAITROOM_PORT=str(ports[0]),
            BOOKING_PORT=str(ports[1]),
            MACHIAI_ENV="development",
            MACHIAI_REDIS_PREFIX=redis_prefix,
            REDIS_URL=authed_redis_url,
            DATABASE_URL=p._replace(
                netloc=f"{pg_user}:{pg_password}@{p.hostname}:{p.port}"
            ).geturl(),
        )
        run = subprocess.Popen(
            [sys.executable, "-m", "machiai.cli", "run"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            banner = "".join(_wait_banner(run))
            for port in ports:
                assert _get(f"http://127.0.0.1:{port}/health/ready")[0] == 200
        finally:
            run.send_signal(signal.SIGINT)
            assert run.stdout is not None
            with run.stdout:
                rest = run.stdout.read()  # through the reader's buffer: it holds the banner
            run.wait(timeout=60)
        printed = banner + rest
        assert f"{user}:***@" in printed and f"{pg_user}:***@" in printed  # where, not how
        for secret in (redis_password, pg_password):
            assert secret not in printed
    finally:
        await admin.acl_deluser(user, **nodes)
        await admin.aclose()


def test_a_crashed_service_comes_back_and_the_other_keeps_serving(data_dir: Path) -> None:
    """kill -9 of booking: `machiai run` says so, starts it again, the waitroom answers all
    along; only Ctrl-C stops everything."""
    ports = (free_port(), free_port())
    run = _start_run(data_dir, ports)
    try:
        _wait_banner(run)
        (booking,) = [
            p
            for p in psutil.Process(run.pid).children()
            if "booking.app:app_from_env" in " ".join(p.cmdline())
        ]
        booking.kill()
        booking.wait(10)
        killed = time.monotonic()
        deadline = time.monotonic() + 60
        back = False
        while time.monotonic() < deadline and not back:
            assert _get(f"http://127.0.0.1:{ports[0]}/health/ready")[0] == 200
            try:
                back = _get(f"http://127.0.0.1:{ports[1]}/health/ready")[0] == 200
            except OSError:
                time.sleep(0.2)
        assert back, "booking did not come back"
        assert run.poll() is None
        report.record(
            report.Fault(
                "booking process killed (SIGKILL) under `machiai run`",
                "the waitroom answered all along; booking refused connections until restarted",
                "–",
                "–",
                f"{time.monotonic() - killed:.1f} s until booking answered ready again",
            )
        )
    finally:
        run.send_signal(signal.SIGINT)
        assert run.stdout is not None
        with run.stdout:
            printed = run.stdout.read()
        run.wait(timeout=60)
    assert run.returncode == 0
    assert "booking exited with code -9; starting it again in 1 s" in printed
    assert "booking started again" in printed
    assert processes_using(data_dir) == []


def test_workers_serve_together_and_one_scrape_counts_them_all(data_dir: Path) -> None:
    """`machiai run --workers 2`: two uvicorn workers per service, and /metrics of either
    reports the requests both served (prometheus-client's multiprocess mode)."""
    ports = (free_port(), free_port())
    run = _start_run(data_dir, ports, "--workers", "2")
    try:
        _wait_banner(run)
        parents = [
            p
            for p in psutil.Process(run.pid).children()
            if "uvicorn" in " ".join(p.cmdline()) and "--workers" in p.cmdline()
        ]
        assert len(parents) == 2  # waitroom and booking
        tree = [p.pid for p in psutil.Process(run.pid).children(recursive=True)]
        for parent in parents:  # its workers (and multiprocessing's resource tracker)
            assert len(parent.children()) >= 2
        for _ in range(60):  # a new connection each: the workers take turns accepting
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/health", timeout=5) as r:
                assert r.status == 200
        time.sleep(metrics.FLUSH_EVERY_S + 0.5)  # every worker's timer has flushed
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/metrics", timeout=5) as r:
            text = r.read().decode()
        counted = sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "machiai_http_requests_total" and s.labels.get("route") == "/health"
        )
        assert counted == 60
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    assert run.returncode == 0
    assert wait_gone(tree) == []
