"""SQL of the exports a city hands on: the vaccination ledger and a clinic's day list.

The ledger is read through a server-side cursor, a batch at a time, inside the caller's
transaction: a million rows never sit in the service's memory, and the count taken first
in the same snapshot is the number of rows the file gets.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, cast

from machiai.pg import Conn

# The columns in the ledger's order (booking/services/exports.py names them). The day is
# the appointment's, in Japan time; cells come out as text or whole numbers, ready to write.
_LEDGER_COLUMNS = (
    "b.voucher_number, b.municipality_code, "
    "to_char(b.slot_starts_at AT TIME ZONE 'Asia/Tokyo', 'YYYY-MM-DD'), "
    "c.code, c.name_ja, b.vaccine_code, b.dose_number::int, b.lot"
)
# Only attended bookings of the municipality's own, by the appointment's time (the index
# bookings_attended_by_time of migration 0011 keeps that order without a sort).
_LEDGER_WHERE = (
    "FROM bookings b JOIN slots s ON s.id = b.slot_id JOIN clinics c ON c.id = s.clinic_id "
    "WHERE b.municipality_code = $1 AND b.status = 'attended' "
    "AND b.slot_starts_at >= $2 AND b.slot_starts_at < $3"
)


async def municipality_exists(conn: Conn, code: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM municipalities WHERE code = $1", code))


async def count_ledger(conn: Conn, municipality: str, since: datetime, until: datetime) -> int:
    """Rows of the ledger in [since, until); in the caller's snapshot."""
    found = await conn.fetchval(f"SELECT count(*) {_LEDGER_WHERE}", municipality, since, until)
    return int(found or 0)


async def ledger_batches(
    conn: Conn, municipality: str, since: datetime, until: datetime, batch_rows: int
) -> AsyncIterator[Sequence[Sequence[Any]]]:
    """The ledger's rows in [since, until), ``batch_rows`` at a time from a cursor. Must run
    inside a transaction (a cursor lives as long as its transaction)."""
    cursor = await conn.cursor(
        f"SELECT {_LEDGER_COLUMNS} {_LEDGER_WHERE} ORDER BY b.slot_starts_at, b.id",
        municipality,
        since,
        until,
    )
    while True:
        batch = await cursor.fetch(batch_rows)
        if not batch:
            return
        # A record is a sequence of its values (index, len, iteration), which is all a
        # CSV writer asks of a row; no copy into tuples.
        yield cast(list[Sequence[Any]], batch)
        if len(batch) < batch_rows:
            return


async def clinic_municipality(conn: Conn, clinic_id: uuid.UUID) -> str | None:
    """The municipality of the clinic, or None when there is no such clinic."""
    found = await conn.fetchval("SELECT municipality_code FROM clinics WHERE id = $1", clinic_id)
    return None if found is None else str(found)
