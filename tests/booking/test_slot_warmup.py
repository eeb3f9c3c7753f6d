"""Slots are known before the first hold asks: published slots go to Redis and the
catalogue at once, a start learns the slots to come, and a crowd holding a slot the
process never saw reads it from Postgres once, not once per resident."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis

from booking import errors
from booking.services.context import Ctx
from booking.services.hold import hold_slot
from booking.services.inventory import rebuild_inventory
from booking.settings import BookingSettings
from booking.store.redis_store import APPLY_BATCH
from tests.booking.client import running, staff_token
from tests.booking.factory import BIRTH, World, make_slot, make_staff, voucher
from tests.booking.helpers import counting_wire, resident, web


async def test_published_slots_are_in_redis_and_the_catalogue_before_any_hold(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        clinic_id, _ = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
        op_id, _ = await make_staff(conn, world.municipality, "operator")
    clinic = staff_token(settings, clinic_id, world.municipality, "clinic", world.clinic_id)
    op = staff_token(settings, op_id, world.municipality, "operator", None)
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    single = {
        "event_id": world.event_id,
        "starts_at": start.isoformat(),
        "duration_min": 30,
        "capacity": 2,
        "vaccine_code": "comirnaty",
        "dose_number": 1,
    }
    csv = "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number\n" + "".join(
        f"{world.event_id},{(start + timedelta(hours=h)).isoformat()},30,3,comirnaty,1\n"
        for h in (1, 2)
    )
    async with running(settings) as (app, client):
        ctx: Ctx = app.state.ctx
        one = await client.post("/api/clinic/slots", json=single, headers=clinic)
        assert one.status_code == 201, one.text
        many = await client.post("/api/clinic/slots/import", content=csv, headers=clinic)
        assert many.status_code == 200, many.text
        published = {
            **{sid: 2 for sid in one.json()["slot_ids"]},
            **{sid: 3 for sid in many.json()["slot_ids"]},
        }
        assert len(published) == 3
        assert await ctx.redis.slot_left(list(published)) == published
        for n, slot_id in enumerate(published):
            held = await client.post(
                "/api/operator/holds",
                json={"voucher": voucher(n), "birth_date": BIRTH.isoformat(), "slot_id": slot_id},
                headers=op,
            )
            assert held.status_code == 201, held.text
        # Neither the catalogue nor Redis had to ask Postgres for any of them.
        assert ctx.catalog.reads == 0
        assert ctx.mirroring.started == 0


async def test_a_start_learns_the_slots_to_come(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        coming = [await make_slot(conn, world.clinic_id, world.event_id, 3) for _ in range(4)]
        await make_slot(conn, world.clinic_id, world.event_id, 3, days=-1)  # already past
    async with running(settings) as (app, _):
        ctx: Ctx = app.state.ctx
        assert len(ctx.catalog) == len(coming)
        actor = web(world.municipality, world.event_id)
        for n, slot_id in enumerate(coming):
            await hold_slot(ctx, actor, resident(world.municipality, n), slot_id)
        assert ctx.catalog.reads == 0


async def test_a_crowd_on_a_slot_this_process_never_saw_reads_it_once(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    # Published by another process after this one started: neither its catalogue
    # nor Redis knows the slot.
    async with db.acquire() as conn:
        slot_id = await make_slot(conn, world.clinic_id, world.event_id, 5)
    actor = web(world.municipality, world.event_id)
    outcomes = await asyncio.gather(
        *(hold_slot(ctx, actor, resident(world.municipality, n), slot_id) for n in range(40)),
        return_exceptions=True,
    )
    held = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(held) == 5
    assert all(isinstance(o, errors.SlotFull) for o in outcomes if o not in held)
    assert ctx.catalog.reads == 1
    assert ctx.mirroring.started == 1
    assert await ctx.redis.slot_left([slot_id]) == {slot_id: 0}


async def test_a_rebuild_larger_than_one_batch_mirrors_every_slot_in_few_round_trips(
    ctx: Ctx, db: asyncpg.Pool, world: World, redis: aioredis.Redis
) -> None:
    count = APPLY_BATCH * 2 + 7
    ids = await db.fetch(
        "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, dose_number, "
        "vaccine_code) SELECT $1::uuid, $2, now() + make_interval(mins => 5 * g), 5, 1 + g % 4, "
        "1, 'comirnaty' FROM generate_series(1, $3) g RETURNING id::text, capacity",
        world.clinic_id,
        world.event_id,
        count,
    )
    counting = counting_wire(redis)
    await ctx.redis.wire.aclose()
    ctx.redis.wire = counting
    assert await rebuild_inventory(ctx) == count
    # Scripts, the slots APPLY_BATCH at a time, the epoch: not one round trip per slot.
    assert counting.trips == 1 + -(-count // APPLY_BATCH) + 1
    left = await ctx.redis.slot_left([r["id"] for r in ids])
    assert left == {r["id"]: r["capacity"] for r in ids}
