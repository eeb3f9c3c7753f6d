"""What every booking service function needs: settings, stores, and per-process caches."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from booking.domain import Resident, Session, SlotMeta
from booking.settings import BookingSettings
from booking.store.pg import acquire, fetch_coming_slot_metas, fetch_slot_meta
from booking.store.redis_store import RedisStore
from machiai.single_flight import SingleFlight


class SlotCatalog:
    """Per-process cache of what never changes about a slot (owner, time, dose).

    Filled at start with the slots still to come and taught every slot this process
    publishes; on a miss, concurrent requests for one slot share one Postgres read."""

    LIMIT = 200_000

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._meta: dict[str, SlotMeta] = {}
        self._fetching: SingleFlight[str, SlotMeta | None] = SingleFlight()

    def __len__(self) -> int:
        return len(self._meta)

    async def get(self, slot_id: str) -> SlotMeta | None:
        meta = self._meta.get(slot_id)
        if meta is None:
            meta = await self._fetching.run(slot_id, lambda: self._fetch(slot_id))
        return meta

    @property
    def reads(self) -> int:
        """Misses that went to Postgres."""
        return self._fetching.started

    async def _fetch(self, slot_id: str) -> SlotMeta | None:
        async with acquire(self._pool) as conn:
            meta = await fetch_slot_meta(conn, slot_id)
        if meta is not None:
            self.remember([meta])
        return meta

    def remember(self, metas: Sequence[SlotMeta]) -> None:
        if len(self._meta) + len(metas) > self.LIMIT:
            self._meta.clear()
        for meta in metas[: self.LIMIT]:
            self._meta[meta.slot_id] = meta

    async def warm(self) -> int:
        """Learn the slots still to come, soonest first: up to half of ``LIMIT``, so that
        the misses of a very large deployment do not overflow (and clear) it at once."""
        async with acquire(self._pool) as conn:
            metas = await fetch_coming_slot_metas(conn, self.LIMIT // 2)
        self.remember(metas)
        return len(metas)


@dataclass(slots=True)
class Ctx:
    settings: BookingSettings
    redis: RedisStore
    pool: asyncpg.Pool
    catalog: SlotCatalog
    # Set when a booking changed inventory: the refresher publishes at once.
    inventory_changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Slots whose change Postgres committed but Redis did not take (it failed after the
    # commit): the refresher mirrors them from Postgres at its next turn.
    unmirrored: set[str] = field(default_factory=set)
    # Slots being mirrored from Postgres into Redis on demand (one read per slot at a time).
    mirroring: SingleFlight[str, bool] = field(default_factory=SingleFlight)
    lanes: dict[tuple[str, str], asyncio.Semaphore] = field(default_factory=dict)
    # Session id -> monotonic time until which its liveness need not be re-read.
    live_sessions: dict[str, float] = field(default_factory=dict)
    # Session tokens whose signature this process has checked, and the session each
    # names. Whether that session is still live is live_sessions' say.
    verified_tokens: dict[str, Session] = field(default_factory=dict)
    # Resident -> (monotonic expiry, their active doses): the pages ask on every list of
    # times; a booking change by this process forgets the resident's entry at once.
    doses: dict[Resident, tuple[float, Any]] = field(default_factory=dict)
    # Booking id -> (monotonic expiry, owner, booking) of bookings this process just made:
    # the page after a confirm shows it without reading it back from Postgres.
    recent: dict[str, tuple[float, Resident, dict[str, Any]]] = field(default_factory=dict)

    def lane(self, municipality: str, channel: str) -> asyncio.Semaphore:
        """The booking transactions one (municipality, channel) may run at once: at most
        3/4 of the pool, so no single tenant or channel can starve the others."""
        key = (municipality, channel)
        sem = self.lanes.get(key)
        if sem is None:
            sem = asyncio.Semaphore(max(1, self.settings.db_pool_max * 3 // 4))
            self.lanes[key] = sem
        return sem


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
