"""Scarce places under contention: N claims against capacity K give exactly K bookings."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import pytest

from booking import errors
from booking.domain import Resident
from booking.services.confirm import confirm_booking
from booking.services.context import Ctx
from booking.services.hold import hold_slot
from booking.services.inventory import rebuild_inventory
from booking.store import pg_confirm
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


def request(
    world: World, slot_id: str, voucher: str, replaces: str | None = None
) -> pg_confirm.BookRequest:
    """What a web confirm (or, with ``replaces``, a change) asks of Postgres."""
    return pg_confirm.BookRequest(
        slot_id=uuid.UUID(slot_id),
        municipality=world.municipality,
        voucher=voucher,
        channel="web",
        actor_kind="resident",
        actor_id="t",
        staff_id=None,
        replaces=None if replaces is None else uuid.UUID(replaces),
        idem=None,
    )


async def pg_book(db: asyncpg.Pool, req: pg_confirm.BookRequest) -> str:
    """The booking statement alone (no Redis in front): "ok" or the refusal's code."""
    try:
        async with db.acquire() as conn:
            await pg_confirm.book(conn, req, 10_000)
        return "ok"
    except errors.AppError as exc:
        return exc.code


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
        return await pg_book(db, request(world, sid, f"{2_000_000_000 + n:010d}"))

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


async def booked_on(db: asyncpg.Pool, world: World, slot_id: str, n: int) -> dict[str, str]:
    """Residents 0..n-1 each booked on ``slot_id`` through the statement: voucher -> booking."""
    out = {}
    for i in range(n):
        who = f"{3_000_000_000 + i:010d}"
        assert await pg_book(db, request(world, slot_id, who)) == "ok"
        out[who] = str(
            await db.fetchval(
                "SELECT id FROM bookings WHERE voucher_number = $1 AND status = 'confirmed'", who
            )
        )
    return out


async def assert_accounts_agree(db: asyncpg.Pool, *slot_ids: str) -> None:
    for sid in slot_ids:
        capacity, booked = await pg_slot(db, sid)
        assert booked <= capacity
        assert booked == await pg_active_bookings(db, sid)
    doubles = await db.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM bookings WHERE status IN ('confirmed', 'attended') "
        "GROUP BY municipality_code, voucher_number, dose_number HAVING count(*) > 1) d"
    )
    assert doubles == 0


async def test_changes_into_a_full_slot_move_exactly_its_capacity(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """Promise "no oversell" on the change path: 60 residents change into 7 places at once;
    Postgres alone (no Redis in front) lets exactly 7 move, and nobody loses a booking."""
    async with db.acquire() as conn:
        here = await make_slot(conn, world.clinic_id, world.event_id, 60)
        there = await make_slot(conn, world.clinic_id, world.event_id, 7, days=4)
    bookings = await booked_on(db, world, here, 60)
    results = await asyncio.gather(
        *(pg_book(db, request(world, there, who, old)) for who, old in bookings.items())
    )
    assert results.count("ok") == 7
    assert set(results) == {"ok", "slot_full"}
    assert await pg_slot(db, there) == (7, 7)
    assert await pg_slot(db, here) == (60, 53)
    # Everyone still has exactly one active booking of the dose.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bookings WHERE status = 'confirmed' AND voucher_number = ANY($1)",
            list(bookings),
        )
        == 60
    )
    await assert_accounts_agree(db, here, there)


async def test_crossing_changes_do_not_deadlock(ctx: Ctx, db: asyncpg.Pool, world: World) -> None:
    """A: s1 -> s2 while B: s2 -> s1, many times at once: every change goes through."""
    async with db.acquire() as conn:
        one = await make_slot(conn, world.clinic_id, world.event_id, 40)
        two = await make_slot(conn, world.clinic_id, world.event_id, 40, days=4)
    on_one = await booked_on(db, world, one, 20)
    on_two = {}
    for i in range(20):
        who = f"{3_100_000_000 + i:010d}"
        assert await pg_book(db, request(world, two, who)) == "ok"
        on_two[who] = str(
            await db.fetchval("SELECT id FROM bookings WHERE voucher_number = $1", who)
        )
    results = await asyncio.gather(
        *(pg_book(db, request(world, two, who, old)) for who, old in on_one.items()),
        *(pg_book(db, request(world, one, who, old)) for who, old in on_two.items()),
    )
    assert results == ["ok"] * 40
    assert await pg_slot(db, one) == (40, 20) and await pg_slot(db, two) == (40, 20)
    await assert_accounts_agree(db, one, two)


async def test_one_booking_moved_two_ways_at_once_ends_as_one(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """Promise "one booking per resident and dose" on the change path: the same booking
    changed to two slots at once (two tabs, or web and phone) moves once; the other change
    finds it already replaced."""
    async with db.acquire() as conn:
        start = await make_slot(conn, world.clinic_id, world.event_id, 30)
        left = await make_slot(conn, world.clinic_id, world.event_id, 30, days=4)
        right = await make_slot(conn, world.clinic_id, world.event_id, 30, days=5)
    bookings = await booked_on(db, world, start, 15)
    pairs = await asyncio.gather(
        *(
            asyncio.gather(
                pg_book(db, request(world, left, who, old)),
                pg_book(db, request(world, right, who, old)),
            )
            for who, old in bookings.items()
        )
    )
    for pair in pairs:
        assert sorted(pair) == ["booking_state", "ok"], pair
    assert (await pg_slot(db, start))[1] == 0
    assert (await pg_slot(db, left))[1] + (await pg_slot(db, right))[1] == 15
    await assert_accounts_agree(db, start, left, right)


async def test_web_changes_race_phone_confirms_through_the_service(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """The whole path (Redis hold, then the statement) for changes and new bookings on
    one slot at once: its capacity is never exceeded, in Redis or in Postgres."""
    async with db.acquire() as conn:
        start = await make_slot(conn, world.clinic_id, world.event_id, 20)
        target = await make_slot(conn, world.clinic_id, world.event_id, 9, days=4)
    await rebuild_inventory(ctx)
    actor = web(world.municipality, world.event_id)
    phone = operator(world.municipality)
    movers = [resident(world.municipality, n) for n in range(20)]
    moved_from = {
        who: (await book(ctx, actor, who, start))["booking"]["booking_id"] for who in movers
    }

    async def change(who: Resident) -> str:
        try:
            held = await hold_slot(ctx, actor, who, target)
            await confirm_booking(ctx, actor, who, held.hold_id, replaces=moved_from[who])
            return "ok"
        except errors.AppError as exc:
            return exc.code

    async def new(n: int) -> str:
        try:
            await book(ctx, phone, resident(world.municipality, n), target)
            return "ok"
        except errors.AppError as exc:
            return exc.code

    results = await asyncio.gather(
        *(change(who) for who in movers), *(new(n) for n in range(20, 40))
    )
    assert results.count("ok") == 9
    assert set(results) <= {"ok", "slot_full"}
    assert await pg_slot(db, target) == (9, 9)
    assert await redis_booked(ctx, target) == 9
    moved = results[:20].count("ok")
    assert await pg_slot(db, start) == (20, 20 - moved)
    assert await redis_booked(ctx, start) == 20 - moved
    await assert_accounts_agree(db, start, target)
