"""Booking's shared SQL: connections, slot states and metas, booking views, audit, outbox,
idempotency records. The confirm and change statement is :mod:`booking.store.pg_confirm`.

Postgres is the truth: the guarded ``UPDATE ... AND booked < capacity`` and the
unique index on active (resident, dose) are the last line of defence whatever
Redis says. asyncpg failures become domain errors here, at the store boundary.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from booking import errors
from booking.domain import Clinic, SlotMeta, SlotState
from machiai.pg import Conn

Row: TypeAlias = "asyncpg.Record | Mapping[str, Any]"

RETRYABLE = (
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
)

# Promise: the phone keeps its share (migration 0003; booking/README.md). Before its event's
# release time (NULL: never, so for as long as the slot can be booked) a slot keeps
# KEPT_SQL = floor(capacity x pct / 100) places for the operator channel: the phone pool.
# Phone bookings and holds use it first and overflow into the rest, the web pool; web ones
# use only the web pool. So the phone occupies greatest(booked_phone, kept) places and a web
# booking needs WEB_LEFT_SQL > 0; after the release nothing is kept. Written here once for
# Postgres (the booking statement's guard, the counts shown); Redis gets ``kept`` and
# ``release_ms`` with every slot state and applies the same rule on its own clock
# (hold_slot-3.lua), so the release needs no job in either.
KEPT_SQL = "(s.capacity * e.phone_share_pct / 100)"
RELEASE_MS_SQL = (
    "coalesce((extract(epoch FROM e.phone_release_at) * 1000)::bigint, 253402300800000)"
)


def unbook_set(channel: str) -> str:
    """The SET of an UPDATE of ``slots`` giving one booking's place back, to the pool it came
    from: ``channel`` is the SQL of the booking's channel (promise "the phone keeps its
    share": an operator's booking counted in booked_phone too, whoever cancels it)."""
    return f"booked = booked - 1, booked_phone = booked_phone - ({channel} = 'operator')::int"


def web_left_sql(at: str = "now()") -> str:
    """A slot's web pool places left at the moment ``at`` (an SQL expression)."""
    kept = (
        f"(CASE WHEN e.phone_release_at IS NULL OR {at} < e.phone_release_at THEN {KEPT_SQL} "
        "ELSE 0 END)"
    )
    return f"(s.capacity - (s.booked - s.booked_phone) - greatest(s.booked_phone, {kept}))"


WEB_LEFT_SQL = web_left_sql()

# A slot's state as Redis mirrors it (SlotState), over a slot ``s`` and its event ``e``:
# written once for a rebuild, a cancel and the booking statement's RETURNING.
SLOT_STATE_COLUMNS = f"""
    s.version, s.capacity, s.booked, s.booked_phone, (s.closed OR e.state = 'closed') AS closed,
    (extract(epoch FROM greatest(e.opens_at, coalesce(s.publish_from, e.opens_at)))
        * 1000)::bigint AS from_ms,
    (extract(epoch FROM least(e.closes_at, coalesce(s.publish_until, e.closes_at), s.starts_at))
        * 1000)::bigint AS until_ms,
    {KEPT_SQL} AS kept, {RELEASE_MS_SQL} AS release_ms
"""
SLOT_STATE_SQL = f"""
SELECT s.id::text AS slot_id, {SLOT_STATE_COLUMNS}
FROM slots s JOIN events e ON e.id = s.event_id
"""


def bookable_sql(at: str = "now()") -> str:
    """Bookable at the moment ``at`` (an SQL expression): the event's window narrowed by the
    slot's, never in the past, never closed."""
    return f"""
    NOT s.closed AND e.state <> 'closed' AND s.starts_at > {at}
    AND {at} >= greatest(e.opens_at, coalesce(s.publish_from, e.opens_at))
    AND {at} < least(e.closes_at, coalesce(s.publish_until, e.closes_at))
"""


BOOKABLE_SQL = bookable_sql()

# The booking as every answer shows it (confirm, change, cancel, the lists), written once.
# Over a booking row ``b`` (a table row or an INSERT's RETURNING), its slot ``s`` and
# clinic ``c``; jsonb, so the confirm statement builds it in the same round trip.
BOOKING_JSON = """jsonb_build_object(
    'booking_id', b.id::text, 'confirmation_code', b.confirmation_code,
    'slot_id', b.slot_id::text, 'clinic_id', s.clinic_id::text,
    'clinic_name_ja', c.name_ja, 'clinic_name_en', c.name_en,
    'starts_at', b.slot_starts_at, 'dose_number', b.dose_number,
    'vaccine_code', b.vaccine_code, 'status', b.status::text,
    'channel', b.channel::text, 'created_at', b.created_at)"""
