"""Redeemed admission passes in Postgres (migration 0005): the record of "this pass
opened a session" that a Redis loss does not take away."""

from __future__ import annotations

from machiai.pg import Conn


async def redeem(conn: Conn, event_id: str, pass_id: str, session_id: str, keep_s: int) -> bool:
    """Record that ``pass_id`` opened ``session_id``; False when it had opened one before
    (promise: a pass opens one session; the primary key decides between twins)."""
    inserted = await conn.fetchval(
        "INSERT INTO used_passes (pass_id, event_id, session_id, keep_until) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4)) "
        "ON CONFLICT (pass_id) DO NOTHING RETURNING true",
        pass_id,
        event_id,
        session_id,
        float(keep_s),
    )
    return inserted is not None


async def release(conn: Conn, pass_id: str, session_id: str) -> None:
    """Undo :func:`redeem` for a session that could not be opened after all (Redis refused
    or was unreachable): the resident may use the pass again."""
    await conn.execute(
        "DELETE FROM used_passes WHERE pass_id = $1 AND session_id = $2", pass_id, session_id
    )


async def forget_expired(conn: Conn) -> int:
    """Delete the rows of passes that are refused as expired anyway; how many went."""
    status = await conn.execute("DELETE FROM used_passes WHERE keep_until < now()")
    return int(status.rsplit(" ", 1)[-1])
