"""The events open to queue for now: what the waitroom's home page lists.

Read from Postgres at most once per ``CACHE_S`` per process: the home page is what a crowd
reloads before opening, and it must not become a query per reload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from waitroom.services.line import Clock
from waitroom.store import pg_store

CACHE_S = 5.0


@dataclass(frozen=True, slots=True)
class OpenEvent:
    event_id: str
    name_ja: str
    name_en: str
    opens_at: datetime
    closes_at: datetime


class Directory:
    """The joinable events of one process, cached.

    Invariant: at most one Postgres query per CACHE_S; an event past its closing time is
    never listed, cached or not."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self.pool = pool
        self.clock = clock
        self._cached: tuple[float, list[OpenEvent]] | None = None

    def now(self) -> datetime:
        given = self.clock()
        ms = given if given is not None else time.time() * 1000
        return datetime.fromtimestamp(ms / 1000, UTC)

    async def open_events(self) -> tuple[datetime, list[OpenEvent]]:
        """(now, events whose pre-queue has begun and that are not closed), soonest first."""
        now = self.now()
        cached = self._cached
        if cached is None or time.monotonic() - cached[0] >= CACHE_S:
            rows = await pg_store.joinable_events(self.pool, now)
            events = [
                OpenEvent(r["id"], r["name_ja"], r["name_en"], r["opens_at"], r["closes_at"])
                for r in rows
            ]
            cached = self._cached = (time.monotonic(), events)
        return now, [e for e in cached[1] if e.closes_at > now]
