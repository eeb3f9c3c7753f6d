"""Redis failing after Postgres committed a booking change: the answer is still "done".

Promise: a change Postgres committed is answered as done (a resident told "busy" would
try again and find a booking they were told failed); Redis, which only mirrors it, is
brought up to date by the refresher from Postgres.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from booking import errors
from booking.services.confirm import cancel_booking, confirm_booking
from booking.services.context import Ctx
from booking.services.hold import hold_slot
from booking.services.inventory import mirror_unmirrored, rebuild_inventory
from booking.store import pg
from tests.booking.factory import World, make_slot
from tests.booking.helpers import pg_slot, redis_booked, resident, web


async def _fail(*args: Any, **kwargs: Any) -> None:
    raise errors.Busy()


async def test_confirm_and_cancel_answer_done_when_redis_fails_after_commit(
    ctx: Ctx, db: asyncpg.Pool, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 3)
    await rebuild_inventory(ctx)
    actor, who = web(world.municipality, world.event_id), resident(world.municipality, 1)
    held = await hold_slot(ctx, actor, who, sid)

    monkeypatch.setattr(ctx.redis, "finish_confirm", _fail)
    booked = await confirm_booking(ctx, actor, who, held.hold_id)
    assert booked["booking"]["status"] == "confirmed"
    assert (await pg_slot(db, sid))[1] == 1 and await redis_booked(ctx, sid) == 0
    assert ctx.unmirrored == {sid} and ctx.inventory_changed.is_set()

    assert await mirror_unmirrored(ctx) == 1  # the refresher's turn
    assert await redis_booked(ctx, sid) == 1 and not ctx.unmirrored

    monkeypatch.setattr(ctx.redis, "apply_slots", _fail)
    cancelled = await cancel_booking(ctx, actor, booked["booking"]["booking_id"], who.voucher)
    assert cancelled["booking"]["status"] == "cancelled"
    assert ctx.unmirrored == {sid}
    # While Redis keeps failing the slot stays marked: nothing is forgotten.
    with pytest.raises(errors.Busy):
        await mirror_unmirrored(ctx)
    assert ctx.unmirrored == {sid}
    monkeypatch.undo()
    assert await mirror_unmirrored(ctx) == 1
    assert await redis_booked(ctx, sid) == (await pg_slot(db, sid))[1] == 0


async def test_a_slot_marked_again_during_the_mirror_stays_marked(
    ctx: Ctx, db: asyncpg.Pool, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis missed another commit of the slot while the refresher was reading it: the read
    may predate that commit, so the slot stays marked for the next turn."""
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 3)
    await rebuild_inventory(ctx)
    read = pg.slot_states

    async def read_while_marked_again(conn: Any, slot_ids: Any) -> Any:
        states = await read(conn, slot_ids)
        ctx.unmirrored.add(sid)  # a confirm committed after this read, Redis missed it
        return states

    ctx.unmirrored.add(sid)
    monkeypatch.setattr(pg, "slot_states", read_while_marked_again)
    assert await mirror_unmirrored(ctx) == 1
    assert ctx.unmirrored == {sid}
