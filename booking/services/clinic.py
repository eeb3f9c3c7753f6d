"""A clinic's own day: its slots and bookings, changing a slot, marking attendance.

Invariant: a clinic account sees and changes only its own clinic's slots and bookings;
a slot's capacity never goes below what is booked; every change is audited, and a slot
change reaches Redis (and the waitroom's count of places) at once.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import date
from typing import Any

from booking import errors
from booking.domain import ClinicStaff
from booking.services.context import Ctx
from booking.store import pg, pg_clinic
from machiai.tokens import StaffClaims

ATTENDANCE = ("attended", "no_show", "confirmed")
# A vaccine's lot number (ロット番号) as printed on the vial and the vaccination record:
# letters and digits, sometimes a hyphen (FF2847, EY0779, 3003302, 000046A). The same
# shape as bookings.lot's CHECK (migration 0011).
LOT_PATTERN = "^[A-Z0-9][A-Z0-9-]{0,19}$"
LOT = re.compile(LOT_PATTERN)


def lot_of(raw: str | None, status: str) -> str | None:
    """The lot number as stored: typed in full-width (an input method's default) or lower
    case, it is the same lot, so it is normalised (NFKC, upper case); empty is none.

    Promise: only a vaccination that happened has a lot, so a lot with any other status is
    refused rather than dropped (the clinic meant something)."""
    text = unicodedata.normalize("NFKC", raw or "").strip().upper()
    if not text:
        return None
    if not LOT.fullmatch(text):
        raise errors.Invalid(
            "lot: up to 20 letters, digits and hyphens, as printed on the vial",
            "lot: ロット番号は英字・数字・ハイフン 20 文字以内で入力してください",
            detail={"field": "lot"},
        )
    if status != "attended":
        raise errors.Invalid(
            "lot: only with status attended",
            "lot: ロット番号は接種済みのときだけ記録できます",
            detail={"field": "lot"},
        )
    return text


def clinic_staff(claims: StaffClaims) -> ClinicStaff:
    if claims.clinic_id is None:
        raise errors.Forbidden()
    return ClinicStaff(claims.staff_id, claims.municipality_code, claims.clinic_id)


def _id(raw: str, missing: errors.AppError) -> uuid.UUID:
    parsed = pg.parse_uuid(raw)
    if parsed is None:
        raise missing
    return parsed


async def clinic_slots(ctx: Ctx, staff: ClinicStaff, day: date) -> list[dict[str, Any]]:
    async with pg.acquire(ctx.pool) as conn:
        return await pg_clinic.clinic_slots(conn, staff.clinic_id, day)


async def update_slot(
    ctx: Ctx, staff: ClinicStaff, slot_id: str, capacity: int | None, closed: bool | None
) -> dict[str, Any]:
    """Change capacity (never below booked) and/or close or reopen; Postgres first, then
    the Redis mirror and the waitroom's count."""
    sid = _id(slot_id, errors.NotFound())
    async with pg.acquire(ctx.pool) as conn:
        slot, state = await pg_clinic.update_slot(conn, staff, sid, capacity, closed)
    await ctx.redis.apply_slot(state)
    ctx.inventory_changed.set()
    return slot


async def clinic_bookings(ctx: Ctx, staff: ClinicStaff, day: date) -> list[dict[str, Any]]:
    async with pg.acquire(ctx.pool) as conn:
        return await pg_clinic.clinic_bookings(conn, staff.clinic_id, day)


async def mark_attendance(
    ctx: Ctx, staff: ClinicStaff, booking_id: str, status: str, lot: str | None = None
) -> dict[str, Any]:
    """Mark a booking of this clinic attended (with its lot number, when given) / no_show
    (or back to confirmed); ``lot`` is checked by ``lot_of`` first."""
    bid = _id(booking_id, errors.NoBooking())
    assert status in ATTENDANCE
    lot = lot_of(lot, status)
    async with pg.acquire(ctx.pool) as conn:
        return await pg_clinic.mark_attendance(conn, staff, bid, status, lot)
