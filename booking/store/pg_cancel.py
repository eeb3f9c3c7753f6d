"""The booking transactions: confirm (optionally replacing a booking) and cancel.

One transaction each: guarded slot UPDATE, booking row, audit row, outbox row
and idempotency record commit together or not at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from booking import errors
from booking.store import pg
from booking.store.redis_store import SlotState
from machiai.pg import Conn

GUARDED_BOOK_SQL = f"""
UPDATE slots AS s SET booked = s.booked + 1
FROM events e
WHERE s.id = $1 AND e.id = s.event_id AND e.municipality_code = $2
  AND s.booked < s.capacity AND {pg.BOOKABLE_SQL}
RETURNING s.id
"""

UNBOOK_SQL = "UPDATE slots SET booked = booked - 1 WHERE id = $1 AND booked > 0"


@dataclass(frozen=True, slots=True)
class BookRequest:
    slot_id: uuid.UUID
    municipality: str
    voucher: str
    channel: str
    actor_kind: str
    actor_id: str
    staff_id: uuid.UUID | None
    replaces: uuid.UUID | None
    idem: tuple[str, str, str] | None  # (scope, key, request hash)


@dataclass(frozen=True, slots=True)
class Outcome:
    response: dict[str, Any]
    states: list[SlotState]


async def _why_not_bookable(conn: Conn, slot_id: uuid.UUID, municipality: str) -> errors.AppError:
    row = await conn.fetchrow(
        f"""
        SELECT s.closed OR e.state = 'closed' AS closed, s.booked >= s.capacity AS full,
               ({pg.BOOKABLE_SQL}) AS bookable
        FROM slots s JOIN events e ON e.id = s.event_id
        WHERE s.id = $1 AND e.municipality_code = $2
        """,
        slot_id,
        municipality,
    )
    if row is None:
        return errors.NotFound()
    if row["closed"]:
        return errors.SlotClosed()
    if not row["bookable"]:
        return errors.SlotNotOpen()
    return errors.SlotFull()


async def _check_dose_rules(
    conn: Conn, req: BookRequest, slot: asyncpg.Record, replacing: asyncpg.Record | None
) -> None:
    """Dose n+1 only after dose n is booked and at least the vaccine's interval later."""
    dose = int(slot["dose_number"])
    if dose > int(slot["max_doses"]):
        raise errors.DoseRule()
    if replacing is not None and int(replacing["dose_number"]) != dose:
        raise errors.DoseRule()
    interval_days = int(slot["dose_interval_days"])
    neighbours = await conn.fetch(
        """
        SELECT b.dose_number, b.slot_starts_at, v.dose_interval_days
        FROM bookings b JOIN vaccines v ON v.code = b.vaccine_code
        WHERE b.municipality_code = $1 AND b.voucher_number = $2
          AND b.status IN ('confirmed', 'attended') AND b.dose_number IN ($3 - 1, $3 + 1)
        """,
        req.municipality,
        req.voucher,
        dose,
    )
    previous = [n for n in neighbours if n["dose_number"] == dose - 1]
    if dose > 1:
        if not previous:
            raise errors.DoseRule()
        earliest = previous[0]["slot_starts_at"]
        if (slot["starts_at"] - earliest).total_seconds() < int(
            previous[0]["dose_interval_days"]
        ) * 86400:
            raise errors.DoseRule()
    for later in (n for n in neighbours if n["dose_number"] == dose + 1):
        if (later["slot_starts_at"] - slot["starts_at"]).total_seconds() < interval_days * 86400:
            raise errors.DoseRule()


