"""SQL of the administrators' event pages: the municipality's events, and an event's
bookings per minute (the console's chart; the truth, from Postgres)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from machiai.pg import Conn

EVENT_FIELDS = (
    "id, name_ja, name_en, prequeue_at, opens_at, closes_at, admit_per_minute, max_active, "
    "eligibility_group, state::text AS state, phone_share_pct, phone_release_at"
)


async def municipality_events(conn: Conn, municipality: str) -> list[dict[str, Any]]:
    """Every event of the municipality, the ones still to come or running first."""
    rows = await conn.fetch(
        f"SELECT {EVENT_FIELDS} FROM events WHERE municipality_code = $1 "
        "ORDER BY (state = 'closed' OR closes_at < now()), opens_at DESC, id LIMIT 200",
        municipality,
    )
    return [dict(r) for r in rows]


async def municipality_event(conn: Conn, municipality: str, event_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {EVENT_FIELDS} FROM events WHERE id = $1 AND municipality_code = $2",
        event_id,
        municipality,
    )
    return None if row is None else dict(row)


async def bookings_per_minute(
    conn: Conn, event_id: str, since: datetime, until: datetime
) -> dict[datetime, int]:
    """Bookings made (by web and phone) per minute in [since, until), by the minute's start."""
    rows = await conn.fetch(
        "SELECT date_trunc('minute', b.created_at) AS minute, count(*) AS n "
        "FROM bookings b JOIN slots s ON s.id = b.slot_id "
        "WHERE s.event_id = $1 AND b.created_at >= $2 AND b.created_at < $3 GROUP BY 1",
        event_id,
        since,
        until,
    )
    return {r["minute"]: int(r["n"]) for r in rows}
