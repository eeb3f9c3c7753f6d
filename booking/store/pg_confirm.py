"""The one statement that books a place: confirm a hold, or change a booking to it.

This is where booking's promises are kept in Postgres, whatever Redis says: **no
oversell** (the guarded slot UPDATE and ``CHECK (booked <= capacity)``), **the phone
keeps its share** (the same guard, for web bookings; ``booked_phone`` moved in the same
UPDATE) and **one booking per resident and dose** (the partial unique index, across
every channel). A confirm and a change run the same statement, written once
(:func:`_book_sql`); a change's rendering also cancels the booking it replaces and gives
its place back (to the pool it came from), in that statement, so the old booking is
never cancelled without the new one and never kept beside it. The slot guard (tenant,
window, closure, capacity, the phone share, dose rules), the booking row, its JSON, the
audit row, the outbox row and the idempotency record are data-modifying CTEs of that one
statement: they commit together or not at all. When it books nothing, :data:`WHY_SQL` (off the hot
path) says why.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import asyncpg

from booking import errors
from booking.store import pg
from machiai.pg import Conn


@dataclass(frozen=True, slots=True)
class BookRequest:
    """Book ``slot_id`` for a resident; ``replaces``: the booking a change moves from."""

    slot_id: uuid.UUID
    municipality: str
    voucher: str
    channel: str
    actor_kind: str
    actor_id: str
    staff_id: uuid.UUID | None
    replaces: uuid.UUID | None
    idem: tuple[str, str, str] | None  # (scope, key, request hash)
    # Where messages about the booking go (None: none given; a change keeps the old one)
    # and their language.
    email: str | None = None
    locale: str = "ja"


_SLOT_STATE = f"s.id, {pg.SLOT_STATE_COLUMNS}"
# 1 when the booking is an operator's (it counts in slots.booked_phone), else 0.
_BY_PHONE = "($5::booking_channel = 'operator')::int"


def _book_sql(*, change: bool) -> str:
    """The booking statement; ``change`` adds what moving a booking needs (the booking it
    replaces, cancelled, and its place given back). Rendered twice, once each way (a
    confirm pays nothing for what only a change needs: every data-modifying CTE opens
    its table and indexes even when it touches no row), from this one text, so the slot
    guard, the dose rules, the insert and its records are written once for both.

    $1 slot, $2 municipality, $3 voucher, $4 confirmation code, $5 channel, $6 staff id,
    $7 actor kind, $8 actor id, $9-$11 idempotency (scope, key, request hash), $12 contact
    e-mail (or NULL), $13 its locale; a change also $14, the booking it replaces."""
    prior = (
        """
prior AS MATERIALIZED (
    -- The booking a change moves from: the resident's own, still confirmed, on another
    -- slot; locked, so a concurrent cancel of it waits for us.
    SELECT b.id, b.slot_id, b.dose_number, b.channel FROM bookings b
    WHERE b.id = $14 AND b.municipality_code = $2 AND b.voucher_number = $3
      AND b.status = 'confirmed' AND b.slot_id <> $1
    FOR UPDATE
),"""
        if change
        else ""
    )
    same_dose = (
        """
      -- A change moves a booking of the same dose, or books nothing.
      AND EXISTS (SELECT 1 FROM prior WHERE prior.dose_number = s.dose_number)"""
        if change
        else ""
    )
    replaced = (
        f"""
