"""Availability: resident search (live counts from Redis, Postgres as fallback) and the
public per-clinic-and-day summary (Postgres, cached in-process for a few seconds).

Search counts are at most ``LIVE_COUNTS_S`` old: reading a slot's count costs two Redis
commands, and at opening time every admitted resident searches the same few hundred slots
several times, so each process reads a slot's count at most once per interval and every search
in that interval shares it. A count shown is only a guide; the hold script decides."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import date, timedelta, timezone
from typing import Any

from booking import errors
from booking.domain import SlotMeta
from booking.services.context import Ctx
from booking.store import pg

JST = timezone(timedelta(hours=9))
MAX_RESULTS = 500
LIVE_COUNTS_S = 1.0
MAX_CACHED_COUNTS = 200_000


@dataclass(frozen=True, slots=True)
class SearchFilter:
    day: date | None = None
    area: str | None = None
    clinic_id: str | None = None
    vaccine_code: str | None = None
    dose_number: int | None = None

    def accepts(self, meta: SlotMeta) -> bool:
        return (
            (self.day is None or meta.starts_at.astimezone(JST).date() == self.day)
            and (self.area is None or meta.area == self.area)
            and (self.clinic_id is None or meta.clinic_id == self.clinic_id)
            and (self.vaccine_code is None or meta.vaccine_code == self.vaccine_code)
            and (self.dose_number is None or meta.dose_number == self.dose_number)
        )


class Availability:
    """Caches of what changes slowly (the slot list, the public summary) for a few seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._slots: dict[str, tuple[float, list[SlotMeta]]] = {}
        self._public: dict[str, tuple[float, bytes, str]] = {}
        # slot id -> (monotonic expiry, places left); one Redis read per event at a time.
        self._left: dict[str, tuple[float, int]] = {}
        self._reading: dict[str, asyncio.Lock] = {}

    async def event_slots(self, ctx: Ctx, event_id: str) -> list[SlotMeta]:
        cached = self._slots.get(event_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with pg.acquire(ctx.pool) as conn:
            slots = await pg.fetch_event_slots(conn, event_id)
        self._slots[event_id] = (time.monotonic() + self.ttl_s, slots)
        return slots

    async def search(
        self, ctx: Ctx, event_id: str, filt: SearchFilter
    ) -> tuple[list[dict[str, Any]], bool]:
        """Future slots of the event matching the filter that have places left now, soonest
        first, at most ``MAX_RESULTS``; and whether more would have matched. Full slots are
        left out before the cut: a list of full slots would tell a resident that everything
        is taken while later slots are still free."""
        matches = [m for m in await self.event_slots(ctx, event_id) if filt.accepts(m)]
        found: list[dict[str, Any]] = []
        for start in range(0, len(matches), MAX_RESULTS):
            chunk = matches[start : start + MAX_RESULTS]
            left = await self._places_left(ctx, event_id, [m.slot_id for m in chunk])
            for m in chunk:
                remaining = left.get(m.slot_id) or 0
                if remaining <= 0:
                    continue
                if len(found) == MAX_RESULTS:
                    return found, True
                found.append(
                    {
                        "slot_id": m.slot_id,
                        "clinic_id": m.clinic_id,
                        "area": m.area,
                        "starts_at": m.starts_at.isoformat(),
                        "duration_min": m.duration_min,
                        "vaccine_code": m.vaccine_code,
                        "dose_number": m.dose_number,
                        "remaining": remaining,
                    }
                )
        return found, False

    async def _places_left(self, ctx: Ctx, event_id: str, ids: list[str]) -> dict[str, int | None]:
        """Places left per slot: Redis (shared for a second), Postgres where Redis has none."""
        try:
            left = await self._live_left(ctx, event_id, ids)
        except errors.Busy:
            left = {}
        missing = [sid for sid in ids if left.get(sid) is None]
        if missing:
            async with pg.acquire(ctx.pool) as conn:
                for state in await pg.slot_states(conn, missing):
                    left[state.slot_id] = (
                        0 if state.closed else max(0, state.capacity - state.booked)
                    )
        return left

    def _cached_left(self, ids: list[str]) -> tuple[dict[str, int | None], list[str]]:
        now = time.monotonic()
        found: dict[str, int | None] = {}
        stale = []
        for sid in ids:
            entry = self._left.get(sid)
            if entry is None or entry[0] <= now:
                stale.append(sid)
            else:
                found[sid] = entry[1]
        return found, stale

    async def _live_left(self, ctx: Ctx, event_id: str, ids: list[str]) -> dict[str, int | None]:
        """Places left per slot from Redis, shared for ``LIVE_COUNTS_S``; None where Redis
        has no inventory for the slot (not cached: the caller asks Postgres)."""
        found, stale = self._cached_left(ids)
        if not stale:
            return found
        async with self._reading.setdefault(event_id, asyncio.Lock()):
            # Another search may have read them while this one waited.
            found, stale = self._cached_left(ids)
            if stale:
                fresh = await ctx.redis.slot_left(stale)
                until = time.monotonic() + LIVE_COUNTS_S
                if len(self._left) > MAX_CACHED_COUNTS:  # slots of events long over
                    self._left.clear()
                for sid, value in fresh.items():
                    found[sid] = value
                    if value is not None:
                        self._left[sid] = (until, value)
        return found

    async def public_summary(self, ctx: Ctx, event_id: str) -> tuple[bytes, str] | None:
        """(JSON body, ETag) of remaining places per clinic and day; None if no such event."""
        cached = self._public.get(event_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        async with pg.acquire(ctx.pool) as conn:
            event = await pg.fetch_event(conn, event_id)
            if event is None:
                return None
            days = await pg.public_summary(conn, event_id)
        payload = {"event_id": event_id, "days": days}
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        self._public[event_id] = (time.monotonic() + self.ttl_s, data, etag)
        if len(self._public) > 1000:
            self._public.clear()
        return data, etag
