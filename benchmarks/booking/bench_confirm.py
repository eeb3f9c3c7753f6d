"""Booking confirm benchmark — one command, bounded in time, loopback only:

    .venv/bin/python -m benchmarks.booking.bench_confirm [--users 32] [--rounds 3] [--workers 1]

Starts its own embedded Redis and Postgres (machiai.embedded, Postgres with fsync
on, as in production) in a temporary directory, migrates, seeds one event with a
registry of residents, and starts the real booking app under real uvicorn
(``--workers``, default 1; uvloop + httptools, no access log, no proxy headers:
as ``machiai run`` starts it) on loopback.

Each round, measured on fresh slots (a few hundred slots of small capacity; the raw
path's written straight into Postgres, the HTTP path's published before the clock
through the service's clinic CSV import, as clinics publish before an opening, so the
service knows them as it would at 9:00):

  (a) raw   the confirm path stripped to the bone: N residents sharing a pool of
            asyncpg connections as large as the service's (64), each
            resident one transaction of guarded ``UPDATE slots ... booked < capacity``
            + ``INSERT INTO bookings``, random slot, until every place is sold;
  (b) http  N virtual residents through the real service: POST /api/holds
            (Redis Lua) then POST /api/bookings (Postgres transaction, audit,
            outbox, Redis mirror), random slot, until every place is sold.

It prints confirmed bookings/s for both (best of the rounds), the ratio http/raw
(aim >= 50 %) and the p50/p99 hold latency seen by the clients (aim p99 < 50 ms), and
the confirm latency beside it; and the CPU every process spends per booking on
each path (service, Redis, Postgres, load generator), summed: the http/raw cost
ratio (aim <= 1.3×).

Core split on a 2-core machine: the uvicorn booking process (one worker) is pinned
to core 0 (with ``--workers 2`` its workers are unpinned),
the load generator (this process: the HTTP clients and the raw asyncpg workers)
to core 1; Redis and Postgres are left to the scheduler on both cores (with
``--pin-data`` they are pinned to core 1 too, leaving core 0 to the service
alone). Round 0 is a warm-up; sessions are opened (pass + registry check) before
the clock starts. Other work on the machine shows up as "server CPU" below 90 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from machiai.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from machiai.migrate import apply_migrations
from machiai.tokens import AdmissionPass, StaffClaims, Tokens

SECRET = "bench-secret-" + "k" * 40
MUNICIPALITY = "131001"
EVENT = "bench-event"
BIRTH = date(1950, 1, 1)
# Postgres connections of each path: the service's pool (split between its workers) and
# the raw path's (residents beyond it wait for a connection, on both paths alike).
POOL_MAX = 64


@dataclass
class Stats:
    confirmed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    hold_ms: list[float] = field(default_factory=list)
    confirm_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def per_s(self) -> float:
        return self.confirmed / self.elapsed_s if self.elapsed_s else 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Http:
    """A minimal keep-alive HTTP/1.1 JSON client: the load generator must not be the limit."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: object | None = None, token: str | None = None
    ) -> tuple[int, dict[str, object]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: booking\r\nContent-Length: {len(payload)}\r\n"
        head += "Content-Type: application/json\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b"{}"
        return status, json.loads(data)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def seed(dsn: str, residents: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, 'ベンチ市', 'Bench')",
            MUNICIPALITY,
        )
        await conn.execute(
            "INSERT INTO vaccines (code, name_ja, name_en, dose_interval_days) "
            "VALUES ('comirnaty', 'コミナティ', 'Comirnaty', 21)"
        )
        await conn.execute(
            "INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, opens_at, "
            "closes_at, admit_per_minute, max_active, state) "
            "VALUES ($1, $2, 'ベンチ', 'Bench', $3, $3, $4, 1000, 100000, 'open')",
            EVENT,
            MUNICIPALITY,
            now - timedelta(hours=1),
            now + timedelta(days=30),
        )
        await conn.execute(
            "INSERT INTO clinics (municipality_code, name_ja, name_en, area) "
            "VALUES ($1, '会場', 'Venue', '中区')",
            MUNICIPALITY,
        )
        await conn.copy_records_to_table(
            "registry",
            records=[(MUNICIPALITY, f"{i:010d}", BIRTH, ["65+"]) for i in range(residents)],
            columns=["municipality_code", "voucher_number", "birth_date", "eligibility_groups"],
        )
    finally:
        await conn.close()