BOOKING_FROM = "bookings b JOIN slots s ON s.id = b.slot_id JOIN clinics c ON c.id = s.clinic_id"

_CODE_ALPHABET = "ACDEFGHJKLMNPQRTUVWXY34679"


def confirmation_code() -> str:
    """Eight characters without look-alikes (0/O, 1/I, 2/Z, 5/S, 8/B): easy to read by phone."""
    # One read of the system's randomness, not one per character; bytes past the
    # largest multiple of the alphabet's size are dropped so every letter is equally likely.
    size = len(_CODE_ALPHABET)
    limit = 256 - 256 % size
    letters: list[str] = []
    while len(letters) < 8:
        letters.extend(_CODE_ALPHABET[b % size] for b in secrets.token_bytes(16) if b < limit)
    return "".join(letters[:8])


# The names SLOT_STATE_COLUMNS gives, in SlotState's order after the slot id.
STATE_FIELDS = (
    "version", "capacity", "booked", "closed", "from_ms", "until_ms",
    "booked_phone", "kept", "release_ms",
)  # fmt: skip


def slot_state(row: Row, prefix: str = "") -> SlotState:
    """The SlotState in a row of SLOT_STATE_COLUMNS (``prefix``: their names' prefix)."""

    def number(name: str) -> int:
        return int(row[prefix + name])

    return SlotState(
        slot_id=str(row[prefix + "slot_id"]),
        version=number("version"),
        capacity=number("capacity"),
        booked=number("booked"),
        closed=bool(row[prefix + "closed"]),
        from_ms=number("from_ms"),
        until_ms=number("until_ms"),
        booked_phone=number("booked_phone"),
        kept=number("kept"),
        release_ms=number("release_ms"),
    )


def jsonable(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, uuid.UUID):
            out[key] = str(value)
        else:
            out[key] = value
    return out


@asynccontextmanager
async def acquire(pool: asyncpg.Pool, timeout_s: float = 10.0) -> AsyncIterator[Conn]:
    """A pooled connection within ``timeout_s``; Postgres being unreachable (or a
    statement past the pool's deadline) becomes ``busy``."""
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            yield conn
    except UNAVAILABLE as exc:
        raise errors.Busy() from exc


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A committed booking change: the response to give (and to replay) and the new state
    of every slot it touched, for the Redis mirror."""

    response: dict[str, Any]
    states: list[SlotState]


async def slot_states(conn: Conn, slot_ids: Sequence[str] | None = None) -> list[SlotState]:
    """State of the given slots, or of every slot whose event has not closed yet."""
    if slot_ids is None:
        rows = await conn.fetch(SLOT_STATE_SQL + " WHERE e.closes_at > now() - interval '1 day'")
    else:
        rows = await conn.fetch(SLOT_STATE_SQL + " WHERE s.id = ANY($1::uuid[])", list(slot_ids))
    return [slot_state(r) for r in rows]


async def event_slot_states(conn: Conn, event_ids: Sequence[str]) -> list[SlotState]:
    """State of every slot of the given events."""
    rows = await conn.fetch(SLOT_STATE_SQL + " WHERE s.event_id = ANY($1::text[])", event_ids)
    return [slot_state(r) for r in rows]


# What of an event shapes its slots' mirrored state (SLOT_STATE_COLUMNS): its window, whether
# it is closed, its phone share. Migration 0003 bumps the slots' versions when any of these
# changes, so a re-mirror is taken.
EVENT_MARK_SQL = (
    "concat_ws(':', (extract(epoch FROM e.opens_at) * 1000)::bigint, "
    "(extract(epoch FROM e.closes_at) * 1000)::bigint, (e.state = 'closed')::int, "
    f"e.phone_share_pct, {RELEASE_MS_SQL})"
)


async def event_marks(conn: Conn) -> dict[str, str]:
    """Each event not over, with what its slots' mirrors are built from as one string: to
    notice when an administrator changed it (times, closing, the phone share)."""
    rows = await conn.fetch(
        f"SELECT e.id, {EVENT_MARK_SQL} AS mark "
        "FROM events e WHERE e.closes_at > now() - interval '1 day'"
    )
    return {r["id"]: r["mark"] for r in rows}


SLOT_META_SQL = """
SELECT s.id::text AS slot_id, s.event_id, e.municipality_code, s.clinic_id::text AS clinic_id,
       c.area, s.starts_at, s.duration_min, s.dose_number, s.vaccine_code
