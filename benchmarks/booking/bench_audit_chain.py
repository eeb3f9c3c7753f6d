"""What the audit chain costs the confirm path — one command, bounded in time, loopback only:

    .venv/bin/python -m benchmarks.booking.bench_audit_chain [--users 32] [--rounds 3]

Starts its own embedded Postgres (fsync on, as in production; ``--no-fsync`` for the test
servers' setting) in a temporary directory and migrates it. N asyncpg workers then run
confirm-like transactions for a fixed time each: one statement in its own transaction,
as the confirm is — a guarded ``UPDATE`` of a random counter row (500 rows, the slots)
with a data-modifying CTE inserting the audit row — every worker in ONE municipality (a
city's surge), three ways:

  (a) plain   into a table shaped as audit_log was before migration 0006 (identity id):
              the baseline;
  (b) log     into audit_log (its id default asks for the transaction id first), nothing
              sealing: what the schema alone costs;
  (c) sealed  the same with a sealer calling audit_seal once a second on its own
              connection, as booking's background loop does: the figure that counts.

Between ways, off the clock: rows left unsealed are sealed, the tables vacuumed, a
checkpoint taken (each way starts alike instead of paying for the one before). The three
alternate which goes first from round to round (round 0 is a warm-up). It prints
transactions/s and p50/p99 latency for each, the ratios log/plain and sealed/plain (best
of the rounds and median per round), CPU per transaction (Postgres, the sealer included,
and this load generator: on a shared machine a steadier measure of the cost than the
throughput) and the sealer's calls (rows, milliseconds, its CPU per row); at the end it
seals what is left and verifies the chains (``machiai.audit.verify_chains``: every row
sealed, every hash). On 2+ cores this process runs on core 1, Postgres is left to the
scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

from benchmarks.booking.bench_confirm import bounded, pct, tree_cpu_s
from machiai.audit import SEAL_BATCH_ROWS, seal, seal_waiting, verify_chains
from machiai.embedded import EmbeddedPostgres, PostgresTuning
from machiai.migrate import apply_migrations

SLOTS = 500
MUNICIPALITY = "131001"
# audit_log as 0001 created it: the baseline.
PLAIN_DDL = """
CREATE TABLE audit_plain (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT now(),
    municipality_code  text,
    actor_kind         text NOT NULL CHECK (actor_kind IN ('staff', 'resident', 'system')),
    actor_id           text NOT NULL,
    action             text NOT NULL CHECK (action ~ '^[a-z_]+(\\.[a-z_]+)+$'),
    target             text NOT NULL DEFAULT '',
    before             jsonb,
    after              jsonb,
    request_id         text
);
CREATE INDEX audit_plain_municipality_at_idx ON audit_plain (municipality_code, at);
CREATE TABLE bench_slots (id integer PRIMARY KEY, booked integer NOT NULL DEFAULT 0);
"""
CONFIRM_LIKE = """
WITH s AS (UPDATE bench_slots SET booked = booked + 1 WHERE id = $1 RETURNING id)
INSERT INTO {table} (municipality_code, actor_kind, actor_id, action, target, after)
SELECT $2, 'resident', $3, 'booking.booking.confirmed', s.id::text, $4::jsonb FROM s
"""
# Between ways: nothing left to seal, to vacuum or to write back, so that no way pays for
# the one before it (autovacuum and checkpoints otherwise land in whichever comes next).
SETTLE = ("VACUUM (ANALYZE) bench_slots, audit_plain, audit_log, audit_seals", "CHECKPOINT")
# About what a confirm audits (booking/store/pg.py BOOKING_JSON).
DOC = json.dumps(
    {
        "booking_id": "5f0c5b8e-3f1e-4d7e-9a51-0c1c2e5d7a10",
        "confirmation_code": "ACDE3467",
        "slot_id": "0b6f4f0e-6d65-4a4b-8f0e-6c1d3c2b1a09",
        "clinic_id": "8e2f1c3d-4b5a-6978-8a9b-0c1d2e3f4a5b",
        "clinic_name_ja": "中央診療所",
        "clinic_name_en": "Central Clinic",
        "starts_at": "2026-12-01T09:00:00+09:00",
        "dose_number": 1,
        "vaccine_code": "comirnaty",
        "status": "confirmed",
        "channel": "web",
        "created_at": "2026-11-30T09:00:01.123456+09:00",
    },
    ensure_ascii=False,
)


@dataclass
class Stats:
    done: int = 0
    latency_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    pg_cpu_us: float = 0.0
    client_cpu_us: float = 0.0  # this process: the load generator

    @property
    def cpu_us(self) -> float:
        return self.pg_cpu_us + self.client_cpu_us

    seal_calls_ms: list[float] = field(default_factory=list)
    seal_cpu_s: float = 0.0  # the sealer's backend
    sealed: int = 0

    @property
    def per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0


async def seal_every_second(pool: asyncpg.Pool, stats: Stats, stop: asyncio.Event) -> None:
    """As booking/background.py does: one batch a second, another at once when it was full."""
    async with pool.acquire() as conn:
        backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
        while not stop.is_set():
            t0, cpu0 = time.perf_counter(), sum(backend.cpu_times()[:2])
            sealed = await seal(conn)
            stats.seal_calls_ms.append((time.perf_counter() - t0) * 1000)
            stats.seal_cpu_s += sum(backend.cpu_times()[:2]) - cpu0
            stats.sealed += sealed
            if sealed < SEAL_BATCH_ROWS:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await stop.wait()


async def run(pool: asyncpg.Pool, table: str, sealing: bool, users: int, seconds: float) -> Stats:
    stats = Stats()
    sql = CONFIRM_LIKE.format(table=table)
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await conn.execute(sql, random.randrange(SLOTS), MUNICIPALITY, f"resident:{n}", DOC)
                stats.latency_ms.append((time.perf_counter() - t0) * 1000)
                stats.done += 1

    stop = asyncio.Event()
    sealer = asyncio.create_task(seal_every_second(pool, stats, stop)) if sealing else None
    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(users)))
    stats.elapsed_s = time.perf_counter() - started
    stop.set()
    if sealer is not None:
        await sealer
    return stats


async def main_async(args: argparse.Namespace, dsn: str, postgres_pid: int) -> None:
    await apply_migrations(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PLAIN_DDL)
        await conn.execute("INSERT INTO bench_slots (id) SELECT generate_series(0, $1 - 1)", SLOTS)
    finally:
        await conn.close()
    # One more connection than workers: the sealer's.
    pool = await asyncpg.create_pool(dsn, min_size=args.users + 1, max_size=args.users + 1)
    ways: dict[str, tuple[str, bool]] = {
        "plain": ("audit_plain", False),
        "log": ("audit_log", False),
        "sealed": ("audit_log", True),
    }
    best: dict[str, Stats] = {}
    ratios: dict[str, list[float]] = {"log": [], "sealed": []}
    latencies: dict[str, list[float]] = {name: [] for name in ways}
    seal_ms: list[float] = []
    sealed_rows = 0
    seal_cpu_s = 0.0
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    me = psutil.Process()
    order = list(ways)
    for n in range(args.rounds + 1):
        stats: dict[str, Stats] = {}
        for name in order:
            table, sealing = ways[name]
            cpu_before, client_before = tree_cpu_s(postgres_pid), sum(me.cpu_times()[:2])
            stats[name] = s = await run(pool, table, sealing, args.users, args.seconds)
            s.pg_cpu_us = (tree_cpu_s(postgres_pid) - cpu_before) / max(1, s.done) * 1e6
            s.client_cpu_us = (sum(me.cpu_times()[:2]) - client_before) / max(1, s.done) * 1e6
            async with pool.acquire() as pooled:  # off the clock, so every way starts alike
                await seal_waiting(pooled)
                for sql in SETTLE:
                    await pooled.execute(sql)
        order = order[1:] + order[:1]
        label = "warm-up" if n == 0 else f"round {n}"
        print(
            f"{label}: "
            + "; ".join(
                f"{name} {s.per_s:,.0f}/s (p50 {pct(s.latency_ms, 0.5):.1f} ms, "
                f"p99 {pct(s.latency_ms, 0.99):.1f} ms, Postgres CPU {s.pg_cpu_us:,.0f} µs/tx)"
                for name, s in stats.items()
            ),
            flush=True,
        )
        if n == 0:
            continue
        seal_ms.extend(stats["sealed"].seal_calls_ms)
        sealed_rows += stats["sealed"].sealed
        seal_cpu_s += stats["sealed"].seal_cpu_s
        for name, s in stats.items():
            cpu[name].append(s.cpu_us)
            latencies[name].extend(s.latency_ms)
            if name not in best or s.per_s > best[name].per_s:
                best[name] = s
        for name in ratios:
            ratios[name].append(stats[name].per_s / stats["plain"].per_s)
    await pool.close()

    conn = await asyncpg.connect(dsn)
    try:
        left = await seal_waiting(conn)
        reports = await verify_chains(conn, max_unsealed_s=0)
    finally:
        await conn.close()
    print()
    print(
        f"{args.users} concurrent workers, one municipality, {args.seconds:g} s per way per "
        f"round, {args.rounds} rounds; fsync {'on' if args.fsync else 'off'}; load average "
        f"after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for name in ways:
        s = best[name]
        print(
            f"{name:<7}: {s.per_s:9,.0f} tx/s (best); latency p50 / p99 "
            f"{pct(latencies[name], 0.5):5.1f} / {pct(latencies[name], 0.99):5.1f} ms"
        )
    for name, values in ratios.items():
        median = sorted(values)[len(values) // 2]
        print(
            f"ratio {name}/plain: {best[name].per_s / best['plain'].per_s:6.1%} (best / best), "
            f"{median:6.1%} (median per round)"
        )
    median_cpu = {name: sorted(v)[len(v) // 2] for name, v in cpu.items()}
    print(
        "CPU per transaction, Postgres and load generator (median per round): "
        + ", ".join(f"{name} {us:,.0f} µs" for name, us in median_cpu.items())
        + f"; CPU-bound, sealed/plain would be {median_cpu['plain'] / median_cpu['sealed']:.1%}"
    )
    calls = len(seal_ms)
    print(
        f"sealer while timed: {calls} calls, {sealed_rows / max(1, calls):,.0f} rows per call, "
        f"{pct(seal_ms, 0.5):.1f} ms per call (p50), {max(seal_ms, default=0):.1f} ms (max); "
        f"its backend's CPU: {seal_cpu_s / max(1, sealed_rows) * 1e6:.1f} µs per row sealed"
    )
    rows = sum(r.rows for r in reports)
    unsealed = sum(r.unsealed for r in reports)
    broken = sum(not r.intact for r in reports)
    print(
        f"chains: {len(reports)}, {rows:,} rows sealed ({left:,} at the end), "
        f"{unsealed} not sealed, broken: {broken}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="per way per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-fsync", dest="fsync", action="store_false")
    parser.add_argument("--max-s", type=float, default=300.0, help="stop after this long")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(
        f"cores: {cores}; load generator on core 1, Postgres unpinned; "
        f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="machiai-bench-") as tmp:
        Path(tmp).chmod(0o755)
        postgres = EmbeddedPostgres(
            Path(tmp) / "postgres", tuning=PostgresTuning(fsync=args.fsync)
        ).start()
        try:
            assert postgres.pid is not None
            if cores >= 2:  # after the start: Postgres must not inherit the pinning
                psutil.Process().cpu_affinity([1])
            asyncio.run(
                bounded(main_async(args, postgres.url_for("postgres"), postgres.pid), args.max_s)
            )
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
