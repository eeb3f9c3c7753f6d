"""Small helpers shared by booking tests."""

from __future__ import annotations

from typing import Any

import asyncpg

from booking.domain import Actor, Channel, Resident
from booking.services.confirm import confirm_booking
from booking.services.context import Ctx
from booking.services.hold import hold_slot
from booking.store import keys
from machiai.redis_mux import Arg, RedisMux
from tests.booking.factory import voucher


def web(municipality: str, event_id: str | None = None) -> Actor:
    return Actor(kind="resident", actor_id="web", municipality=municipality, event_id=event_id)


def operator(municipality: str, staff_id: str | None = None) -> Actor:
    return Actor(
        kind="staff",
        actor_id=staff_id or "operator",
        municipality=municipality,
        channel=Channel.OPERATOR,
        staff_id=staff_id,
    )


def resident(municipality: str, n: int) -> Resident:
    return Resident(municipality, voucher(n))


async def book(ctx: Ctx, actor: Actor, who: Resident, slot_id: str) -> dict[str, Any]:
    held = await hold_slot(ctx, actor, who, slot_id)
    return await confirm_booking(ctx, actor, who, held.hold_id)


async def pg_slot(db: asyncpg.Pool, slot_id: str) -> tuple[int, int]:
    row = await db.fetchrow("SELECT capacity, booked FROM slots WHERE id = $1::uuid", slot_id)
    assert row is not None
    return int(row["capacity"]), int(row["booked"])


async def pg_active_bookings(db: asyncpg.Pool, slot_id: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM bookings WHERE slot_id = $1::uuid "
            "AND status IN ('confirmed', 'attended')",
            slot_id,
        )
    )


async def redis_booked(ctx: Ctx, slot_id: str) -> int:
    raw = await ctx.redis.client.hget(keys.slot_inventory(ctx.redis.prefix, slot_id), "booked")
    return -1 if raw is None else int(raw)


class CountingMux(RedisMux):
    """Counts round trips (a pipeline is one)."""

    trips = 0

    async def execute(self, *args: Arg) -> Any:
        self.trips += 1
        return await super().execute(*args)

    async def pipeline(self, commands: Any, *, raise_on_error: bool = True) -> list[Any]:
        self.trips += 1
        return await super().pipeline(commands, raise_on_error=raise_on_error)