FROM slots s JOIN events e ON e.id = s.event_id JOIN clinics c ON c.id = s.clinic_id
"""


def slot_meta(row: Row) -> SlotMeta:
    return SlotMeta(
        slot_id=row["slot_id"],
        event_id=row["event_id"],
        municipality=row["municipality_code"],
        clinic_id=row["clinic_id"],
        area=row["area"],
        starts_at=row["starts_at"],
        duration_min=row["duration_min"],
        dose_number=row["dose_number"],
        vaccine_code=row["vaccine_code"],
    )


async def fetch_slot_meta(conn: Conn, slot_id: str) -> SlotMeta | None:
    if parse_uuid(slot_id) is None:
        return None
    found = await fetch_slot_metas(conn, [slot_id])
    return found[0] if found else None


async def fetch_slot_metas(conn: Conn, slot_ids: Sequence[str]) -> list[SlotMeta]:
    rows = await conn.fetch(SLOT_META_SQL + " WHERE s.id = ANY($1::uuid[])", list(slot_ids))
    return [slot_meta(r) for r in rows]


async def fetch_coming_slot_metas(conn: Conn, limit: int) -> list[SlotMeta]:
    """Slots not yet started of events not yet over, soonest first."""
    rows = await conn.fetch(
        SLOT_META_SQL + " WHERE s.starts_at > now() AND e.closes_at > now() "
        "ORDER BY s.starts_at LIMIT $1",
        limit,
    )
    return [slot_meta(r) for r in rows]


async def fetch_event_slots(conn: Conn, event_id: str) -> list[SlotMeta]:
    rows = await conn.fetch(
        SLOT_META_SQL + " WHERE s.event_id = $1 AND s.starts_at > now() ORDER BY s.starts_at",
        event_id,
    )
    return [slot_meta(r) for r in rows]


async def fetch_clinics(conn: Conn, clinic_ids: Sequence[str]) -> list[Clinic]:
    rows = await conn.fetch(
        "SELECT id::text, name_ja, name_en, area, address FROM clinics WHERE id = ANY($1::uuid[])",
        list(clinic_ids),
    )
    return [Clinic(r["id"], r["name_ja"], r["name_en"], r["area"], r["address"]) for r in rows]


@dataclass(frozen=True, slots=True)
class DoseBooking:
    """One of a resident's active bookings, as the dose rules see it."""

    booking_id: str
    dose_number: int
    starts_at: datetime
    interval_days: int
    max_doses: int


# A resident's ($1, $2) active doses as one JSON text (a subquery: the sign-in's registry
# check brings it along).
_DOSES_SQL = (
    "coalesce((SELECT json_agg(json_build_array(b.id::text, b.dose_number, "
    "b.slot_starts_at, v.dose_interval_days, v.max_doses) ORDER BY b.dose_number) "
    "FROM bookings b JOIN vaccines v ON v.code = b.vaccine_code "
    "WHERE b.municipality_code = $1 AND b.voucher_number = $2 "
    "AND b.status IN ('confirmed', 'attended')), '[]')::text"
)


def _doses(raw: str) -> list[DoseBooking]:
    return [
        DoseBooking(str(i), int(n), datetime.fromisoformat(at), int(days), int(most))
        for i, n, at, days, most in json.loads(raw)
    ]


async def active_doses(conn: Conn, municipality: str, voucher: str) -> list[DoseBooking]:
    return _doses(await conn.fetchval(f"SELECT {_DOSES_SQL}", municipality, voucher))


async def open_events(conn: Conn) -> list[dict[str, Any]]:
    """Events not yet over, with their names and times, soonest opening first."""
    rows = await conn.fetch(
        "SELECT id, municipality_code, name_ja, name_en, opens_at, closes_at, state::text "
        "FROM events WHERE closes_at > now() AND state <> 'closed' ORDER BY opens_at, id LIMIT 50"
    )
    return [dict(r) for r in rows]


async def event_remaining(conn: Conn) -> dict[str, int]:
    """Places a web resident can book (the web pool's places left, WEB_LEFT_SQL) of bookable
    slots, per event that is not over: the line is made of web residents, so the places
    kept for the phone are not theirs to wait for — until the release, when they count.

    Invariant: an event that has not opened yet counts the places that will be bookable at
    its opening (the bookable rule taken at ``opens_at``), never 0 for not being open yet —
    the waitroom shows them to its pre-queue and must not read "sold out" at opening."""
    rows = await conn.fetch(
        f"""
        SELECT e.id, coalesce(sum(greatest({web_left_sql("moment.t")}, 0))
                              FILTER (WHERE {bookable_sql("moment.t")}), 0) AS remaining
        FROM events e CROSS JOIN LATERAL (SELECT greatest(now(), e.opens_at) AS t) AS moment
        LEFT JOIN slots s ON s.event_id = e.id
        WHERE e.closes_at > now() AND e.prequeue_at < now() + interval '1 day'
        GROUP BY e.id
        """
    )
    return {r["id"]: int(r["remaining"]) for r in rows}


