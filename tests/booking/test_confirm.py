"""Confirm when Postgres refuses: the hold goes back, nothing is half-written."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest

from booking import errors
from booking.domain import Resident, SlotState
from booking.services.confirm import cancel_booking, confirm_booking, idempotency
from booking.services.context import Ctx
from booking.services.hold import hold_slot
from booking.services.inventory import rebuild_inventory
from booking.store import keys, pg
from tests.booking.factory import World, make_slot
from tests.booking.helpers import book, pg_slot, resident, web


async def hold_alive(ctx: Ctx, slot_id: str, hold_id: str, who: Resident) -> bool:
    key = keys.slot_holds(ctx.redis.prefix, slot_id)
    member = f"{hold_id.partition('.')[2]}:{who.ref}"
    return await ctx.redis.client.zscore(key, member) is not None


async def test_postgres_full_while_redis_says_free_releases_the_hold(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 1)
    await rebuild_inventory(ctx)
    actor = web(world.municipality, world.event_id)
    await book(ctx, actor, resident(world.municipality, 1), sid)
    # Redis wrongly believes in more places (e.g. a stale mirror): Postgres still says no.
    [state] = await _states(db, sid)
    await ctx.redis.apply_slot(dataclasses.replace(state, version=state.version + 100, capacity=5))
    who = resident(world.municipality, 2)
    held = await hold_slot(ctx, actor, who, sid)
    assert await hold_alive(ctx, sid, held.hold_id, who)
    # Another resident cannot confirm this resident's hold.
    with pytest.raises(errors.HoldExpired):
        await confirm_booking(ctx, actor, resident(world.municipality, 9), held.hold_id)
    with pytest.raises(errors.SlotFull):
        await confirm_booking(ctx, actor, who, held.hold_id)
    assert not await hold_alive(ctx, sid, held.hold_id, who)
    assert await ctx.redis.resident_hold(who) is None
    assert await pg_slot(db, sid) == (1, 1)
    assert await db.fetchval("SELECT count(*) FROM bookings") == 1
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 1
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1


async def test_postgres_down_gives_busy_and_releases_the_hold(
    ctx: Ctx, db: asyncpg.Pool, world: World, database_url: str
) -> None:
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 2)
    await rebuild_inventory(ctx)
    actor = web(world.municipality, world.event_id)
    who = resident(world.municipality, 3)
    held = await hold_slot(ctx, actor, who, sid)
    dead = await asyncpg.create_pool(database_url, min_size=0, max_size=1)
    await dead.close()
    down = dataclasses.replace(ctx, pool=dead)
    with pytest.raises(errors.Busy) as caught:
        await confirm_booking(down, actor, who, held.hold_id)
    assert caught.value.headers["Retry-After"]
    assert not await hold_alive(ctx, sid, held.hold_id, who)
    assert await ctx.redis.resident_hold(who) is None
    assert await db.fetchval("SELECT count(*) FROM bookings") == 0
    # Capacity is whole again.
    assert (await ctx.redis.slot_left([sid]))[sid] == 2


async def test_idempotent_cancel_returns_the_first_result(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 2)
    await rebuild_inventory(ctx)
    actor = web(world.municipality, world.event_id)
    who = resident(world.municipality, 4)
    booking = (await book(ctx, actor, who, sid))["booking"]
    idem = idempotency(actor, "cancel", "retry-me", {"booking_id": booking["booking_id"]})
    first = await cancel_booking(ctx, actor, booking["booking_id"], who.voucher, idem)
    again = await cancel_booking(ctx, actor, booking["booking_id"], who.voucher, idem)
    assert first == again and first["booking"]["status"] == "cancelled"
    assert await pg_slot(db, sid) == (2, 0)
    assert (await ctx.redis.slot_left([sid]))[sid] == 2


async def _states(db: asyncpg.Pool, sid: str) -> list[SlotState]:
    async with db.acquire() as conn:
        return await pg.slot_states(conn, [sid])


async def test_a_double_submitted_confirm_books_once_at_once_or_later(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """The same idempotency key sent twice at the same moment, and again after: one
    booking, every answer the same (the confirm reads no record up front; the twins meet
    on the record or the booking and replay)."""
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 3)
    await rebuild_inventory(ctx)
    actor = web(world.municipality, world.event_id)
    for n in range(6):
        who = resident(world.municipality, 20 + n)
        held = await hold_slot(ctx, actor, who, sid) if n < 3 else None
        if held is None:
            continue
        idem = idempotency(actor, "confirm", f"tap-{n}", {"hold_id": held.hold_id})
        twins = await asyncio.gather(
            *(confirm_booking(ctx, actor, who, held.hold_id, idem) for _ in range(4))
        )
        later = await confirm_booking(ctx, actor, who, held.hold_id, idem)
        assert all(t == twins[0] for t in twins) and later == twins[0]
        assert (
            await db.fetchval(
                "SELECT count(*) FROM bookings WHERE voucher_number = $1", who.voucher
            )
            == 1
        )
    assert await pg_slot(db, sid) == (3, 3)
