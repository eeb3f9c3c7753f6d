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
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil

from loadtests import judge, report
from loadtests.lean.run import LeanRun
from loadtests.outbox import DRAIN_TIMEOUT_S, OutboxBacklog, drain_and_stop
from loadtests.periodic import Periodic
from loadtests.probe import LatencyProbe
from loadtests.profiles import Fault, Generator, Profile
from loadtests.seed import MUNICIPALITY, Dataset, seed_profile

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# Waitroom processes refresh their admission snapshot a few times a second; a resident told
# "waiting" this long after a later arrival was admitted is not an inversion but snapshot lag.
SNAPSHOT_TOLERANCE_S = 1.0
# Slow enough that booking's p95 passes WAITROOM_TARGET_P95_MS (800 ms) and the admission
# factor drops: the slow spell the wait estimate has to live through.
SLOW_CONFIRM_S = 1.5


@dataclass(frozen=True, slots=True)
class Targets:
    waitroom_url: str
    booking_url: str
    database_url: str | None
    redis: object | None = None  # the harness's own EmbeddedRedis, for the restart fault


class HarnessError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Deployment:
    """A running machiai to load instead of a local one (``--target``)."""

    waitroom_url: str
    booking_url: str
    database_url: str  # to seed the run's dataset and to judge it


# Which process is which, now (Redis gets a new pid when the fault restarts it).
Pids = Callable[[], dict[str, int]]


async def _seed(database_url: str, profile: Profile, processes: int) -> Dataset:
    conn = await asyncpg.connect(database_url)
    try:
        return await seed_profile(conn, profile, datetime.now(UTC), processes)
    finally:
        await conn.close()


@contextmanager
def remote_system(
    profile: Profile, deployment: Deployment, processes: int
) -> Iterator[tuple[Targets, Dataset, Pids]]:
    """A deployment seeded with this run's own event, clinics, registry block and staff."""
    if profile.fault is Fault.REDIS_RESTART:
        raise HarnessError(
            "redis-restart restarts the harness's own Redis: run it without --target"
        )
    for url in (deployment.waitroom_url, deployment.booking_url):
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=5) as response:
                response.read()
        except OSError as exc:
            raise HarnessError(f"{url}/health/ready did not answer 200: {exc}") from None
    dataset = asyncio.run(_seed(deployment.database_url, profile, processes))
    yield (
        Targets(deployment.waitroom_url, deployment.booking_url, deployment.database_url),
        dataset,
        dict,
    )


