"""Sold out means sold out: only a booking report counted after opening can say so, and
before opening the pre-queue is shown the places that will open."""

from __future__ import annotations

import time
import uuid

import asyncpg
import redis.asyncio as aioredis

from booking.store.pg import event_remaining
from machiai import keys as shared
from tests.waitroom.conftest import (
    T0_MS,
    AppFactory,
    FakeClock,
    add_event,
    line_of,
    running,
)
from waitroom.settings import WaitroomSettings

JSON = {"accept": "application/json", "cookie": "x=1"}


async def report(
    redis: aioredis.Redis, settings: WaitroomSettings, event_id: str, remaining: int, at_ms: int
) -> None:
    """Booking's inventory report, as booking/background.py writes it."""
    key = shared.event_inventory(settings.core.redis_prefix, event_id)
    await redis.hset(key, mapping={"remaining": remaining, "updated_ms": at_ms})


async def test_a_count_from_before_opening_never_says_sold_out(
    db: asyncpg.Pool,
    make_app: AppFactory,
    clock: FakeClock,
    redis: aioredis.Redis,
    settings: WaitroomSettings,
) -> None:
    opens = T0_MS + 60_000
    event_id = await add_event(
        db, state="prequeue", prequeue_at_ms=T0_MS - 60_000, opens_at_ms=opens
    )
    app = make_app()
    async with running(app) as client:
        # Before opening booking counts the places that will open: the pre-queue sees them.
        await report(redis, settings, event_id, 50, T0_MS)
        early = (await client.post(f"/events/{event_id}/join", headers=JSON)).json()
        assert (early["state"], early["slots_left"]) == ("prequeue", 50)
        page = await client.get(f"/events/{event_id}/wait", params={"t": early["ticket"]})
        assert "受付開始時の予約枠：50" in page.text
        # A count of 0 taken before opening (as booking counted before issue 18: nothing is
        # bookable before opens_at), still there when the event opens: not "sold out".
        await report(redis, settings, event_id, 0, opens - 200)
        clock.now = opens + 100
        await line_of(app).refresh(event_id)
        for _ in range(3):
            await client.post(f"/events/{event_id}/join", headers=JSON)
        late = (await client.post(f"/events/{event_id}/join", headers=JSON)).json()
        assert late["state"] == "waiting" and late["event_state"] == "open"
        assert late["slots_left"] is None  # not known yet, certainly not 0
        # The first count after opening says 0: now it is sold out, for everyone at once.
        await report(redis, settings, event_id, 0, opens + 300)
        clock.advance(1)
        await line_of(app).refresh(event_id)
        polled = await client.get(f"/events/{event_id}/status", params={"t": late["ticket"]})
        assert (polled.json()["state"], polled.json()["slots_left"]) == ("sold_out", 0)
        assert "more_ahead_than_slots" not in polled.json()  # sold out says so itself
        page = await client.get(f"/events/{event_id}/wait", params={"t": late["ticket"]})
        assert "予約枠がなくなりました" in page.text and "コールセンター" in page.text
        # Places come back (a cancellation): the same order resumes.
        await report(redis, settings, event_id, 2, opens + 1300)
        clock.advance(1)
        await line_of(app).refresh(event_id)
        polled = await client.get(f"/events/{event_id}/status", params={"t": late["ticket"]})
        assert (polled.json()["state"], polled.json()["slots_left"]) == ("waiting", 2)


async def test_booking_counts_the_places_that_will_open(db: asyncpg.Pool) -> None:
    now_ms = int(time.time() * 1000)
    soon = await add_event(
        db, state="prequeue", prequeue_at_ms=now_ms - 3600_000, opens_at_ms=now_ms + 3600_000,
        closes_at_ms=now_ms + 30 * 86400_000,
    )  # fmt: skip
    open_now = await add_event(
        db, prequeue_at_ms=now_ms - 7200_000, opens_at_ms=now_ms - 3600_000,
        closes_at_ms=now_ms + 30 * 86400_000,
    )  # fmt: skip
    await db.execute(
        "INSERT INTO vaccines (code, name_ja, name_en, dose_interval_days) "
        "VALUES ('comirnaty', 'コミナティ', 'Comirnaty', 21) ON CONFLICT DO NOTHING"
    )
    clinic = await db.fetchval(
        "INSERT INTO clinics (municipality_code, name_ja, name_en, area) "
        "VALUES ('131001', '北会場', 'North', '北区') RETURNING id"
    )
    slot = (
        "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, booked, "
        "dose_number, vaccine_code, publish_from, closed) "
        "VALUES ($1, $2, now() + interval '2 days', 30, $3, $4, 1, 'comirnaty', $5, $6)"
    )
    for event_id in (soon, open_now):
        await db.execute(slot, clinic, event_id, 3, 0, None, False)
        await db.execute(slot, clinic, event_id, 4, 1, None, False)
        await db.execute(slot, clinic, event_id, 5, 0, None, True)  # closed: never counted
    # Published only a week after opening: not among the places that open.
    later = await db.fetchval("SELECT now() + interval '7 days'")
    await db.execute(slot, clinic, soon, 9, 0, later, False)
    async with db.acquire() as conn:
        remaining = await event_remaining(conn)
    assert remaining[soon] == 3 + 3  # before opening: what opens (it said 0 before issue 18)
    assert remaining[open_now] == 3 + 3
    assert str(uuid.UUID(str(clinic)))
