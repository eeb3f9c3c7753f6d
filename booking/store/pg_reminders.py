"""The day-before reminders of one municipality and day, written to the outbox once.

Promise: each confirmed booking gets one ``booking.reminder.due`` row per run day, however
often and from however many processes the job runs. The run's row in ``reminder_runs`` is
claimed (INSERT ... ON CONFLICT DO NOTHING) in the very statement that writes the outbox
rows, which write only when the claim was this statement's: a concurrent second run waits
on the claim's unique key until the first commits, then finds it taken and writes nothing;
a run that fails writes neither, and the next one does the work.

The bookings are found through the slots of the municipality's events that start on the
next day (the ``slots (event_id, starts_at)`` index, then ``bookings (slot_id)``): the job
adds no index that every confirm would have to maintain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from booking.store.pg import BOOKING_JSON
from machiai.pg import Conn

TOPIC = "booking.reminder.due"
JST = timezone(timedelta(hours=9))  # Japan keeps no daylight saving time

# $1 municipality, $2 the run's day; $3, $4 the next day's bounds (Japan time).
REMIND_SQL = f"""
WITH due AS MATERIALIZED (
    SELECT {BOOKING_JSON}
           || jsonb_build_object('municipality_code', b.municipality_code) AS payload, b.id
    FROM events e
    JOIN slots s ON s.event_id = e.id
    JOIN bookings b ON b.slot_id = s.id
    JOIN clinics c ON c.id = s.clinic_id
    WHERE e.municipality_code = $1
      AND s.starts_at >= $3 AND s.starts_at < $4
      AND b.status = 'confirmed' AND b.municipality_code = $1
),
run AS (
    INSERT INTO reminder_runs (municipality_code, day, reminders)
    SELECT $1, $2, (SELECT count(*) FROM due)
    ON CONFLICT (municipality_code, day) DO NOTHING
    RETURNING reminders
),
outb AS (
    INSERT INTO outbox (topic, payload)
    SELECT '{TOPIC}', due.payload FROM due WHERE EXISTS (SELECT 1 FROM run)
    ORDER BY due.id
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM run) AS claimed, (SELECT count(*) FROM outb) AS written
"""


@dataclass(frozen=True, slots=True)
class RunResult:
    """``claimed``: this run wrote the day's reminders (False: an earlier run had)."""

    claimed: bool
    written: int


async def write_reminders(conn: Conn, municipality: str, day: date) -> RunResult:
    start = datetime.combine(day + timedelta(days=1), time(), JST)
    row = await conn.fetchrow(REMIND_SQL, municipality, day, start, start + timedelta(days=1))
    assert row is not None
    return RunResult(claimed=bool(row["claimed"]), written=int(row["written"]))


async def municipalities(conn: Conn) -> list[str]:
    return [r["code"] for r in await conn.fetch("SELECT code FROM municipalities ORDER BY code")]


async def ran(conn: Conn, municipality: str, day: date) -> bool:
    """True when the day's reminders of the municipality were written already (a cheap
    check before the job's statement, which stays the guard)."""
    found = await conn.fetchval(
        "SELECT 1 FROM reminder_runs WHERE municipality_code = $1 AND day = $2",
        municipality,
        day,
    )
    return found is not None
