"""The load test's outbox check catches what it exists to catch: a backlog that does not
drain is counted as a violation; one that drains is timed, and sampled on the way."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg

from loadtests.judge import Verdict
from loadtests.outbox import OutboxBacklog, drain, drain_and_stop


async def _outbox(database_url: str, rows: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO outbox (topic, payload) VALUES ('booking.booking.confirmed', $1::jsonb)",
            [(json.dumps({"n": n}),) for n in range(rows)],
        )
    finally:
        await conn.close()


async def _deliver_all(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
    finally:
        await conn.close()


def test_a_backlog_that_stays_is_a_violation(database_url: str) -> None:
    asyncio.run(_outbox(database_url, 7))
    took, left, dead = drain(database_url, timeout_s=1.0)
    assert (took, left, dead) == (None, 7, 0)
    verdict = Verdict(outbox_left=left)
    assert verdict.violations["outbox_not_drained"] == 7 and not verdict.held


def test_a_backlog_that_drains_is_timed_and_sampled(database_url: str) -> None:
    asyncio.run(_outbox(database_url, 5))
    sampler = OutboxBacklog(database_url, time.time(), interval_s=0.1)
    sampler.start()
    deadline = time.monotonic() + 10
    while not sampler.samples and time.monotonic() < deadline:
        time.sleep(0.05)
    asyncio.run(_deliver_all(database_url))
    took, left, dead = drain_and_stop(sampler, database_url, timeout_s=10.0)
    assert took is not None and left == 0 and dead == 0
    assert sampler.samples[0][1] == 5 and sampler.samples[-1][1] == 0
    assert Verdict().violations["outbox_not_drained"] == 0