async def make_slots(dsn: str, count: int, capacity: int, offset_days: int) -> list[str]:
    """Slots for the raw path, straight into Postgres (the service never sees them)."""
    conn = await asyncpg.connect(dsn)
    try:
        clinic = await conn.fetchval("SELECT id FROM clinics LIMIT 1")
        rows = await conn.fetch(
            "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, "
            "dose_number, vaccine_code) "
            "SELECT $1, $2, t, 15, $3, 1, 'comirnaty' FROM unnest($4::timestamptz[]) t "
            "RETURNING id::text",
            clinic,
            EVENT,
            capacity,
            slot_times(count, offset_days),
        )
        return [r["id"] for r in rows]
    finally:
        await conn.close()


async def clinic_of(dsn: str) -> tuple[str, str]:
    """(a clinic, a clinic staff member of it): staff tokens name a staff row that stands."""
    conn = await asyncpg.connect(dsn)
    try:
        clinic_id = str(await conn.fetchval("SELECT id::text FROM clinics LIMIT 1"))
        staff_id = await conn.fetchval(
            "INSERT INTO staff (municipality_code, login, display_name, role, clinic_id, "
            "password_hash) VALUES ($1, $2, $2, 'clinic', $3::uuid, '-') RETURNING id::text",
            MUNICIPALITY,
            f"bench-clinic-{uuid.uuid4().hex[:8]}",
            clinic_id,
        )
        return clinic_id, str(staff_id)
    finally:
        await conn.close()


def slot_times(count: int, offset_days: int) -> list[datetime]:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = start + timedelta(days=offset_days)
    return [first + timedelta(minutes=15 * g) for g in range(1, count + 1)]


async def publish_slots(
    port: int, clinic: tuple[str, str], count: int, capacity: int, offset_days: int
) -> list[str]:
    """Slots for the HTTP path, published as a clinic does before an opening: through the
    service (CSV import), which mirrors them into Redis and its slot catalogue."""
    clinic_id, staff_id = clinic
    claims = StaffClaims(staff_id, MUNICIPALITY, "clinic", clinic_id)
    token = Tokens([SECRET]).dump_staff(claims)
    rows = [
        f"{EVENT},{t.isoformat()},15,{capacity},comirnaty,1" for t in slot_times(count, offset_days)
    ]
    csv = "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number\n" + "\n".join(rows)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/clinic/slots/import",
        data=csv.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        method="POST",
    )

    def post() -> dict[str, Any]:
        with urllib.request.urlopen(req, timeout=60) as r:
            answer: dict[str, Any] = json.load(r)
            return answer

    ids = [str(i) for i in (await asyncio.to_thread(post))["slot_ids"]]
    if len(ids) != count:
        raise RuntimeError(f"published {len(ids)} slots of {count}")
    return ids


async def run_raw(
    dsn: str, slots: list[str], vouchers: list[str], users: int, pool_max: int
) -> Stats:
    """Guarded UPDATE + INSERT per resident, nothing else: the floor cost of a confirm.
    ``users`` residents share a pool of at most ``pool_max`` connections, as the service's
    residents share its pool (200 residents cannot each have a Postgres backend)."""
    stats = Stats()
    size = min(users, pool_max)
    pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
    open_slots = list(slots)
    queue = list(vouchers)

    async def worker() -> None:
        while queue and open_slots:
            voucher = queue.pop()
            while open_slots:
                slot = random.choice(open_slots)
                async with pool.acquire() as conn, conn.transaction():
                    row = await conn.fetchrow(
                        "UPDATE slots SET booked = booked + 1 WHERE id = $1::uuid "
                        "AND booked < capacity AND NOT closed AND starts_at > now() "
                        "RETURNING dose_number, vaccine_code, starts_at",
                        slot,
                    )
                    if row is not None:
                        await conn.execute(
                            "INSERT INTO bookings (confirmation_code, slot_id, "
                            "municipality_code, voucher_number, dose_number, vaccine_code, "
                            "slot_starts_at, channel) "
                            "VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, 'web')",
                            uuid.uuid4().hex[:12],
                            slot,
                            MUNICIPALITY,
                            voucher,
                            row["dose_number"],
                            row["vaccine_code"],
                            row["starts_at"],
                        )
                if row is None:
                    if slot in open_slots:
                        open_slots.remove(slot)
                    continue
                stats.confirmed += 1
                break

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(users)))
    stats.elapsed_s = time.perf_counter() - started
    await pool.close()
    return stats


