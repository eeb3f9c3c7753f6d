"""SQL of clinic publishing, a clinic's views of its slots and bookings, and attendance."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncpg

from booking import errors
from booking.domain import ClinicStaff, SlotSpec, SlotState
from booking.store import pg
from machiai.pg import Conn

JST = timezone(timedelta(hours=9))


async def check_slot_specs(
    conn: Conn, municipality: str, clinic_id: str, specs: Sequence[SlotSpec]
) -> list[tuple[int, str, str]]:
    events = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT id, opens_at, closes_at FROM events WHERE municipality_code = $1",
            municipality,
        )
    }
    vaccines = {
        r["code"]: int(r["max_doses"])
        for r in await conn.fetch("SELECT code, max_doses FROM vaccines")
    }
    existing = {
        (r["starts_at"], r["vaccine_code"], int(r["dose_number"]))
        for r in await conn.fetch(
            "SELECT starts_at, vaccine_code, dose_number FROM slots WHERE clinic_id = $1",
            uuid.UUID(clinic_id),
        )
    }
    now = datetime.now(UTC)
    seen: set[tuple[datetime, str, int]] = set()
    problems: list[tuple[int, str, str]] = []
    for index, spec in enumerate(specs):
        key = (spec.starts_at, spec.vaccine_code, spec.dose_number)
        if spec.event_id not in events:
            problems.append((index, "event_id", "unknown event of this municipality"))
        elif spec.starts_at >= events[spec.event_id]["closes_at"] + timedelta(days=366):
            problems.append((index, "starts_at", "too far after the event"))
        if spec.starts_at <= now:
            problems.append((index, "starts_at", "in the past"))
        if spec.vaccine_code not in vaccines:
            problems.append((index, "vaccine_code", "unknown vaccine"))
        elif spec.dose_number > vaccines[spec.vaccine_code]:
            problems.append((index, "dose_number", "more than the vaccine's doses"))
        if (
            spec.publish_from is not None
            and spec.publish_until is not None
            and spec.publish_from >= spec.publish_until
        ):
            problems.append((index, "publish_until", "not after publish_from"))
        if key in seen:
            problems.append((index, "starts_at", "duplicate slot in this request"))
        elif key in existing:
            problems.append((index, "starts_at", "slot already exists"))
        seen.add(key)
    return problems


async def insert_slots(conn: Conn, staff: ClinicStaff, specs: Sequence[SlotSpec]) -> list[str]:
    """Insert in one transaction and one statement; existing (clinic, start, vaccine, dose)
    are skipped. Returns the ids of the slots created."""
    async with conn.transaction():
        rows = await conn.fetch(
            "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, "
            "dose_number, vaccine_code, publish_from, publish_until) "
            "SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::int[], $5::int[], "
            "$6::int[], $7::text[], $8::timestamptz[], $9::timestamptz[]) "
            "ON CONFLICT (clinic_id, starts_at, vaccine_code, dose_number) DO NOTHING "
            "RETURNING id::text",
            uuid.UUID(staff.clinic_id),
            [spec.event_id for spec in specs],
            [spec.starts_at for spec in specs],
            [spec.duration_min for spec in specs],
            [spec.capacity for spec in specs],
            [spec.dose_number for spec in specs],
            [spec.vaccine_code for spec in specs],
            [spec.publish_from for spec in specs],
            [spec.publish_until for spec in specs],
        )
        created = [r["id"] for r in rows]
        await pg.audit(
            conn,
            municipality=staff.municipality,
            actor_kind="staff",
            actor_id=staff.staff_id,
            action="booking.slot.published",
            target=staff.clinic_id,
            after={"slots": len(specs), "created": len(created)},
        )
    return created


SLOT_VIEW = (
    "SELECT s.id::text AS slot_id, s.event_id, s.starts_at, s.duration_min, s.capacity, "
    "s.booked, s.closed, s.vaccine_code, s.dose_number, s.publish_from, s.publish_until "
    "FROM slots s"
)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), JST)
    return start, start + timedelta(days=1)


async def clinic_slots(conn: Conn, clinic_id: str, day: date) -> list[dict[str, Any]]:
    start, end = day_bounds(day)
    rows = await conn.fetch(
        SLOT_VIEW + " WHERE s.clinic_id = $1 AND s.starts_at >= $2 AND s.starts_at < $3 "
        "ORDER BY s.starts_at",
        uuid.UUID(clinic_id),
        start,
        end,
    )
    return [pg.jsonable(r) for r in rows]


async def update_slot(
    conn: Conn, staff: ClinicStaff, slot_id: uuid.UUID, capacity: int | None, closed: bool | None
) -> tuple[dict[str, Any], SlotState]:
    """Change capacity (never below booked) and/or close/reopen; audited with before/after."""
    async with conn.transaction():
        before = await conn.fetchrow(
            SLOT_VIEW + " WHERE s.id = $1 AND s.clinic_id = $2 FOR UPDATE",
            slot_id,
            uuid.UUID(staff.clinic_id),
        )
        if before is None:
            raise errors.NotFound()
        if capacity is not None and capacity < before["booked"]:
            raise errors.CapacityBelowBooked(detail={"booked": before["booked"]})
        await conn.execute(
            "UPDATE slots SET capacity = coalesce($2, capacity), closed = coalesce($3, closed) "
            "WHERE id = $1",
            slot_id,
            capacity,
            closed,
        )
        after = await conn.fetchrow(SLOT_VIEW + " WHERE s.id = $1", slot_id)
        assert after is not None
        actions = []
        if capacity is not None and capacity != before["capacity"]:
            actions.append("booking.slot.capacity_changed")
        if closed is not None and closed != before["closed"]:
            actions.append("booking.slot.closed" if closed else "booking.slot.reopened")
        for action in actions or ["booking.slot.updated"]:
            await pg.audit(
                conn,
                municipality=staff.municipality,
                actor_kind="staff",
                actor_id=staff.staff_id,
                action=action,
                target=str(slot_id),
                before=before,
                after=after,
            )
            await pg.outbox(conn, action, pg.jsonable(after))
        states = await pg.slot_states(conn, [str(slot_id)])
    return pg.jsonable(after), states[0]


async def clinic_bookings(conn: Conn, clinic_id: str, day: date) -> list[dict[str, Any]]:
    start, end = day_bounds(day)
    rows = await conn.fetch(
        f"SELECT ({pg.BOOKING_JSON} || jsonb_build_object('voucher_number', b.voucher_number, "
        "'lot', b.lot))"
        f"::text AS booking FROM {pg.BOOKING_FROM} "
        "WHERE s.clinic_id = $1 AND b.slot_starts_at >= $2 AND b.slot_starts_at < $3 "
        "AND b.status <> 'cancelled' ORDER BY b.slot_starts_at, b.created_at",
        uuid.UUID(clinic_id),
        start,
        end,
    )
    return pg.bookings_of(rows)


async def mark_attendance(
    conn: Conn, staff: ClinicStaff, booking_id: uuid.UUID, status: str, lot: str | None = None
) -> dict[str, Any]:
    """Set the booking's status; the lot number goes with "attended" only (any other status
    clears it: a lot recorded for a vaccination that did not happen would reach the ledger)."""
    async with conn.transaction():
        # The appointment's day and today, in Japan time (the clinic's calendar).
        row = await conn.fetchrow(
            "SELECT b.status::text AS status, "
            "(s.starts_at AT TIME ZONE 'Asia/Tokyo')::date "
            "> (now() AT TIME ZONE 'Asia/Tokyo')::date AS ahead "
            "FROM bookings b JOIN slots s ON s.id = b.slot_id "
            "WHERE b.id = $1 AND s.clinic_id = $2 FOR UPDATE OF b",
            booking_id,
            uuid.UUID(staff.clinic_id),
        )
        if row is None:
            raise errors.NoBooking()
        if row["status"] == "cancelled":
            raise errors.BookingState()
        # Promise: one booking per resident and dose. A no-show frees the dose for a new
        # booking, so neither it nor "attended" may be recorded before the day comes.
        if status != "confirmed" and row["ahead"]:
            raise errors.AttendanceTooEarly()
        before = await pg.booking_by_id(conn, booking_id)
        try:
            await conn.execute(
                "UPDATE bookings SET status = $2::booking_status, updated_at = now(), "
                "lot = CASE WHEN $2 = 'attended' THEN $3 END WHERE id = $1",
                booking_id,
                status,
                lot,
            )
        except asyncpg.exceptions.UniqueViolationError:
            raise errors.AlreadyBooked() from None
        after = await pg.booking_by_id(conn, booking_id)
        assert after is not None
        await pg.audit(
            conn,
            municipality=staff.municipality,
            actor_kind="staff",
            actor_id=staff.staff_id,
            action=f"booking.booking.{status}",
            target=str(booking_id),
            before=before,
            # The entry says which lot was recorded (the booking's own view has no lot).
            after={**after, "lot": lot} if status == "attended" else after,
        )
    return after
