"""Postgres side of the waitroom: event configuration (the truth) and the audit log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from machiai.pg import Conn
from waitroom.errors import StoreUnavailable
from waitroom.store.redis_store import EventConfig

EVENT_COLUMNS = (
    "id, municipality_code, name_ja, name_en, prequeue_at, opens_at, closes_at, "
    "admit_per_minute, max_active, eligibility_group, state::text AS state, "
    "phone_share_pct, phone_release_at"
)
PG_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError)


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def config_from_row(row: asyncpg.Record) -> EventConfig:
    state = str(row["state"])
    return EventConfig(
        event_id=row["id"],
        municipality=row["municipality_code"],
        name_ja=row["name_ja"],
        name_en=row["name_en"],
        # Sold out is not a configured state: it follows booking's inventory live.
        state="open" if state == "sold_out" else state,
        rate=row["admit_per_minute"],
        cap=row["max_active"],
        prequeue_at_ms=to_ms(row["prequeue_at"]),
        opens_at_ms=to_ms(row["opens_at"]),
        closes_at_ms=to_ms(row["closes_at"]),
    )


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "municipality_code": row["municipality_code"],
        "name_ja": row["name_ja"],
        "name_en": row["name_en"],
        "prequeue_at": row["prequeue_at"].isoformat(),
        "opens_at": row["opens_at"].isoformat(),
        "closes_at": row["closes_at"].isoformat(),
        "admit_per_minute": row["admit_per_minute"],
        "max_active": row["max_active"],
        "eligibility_group": row["eligibility_group"],
        "state": str(row["state"]),
        # The share of every slot booking keeps for the phone until the release (None:
        # until the event closes); the admin API's own, shown nowhere else.
        "phone_share_pct": row["phone_share_pct"],
        "phone_release_at": (
            None if row["phone_release_at"] is None else row["phone_release_at"].isoformat()
        ),
    }


async def fetch_event(pool: asyncpg.Pool, event_id: str) -> asyncpg.Record | None:
    try:
        row: asyncpg.Record | None = await pool.fetchrow(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1", event_id
        )
    except PG_ERRORS as exc:
        raise StoreUnavailable() from exc
    return row


async def load_config(pool: asyncpg.Pool, event_id: str) -> EventConfig | None:
    row = await fetch_event(pool, event_id)
    return None if row is None else config_from_row(row)


async def write_audit(
    conn: Conn,
    *,
    municipality: str,
    actor_id: str,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    request_id: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target, "
        "before, after, request_id) VALUES ($1, 'staff', $2, $3, $4, $5::jsonb, $6::jsonb, $7)",
        municipality,
        actor_id,
        action,
        target,
        None if before is None else json.dumps(before),
        None if after is None else json.dumps(after),
        request_id,
    )


async def record_clock_state(pool: asyncpg.Pool, event_id: str, old: str, new: str) -> None:
    """Write a state the clock brought (opening, closing) into the events row, audited once.

    Idempotent across processes: only the process whose UPDATE changes the row writes
    the audit entry. Only closing (closes_at) overrides an administrator's pause."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE events SET state = $2::event_state, updated_at = now() "
            "WHERE id = $1 AND state::text NOT IN ($2, 'closed') "
            "AND ($2 = 'closed' OR state::text NOT IN ('paused', 'sold_out')) "
            "RETURNING municipality_code",
            event_id,
            new,
        )
        if row is not None:
            await conn.execute(
                "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target, "
                "before, after) VALUES ($1, 'system', 'waitroom', 'waitroom.event.clock_state', "
                "$2, $3::jsonb, $4::jsonb)",
                row["municipality_code"],
                event_id,
                json.dumps({"state": old}),
                json.dumps({"state": new}),
            )


async def joinable_events(
    pool: asyncpg.Pool, now: datetime, limit: int = 20
) -> list[asyncpg.Record]:
    """Events a resident may queue for at ``now`` (pre-queue begun, not closed), soonest
    opening first: what the home page lists."""
    try:
        rows: list[asyncpg.Record] = await pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE state::text <> 'closed' "
            "AND prequeue_at <= $1 AND closes_at > $1 ORDER BY opens_at, id LIMIT $2",
            now,
            limit,
        )
    except PG_ERRORS as exc:
        raise StoreUnavailable() from exc
    return rows
