"""What every booking service function needs: settings, stores, and who is acting."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import asyncpg

from booking.settings import BookingSettings
from booking.store.pg import SlotMeta, acquire, fetch_slot_meta
from booking.store.redis_store import RedisStore

if TYPE_CHECKING:
    from booking.services.sessions import Session


class Channel(StrEnum):
    WEB = "web"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Resident:
    """A resident is their voucher within their municipality."""

    municipality: str
    voucher: str

    @property
    def ref(self) -> str:
        return f"{self.municipality}:{self.voucher}"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a resident on the web, or a staff member (operator, clinic, admin)."""

    kind: str  # "resident" | "staff"
    actor_id: str
    municipality: str
    channel: Channel = Channel.WEB
    staff_id: str | None = None
    # Residents act inside one event (their pass); staff across their municipality.
    event_id: str | None = None


class SlotCatalog:
    """Per-process cache of what never changes about a slot (owner, time, dose)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._meta: dict[str, SlotMeta] = {}

    async def get(self, slot_id: str) -> SlotMeta | None:
        meta = self._meta.get(slot_id)
        if meta is None:
            async with acquire(self._pool) as conn:
                meta = await fetch_slot_meta(conn, slot_id)
            if meta is not None:
                if len(self._meta) > 200_000:
                    self._meta.clear()
                self._meta[slot_id] = meta
        return meta


@dataclass(slots=True)
class Ctx:
    settings: BookingSettings
    redis: RedisStore
    pool: asyncpg.Pool
    catalog: SlotCatalog
    # Set when a booking changed inventory: the refresher publishes at once.
    inventory_changed: asyncio.Event = field(default_factory=asyncio.Event)
    lanes: dict[tuple[str, str], asyncio.Semaphore] = field(default_factory=dict)
    # Session id -> monotonic time until which its liveness need not be re-read.
    live_sessions: dict[str, float] = field(default_factory=dict)
    # Session tokens whose signature this process has checked, and the session each
    # names. Whether that session is still live is live_sessions' say.
    verified_tokens: dict[str, Session] = field(default_factory=dict)

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