new AS MATERIALIZED (SELECT gen_random_uuid() AS id FROM slot),
old AS (
    -- Only once the new place is taken: the replaced booking is cancelled, and points
    -- at its replacement.
    UPDATE bookings AS b
    SET status = 'cancelled', cancelled_at = now(), updated_at = now(), replaced_by = new.id
    FROM prior, new
    WHERE b.id = prior.id
    RETURNING b.id, b.slot_id, b.channel, b.contact_email, b.contact_locale
),
old_slot AS (
    -- Its place goes back to the pool it came from (the old booking's channel).
    UPDATE slots AS s SET {pg.unbook_set("old.channel")}
    FROM old, events e
    WHERE s.id = old.slot_id AND s.booked > 0 AND e.id = s.event_id
    RETURNING {_SLOT_STATE}
),"""
        if change
        else ""
    )
    # A change's new booking takes the id its predecessor points at, and is inserted only
    # after the predecessor was cancelled (old feeds the INSERT).
    id_column, new_id, new_from = (
        "id, ",
        "new.id, ",
        "slot JOIN new ON true LEFT JOIN old ON true",
    )
    # The resident's address goes in with the row (no second statement on the hot path);
    # a change keeps the old booking's address and language unless a new address is given.
    contact = (
        "COALESCE($12::text, old.contact_email), "
        "CASE WHEN $12::text IS NULL THEN COALESCE(old.contact_locale, $13) ELSE $13 END"
    )
    if not change:
        id_column, new_id, new_from = ("", "", "slot")
        contact = "$12::text, $13::text"
    action = "booking.booking.changed" if change else "booking.booking.confirmed"
    before = "(SELECT jsonb_build_object('booking_id', old.id::text) FROM old)"
    state = ", ".join(f"slot.{name}" for name in pg.STATE_FIELDS)
    old_state = (
        ", old_slot.id::text AS old_slot_id, "
        + ", ".join(f"old_slot.{name} AS old_{name}" for name in pg.STATE_FIELDS)
        + "\nFROM doc, slot LEFT JOIN old_slot ON true"
        if change
        else "\nFROM doc, slot"
    )
    return f"""
WITH {prior}
slot AS (
    UPDATE slots AS s SET booked = s.booked + 1, booked_phone = s.booked_phone + {_BY_PHONE}
    FROM events e, vaccines v
    WHERE s.id = $1 AND e.id = s.event_id AND e.municipality_code = $2
      AND v.code = s.vaccine_code
      -- Promise: no oversell. A place is taken only while one is left (and the CHECK
      -- booked <= capacity stands behind this), only while the slot is bookable.
      AND s.booked < s.capacity AND {pg.BOOKABLE_SQL}
      -- Promise: the phone keeps its share. A web booking takes a place of the web pool
      -- only, never one the event keeps for the operators before its release time
      -- (pg.WEB_LEFT_SQL); an operator's may take any place left. The CHECK
      -- 0 <= booked_phone <= booked keeps the count it is judged by honest.
      AND ({_BY_PHONE} = 1 OR {pg.WEB_LEFT_SQL} > 0)
      -- Dose rules: dose n+1 only after dose n, at least the vaccine's interval apart,
      -- and never closer than that to a later dose already booked.
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
              AND n.slot_starts_at < s.starts_at
                  + make_interval(days => v.dose_interval_days)){same_dose}
    RETURNING {_SLOT_STATE}, s.clinic_id, s.starts_at, s.dose_number, s.vaccine_code
),{replaced}
ins AS (
    -- Promise: one booking per resident and dose. The unique index
    -- bookings_one_active_per_dose refuses a second active one from any channel; a
    -- change's old booking is cancelled first, so it never counts against its
    -- replacement.
    INSERT INTO bookings ({id_column}confirmation_code, slot_id, municipality_code, voucher_number,
                          dose_number, vaccine_code, slot_starts_at, channel, created_by,
                          contact_email, contact_locale)
    SELECT {new_id}$4, slot.id, $2, $3, slot.dose_number, slot.vaccine_code, slot.starts_at,
           $5::booking_channel, $6::uuid, {contact}
    FROM {new_from}
    RETURNING id, confirmation_code, slot_id, slot_starts_at, dose_number, vaccine_code,
              status, channel, created_at
),
doc AS (
    SELECT b.id, {pg.BOOKING_JSON} AS booking
    FROM ins b JOIN slot s ON true JOIN clinics c ON c.id = s.clinic_id
),
aud AS (
    INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target,
                           before, after)
    SELECT $2, $7, $8, '{action}', doc.id::text, {before if change else "NULL"}, doc.booking
    FROM doc
),
outb AS (
    INSERT INTO outbox (topic, payload) SELECT '{action}', doc.booking FROM doc
),
idem AS (
    INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)
    SELECT $9, $10, $11, 200, jsonb_build_object('booking', doc.booking) FROM doc
    WHERE $10::text IS NOT NULL
)
SELECT doc.booking::text AS booking, slot.id::text AS slot_id, {state}{old_state}
"""


CONFIRM_SQL = _book_sql(change=False)
CHANGE_SQL = _book_sql(change=True)

# Why the booking statement booked nothing, in the order a resident can act on ($5: the
# channel; a web booking finds the slot full when only places kept for the phone are left).
WHY_SQL = f"""
SELECT s.closed OR e.state = 'closed' AS closed,
       s.booked >= s.capacity OR ({_BY_PHONE} = 0 AND {pg.WEB_LEFT_SQL} <= 0) AS full,
       ({pg.BOOKABLE_SQL}) AS bookable, s.dose_number,
       b.id IS NOT NULL AS prior_found, b.status::text AS prior_status,
       b.slot_id = s.id AS prior_same_slot, b.dose_number AS prior_dose
