"""The outbox's backlog over a run: messages the surge produced that are not delivered yet.

Every booking change writes an outbox row in its transaction; the delivery worker
(`machiai deliver`, which `machiai run` starts) fans them out into deliveries and sends
them. During a surge the backlog may grow; after it, it must drain. Read from Postgres
(as the judge reads bookings), every ``interval_s``, in this thread's own event loop.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from loadtests.periodic import Periodic

# The figure booking's metrics report as machiai_outbox_backlog (booking/store/pg_delivery.py):
# outbox rows not yet fanned out, and deliveries not yet sent (dead ones are not waiting).
BACKLOG_SQL = """
SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL)
     + (SELECT count(*) FROM deliveries WHERE state = 'pending')
"""
DEAD_SQL = "SELECT count(*) FROM deliveries WHERE state = 'dead'"
# After the load stops, how long the backlog may take to reach zero.
DRAIN_TIMEOUT_S = 120.0


class OutboxBacklog(Periodic):
    def __init__(self, database_url: str, started: float, interval_s: float = 2.0) -> None:
        super().__init__(interval_s)
        self.database_url = database_url
        self.started = started
        self.samples: list[tuple[float, int]] = []  # (seconds since the run started, waiting)
        self.failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncpg.Connection | None = None

    def setup(self) -> bool:
        self._loop = asyncio.new_event_loop()
        try:
            self._conn = self._loop.run_until_complete(
                asyncpg.connect(self.database_url, timeout=10)
            )
        except (OSError, asyncpg.PostgresError):
            self.failures += 1
            return False
        return True

    def count(self) -> int | None:
        assert self._loop is not None and self._conn is not None
        try:
            return int(self._loop.run_until_complete(self._conn.fetchval(BACKLOG_SQL)))
        except (OSError, asyncpg.PostgresError):
            self.failures += 1  # Postgres paused or restarted by a fault: a gap in the chart
            return None

    def tick(self) -> None:
        waiting = self.count()
        if waiting is not None:
            self.samples.append((time.time() - self.started, waiting))

    def teardown(self) -> None:
        if self._loop is None:
            return
        if self._conn is not None:
            self._loop.run_until_complete(self._conn.close())
        self._loop.close()


def drain(database_url: str, timeout_s: float = DRAIN_TIMEOUT_S) -> tuple[float | None, int, int]:
    """Wait for the backlog to reach zero once the load has stopped: (seconds it took, or
    None when it did not within ``timeout_s``; what was left; deliveries given up)."""

    async def wait() -> tuple[float | None, int, int]:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            begun = time.monotonic()
            while True:
                left = int(await conn.fetchval(BACKLOG_SQL))
                took = time.monotonic() - begun
                if left == 0 or took >= timeout_s:
                    dead = int(await conn.fetchval(DEAD_SQL))
                    return (took if left == 0 else None), left, dead
                await asyncio.sleep(0.5)
        finally:
            await conn.close()

    return asyncio.run(wait())


def drain_and_stop(
    sampler: OutboxBacklog, database_url: str, timeout_s: float = DRAIN_TIMEOUT_S
) -> tuple[float | None, int, int]:
    """``drain``, sampled all along, the sampler stopped after it with its last point
    (what was left when the drain ended) added."""
    try:
        result = drain(database_url, timeout_s)
    finally:
        sampler.stop()
    sampler.samples.append((time.time() - sampler.started, result[1]))
    return result
