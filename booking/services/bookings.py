"""A resident's bookings, as the resident and the call centre see them, and which dose is due.

Invariant: a resident (or a household member acting through them) sees only their own
bookings; what is offered follows the dose rules the booking statement enforces, so a
resident is not shown a slot the confirm would refuse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from booking import errors
from booking.domain import Resident
from booking.services.context import Ctx
from booking.store import pg


@dataclass(frozen=True, slots=True)
class DoseWindow:
    """The dose a resident may book now, and the earliest / latest start the rules allow."""

    dose: int
    not_before: datetime | None = None
    not_after: datetime | None = None
    replaces: str | None = None


async def resident_bookings(ctx: Ctx, resident: Resident) -> list[dict[str, Any]]:
    """Every booking of the resident (every status), by dose then creation."""
    async with pg.acquire(ctx.pool) as conn:
        return await pg.resident_bookings(conn, resident.municipality, resident.voucher)


async def resident_booking(ctx: Ctx, resident: Resident, booking_id: str) -> dict[str, Any]:
    """One booking of this resident; another resident's (or an unknown) id is not found.
    A booking this process has just made (the page after a confirm) is not read back."""
    recent = ctx.recent.get(booking_id)
    if recent is not None and recent[0] > time.monotonic() and recent[1] == resident:
        return recent[2]
    parsed = pg.parse_uuid(booking_id)
    if parsed is not None:
        async with pg.acquire(ctx.pool) as conn:
            found = await pg.booking_by_id(conn, parsed, resident.municipality, resident.voucher)
        if found is not None:
            return found
    raise errors.NoBooking()


async def dose_window(
    ctx: Ctx, resident: Resident, replaces: str | None = None
) -> DoseWindow | None:
    """What the resident may book: the next dose after their active ones, no earlier than
    the vaccine's interval after the previous one (None: every dose is booked). With
    ``replaces`` (a change), the same dose as that booking, between its neighbours."""
    doses = await _active_doses(ctx, resident)
    by_dose = {d.dose_number: d for d in doses}
    if replaces is not None:
        moving = next((d for d in doses if d.booking_id == replaces), None)
        if moving is None:
            raise errors.NoBooking()
        before = by_dose.get(moving.dose_number - 1)
        after = by_dose.get(moving.dose_number + 1)
        return DoseWindow(
            moving.dose_number,
            None if before is None else before.starts_at + timedelta(days=before.interval_days),
            None if after is None else after.starts_at - timedelta(days=moving.interval_days),
            replaces,
        )
    if not doses:
        return DoseWindow(1)
    last = doses[-1]
    if last.dose_number >= last.max_doses:
        return None
    return DoseWindow(last.dose_number + 1, last.starts_at + timedelta(days=last.interval_days))


DOSES_CACHE_S = 2.0


async def _active_doses(ctx: Ctx, resident: Resident) -> list[pg.DoseBooking]:
    """The resident's active doses, read at most once per ``DOSES_CACHE_S`` (a list of
    times is shown again after every refusal); a change made by this process is seen at
    once (confirm and cancel forget the entry), one made elsewhere within the interval,
    and the booking statement enforces the rules whatever a page showed."""
    cached = ctx.doses.get(resident)
    if cached is not None and cached[0] > time.monotonic():
        found: list[pg.DoseBooking] = cached[1]
        return found
    async with pg.acquire(ctx.pool) as conn:
        doses = await pg.active_doses(conn, resident.municipality, resident.voucher)
    remember_doses(ctx, resident, doses)
    return doses


def remember_doses(ctx: Ctx, resident: Resident, doses: list[pg.DoseBooking]) -> None:
    """What a sign-in read anyway: the list of times right after it needs no read."""
    if len(ctx.doses) > 100_000:
        ctx.doses.clear()
    ctx.doses[resident] = (time.monotonic() + DOSES_CACHE_S, doses)


async def open_events(ctx: Ctx) -> list[dict[str, Any]]:
    """Events residents can queue for or look their bookings up in, soonest first."""
    async with pg.acquire(ctx.pool) as conn:
        return await pg.open_events(conn)
