"""The municipal administrator's events: create, change live, pause/resume/close — all audited.

Postgres holds the configuration (the truth a flushed Redis is rebuilt from);
Redis holds the live line and is changed in the same step: the Postgres row is
locked, Redis changed, then the row and an audit_log entry committed together.
The phone share (``phone_share_pct``, ``phone_release_at``) is booking's rule and lives
in Postgres only: the change bumps the event's slots (migration 0003) and booking's
refresh mirrors them into its own Redis within a second.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from machiai import inputs
from machiai.pg import Conn
from machiai.tokens import StaffClaims
from waitroom.errors import (
    SCRIPT_ERRORS,
    EventExists,
    EventNotFound,
    InvalidInput,
    ScriptError,
    StoreUnavailable,
)
from waitroom.services.line import Line
from waitroom.store import pg_store
from waitroom.store.keys import EVENT_ID
from waitroom.store.redis_store import RedisStore, ScriptRefused, SetEventResult

ACTIONS = {"pause": "paused", "resume": "resumed", "close": "closed"}
TIME_FIELDS = ("prequeue_at", "opens_at", "closes_at")
INT_FIELDS = {"admit_per_minute": (1, 1_000_000), "max_active": (1, 10_000_000)}
TEXT_FIELDS = {"name_ja": 200, "name_en": 200}
# The phone share (booking keeps phone_share_pct % of every slot for its operators until
# phone_release_at; null: until the event closes). Optional: 0 and null when not given.
PHONE_SHARE_PCT = (0, 100)
PHONE_FIELDS = ("phone_share_pct", "phone_release_at")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Actor:
    claims: StaffClaims
    request_id: str | None


def _bad(field: str) -> InvalidInput:
    return InvalidInput(
        f"Invalid value for {field}.", f"{field} の値が正しくありません。", detail={"field": field}
    )


def _text(field: str, value: Any, max_len: int) -> str:
    """Text of 1 to ``max_len`` characters that a database column can hold."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise _bad(field)
    if not inputs.usable_text(value):
        raise InvalidInput(
            f"{field} contains a character that cannot be stored (NUL or a lone surrogate).",
            f"{field} に使えない文字（NUL など）が含まれています。",
            code="invalid_character",
            detail={"field": field},
        )
    return value


def _instant(field: str, value: Any) -> datetime:
    """An ISO 8601 date-time with its offset, in UTC; one that cannot be held in UTC
    (``9999-12-31T23:59:59-09:00``) is refused like a malformed one."""
    parsed = inputs.parse_instant(value, None) if isinstance(value, str) else None
    if parsed is None:
        raise _bad(field)
    return parsed


def parse_changes(data: Any, *, creating: bool) -> dict[str, Any]:
    """Validated column values from a JSON object; unknown fields are refused."""
    if not isinstance(data, dict):
        raise InvalidInput("A JSON object is required.", "JSON オブジェクトを送ってください。")
    allowed = {*TIME_FIELDS, *INT_FIELDS, *TEXT_FIELDS, *PHONE_FIELDS, "eligibility_group"}
    if creating:
        allowed.add("id")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _bad(unknown[0])
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name in TIME_FIELDS or (name == "phone_release_at" and value is not None):
            out[name] = _instant(name, value)
        elif name == "phone_release_at":
            out[name] = None
        elif name in INT_FIELDS or name == "phone_share_pct":
            low, high = INT_FIELDS.get(name, PHONE_SHARE_PCT)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _bad(name)
            out[name] = value
        elif name in TEXT_FIELDS:
            out[name] = _text(name, value, TEXT_FIELDS[name])
        elif name == "eligibility_group":
            out[name] = None if value is None else _text(name, value, 40)
        elif name == "id":
            if not isinstance(value, str) or not EVENT_ID.match(value):
                raise _bad(name)
            out[name] = value
    if creating:
        required = {"id", *TIME_FIELDS, *INT_FIELDS, *TEXT_FIELDS}
        missing = sorted(required - set(out))
        if missing:
            raise _bad(missing[0])
    return out


def _check_times(row: dict[str, Any]) -> None:
    if not row["prequeue_at"] <= row["opens_at"] < row["closes_at"]:
        raise InvalidInput(
            "Times must satisfy prequeue_at <= opens_at < closes_at.",
            "時刻は 事前待機開始 ≦ 受付開始 < 受付終了 の順にしてください。",
        )


def _ms(value: datetime | None) -> int | None:
    return None if value is None else pg_store.to_ms(value)