FROM slots s JOIN events e ON e.id = s.event_id
LEFT JOIN bookings b ON b.id = $3 AND b.municipality_code = $2 AND b.voucher_number = $4
WHERE s.id = $1 AND e.municipality_code = $2
"""

# A change locks the booking it replaces, then both slots in id order, before CHANGE_SQL:
# two changes crossing each other (A: s1 -> s2, B: s2 -> s1) cannot deadlock, and a
# cancel of the same booking (booking row, then its slot) takes the locks in that order too.
LOCK_PRIOR_SQL = """
SELECT slot_id FROM bookings
WHERE id = $1 AND municipality_code = $2 AND voucher_number = $3 FOR UPDATE
"""
LOCK_SLOTS_SQL = "SELECT 1 FROM slots WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"


async def book(conn: Conn, req: BookRequest, lock_timeout_ms: int) -> pg.Outcome:
    """Book ``req`` (replacing ``req.replaces`` when given); a domain error for every
    refusal, and then nothing was written. A confirm is one statement in its own
    implicit transaction; a change takes its locks first, in one transaction."""
    if req.replaces is None:
        return await _book(conn, req)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
        prior_slot = await conn.fetchval(
            LOCK_PRIOR_SQL, req.replaces, req.municipality, req.voucher
        )
        await conn.execute(
            LOCK_SLOTS_SQL, [req.slot_id] + ([] if prior_slot is None else [prior_slot])
        )
        return await _book(conn, req)


async def _book(conn: Conn, req: BookRequest) -> pg.Outcome:
    scope, key, digest = req.idem if req.idem is not None else (None, None, None)
    args = [
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
        req.email,
        req.locale,
    ]
    try:
        if req.replaces is None:
            row = await conn.fetchrow(CONFIRM_SQL, *args)
        else:
            row = await conn.fetchrow(CHANGE_SQL, *args, req.replaces)
    except asyncpg.exceptions.UniqueViolationError as exc:
        if exc.constraint_name == "bookings_one_active_per_dose":
            raise errors.AlreadyBooked() from None
        if exc.constraint_name == "idempotency_keys_pkey":
            raise pg.IdempotentRace() from None
        raise
    if row is None:
        raise await _why_not(conn, req)
    states = [pg.slot_state(row)]
    if req.replaces is not None and row["old_slot_id"] is not None:
        states.append(pg.slot_state(row, "old_"))
    return pg.Outcome(response={"booking": json.loads(row["booking"])}, states=states)


async def _why_not(conn: Conn, req: BookRequest) -> errors.AppError:
    why = await conn.fetchrow(
        WHY_SQL, req.slot_id, req.municipality, req.replaces, req.voucher, req.channel
    )
    if why is None:
        return errors.NotFound()
    if req.replaces is not None:
        if not why["prior_found"]:
            return errors.NoBooking()
        if why["prior_status"] != "confirmed":
            return errors.BookingState()
        if why["prior_same_slot"]:
            return errors.Conflict()
    if why["closed"]:
        return errors.SlotClosed()
    if not why["bookable"]:
        return errors.SlotNotOpen()
    if why["full"]:
        return errors.SlotFull()
    return errors.DoseRule()
