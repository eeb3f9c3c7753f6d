"""Delivery worker throughput — one command, loopback only:

    .venv/bin/python -m benchmarks.booking.bench_delivery [--messages 20000] [--rounds 3]

Starts an embedded Postgres (fsync on) in a temporary directory, migrates it and runs one
real ``machiai deliver`` process (default settings, except no rate limit on the webhook:
``MACHIAI_DELIVERY_RATE_WEBHOOK=0``). On 2+ cores the worker runs on core 0 and this
process (the outbox writer and the webhook receiver, uvicorn) on core 1; Postgres is
unpinned. Each round writes N day-before reminders to the outbox in one statement and
times from its commit until every delivery is sent:

  log      the municipality has no channel: one log line per message (to /dev/null);
  webhook  the webhook channel only, to a local receiver that checks every signature
           and keeps each idempotency key once (answers 200 at once).

It prints messages per second (fan-out included) of each round and the worker's CPU time
per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import psutil
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking.delivery.signature import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from machiai.embedded import EmbeddedPostgres
from machiai.migrate import apply_migrations
from tests.servers import serving

SECRET = "bench-webhook-" + "w" * 40
MUNICIPALITY = "131001"


def receiver(seen: set[str]) -> Starlette:
    async def hook(request: Request) -> Response:
        body = await request.body()
        h = request.headers
        if not verify_signature(SECRET, h.get(TIMESTAMP_HEADER), h.get(SIGNATURE_HEADER), body):
            return Response(status_code=401)
        seen.add(h[KEY_HEADER])
        return Response(status_code=200)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def one_round(db: asyncpg.Pool, n: int, worker: psutil.Process) -> tuple[float, float]:
    await db.execute("TRUNCATE deliveries")
    payload = json.dumps(
        {
            "booking_id": "00000000-0000-4000-8000-000000000000",
            "confirmation_code": "BENCH001",
            "clinic_name_ja": "診療所",
            "clinic_name_en": "Clinic",
            "starts_at": "2026-12-03T05:30:00+00:00",
            "dose_number": 1,
            "municipality_code": MUNICIPALITY,
        }
    )
    cpu = worker.cpu_times()
    started = time.perf_counter()
    await db.execute(
        "INSERT INTO outbox (topic, payload) SELECT 'booking.reminder.due', $1::jsonb "
        "FROM generate_series(1, $2)",
        payload,
        n,
    )
    while (
        await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'sent'") < n
        or await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") > 0
    ):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    after = worker.cpu_times()
    used = (after.user + after.system) - (cpu.user + cpu.system)
    return n / elapsed, used / n * 1e6


async def bench(dsn: str, args: argparse.Namespace, cores: int) -> None:
    seen: set[str] = set()
    db = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    await db.execute(
        "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, '市', 'City')",
        MUNICIPALITY,
    )
    env = {
        **os.environ,
        "MACHIAI_ENV": "development",
        "DATABASE_URL": dsn,
        "REDIS_URL": "redis://127.0.0.1:1/0",  # never used by the worker
        "MACHIAI_WEBHOOK_SECRET": SECRET,
        "MACHIAI_DELIVERY_RATE_WEBHOOK": "0",
        "MACHIAI_DATA_DIR": tempfile.mkdtemp(prefix="bench-delivery-"),
    }
    async with serving(receiver(seen)) as base:
        worker = subprocess.Popen(
            [sys.executable, "-m", "machiai.cli", "deliver"],
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if cores >= 2 else None,  # noqa: PLW1509
        )
        try:
            await asyncio.sleep(3)  # started, idle
            process = psutil.Process(worker.pid)
            for channel in ("log", "webhook"):
                await db.execute("DELETE FROM delivery_channels")
                if channel == "webhook":
                    await db.execute(
                        "INSERT INTO delivery_channels (municipality_code, channel, enabled, "
                        "webhook_url) VALUES ($1, 'webhook', true, $2)",
                        MUNICIPALITY,
                        f"{base}/hook",
                    )
                for r in range(args.rounds):
                    rate, cpu_us = await one_round(db, args.messages, process)
                    print(
                        f"{channel:8} round {r + 1}: {args.messages:,} messages, "
                        f"{rate:,.0f} msg/s, worker CPU {cpu_us:,.0f} µs/msg",
                        flush=True,
                    )
        finally:
            worker.terminate()
            worker.wait(30)
            await db.close()
    if seen:
        print(f"webhook receiver kept {len(seen):,} distinct keys")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if cores >= 2:
        os.sched_setaffinity(0, {1})
    print(f"{cores} cores: worker on core 0, writer + receiver on core 1, Postgres unpinned")
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "postgres").start()
        try:
            dsn = postgres.url_for("postgres")
            asyncio.run(apply_migrations(dsn))
            asyncio.run(bench(dsn, args, cores))
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
