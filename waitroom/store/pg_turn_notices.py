"""Postgres side of "your turn is near": the outbox rows the delivery worker sends.

Promise: one ``waitroom.turn.near`` outbox row per (event, ticket), however often the
notifiers hand an opt-in out (their claims in Redis are at-least-once): the row is written
only in the statement that inserts the ticket's ``turn_notices`` key, and a key already
there (an earlier write, or a concurrent one, which this one waits for) writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from waitroom.errors import StoreUnavailable
from waitroom.store.pg_store import PG_ERRORS

TOPIC = "waitroom.turn.near"

WRITE_SQL = f"""
WITH given AS (
    SELECT * FROM unnest($2::text[], $3::jsonb[]) AS g(ticket_id, payload)
),
fresh AS (
    INSERT INTO turn_notices (event_id, ticket_id)
    SELECT $1, ticket_id FROM given
    ON CONFLICT (event_id, ticket_id) DO NOTHING
    RETURNING ticket_id
),
outb AS (
    INSERT INTO outbox (topic, payload)
    SELECT '{TOPIC}', given.payload FROM given JOIN fresh USING (ticket_id)
    RETURNING id
)
SELECT count(*) FROM outb
"""


async def write_turn_notices(
    pool: asyncpg.Pool, event_id: str, notices: Sequence[tuple[str, dict[str, Any]]]
) -> int:
    """Write the outbox rows of ``notices`` ((ticket id, payload)); returns how many were
    new (the others had been written before). Postgres unreachable: StoreUnavailable,
    and nothing was written."""
    if not notices:
        return 0
    tickets = [ticket_id for ticket_id, _ in notices]
    payloads = [json.dumps(payload, ensure_ascii=False) for _, payload in notices]
    try:
        written = await pool.fetchval(WRITE_SQL, event_id, tickets, payloads)
    except PG_ERRORS as exc:
        raise StoreUnavailable() from exc
    return int(written)
