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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from booking import errors
from booking.domain import Channel, Clinic, SlotMeta
from booking.services.context import Ctx
from booking.store import pg
from machiai.single_flight import SingleFlight

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
    # The dose rules' window for this resident (see services.bookings.dose_window).
    not_before: datetime | None = None
    not_after: datetime | None = None

    def accepts(self, meta: SlotMeta, day: date | None = None) -> bool:
        """``day``: the slot's date in Japan time when the caller knows it already."""
        return (
            (self.day is None or (day or meta.starts_at.astimezone(JST).date()) == self.day)
            and (self.area is None or meta.area == self.area)
            and (self.clinic_id is None or meta.clinic_id == self.clinic_id)
            and (self.vaccine_code is None or meta.vaccine_code == self.vaccine_code)
            and (self.dose_number is None or meta.dose_number == self.dose_number)
            and (self.not_before is None or meta.starts_at >= self.not_before)
            and (self.not_after is None or meta.starts_at <= self.not_after)
        )


@dataclass(frozen=True, slots=True)
class SlotOffer:
    """A slot with places that can be held now (a guide: the hold decides)."""

    meta: SlotMeta
    remaining: int


def slot_json(offer: SlotOffer) -> dict[str, Any]:
    m = offer.meta
    return {
        "slot_id": m.slot_id,
        "clinic_id": m.clinic_id,
        "area": m.area,
        "starts_at": m.starts_at.isoformat(),
        "duration_min": m.duration_min,
        "vaccine_code": m.vaccine_code,
        "dose_number": m.dose_number,
        "remaining": offer.remaining,
    }


@dataclass(frozen=True, slots=True)
class Choices:
    """What a resident can narrow a search by: dates (Japan time), areas, clinics."""

    days: tuple[date, ...]
    areas: tuple[str, ...]
    clinic_ids: tuple[str, ...]


@dataclass(slots=True)
class EventSlots:
    """An event's future slots, soonest first, with their Japan-time dates worked out once
    per refresh (not once per slot per search), and the choices per dose window."""

    metas: list[SlotMeta]
    days: list[date]
    choices: dict[tuple[Any, ...], Choices] = field(default_factory=dict)
    # Every slot before ``full_until`` had no place for the web when last counted (until
    # ``full_checked`` + LIVE_COUNTS_S): searches start there instead of walking, each
    # time, past the slots a surge has already filled.
    full_until: int = 0
    full_checked: float = 0.0

    @classmethod
    def of(cls, metas: list[SlotMeta]) -> EventSlots:
        return cls(metas, [m.starts_at.astimezone(JST).date() for m in metas])


