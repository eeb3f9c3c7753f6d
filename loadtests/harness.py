"""`machiai loadtest PROFILE`: start the system, seed it, surge it with locust, judge it, report.

The harness owns everything: an embedded Redis and Postgres (so it can
restart Redis mid-run or slow Postgres on purpose), the two services under
`machiai run`, and the locust processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil

from loadtests import judge, report
from loadtests.profiles import Fault, Profile
from loadtests.seed import Dataset, seed_profile

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Waitroom processes refresh their admission snapshot a few times a second; a resident told
# "waiting" this long after a later arrival was admitted is not an inversion but snapshot lag.
SNAPSHOT_TOLERANCE_S = 1.0
SLOW_CONFIRM_S = 0.3


@dataclass(frozen=True, slots=True)
class Targets:
    waitroom_url: str
    booking_url: str
    database_url: str | None
    redis: object | None = None  # the harness's own EmbeddedRedis, for the restart fault


@contextmanager
def local_system(profile: Profile, workdir: Path) -> Iterator[tuple[Targets, Dataset, list[int]]]:
    """Embedded Redis + Postgres, seeded, and both services; yields targets and service pids."""
    from machiai.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
    from machiai.migrate import apply_migrations

    with ExitStack() as stack:
        redis = EmbeddedRedis(workdir / "redis", persistent=False).start()
        stack.callback(redis.stop)
        postgres = EmbeddedPostgres(workdir / "postgres").start()
        stack.callback(postgres.stop)

        async def prepare() -> Dataset:
            await apply_migrations(postgres.url)
            conn = await asyncpg.connect(postgres.url)
            try:
                return await seed_profile(conn, profile, datetime.now(UTC))
            finally:
                await conn.close()

        dataset = asyncio.run(prepare())
        ports = (free_port(), free_port())
        env = dict(os.environ)
        env.update(
            REDIS_URL=redis.url,
            DATABASE_URL=postgres.url,
            MACHIAI_ENV="development",
            MACHIAI_DATA_DIR=str(workdir / "data"),
            WAITROOM_PORT=str(ports[0]),
            BOOKING_PORT=str(ports[1]),
            # Residents arrive through a load balancer: each has its own X-Forwarded-For.
            WAITROOM_TRUST_FORWARDED="true",
            BOOKING_TRUST_FORWARDED="true",
        )
        log = open(workdir / "services.log", "wb")  # noqa: SIM115 - closed by the stack
        stack.callback(log.close)
        run = subprocess.Popen(
            [sys.executable, "-m", "machiai.cli", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

        def stop_run() -> None:
            run.send_signal(2)
            try:
                run.wait(60)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()

        stack.callback(stop_run)
        targets = Targets(
            f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", postgres.url, redis
        )
        for url in (targets.waitroom_url, targets.booking_url):
            _wait_ready(url, run, log_path=workdir / "services.log")
        pids = [
            c.pid for c in psutil.Process(run.pid).children() if "uvicorn" in " ".join(c.cmdline())
        ]
        yield targets, dataset, pids


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"machiai run exited early; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready; see {log_path}")


def inject_fault(profile: Profile, targets: Targets, stop: threading.Event, log: list[str]) -> None:
    """Runs in a thread: waits for the fault's moment, breaks something, then heals it."""
    if profile.fault is Fault.NONE or stop.wait(profile.fault_at_s):
        return
    if profile.fault is Fault.REDIS_RESTART and targets.redis is not None:
        from machiai.embedded import EmbeddedRedis

        redis = targets.redis
        assert isinstance(redis, EmbeddedRedis)
        log.append(f"{time.time():.1f} redis stopped")
        redis.stop()
        stop.wait(profile.fault_for_s)
        redis.start()
        log.append(f"{time.time():.1f} redis started again, empty")
    elif profile.fault is Fault.SLOW_BOOKING and targets.database_url:
        asyncio.run(_slow_confirms(targets.database_url, profile.fault_for_s, stop, log))