async def public_summary(conn: Conn, event_id: str) -> list[dict[str, Any]]:
    """Places left per clinic and day of an event's bookable slots, as residents may book
    them (the web pool, WEB_LEFT_SQL)."""
    rows = await conn.fetch(
        f"""
        SELECT c.id::text AS clinic_id, c.name_ja, c.name_en, c.area,
               (s.starts_at AT TIME ZONE 'Asia/Tokyo')::date AS day,
               sum(greatest({WEB_LEFT_SQL}, 0)) AS remaining
        FROM slots s JOIN events e ON e.id = s.event_id JOIN clinics c ON c.id = s.clinic_id
        WHERE s.event_id = $1 AND {BOOKABLE_SQL}
        GROUP BY c.id, c.name_ja, c.name_en, c.area, day
        ORDER BY day, c.area, c.name_ja
        """,
        event_id,
    )
    return [
        {
            "date": r["day"].isoformat(),
            "clinic_id": r["clinic_id"],
            "clinic_name_ja": r["name_ja"],
            "clinic_name_en": r["name_en"],
            "area": r["area"],
            "remaining": int(r["remaining"]),
        }
        for r in rows
    ]


async def audit(
    conn: Conn,
    *,
    municipality: str | None,
    actor_kind: str,
    actor_id: str,
    action: str,
    target: str,
    before: Row | None = None,
    after: Row | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target, "
        "before, after) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)",
        municipality,
        actor_kind,
        actor_id,
        action,
        target,
        None if before is None else json.dumps(jsonable(before)),
        None if after is None else json.dumps(jsonable(after)),
    )


async def outbox(conn: Conn, topic: str, payload: Mapping[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO outbox (topic, payload) VALUES ($1, $2::jsonb)",
        topic,
        json.dumps(jsonable(payload)),
    )


async def idempotent_result(conn: Conn, scope: str, key: str) -> tuple[str, int, Any] | None:
    row = await conn.fetchrow(
        "SELECT request_hash, status_code, response FROM idempotency_keys "
        "WHERE scope = $1 AND key = $2",
        scope,
        key,
    )
    if row is None:
        return None
    return row["request_hash"], int(row["status_code"]), json.loads(row["response"])


class IdempotentRace(Exception):
    """A twin request with the same idempotency key committed first; roll back and replay."""


async def record_idempotent(
    conn: Conn, scope: str, key: str, request_hash: str, status: int, response: Any
) -> None:
    done = await conn.execute(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response) "
        "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING",
        scope,
        key,
        request_hash,
        status,
        json.dumps(response),
    )
    if done == "INSERT 0 0":
        raise IdempotentRace()


def bookings_of(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Rows with a ``booking`` column of BOOKING_JSON (as text), as dicts."""
    return [json.loads(r["booking"]) for r in rows]


async def resident_bookings(conn: Conn, municipality: str, voucher: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {BOOKING_JSON}::text AS booking FROM {BOOKING_FROM} "
        "WHERE b.municipality_code = $1 AND b.voucher_number = $2 "
        "ORDER BY b.dose_number, b.created_at",
        municipality,
        voucher,
    )
    return bookings_of(rows)


async def booking_by_id(
    conn: Conn,
    booking_id: uuid.UUID,
    municipality: str | None = None,
    voucher: str | None = None,
) -> dict[str, Any] | None:
    """The booking; with ``municipality`` and ``voucher``, only if it is that resident's."""
    rows = await conn.fetch(
        f"SELECT {BOOKING_JSON}::text AS booking FROM {BOOKING_FROM} WHERE b.id = $1 "
        "AND ($2::text IS NULL OR (b.municipality_code = $2 AND b.voucher_number = $3))",
        booking_id,
        municipality,
        voucher,
    )
    found = bookings_of(rows)
    return found[0] if found else None


async def identify(
    conn: Conn, municipality: str, voucher: str, birth_date: Any, group: str | None
) -> list[DoseBooking] | None:
    """The resident's active doses when the registry knows this voucher with this birth
    date and group (None when it does not), in one round trip: the page after a sign-in
    shows the dose that is due."""
    doses = await conn.fetchval(
        f"SELECT {_DOSES_SQL} FROM registry WHERE municipality_code = $1 "
        "AND voucher_number = $2 AND birth_date = $3 "
        "AND ($4::text IS NULL OR $4 = ANY(eligibility_groups))",
        municipality,
        voucher,
        birth_date,
        group,
    )
    return None if doses is None else _doses(doses)


async def fetch_event(conn: Conn, event_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, municipality_code, eligibility_group, opens_at, closes_at, state::text "
        "FROM events WHERE id = $1",
        event_id,
    )