@contextmanager
def local_system(
    profile: Profile, workdir: Path, processes: int
) -> Iterator[tuple[Targets, Dataset, Pids]]:
    """Embedded Redis + Postgres, seeded, and both services; yields targets and service pids."""
    from machiai.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
    from machiai.migrate import apply_migrations

    with ExitStack() as stack:
        redis = EmbeddedRedis(workdir / "redis", persistent=False).start()
        stack.callback(redis.stop)
        postgres = EmbeddedPostgres(workdir / "postgres").start()
        stack.callback(postgres.stop)

        asyncio.run(apply_migrations(postgres.url))
        dataset = asyncio.run(_seed(postgres.url, profile, processes))
        ports = (free_port(), free_port())
        env = dict(os.environ)
        env.update(
            REDIS_URL=redis.url,
            DATABASE_URL=postgres.url,
            MACHIAI_ENV="development",
            MACHIAI_DATA_DIR=str(workdir / "data"),
            WAITROOM_PORT=str(ports[0]),
            BOOKING_PORT=str(ports[1]),
            # Residents arrive through a load balancer: each has its own X-Forwarded-For,
            # read because locust (the peer, on this host) is listed as the proxy.
            WAITROOM_TRUSTED_PROXIES="127.0.0.1,::1",
            BOOKING_TRUSTED_PROXIES="127.0.0.1,::1",
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
        services = {}
        for child in psutil.Process(run.pid).children():
            cmdline = " ".join(child.cmdline())
            for name in ("waitroom", "booking"):
                if f"{name}.app" in cmdline:
                    services[name] = child.pid

        def pids() -> dict[str, int]:
            now = dict(services)
            for name, server in (("redis", redis), ("postgres", postgres)):
                if server.pid is not None:
                    now[name] = server.pid
            return now

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
            $$ BEGIN
                -- Only the load test's own municipality: safe against a shared deployment.
                IF NEW.municipality_code = '{MUNICIPALITY}' THEN
                    PERFORM pg_sleep({SLOW_CONFIRM_S});
                END IF;
                RETURN NEW;
            END $$;
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


@dataclass(frozen=True, slots=True)
class Workers:
    """Where locust's users run: forked here, or on other machines joining this master."""

    local: int = 1
    external: int = 0
    master_port: int = 5557

    @property
    def total(self) -> int:
        return self.external or self.local


def run_locust(
    profile: Profile,
    targets: Targets,
    dataset: Dataset,
    out: Path,
    workers: Workers,
    sampled: dict[int, float] | None = None,
) -> tuple[int, float]:
    """Run locust headless, bounded in time; returns its exit code and its CPU seconds
    (of the processes on this machine)."""
    records = out / "records"
    records.mkdir(parents=True, exist_ok=True)
    scenario = {
        "LT_WAITROOM_URL": targets.waitroom_url,
        "LT_BOOKING_URL": targets.booking_url,
        "LT_PROFILE": json.dumps({**asdict(profile), "fault": profile.fault.value}),
        "LT_DATASET": json.dumps({**asdict(dataset), "opens_at": dataset.opens_at.isoformat()}),
    }
    env = {**os.environ, **scenario, "LT_RECORDS_DIR": str(records)}
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
    wait_for_workers_s = 0
    if workers.external:
        wait_for_workers_s = 300
        argv += [
            "--master",
            "--expect-workers",
            str(workers.external),
            "--expect-workers-max-wait",
            str(wait_for_workers_s),
            "--master-bind-port",
            str(workers.master_port),
        ]
        env_file = out / "worker.env"
        env_file.write_text(
            "".join(f"{name}={shlex.quote(value)}\n" for name, value in scenario.items()),
            "utf-8",
        )
        print(
            f"waiting up to {wait_for_workers_s} s for {workers.external} locust worker(s); "
            "on each load machine, from a checkout of the same version:\n"
            f"  set -a; . {env_file}; set +a\n"
            f"  locust -f loadtests/locustfile.py --worker --master-host THIS_HOST "
            f"--master-port {workers.master_port}",
            flush=True,
        )
    elif workers.local > 1:
        argv += ["--processes", str(workers.local)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # locust's forked workers are not always reaped by their parent before it exits, so
    # RUSAGE_CHILDREN can miss them: sample the process tree too and keep the larger figure.
    # (Each second: the caller's timeline reads it too.)
    sampled = {} if sampled is None else sampled
    deadline = time.monotonic() + profile.duration_s + 120 + wait_for_workers_s
    with open(out / "locust.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                _sample_tree(proc.pid, sampled)
                try:
                    code = proc.wait(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, max(reaped, sum(sampled.values()))


def _sample_tree(pid: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds so far of a process and each live descendant, by pid."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for member in tree:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        seen[member.pid] = max(seen.get(member.pid, 0.0), times.user + times.system)


class CpuTimeline(Periodic):
    """Cumulative CPU seconds per process, read every second, to find each process's busiest
    stretch: run averages hide a process pegged at 100 % during the spike itself."""

    def __init__(self, read: Callable[[], dict[str, float]], interval_s: float = 1.0) -> None:
        super().__init__(interval_s)
        self.read = read
        self.samples: list[tuple[float, dict[str, float]]] = []

    def tick(self) -> None:
        self.samples.append((time.monotonic(), self.read()))

    def peak_share(self, window_s: float = 5.0) -> dict[str, float]:
        """Per process, the highest CPU share of one core over any ``window_s`` stretch (a
        process restarted in the stretch counts from its new start)."""
        peaks: dict[str, float] = {}
        for i, (t0, first) in enumerate(self.samples):
            for t1, last in self.samples[i + 1 :]:
                if t1 - t0 >= window_s:
                    for name, cpu in last.items():
                        before = first.get(name, 0.0)
                        used = cpu - before if cpu >= before else cpu
                        peaks[name] = max(peaks.get(name, 0.0), used / (t1 - t0))
                    break
        return peaks


def process_cpu(pids: dict[str, int]) -> dict[str, tuple[int, float]]:
    """CPU seconds so far of each named process with its live and reaped children
    (Postgres backends come and go), keyed by name as (pid, seconds)."""
    found = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in proc.children(recursive=True):
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
        found[name] = (pid, total)
    return found


def cpu_used(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]
) -> dict[str, float]:
    """Per process over the run; a process restarted meanwhile counts from its new start."""
    return {
        name: seconds - (before[name][1] if before.get(name, (0, 0.0))[0] == pid else 0.0)
        for name, (pid, seconds) in after.items()
    }


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
    workers: Workers = Workers(),
    deployment: Deployment | None = None,
) -> int:
    """The whole run; returns 0 when the system held, 1 when an invariant failed.

    Without ``deployment`` the harness starts and owns a local system."""
    generator = profile.generator.value  # locust, or the lean generator (loadtests/lean)
    if profile.generator is Generator.LEAN and workers != Workers():
        raise HarnessError("the lean generator runs as one process on this machine")
    lean: LeanRun | None = None
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
            system = (
                local_system(profile, workdir, workers.total)
                if deployment is None
                else remote_system(profile, deployment, workers.total)
            )
            targets, dataset, service_pids = stack.enter_context(system)
            stop = threading.Event()
            fault = threading.Thread(
                target=inject_fault, args=(profile, targets, stop, fault_log), daemon=True
            )
            fault.start()
            bookings_per_minute: list[int] = []
            cpu_before = process_cpu(service_pids())
            locust_tree: dict[int, float] = {}
            timeline = CpuTimeline(
                lambda: {
                    generator: sum(list(locust_tree.values())),
                    **{name: cpu for name, (_pid, cpu) in process_cpu(service_pids()).items()},
                }
            )
            probe = LatencyProbe(targets.waitroom_url, targets.booking_url, dataset.event_id)
            backlog = OutboxBacklog(targets.database_url, started) if targets.database_url else None
            timeline.start()
            probe.start()
            if backlog is not None:
                backlog.start()
            try:
                if profile.generator is Generator.LEAN:
                    lean = LeanRun(service_pids)
                    urls = (targets.waitroom_url, targets.booking_url)
                    code, locust_cpu = lean.run(profile, *urls, dataset, out, locust_tree)
                else:
                    code, locust_cpu = run_locust(
                        profile, targets, dataset, out, workers, locust_tree
                    )
            finally:
                probe.stop()
                timeline.stop()
            load_end_s = time.time() - started
            stop.set()
            fault.join(30)
            if backlog is not None and targets.database_url:
                # What the surge left in the outbox must be delivered, load or no load.
                drained_s, verdict.outbox_left, dead = drain_and_stop(backlog, targets.database_url)
                extra["outbox after the load"] = (
                    (
                        f"drained in {drained_s:.1f} s"
                        if drained_s is not None
                        else f"{verdict.outbox_left} messages still waiting after "
                        f"{DRAIN_TIMEOUT_S:.0f} s"
                    )
                    + f"; peak backlog {max((n for _, n in backlog.samples), default=0)}; "
                    + (f"{dead} given up (dead)")
                )
            services_cpu = cpu_used(cpu_before, process_cpu(service_pids()))
            wall = time.time() - started
            journeys = judge.read_records(out / "records")
            asyncio.run(judge_run(targets, dataset, journeys, verdict))
            if targets.database_url:
                bookings_per_minute = asyncio.run(
                    _bookings_per_minute(targets.database_url, dataset.event_id, started)
                )
                extra["bookings per minute"] = str(bookings_per_minute)
        verdict.joined = sum(1 for j in journeys if j.get("joined_at"))
        published = sum(int(j.get("published", 0)) for j in journeys)
        extra["slots published by clinic staff during the run"] = str(published)
        verdict.admitted = sum(1 for j in journeys if j.get("admitted_at"))
        verdict.order_inversions = judge.order_inversions(journeys, SNAPSHOT_TOLERANCE_S)
        verdict.wait_error_s = judge.wait_error(journeys)
        verdict.estimate_error = judge.estimate_error(journeys)
        verdict.notice_lag_s = judge.notice_lag(journeys)
        verdict.admitted_per_minute = judge.per_minute(
            [float(j["admitted_at"]) for j in journeys if j.get("admitted_at")], started
        )
        verdict.latency_ms, failed = judge.read_locust_stats(out / f"{generator}_stats.csv")
        errors_by_endpoint = judge.server_errors(journeys)
        verdict.server_errors = sum(errors_by_endpoint.values())
        if errors_by_endpoint:
            extra["5xx or no response, per endpoint"] = str(errors_by_endpoint)
        extra[
            f"requests {generator} counted as failed (any cause; see {generator}_failures.csv)"
        ] = str(failed)
        if code != 0:
            verdict.notes.append(f"{generator} exited with {code}; see {generator}.log")
        verdict.notes.extend(fault_log)
        where = "" if deployment is None else f" against {targets.waitroom_url}"
        per_process = ", ".join(f"{name} {s:.1f}" for name, s in sorted(services_cpu.items()))
        extra["CPU (s) over the run"] = (
            f"{generator} {locust_cpu:.1f} ("
            + (
                f"master here, {workers.external} worker(s) elsewhere not counted); "
                if workers.external
                else f"{workers.local} worker process(es)); "
            )
            + f"{per_process or 'services not measured (remote)'}; "
            f"wall {wall:.0f}, {os.cpu_count()} cores on the load machine{where}"
        )
        probed = probe.percentiles()
        extra["probe outside locust (one client every 50 ms; ms)"] = "; ".join(
            f"{name}: p50 {row.get('p50', '-')}, p95 {row.get('p95', '-')}, "
            f"p99 {row.get('p99', '-')}, max {row.get('max', '-')} "
            f"(n {row['n']:.0f}, failed {row['failures']:.0f})"
            for name, row in probed.items()
        )
        peaks = timeline.peak_share()
        if peaks:
            extra["busiest 5 s, CPU share of one core"] = ", ".join(
                f"{name} {share:.0%}" for name, share in sorted(peaks.items())
            )
        extra["CPU share of one core"] = ", ".join(
            f"{name} {s / wall:.0%}"
            for name, s in [(generator, locust_cpu), *sorted(services_cpu.items())]
        )
        # The lean generator's own figures: polling against the formula, memory of every process.
        lean_extra, lean_charts, lean_figures = lean.figures(out) if lean else ({}, [], {})
        extra.update(lean_extra)
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
        if bookings_per_minute:
            charts.append(
                report.chart_per_minute(
                    bookings_per_minute,
                    "Bookings confirmed per minute (web and phone)",
                    "bookings",
                    out,
                    "bookings.png",
                )
            )
        for maybe in (
            report.chart_latency(out / f"{generator}_stats_history.csv", out),
            report.chart_wait(journeys, out),
            report.chart_outbox(backlog.samples if backlog else [], load_end_s, out),
        ):
            if maybe:
                charts.append(maybe)
        charts.extend(lean_charts)
        md, _ = report.write_summary(out, profile, verdict, charts, extra)
        (out / "verdict.json").write_text(
            json.dumps(
                {
                    "profile": profile.name,
                    "settings": {**asdict(profile), "fault": profile.fault.value},
                    "target": None if deployment is None else targets.waitroom_url,
                    "event_id": dataset.event_id,
                    "held": verdict.held,
                    "violations": verdict.violations,
                    "joined": verdict.joined,
                    "admitted": verdict.admitted,
                    # Residents the profile made give up before their turn (abandon_waiting).
                    "abandoned_waiting": sum(
                        1 for j in journeys if j.get("abandoned") == "waiting"
                    ),
                    "confirmed": verdict.confirmed,
                    "failed_requests": failed,
                    "latency_ms": verdict.latency_ms,
                    "admitted_per_minute": verdict.admitted_per_minute,
                    "bookings_per_minute": bookings_per_minute,
                    "published_slots": published,
                    "wait_error_s": verdict.wait_error_s,
                    "estimate_error": verdict.estimate_error,
                    "notice_lag_s": verdict.notice_lag_s,
                    "cpu_s": {generator: locust_cpu, **services_cpu},
                    "generator": {"name": generator, **lean_figures},
                    "cpu_peak_share_5s": peaks,
                    "probe_ms": probed,
                    "wall_s": wall,
                    # (seconds since the start, messages waiting), through the drain.
                    "outbox_backlog": backlog.samples if backlog else [],
                    "outbox_left": verdict.outbox_left,
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


async def _bookings_per_minute(url: str, event_id: str, started: float) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM b.created_at) AS t FROM bookings b "
            "JOIN slots s ON s.id = b.slot_id WHERE s.event_id = $1",
            event_id,
        )
    finally:
        await conn.close()
    return judge.per_minute([float(r["t"]) for r in rows], started)