class Availability:
    """Caches of what changes slowly (the slot list, the public summary) for a few seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._slots: dict[str, tuple[float, EventSlots]] = {}
        self._loading: SingleFlight[str, EventSlots] = SingleFlight()
        self._public: dict[str, tuple[float, bytes, str]] = {}
        # slot id -> (monotonic expiry, places left); one Redis read per event at a time.
        self._left: dict[str, tuple[float, int]] = {}
        self._reading: dict[str, asyncio.Lock] = {}
        self._clinics: dict[str, tuple[float, Clinic]] = {}

    async def event_slots(self, ctx: Ctx, event_id: str) -> list[SlotMeta]:
        return (await self._event(ctx, event_id)).metas

    async def _event(self, ctx: Ctx, event_id: str) -> EventSlots:
        """The event's slot list, read at most once per ``ttl_s`` however many searches
        ask for it at the same moment (at opening time they come by the hundred)."""
        cached = self._slots.get(event_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return await self._loading.run(event_id, lambda: self._load(ctx, event_id))

    async def _load(self, ctx: Ctx, event_id: str) -> EventSlots:
        async with pg.acquire(ctx.pool) as conn:
            metas = await pg.fetch_event_slots(conn, event_id)
        found = EventSlots.of(metas)
        self._slots[event_id] = (time.monotonic() + self.ttl_s, found)
        return found

    async def choices(self, ctx: Ctx, event_id: str, rules: SearchFilter) -> Choices:
        """The dates, areas and clinics among the slots ``rules`` allows (full or not),
        worked out once per slot list and dose window."""
        event = await self._event(ctx, event_id)
        key = (rules.dose_number, rules.not_before, rules.not_after)
        found = event.choices.get(key)
        if found is None:
            kept = [
                (m, d) for m, d in zip(event.metas, event.days, strict=True) if rules.accepts(m, d)
            ]
            found = Choices(
                tuple(sorted({d for _, d in kept})),
                tuple(sorted({m.area for m, _ in kept})),
                tuple(sorted({m.clinic_id for m, _ in kept})),
            )
            if len(event.choices) < 1000:
                event.choices[key] = found
        return found

    async def search(
        self,
        ctx: Ctx,
        event_id: str,
        filt: SearchFilter,
        *,
        skip: int = 0,
        limit: int | None = None,
        channel: Channel = Channel.WEB,
    ) -> tuple[list[SlotOffer], bool]:
        """Future slots of the event matching the filter that have places to hold now,
        soonest first: ``limit`` of them after the first ``skip``, and whether more would
        have matched. Full slots (and slots outside their booking window) are left out
        before the cut: a list of full slots would tell a resident that everything is
        taken while later slots are still free."""
        limit = MAX_RESULTS if limit is None else limit
        event = await self._event(ctx, event_id)
        found: list[SlotOffer] = []
        seen = 0
        # Counts are read for a batch of candidates at a time, in list order, and the scan
        # stops as soon as the page is full: a search costs what it shows, not the event.
        batch = max(2 * (skip + limit), 50)
        candidates: list[SlotMeta] = []
        web = channel is Channel.WEB
        first = self._first_open(event) if web else 0
        for index in range(first, len(event.metas)):
            meta = event.metas[index]
            if filt.accepts(meta, event.days[index]):
                candidates.append(meta)
            if len(candidates) < batch and index + 1 < len(event.metas):
                continue
            if not candidates:
                continue
            ids = [m.slot_id for m in candidates]
            left = await self._places_left(ctx, event_id, ids, channel)
            if web:
                self._first_open(event)
            for m in candidates:
                remaining = left.get(m.slot_id) or 0
                if remaining <= 0:
                    continue
                seen += 1
                if seen <= skip:
                    continue
                if len(found) == limit:
                    return found, True
                found.append(SlotOffer(m, remaining))
            candidates = []
            batch = min(batch * 2, MAX_RESULTS)
        return found, False

    def _first_open(self, event: EventSlots) -> int:
        """Where a web search may start: past the leading slots the shared counts say are
        full (every filter agrees on a full slot). Moved forward as counts are read."""
        now = time.monotonic()
        index = event.full_until if event.full_checked + LIVE_COUNTS_S > now else 0
        while index < len(event.metas):
            entry = self._left.get(event.metas[index].slot_id)
            if entry is None or entry[0] <= now or entry[1] > 0:
                break
            index += 1
        if index != event.full_until or event.full_checked + LIVE_COUNTS_S <= now:
            event.full_until, event.full_checked = index, now
        return index

    async def clinics(self, ctx: Ctx, clinic_ids: Sequence[str]) -> dict[str, Clinic]:
        """Names and addresses of clinics, cached like the slot list."""
        now = time.monotonic()
        missing = [c for c in set(clinic_ids) if (self._clinics.get(c) or (0.0,))[0] <= now]
        if missing:
            async with pg.acquire(ctx.pool) as conn:
                for clinic in await pg.fetch_clinics(conn, missing):
                    self._clinics[clinic.clinic_id] = (now + self.ttl_s, clinic)
        return {c: self._clinics[c][1] for c in clinic_ids if c in self._clinics}

    async def _places_left(
        self, ctx: Ctx, event_id: str, ids: list[str], channel: Channel = Channel.WEB
    ) -> dict[str, int | None]:
        """Places ``channel`` may book per slot (residents: the web pool's; operators: every
        place): Redis (shared for a second), Postgres where Redis has none."""
        try:
            left = await self._live_left(ctx, event_id, ids, channel)
        except errors.Busy:
            left = {}
        missing = [sid for sid in ids if left.get(sid) is None]
        if missing:
            now_ms = int(time.time() * 1000)
            async with pg.acquire(ctx.pool) as conn:
                for state in await pg.slot_states(conn, missing):
                    left[state.slot_id] = state.left(channel, now_ms)
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

    async def _live_left(
        self, ctx: Ctx, event_id: str, ids: list[str], channel: Channel = Channel.WEB
    ) -> dict[str, int | None]:
        """Places left per slot from Redis, shared for ``LIVE_COUNTS_S``; None where Redis
        has no inventory for the slot (not cached: the caller asks Postgres). The shared
        counts are the residents' (web); an operator's search (a call centre's few) reads
        its own."""
        if channel is not Channel.WEB:
            return await ctx.redis.slot_left(ids, channel)
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