async def book(conn: Conn, req: BookRequest, lock_timeout_ms: int) -> Outcome:
    """Confirm one booking (and cancel the one it replaces) in one transaction."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
        replacing = None
        if req.replaces is not None:
            replacing = await conn.fetchrow(
                "SELECT id, slot_id, dose_number, status::text FROM bookings "
                "WHERE id = $1 AND municipality_code = $2 AND voucher_number = $3 FOR UPDATE",
                req.replaces,
                req.municipality,
                req.voucher,
            )
            if replacing is None:
                raise errors.NoBooking()
            if replacing["status"] != "confirmed":
                raise errors.BookingState()
            if replacing["slot_id"] == req.slot_id:
                raise errors.Conflict()
            # Lock both slots in id order: two changes crossing each other cannot deadlock.
            await conn.execute(
                "SELECT 1 FROM slots WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
                [req.slot_id, replacing["slot_id"]],
            )
        slot = await conn.fetchrow(
            "SELECT s.starts_at, s.dose_number, s.vaccine_code, v.dose_interval_days, "
            "v.max_doses FROM slots s JOIN vaccines v ON v.code = s.vaccine_code WHERE s.id = $1",
            req.slot_id,
        )
        if slot is None:
            raise errors.NotFound()
        if replacing is not None:
            await conn.execute(
                "UPDATE bookings SET status = 'cancelled', cancelled_at = now(), "
                "updated_at = now() WHERE id = $1",
                req.replaces,
            )
            await conn.execute(UNBOOK_SQL, replacing["slot_id"])
        await _check_dose_rules(conn, req, slot, replacing)
        if await conn.fetchval(GUARDED_BOOK_SQL, req.slot_id, req.municipality) is None:
            raise await _why_not_bookable(conn, req.slot_id, req.municipality)
        try:
            booking_id = await conn.fetchval(
                "INSERT INTO bookings (confirmation_code, slot_id, municipality_code, "
                "voucher_number, dose_number, vaccine_code, slot_starts_at, channel, created_by) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                pg.confirmation_code(),
                req.slot_id,
                req.municipality,
                req.voucher,
                slot["dose_number"],
                slot["vaccine_code"],
                slot["starts_at"],
                req.channel,
                req.staff_id,
            )
        except asyncpg.exceptions.UniqueViolationError as exc:
            if exc.constraint_name == "bookings_one_active_per_dose":
                raise errors.AlreadyBooked() from None
            raise
        if replacing is not None:
            await conn.execute(
                "UPDATE bookings SET replaced_by = $1 WHERE id = $2", booking_id, req.replaces
            )
        booking = await pg.booking_by_id(conn, booking_id)
        assert booking is not None
        action = "booking.booking.changed" if replacing is not None else "booking.booking.confirmed"
        await pg.audit(
            conn,
            municipality=req.municipality,
            actor_kind=req.actor_kind,
            actor_id=req.actor_id,
            action=action,
            target=str(booking_id),
            before=None if replacing is None else {"booking_id": replacing["id"]},
            after=booking,
        )
        await pg.outbox(conn, action, booking)
        response = {"booking": booking}
        if req.idem is not None:
            await pg.record_idempotent(conn, req.idem[0], req.idem[1], req.idem[2], 200, response)
        slot_ids = [str(req.slot_id)] + ([] if replacing is None else [str(replacing["slot_id"])])
        states = await pg.slot_states(conn, slot_ids)
    return Outcome(response=response, states=states)


async def cancel(
    conn: Conn,
    booking_id: uuid.UUID,
    municipality: str,
    voucher: str | None,
    actor_kind: str,
    actor_id: str,
    idem: tuple[str, str, str] | None,
    lock_timeout_ms: int,
) -> Outcome:
    """Cancel a confirmed booking; its place returns. ``voucher`` None = any in the tenant."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
        row = await conn.fetchrow(
            "SELECT id, slot_id, dose_number, voucher_number, status::text FROM bookings "
            "WHERE id = $1 AND municipality_code = $2 "
            "AND ($3::text IS NULL OR voucher_number = $3) FOR UPDATE",
            booking_id,
            municipality,
            voucher,
        )
        if row is None:
            raise errors.NoBooking()
        if row["status"] != "confirmed":
            raise errors.BookingState()
        later = await conn.fetchval(
            "SELECT true FROM bookings WHERE municipality_code = $1 AND voucher_number = $2 "
            "AND dose_number > $3 AND status IN ('confirmed', 'attended')",
            municipality,
            row["voucher_number"],
            row["dose_number"],
        )
        if later:
            raise errors.DoseRule()
        before = await pg.booking_by_id(conn, booking_id)
        await conn.execute(
            "UPDATE bookings SET status = 'cancelled', cancelled_at = now(), updated_at = now() "
            "WHERE id = $1",
            booking_id,
        )
        await conn.execute(UNBOOK_SQL, row["slot_id"])
        after = await pg.booking_by_id(conn, booking_id)
        assert after is not None
        await pg.audit(
            conn,
            municipality=municipality,
            actor_kind=actor_kind,
            actor_id=actor_id,
            action="booking.booking.cancelled",
            target=str(booking_id),
            before=before,
            after=after,
        )
        await pg.outbox(conn, "booking.booking.cancelled", after)
        response = {"booking": after}
        if idem is not None:
            await pg.record_idempotent(conn, idem[0], idem[1], idem[2], 200, response)
        states = await pg.slot_states(conn, [str(row["slot_id"])])
    return Outcome(response=response, states=states)
