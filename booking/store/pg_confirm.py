"""The confirm fast path: one SQL statement, one round trip, one implicit transaction.

Guarded slot UPDATE (capacity, window, closure, tenant and dose rules in its
WHERE), booking INSERT under the unique (resident, dose) index, audit row,
outbox row and idempotency record are data-modifying CTEs of one statement:
they commit together or not at all. When the UPDATE matches nothing, a second
query (off the hot path) says why.
"""

from __future__ import annotations

import json

import asyncpg

from booking import errors
from booking.store import pg
from booking.store.pg_booking import BookRequest, Outcome
from booking.store.redis_store import SlotState
from machiai.pg import Conn

CONFIRM_SQL = f"""
WITH slot AS (
    UPDATE slots AS s SET booked = s.booked + 1
    FROM events e, vaccines v
    WHERE s.id = $1 AND e.id = s.event_id AND e.municipality_code = $2
      AND v.code = s.vaccine_code
      AND s.booked < s.capacity AND {pg.BOOKABLE_SQL}
      AND s.dose_number <= v.max_doses
      AND (s.dose_number = 1 OR EXISTS (
            SELECT 1 FROM bookings p JOIN vaccines pv ON pv.code = p.vaccine_code
            WHERE p.municipality_code = $2 AND p.voucher_number = $3
              AND p.dose_number = s.dose_number - 1 AND p.status IN ('confirmed', 'attended')
              AND s.starts_at >= p.slot_starts_at + make_interval(days => pv.dose_interval_days)))
      AND NOT EXISTS (
            SELECT 1 FROM bookings n
            WHERE n.municipality_code = $2 AND n.voucher_number = $3
              AND n.dose_number = s.dose_number + 1 AND n.status IN ('confirmed', 'attended')
              AND n.slot_starts_at < s.starts_at + make_interval(days => v.dose_interval_days))
    RETURNING s.id, s.clinic_id, s.starts_at, s.dose_number, s.vaccine_code, s.version,
              s.capacity, s.booked, (s.closed OR e.state = 'closed') AS closed,
              (extract(epoch FROM greatest(e.opens_at, coalesce(s.publish_from, e.opens_at)))
                  * 1000)::bigint AS from_ms,
              (extract(epoch FROM least(e.closes_at, coalesce(s.publish_until, e.closes_at),
                  s.starts_at)) * 1000)::bigint AS until_ms
),
ins AS (
    INSERT INTO bookings (confirmation_code, slot_id, municipality_code, voucher_number,
                          dose_number, vaccine_code, slot_starts_at, channel, created_by)
    SELECT $4, slot.id, $2, $3, slot.dose_number, slot.vaccine_code, slot.starts_at,
           $5::booking_channel, $6::uuid
    FROM slot
    RETURNING id, confirmation_code, slot_id, slot_starts_at, dose_number, vaccine_code,
              status, channel, created_at
),
doc AS (
    SELECT ins.id, jsonb_build_object(
        'booking_id', ins.id::text, 'confirmation_code', ins.confirmation_code,
        'slot_id', ins.slot_id::text, 'clinic_id', c.id::text,
        'clinic_name_ja', c.name_ja, 'clinic_name_en', c.name_en,
        'starts_at', ins.slot_starts_at, 'dose_number', ins.dose_number,
        'vaccine_code', ins.vaccine_code, 'status', ins.status::text,
        'channel', ins.channel::text, 'created_at', ins.created_at) AS booking
    FROM ins JOIN slot ON true JOIN clinics c ON c.id = slot.clinic_id
),
aud AS (
    INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target, after)
    SELECT $2, $7, $8, 'booking.booking.confirmed', doc.id::text, doc.booking FROM doc
),
outb AS (
    INSERT INTO outbox (topic, payload)
    SELECT 'booking.booking.confirmed', doc.booking FROM doc
),
idem AS (
    INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)
    SELECT $9, $10, $11, 200, jsonb_build_object('booking', doc.booking) FROM doc
    WHERE $10::text IS NOT NULL
)
SELECT doc.booking::text AS booking, slot.id::text AS slot_id, slot.version, slot.capacity,
       slot.booked, slot.closed, slot.from_ms, slot.until_ms
FROM doc, slot
"""

WHY_SQL = f"""
SELECT s.closed OR e.state = 'closed' AS closed, s.booked >= s.capacity AS full,
       ({pg.BOOKABLE_SQL}) AS bookable
FROM slots s JOIN events e ON e.id = s.event_id
WHERE s.id = $1 AND e.municipality_code = $2
"""


async def confirm_fast(conn: Conn, req: BookRequest) -> Outcome:
    """Book ``req`` (no replacement) in one statement; domain errors for every refusal."""
    assert req.replaces is None
    scope, key, digest = req.idem if req.idem is not None else (None, None, None)
    try:
        row = await conn.fetchrow(
            CONFIRM_SQL,
            req.slot_id,
            req.municipality,
            req.voucher,
            pg.confirmation_code(),
            req.channel,
            req.staff_id,
            req.actor_kind,
            req.actor_id,
            scope,
            key,
            digest,
        )
    except asyncpg.exceptions.UniqueViolationError as exc:
        if exc.constraint_name == "bookings_one_active_per_dose":
            raise errors.AlreadyBooked() from None
        if exc.constraint_name == "idempotency_keys_pkey":
            raise pg.IdempotentRace() from None
        raise
    if row is None:
        why = await conn.fetchrow(WHY_SQL, req.slot_id, req.municipality)
        if why is None:
            raise errors.NotFound()
        if why["closed"]:
            raise errors.SlotClosed()
        if not why["bookable"]:
            raise errors.SlotNotOpen()
        if why["full"]:
            raise errors.SlotFull()
        raise errors.DoseRule()
    state = SlotState(
        slot_id=row["slot_id"],
        version=int(row["version"]),
        capacity=int(row["capacity"]),
        booked=int(row["booked"]),
        closed=bool(row["closed"]),
        from_ms=int(row["from_ms"]),
        until_ms=int(row["until_ms"]),
    )
    return Outcome(response={"booking": json.loads(row["booking"])}, states=[state])