async def create_event(pool: asyncpg.Pool, actor: Actor, data: Any) -> dict[str, Any]:
    values = parse_changes(data, creating=True)
    _check_times(values)
    try:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at,
                        opens_at, closes_at, admit_per_minute, max_active, eligibility_group,
                        phone_share_pct, phone_release_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                    ON CONFLICT (id) DO NOTHING RETURNING {pg_store.EVENT_COLUMNS}""",
                values["id"], actor.claims.municipality_code, values["name_ja"],
                values["name_en"], values["prequeue_at"], values["opens_at"],
                values["closes_at"], values["admit_per_minute"], values["max_active"],
                values.get("eligibility_group"), values.get("phone_share_pct", 0),
                values.get("phone_release_at"),
            )  # fmt: skip
            if row is None:
                raise EventExists()
            after = pg_store.event_json(row)
            await pg_store.write_audit(
                conn, municipality=actor.claims.municipality_code, actor_id=actor.claims.staff_id,
                action="waitroom.event.created", target=values["id"], before=None, after=after,
                request_id=actor.request_id,
            )  # fmt: skip
    except asyncpg.IntegrityConstraintViolationError:
        # E.g. the administrator's municipality is not registered: nothing was written.
        raise InvalidInput(
            "The event does not fit the database's rules.",
            "登録内容がデータベースの条件に合いません。",
        ) from None
    except pg_store.PG_ERRORS as exc:
        raise StoreUnavailable() from exc
    return after


async def change_event(
    pool: asyncpg.Pool,
    store: RedisStore,
    line: Line,
    actor: Actor,
    event_id: str,
    *,
    data: Any = None,
    action: str = "",
) -> dict[str, Any]:
    """Apply field changes and/or a state action live in Redis and durably in Postgres.

    Promise: Redis's live event is what Postgres says. Postgres takes the new values first
    (its constraints refuse before Redis changes); if anything fails after Redis changed
    (the state's write, the audit row, the commit), the live change is undone while the
    event's row lock still keeps other administrators out, and the request fails."""
    values = parse_changes(data if data is not None else {}, creating=False)
    applied: SetEventResult | None = None
    try:
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                row = await conn.fetchrow(
                    f"SELECT {pg_store.EVENT_COLUMNS} FROM events WHERE id = $1 FOR UPDATE",
                    event_id,
                )
                # Another municipality's event does not exist for this administrator.
                if row is None or row["municipality_code"] != actor.claims.municipality_code:
                    raise EventNotFound()
                before = pg_store.event_json(row)
                _check_times({**dict(row), **values})
                if values:
                    await _update(conn, event_id, values)
                await line.snapshot(event_id)  # loaded into Redis before the live change
                try:
                    applied = await store.set_event(
                        event_id,
                        action=action,
                        rate=values.get("admit_per_minute"),
                        cap=values.get("max_active"),
                        prequeue_at_ms=_ms(values.get("prequeue_at")),
                        opens_at_ms=_ms(values.get("opens_at")),
                        closes_at_ms=_ms(values.get("closes_at")),
                        now_ms=line.clock(),
                    )
                except ScriptRefused as refused:
                    error = SCRIPT_ERRORS.get(refused.code, SCRIPT_ERRORS[ScriptError.CLOSED])
                    raise error() from None
                after = pg_store.event_json(
                    await _update(conn, event_id, {"state": applied.new_state})
                )
                verb = ACTIONS[action] if action else "updated"
                await pg_store.write_audit(
                    conn, municipality=actor.claims.municipality_code,
                    actor_id=actor.claims.staff_id, action=f"waitroom.event.{verb}",
                    target=event_id, before=before, after=after, request_id=actor.request_id,
                )  # fmt: skip
                await tx.commit()
            except BaseException:
                if applied is not None:
                    await _undo(store, event_id, applied)
                # A broken connection cannot roll back; the server does when it drops it.
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
    except asyncpg.IntegrityConstraintViolationError:
        raise InvalidInput(
            "The change does not fit the database's rules.",
            "変更内容がデータベースの条件に合いません。",
        ) from None
    except pg_store.PG_ERRORS as exc:
        raise StoreUnavailable() from exc
    # This process sees the change at once (others at their next refresh); the configuration
    # (names, times) is re-read from Postgres on next use.
    line.forget(event_id)
    return after


async def _update(conn: Conn, event_id: str, columns: dict[str, Any]
                  ) -> asyncpg.Record:  # fmt: skip
    assignments = ", ".join(
        f"{name} = ${i + 2}" + ("::event_state" if name == "state" else "")
        for i, name in enumerate(columns)
    )
    updated = await conn.fetchrow(
        f"UPDATE events SET {assignments}, updated_at = now() WHERE id = $1 "
        f"RETURNING {pg_store.EVENT_COLUMNS}",
        event_id,
        *columns.values(),
    )
    assert updated is not None  # the row is locked: it cannot have gone
    return updated


async def _undo(store: RedisStore, event_id: str, applied: SetEventResult) -> None:
    """Put Redis's live event back; if Redis cannot be reached now, say so loudly (the
    values Postgres kept are the ones to set again)."""
    try:
        await store.restore_event(event_id, applied)
    except Exception:
        log.exception(
            "event %s: a live change failed in Postgres and Redis could not be put back "
            "(state %s, was %s); set the event again from the admin console",
            event_id, applied.new_state, applied.old_state,
        )  # fmt: skip


async def event_stats(pool: asyncpg.Pool, line: Line, actor: Actor, event_id: str
                      ) -> dict[str, Any]:  # fmt: skip
    row = await pg_store.fetch_event(pool, event_id)
    if row is None or row["municipality_code"] != actor.claims.municipality_code:
        raise EventNotFound()
    snap = await line.refresh(event_id)
    live = snap.live
    return {
        "event": pg_store.event_json(row),
        "live": {
            "state": live.state,
            "sold_out": snap.sold_out,
            "line_length": live.line_length,
            "prequeue_count": live.n_pre if live.n_pre is not None else live.prequeue,
            "admitted": live.admitted,
            "waiting": max(0, live.line_length - live.admitted) if live.n_pre is not None else 0,
            "active": live.active,
            "active_sessions": live.sessions,
            "active_admitted_without_pass": live.fresh,
            "active_passes_outstanding": live.outstanding,
            "admit_per_minute": live.rate,
            "max_active": live.cap,
            "backpressure_factor": round(live.factor, 3),
            # Admitted over the last whole minute; the pace the waits are told from beside it.
            "achieved_per_minute": snap.admitted_last_min,
            "forecast_per_minute": round(snap.forecast.pace_per_min, 1),
            "slots_left": live.remaining,
            "redis_time_ms": live.now_ms,
        },
    }
