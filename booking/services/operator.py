"""The call-centre lane: operators book for residents who phone in, from the same inventory.

Same rules as the web (registry identity, one hold per resident, the guarded confirm);
every operator action is audited with the operator's id, including the Redis-only ones
(who held or released for whom) and looking up a caller's bookings.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from booking import errors
from booking.domain import Actor, Channel, Resident
from booking.services import hold, sessions
from booking.services.bookings import resident_bookings
from booking.services.context import Ctx
from booking.store import pg
from machiai.tokens import StaffClaims


def operator_actor(claims: StaffClaims) -> Actor:
    return Actor(
        kind="staff",
        actor_id=claims.staff_id,
        municipality=claims.municipality_code,
        channel=Channel.OPERATOR,
        staff_id=claims.staff_id,
    )


def caller(actor: Actor, voucher: str) -> Resident:
    """The resident on the phone: a voucher of the operator's own municipality."""
    return Resident(actor.municipality, voucher)


async def _audit(
    ctx: Ctx, actor: Actor, action: str, voucher: str, after: dict[str, str] | None = None
) -> None:
    async with pg.acquire(ctx.pool) as conn:
        await pg.audit(
            conn,
            municipality=actor.municipality,
            actor_kind=actor.kind,
            actor_id=actor.actor_id,
            action=action,
            target=voucher,
            after=after,
        )


async def check_event(ctx: Ctx, actor: Actor, event_id: str) -> None:
    """The event, if it is one of the operator's municipality; another municipality's
    event answers like an unknown one (no oracle across tenants)."""
    async with pg.acquire(ctx.pool) as conn:
        event = await pg.fetch_event(conn, event_id)
    if event is None or event["municipality_code"] != actor.municipality:
        raise errors.NotFound()


async def hold_for_caller(
    ctx: Ctx,
    actor: Actor,
    voucher: str,
    birth_date: date,
    slot_id: str,
    replaces: str | None = None,
) -> hold.Hold:
    """Check the caller against the registry as the web does, then hold the slot.

    ``replaces``: the caller's booking this hold is to move (a change); without it, a
    slot of a dose the caller has already booked is refused before a place is taken."""
    meta = await hold.visible_slot(ctx, actor, slot_id)
    resident, doses = await sessions.verify_resident(
        ctx, actor.municipality, voucher, birth_date, meta.event_id
    )
    # Promise "one booking per resident and dose": a hold that could only end in
    # already_booked at the confirm would still take a place (the last one, at 9:00) from
    # someone who needs it; the operator is told now, with the booking to change instead.
    same_dose = next((d for d in doses if d.dose_number == meta.dose_number), None)
    if replaces is not None and all(d.booking_id != replaces for d in doses):
        raise errors.NoBooking()
    if same_dose is not None and same_dose.booking_id != replaces:
        raise errors.AlreadyBooked(detail={"booking_id": same_dose.booking_id})
    held = await hold.hold_slot(ctx, actor, resident, slot_id)
    await _audit(ctx, actor, "booking.hold.placed", voucher, {"hold_id": held.hold_id})
    return held


async def release_for_caller(ctx: Ctx, actor: Actor, voucher: str, hold_id: str) -> None:
    await hold.release_hold(ctx, caller(actor, voucher), hold_id)
    await _audit(ctx, actor, "booking.hold.released", voucher, {"hold_id": hold_id})


async def caller_bookings(ctx: Ctx, actor: Actor, voucher: str) -> list[dict[str, Any]]:
    """A caller's bookings; that an operator looked is itself audited."""
    rows = await resident_bookings(ctx, caller(actor, voucher))
    await _audit(ctx, actor, "booking.resident.viewed", voucher)
    return rows