async def open_sessions(host: str, port: int, vouchers: list[str]) -> list[str]:
    tokens = Tokens([SECRET])
    sessions: list[str] = []
    queue = list(vouchers)

    async def opener() -> None:
        client = Http(host, port)
        try:
            while queue:
                voucher = queue.pop()
                token = tokens.dump_pass(AdmissionPass(EVENT, uuid.uuid4().hex, uuid.uuid4().hex))
                status, body = await client.request(
                    "POST",
                    "/api/sessions",
                    {"pass": token, "voucher": voucher, "birth_date": BIRTH.isoformat()},
                )
                if status != 201:
                    raise RuntimeError(f"session refused: {status} {body}")
                sessions.append(str(body["session"]))
        finally:
            await client.close()

    await asyncio.gather(*(opener() for _ in range(16)))
    return sessions


async def run_http(
    host: str, port: int, slots: list[str], sessions: list[str], users: int
) -> Stats:
    stats = Stats()
    open_slots = list(slots)
    queue = list(sessions)

    async def resident_loop() -> None:
        client = Http(host, port)
        try:
            while queue and open_slots:
                session = queue.pop()
                while open_slots:
                    slot = random.choice(open_slots)
                    t0 = time.perf_counter()
                    status, body = await client.request(
                        "POST", "/api/holds", {"slot_id": slot}, session
                    )
                    stats.hold_ms.append((time.perf_counter() - t0) * 1000)
                    if status != 201:
                        code = str(body.get("error", {}).get("code"))  # type: ignore[attr-defined]
                        stats.refused[code] = stats.refused.get(code, 0) + 1
                        if code == "slot_full" and slot in open_slots:
                            open_slots.remove(slot)
                        continue
                    t0 = time.perf_counter()
                    status, body = await client.request(
                        "POST", "/api/bookings", {"hold_id": body["hold_id"]}, session
                    )
                    stats.confirm_ms.append((time.perf_counter() - t0) * 1000)
                    if status == 201:
                        stats.confirmed += 1
                        break
                    code = str(body.get("error", {}).get("code"))  # type: ignore[attr-defined]
                    stats.refused[code] = stats.refused.get(code, 0) + 1
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(resident_loop() for _ in range(users)))
    stats.elapsed_s = time.perf_counter() - started
    return stats


