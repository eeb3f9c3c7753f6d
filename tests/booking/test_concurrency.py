"""Scarce places under contention: N claims against capacity K give exactly K bookings."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import pytest

from booking import errors
from booking.services.context import Ctx
from booking.services.inventory import rebuild_inventory
from booking.store import pg_booking
from tests.booking.factory import World, make_slot
from tests.booking.helpers import (
    book,
    operator,
    pg_active_bookings,
    pg_slot,
    redis_booked,
    resident,
    web,
)

pytestmark = pytest.mark.slow


async def test_2000_concurrent_hold_confirm_books_exact_capacity(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        slots = [
            await make_slot(conn, world.clinic_id, world.event_id, cap) for cap in (3, 5, 7, 9)
        ]
    await rebuild_inventory(ctx)
    actor = web(world.municipality, world.event_id)
    rng = random.Random(7)
    outcomes: dict[str, int] = {}

    async def attempt(n: int) -> None:
        try:
            await book(ctx, actor, resident(world.municipality, n), rng.choice(slots))
            code = "ok"
        except errors.AppError as exc:
            code = exc.code
        outcomes[code] = outcomes.get(code, 0) + 1

    await asyncio.gather(*(attempt(n) for n in range(2000)))
    assert outcomes["ok"] == 3 + 5 + 7 + 9
    assert set(outcomes) <= {"ok", "slot_full", "busy"}
    for sid in slots:
        capacity, booked = await pg_slot(db, sid)
        assert booked == capacity == await pg_active_bookings(db, sid)
        assert await redis_booked(ctx, sid) == capacity
        assert (await ctx.redis.slot_left([sid]))[sid] == 0


async def test_postgres_guard_alone_stops_oversell(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """Even with Redis out of the way, the guarded UPDATE admits exactly the capacity."""
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 5)

    async def attempt(n: int) -> str:
        req = pg_booking.BookRequest(
            slot_id=uuid.UUID(sid),
            municipality=world.municipality,
            voucher=f"{2_000_000_000 + n:010d}",
            channel="web",
            actor_kind="resident",
            actor_id="t",
            staff_id=None,
            replaces=None,
            idem=None,
        )
        try:
            async with db.acquire() as conn:
                await pg_booking.book(conn, req, 10_000)
            return "ok"
        except errors.AppError as exc:
            return exc.code

    results = await asyncio.gather(*(attempt(n) for n in range(200)))
    assert results.count("ok") == 5
    assert set(results) == {"ok", "slot_full"}
    assert await pg_slot(db, sid) == (5, 5)


async def test_same_resident_racing_web_and_operator_gets_one_booking(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        slots = [await make_slot(conn, world.clinic_id, world.event_id, 50) for _ in range(2)]
    await rebuild_inventory(ctx)
    web_actor = web(world.municipality, world.event_id)
    phone = operator(world.municipality)

    async def attempt(actor_is_web: bool, n: int) -> str:
        actor = web_actor if actor_is_web else phone
        slot = slots[0] if actor_is_web else slots[1]
        # A refused hold is retried, so both channels also race into Postgres.
        for _ in range(200):
            try:
                await book(ctx, actor, resident(world.municipality, n), slot)
                return "ok"
            except errors.HoldExists:
                await asyncio.sleep(0.005)
            except errors.AppError as exc:
                return exc.code
        return "gave_up"

    per_resident = await asyncio.gather(
        *(asyncio.gather(attempt(True, n), attempt(False, n)) for n in range(40))
    )
    for pair in per_resident:
        assert sorted(pair) == ["already_booked", "ok"], pair
    total = await db.fetchval(
        "SELECT count(*) FROM bookings WHERE status = 'confirmed' GROUP BY voucher_number "
        "HAVING count(*) > 1"
    )
    assert total is None
    assert sum([(await pg_slot(db, s))[1] for s in slots]) == 40


async def test_a_full_lane_does_not_starve_other_cities_or_the_phone_lane(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        here = await make_slot(conn, world.clinic_id, world.event_id, 5)
        there = await make_slot(conn, world.other_clinic_id, world.other_event_id, 5)
    await rebuild_inventory(ctx)
    web_lane = ctx.lane(world.municipality, "web")
    permits = 0
    while not web_lane.locked():
        await web_lane.acquire()
        permits += 1
    assert permits == ctx.settings.db_pool_max * 3 // 4
    # This city's web lane is saturated: its next web confirm waits...
    waiting = asyncio.create_task(
        book(ctx, web(world.municipality, world.event_id), resident(world.municipality, 1), here)
    )
    # ...while its phone operators and another city's residents still book.
    await book(ctx, operator(world.municipality), resident(world.municipality, 2), here)
    await book(
        ctx,
        web(world.other_municipality, world.other_event_id),
        resident(world.other_municipality, 3),
        there,
    )
    assert not waiting.done()
    for _ in range(permits):
        web_lane.release()
    await waiting
    assert (await pg_slot(db, here))[1] == 2 and (await pg_slot(db, there))[1] == 1