async def _slow_confirms(url: str, seconds: int, stop: threading.Event, log: list[str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f"""
            CREATE OR REPLACE FUNCTION loadtest_slow() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep({SLOW_CONFIRM_S}); RETURN NEW; END $$;
            CREATE TRIGGER loadtest_slow BEFORE INSERT ON bookings
                FOR EACH ROW EXECUTE FUNCTION loadtest_slow();
            """
        )
        log.append(f"{time.time():.1f} confirms slowed by {SLOW_CONFIRM_S}s")
        await asyncio.to_thread(stop.wait, seconds)
        await conn.execute("DROP TRIGGER loadtest_slow ON bookings")
        log.append(f"{time.time():.1f} confirms fast again")
    finally:
        await conn.close()


def run_locust(
    profile: Profile, targets: Targets, dataset: Dataset, out: Path, processes: int
) -> tuple[int, float]:
    """Run locust headless, bounded in time; returns its exit code and its CPU seconds."""
    records = out / "records"
    records.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        LT_WAITROOM_URL=targets.waitroom_url,
        LT_BOOKING_URL=targets.booking_url,
        LT_RECORDS_DIR=str(records),
        LT_PROCESSES=str(processes),
        LT_PROFILE=json.dumps({**asdict(profile), "fault": profile.fault.value}),
        LT_DATASET=json.dumps({**asdict(dataset), "opens_at": dataset.opens_at.isoformat()}),
    )
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(profile.users),
        "-r",
        str(profile.spawn_per_s),
        "-t",
        f"{profile.duration_s}s",
        "--stop-timeout",
        "10",
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--html",
        str(out / "locust.html"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    if processes > 1:
        argv += ["--processes", str(processes)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out / "locust.log", "wb") as log:
        code = subprocess.run(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=profile.duration_s + 120
        ).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, cpu


def service_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
            total += times.user + times.system
            for child in proc.children(recursive=True):
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


async def judge_run(
    targets: Targets, dataset: Dataset, journeys: list[dict[str, object]], verdict: judge.Verdict
) -> None:
    if not targets.database_url:
        verdict.notes.append("no database URL: oversell and double bookings were not judged")
        return
    conn = await asyncpg.connect(targets.database_url)
    try:
        await judge.judge_database(conn, dataset.event_id, verdict)
        codes = [
            str(j["confirmation_code"])
            for j in journeys
            if j.get("confirmation_code") and not j.get("cancelled")
        ]
        verdict.lost_bookings = await judge.count_lost(conn, codes)
    finally:
        await conn.close()


def run_loadtest(
    profile: Profile,
    report_root: Path,
    *,
    locust_processes: int = 1,
) -> int:
    """The whole run; returns 0 when the system held, 1 when an invariant failed."""
    started = time.time()
    out = report_root / f"{profile.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="machiai-loadtest-"))
    workdir.chmod(0o755)
    fault_log: list[str] = []
    verdict = judge.Verdict()
    extra: dict[str, str] = {}
    try:
        with ExitStack() as stack:
            targets, dataset, service_pids = stack.enter_context(local_system(profile, workdir))
            stop = threading.Event()
            fault = threading.Thread(
                target=inject_fault, args=(profile, targets, stop, fault_log), daemon=True
            )
            fault.start()
            cpu_before = service_cpu(service_pids)
            code, locust_cpu = run_locust(profile, targets, dataset, out, locust_processes)
            stop.set()
            fault.join(30)
            services_cpu = service_cpu(service_pids) - cpu_before
            wall = time.time() - started
            journeys = judge.read_records(out / "records")
            asyncio.run(judge_run(targets, dataset, journeys, verdict))
            if targets.database_url:
                extra["bookings per minute"] = str(
                    asyncio.run(_bookings_per_minute(targets.database_url, started))
                )
        verdict.joined = sum(1 for j in journeys if j.get("joined_at"))
        verdict.admitted = sum(1 for j in journeys if j.get("admitted_at"))
        verdict.order_inversions = judge.order_inversions(journeys, SNAPSHOT_TOLERANCE_S)
        verdict.wait_error_s = judge.wait_error(journeys)
        verdict.admitted_per_minute = judge.per_minute(
            [float(j["admitted_at"]) for j in journeys if j.get("admitted_at")], started
        )
        verdict.latency_ms, failed = judge.read_locust_stats(out / "locust_stats.csv")
        errors_by_endpoint = judge.server_errors(journeys)
        verdict.server_errors = sum(errors_by_endpoint.values())
        if errors_by_endpoint:
            extra["5xx or no response, per endpoint"] = str(errors_by_endpoint)
        extra["requests locust counted as failed (any cause; see locust_failures.csv)"] = str(
            failed
        )
        if code != 0:
            verdict.notes.append(f"locust exited with {code}; see locust.log")
        verdict.notes.extend(fault_log)
        extra["CPU (s) over the run"] = (
            f"locust {locust_cpu:.1f}, services {services_cpu:.1f}, wall {wall:.0f} "
            f"(2 cores shared; locust processes: {locust_processes})"
        )
        charts = [
            report.chart_line_length(journeys, started, out),
            report.chart_per_minute(
                verdict.admitted_per_minute,
                "Admitted per minute",
                "residents",
                out,
                "admitted.png",
                profile.admit_per_minute,
            ),
        ]
        for maybe in (
            report.chart_latency(out / "locust_stats_history.csv", out),
            report.chart_wait(journeys, out),
        ):
            if maybe:
                charts.append(maybe)
        md, _ = report.write_summary(out, profile, verdict, charts, extra)
        (out / "verdict.json").write_text(
            json.dumps(
                {
                    "profile": profile.name,
                    "held": verdict.held,
                    "violations": verdict.violations,
                    "joined": verdict.joined,
                    "admitted": verdict.admitted,
                    "confirmed": verdict.confirmed,
                    "failed_requests": failed,
                    "latency_ms": verdict.latency_ms,
                },
                indent=2,
            ),
            "utf-8",
        )
        print(md.read_text("utf-8"))
        print(f"report: {out}")
        return 0 if verdict.held else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _bookings_per_minute(url: str, started: float) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT extract(epoch FROM created_at) AS t FROM bookings")
    finally:
        await conn.close()
    return judge.per_minute([float(r["t"]) for r in rows], started)