async def unsold(dsn: str, slots: list[str]) -> list[tuple[str, int, int]]:
    """(slot, capacity, booked) of the slots with a place left, as Postgres has them."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id::text, capacity, booked FROM slots "
            "WHERE id = ANY($1::uuid[]) AND booked < capacity",
            slots,
        )
    finally:
        await conn.close()
    return [(r[0], r[1], r[2]) for r in rows]


async def bounded(coro: Coroutine[Any, Any, None], max_s: float) -> None:
    """The whole measurement is bounded in time, whatever happens to the server."""
    async with asyncio.timeout(max_s):
        await coro


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("booking server exited during start")
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("booking server did not become ready")


class CpuMeter:
    """CPU seconds per process group between ``start`` and ``per_booking_us``: where the
    time of one booking goes, on each path (Postgres and Redis serve both)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: tree_cpu_s(pid) for name, pid in self.pids.items()}
        now["load generator"] = time.process_time()
        return now

    def start(self) -> None:
        self.before = self._now()

    def per_booking_us(self, bookings: int) -> dict[str, float]:
        after = self._now()
        return {k: (after[k] - self.before[k]) / max(1, bookings) * 1e6 for k in after}

    @staticmethod
    def show(cpu: dict[str, float]) -> str:
        return ", ".join(f"{name} {us:,.0f}" for name, us in cpu.items() if us >= 0.5)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (Postgres backends are children; those
    that have exited are in the parent's children_user/children_system)."""
    root = psutil.Process(pid)
    total = sum(root.cpu_times()[:4])
    for proc in root.children(recursive=True):
        try:
            total += sum(proc.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


async def main_async(
    args: argparse.Namespace, dsn: str, port: int, server_pid: int, data_pids: dict[str, int]
) -> None:
    meter = CpuMeter({"service": server_pid, **data_pids})
    per_round = args.slots * args.capacity
    stride = 2 * per_round + 100
    residents = stride * (args.rounds + 1)
    await seed(dsn, residents)
    clinic = await clinic_of(dsn)
    vouchers = [f"{i:010d}" for i in range(residents)]
    raw_best: Stats | None = None
    http_best: Stats | None = None
    all_holds: list[float] = []
    all_confirms: list[float] = []
    round_ratios: list[float] = []
    cost_ratios: list[tuple[float, float]] = []  # (raw, http) CPU µs per booking, all processes
    # Round 0 is a warm-up (prepared statements on every pooled connection, Lua script
    # cache, allocator): run exactly like the others, printed, not counted.
    for n in range(args.rounds + 1):
        raw_slots = await make_slots(dsn, args.slots, args.capacity, 2 + 8 * n)
        http_slots = await publish_slots(port, clinic, args.slots, args.capacity, 6 + 8 * n)
        base = n * stride
        raw_vouchers = vouchers[base : base + per_round + 20]
        http_vouchers = vouchers[base + per_round + 20 : base + 2 * per_round + 40]
        sessions = await open_sessions("127.0.0.1", port, http_vouchers)
        meter.start()
        raw = await run_raw(dsn, raw_slots, raw_vouchers, args.users, POOL_MAX)
        raw_cpu = meter.per_booking_us(raw.confirmed)
        meter.start()
        http = await run_http("127.0.0.1", port, http_slots, sessions, args.users)
        http_cpu = meter.per_booking_us(http.confirmed)
        busy = http_cpu["service"] * http.per_s / 1e6
        label = "warm-up" if n == 0 else f"round {n}"
        print(
            f"{label}: ratio {http.per_s / raw.per_s:.0%}; "
            f"raw {raw.confirmed} in {raw.elapsed_s:.2f}s = {raw.per_s:,.0f}/s; "
            f"http {http.confirmed} in {http.elapsed_s:.2f}s = {http.per_s:,.0f}/s "
            f"(hold p99 {pct(http.hold_ms, 0.99):.1f} ms; service CPU {busy:.0%} of its core; "
            f"refusals {http.refused})\n"
            f"    CPU µs per booking: raw {CpuMeter.show(raw_cpu)}; http {CpuMeter.show(http_cpu)}"
            f"; all processes {sum(http_cpu.values()):,.0f} / {sum(raw_cpu.values()):,.0f} = "
            f"{sum(http_cpu.values()) / sum(raw_cpu.values()):.2f}×",
            flush=True,
        )
        if raw.confirmed != per_round or http.confirmed != per_round:
            left = await unsold(dsn, raw_slots + http_slots)
            raise AssertionError(f"every place sold exactly once; unsold in Postgres: {left}")
        if n == 0:
            continue
        all_holds.extend(http.hold_ms)
        all_confirms.extend(http.confirm_ms)
        round_ratios.append(http.per_s / raw.per_s)
        cost_ratios.append((sum(raw_cpu.values()), sum(http_cpu.values())))
        if raw_best is None or raw.per_s > raw_best.per_s:
            raw_best = raw
        if http_best is None or http.per_s > http_best.per_s:
            http_best = http
    assert raw_best is not None and http_best is not None
    conn = await asyncpg.connect(dsn)
    try:
        oversold = await conn.fetchval("SELECT count(*) FROM slots WHERE booked > capacity")
        mismatched = await conn.fetchval(
            "SELECT count(*) FROM slots s WHERE booked <> (SELECT count(*) FROM bookings b "
            "WHERE b.slot_id = s.id AND b.status = 'confirmed')"
        )
    finally:
        await conn.close()
    ratio = http_best.per_s / raw_best.per_s
    median_ratio = sorted(round_ratios)[len(round_ratios) // 2]
    print()
    print(
        f"slots per round per path: {args.slots} x capacity {args.capacity}; "
        f"concurrent residents/workers: {args.users}"
    )
    print(f"raw asyncpg guarded UPDATE+INSERT : {raw_best.per_s:10,.0f} confirmed/s (best)")
    print(f"HTTP hold+confirm (real service)  : {http_best.per_s:10,.0f} confirmed/s (best)")
    print(f"ratio http/raw (best / best)      : {ratio:10.1%}   (aim >= 50 %)")
    print(f"ratio http/raw (median per round) : {median_ratio:10.1%}")
    print(
        f"hold latency p50 / p99            : {pct(all_holds, 0.5):7.1f} / "
        f"{pct(all_holds, 0.99):.1f} ms   (aim p99 < 50 ms)"
    )
    print(
        f"confirm latency p50 / p99         : {pct(all_confirms, 0.5):7.1f} / "
        f"{pct(all_confirms, 0.99):.1f} ms"
    )
    costs = sorted(http / raw for raw, http in cost_ratios)
    raw_us = sorted(raw for raw, _ in cost_ratios)[len(cost_ratios) // 2]
    http_us = sorted(http for _, http in cost_ratios)[len(cost_ratios) // 2]
    print(
        f"CPU per booking, all processes    : {http_us:7,.0f} / {raw_us:,.0f} µs (median); "
        f"http/raw median {costs[len(costs) // 2]:.2f}×, least {costs[0]:.2f}×   (aim <= 1.3×)"
    )
    print(f"oversold slots: {oversold}; slots whose booked != bookings: {mismatched}")


@dataclass(frozen=True, slots=True)
class Service:
    dsn: str
    port: int
    pid: int
    data_pids: dict[str, int]


@contextlib.contextmanager
def booking_service(*, pin_data: bool = False, workers: int = 1) -> Iterator[Service]:
    """Embedded Redis and Postgres (fsync on) in a temporary directory, migrated, and the
    booking service under real uvicorn on loopback, as ``machiai run`` starts it (uvloop +
    httptools, no access log, no proxy headers). On 2+ cores one worker runs on core 0 and
    this process (the load generator) on core 1; with ``pin_data`` Redis and Postgres on
    core 1 too. With ``workers`` > 1 the service's processes are left to the scheduler on
    every core (as ``machiai run --workers N``), each with its share of the pool."""
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="machiai-bench-") as tmp:
        Path(tmp).chmod(0o755)
        redis_server = EmbeddedRedis(Path(tmp) / "redis", persistent=False).start()
        postgres = EmbeddedPostgres(Path(tmp) / "postgres").start()
        server: subprocess.Popen[bytes] | None = None
        try:
            dsn = postgres.url_for("postgres")
            asyncio.run(apply_migrations(dsn))
            port = free_port()
            env = {
                **os.environ,
                "MACHIAI_ENV": "development",
                "MACHIAI_DATA_DIR": str(Path(tmp) / "data"),
                "REDIS_URL": redis_server.url,
                "DATABASE_URL": dsn,
                "MACHIAI_REDIS_PREFIX": "bench:",
                "MACHIAI_SECRET_KEYS": SECRET,
                "BOOKING_DB_POOL_MIN": str(min(10, POOL_MAX // workers)),
                "BOOKING_DB_POOL_MAX": str(POOL_MAX // workers),
                "BOOKING_THROTTLE_CLIENT_LIMIT": "1000000",
            }
            server = subprocess.Popen(
                [
                    sys.executable, "-m", "uvicorn", "booking.app:app_from_env", "--factory",
                    "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                    "--no-proxy-headers", "--loop", "uvloop", "--http", "httptools",
                    "--log-level", "warning", "--workers", str(workers),
                ],
                env=env,
            )  # fmt: skip
            if cores >= 2:
                if workers == 1:
                    psutil.Process(server.pid).cpu_affinity([0])
                psutil.Process().cpu_affinity([1])
            if cores >= 2 and pin_data:
                # Data servers on core 1 too (backends inherit the postmaster's affinity),
                # so core 0 is the booking service's alone.
                for pid in (postgres.pid, redis_server.pid):
                    if pid is not None:
                        for proc in [psutil.Process(pid), *psutil.Process(pid).children()]:
                            proc.cpu_affinity([1])
            wait_healthy(f"http://127.0.0.1:{port}", server)
            print(
                f"cores: {cores}; booking server "
                + ("on core 0" if workers == 1 else f"{workers} workers unpinned")
                + "; load generator on core 1; "
                + (
                    "Redis and Postgres on core 1"
                    if pin_data
                    else "Redis and Postgres unpinned (scheduled on both)"
                ),
                flush=True,
            )
            data_pids = {
                name: pid
                for name, pid in (("Redis", redis_server.pid), ("Postgres", postgres.pid))
                if pid is not None
            }
            yield Service(dsn, port, server.pid, data_pids)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            postgres.stop()
            redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--slots", type=int, default=300)
    parser.add_argument("--capacity", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-s", type=float, default=300.0, help="stop after this long")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the service")
    parser.add_argument(
        "--pin-data",
        action="store_true",
        help="pin Redis and Postgres to core 1 as well (default: unpinned)",
    )
    args = parser.parse_args()
    with booking_service(pin_data=args.pin_data, workers=args.workers) as service:
        asyncio.run(
            bounded(
                main_async(args, service.dsn, service.port, service.pid, service.data_pids),
                args.max_s,
            )
        )


if __name__ == "__main__":
    main()
