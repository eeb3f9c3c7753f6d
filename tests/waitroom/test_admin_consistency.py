"""A live change that Postgres does not keep is not kept by Redis either.

Postgres is made to fail at the last step of an administrator's change (the audit row, after
Redis's live event was changed): by refusing it (a constraint, as a database rule would) and
by dropping the connection (as a Postgres restart does). Each time the answer is a clear
4xx / 503 and Redis's live event is exactly what it was.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.waitroom.conftest import (
    T0_MS,
    AppFactory,
    add_event,
    at,
    running,
    staff_token,
    store_of,
)
from waitroom.store import keys

FAIL_AT_AUDIT = """
CREATE TABLE IF NOT EXISTS test_fail_audit (target text PRIMARY KEY, mode text NOT NULL);
CREATE OR REPLACE FUNCTION test_fail_audit() RETURNS trigger AS $$
DECLARE m text;
BEGIN
    SELECT mode INTO m FROM test_fail_audit WHERE target = NEW.target;
    IF m = 'refuse' THEN
        RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
    ELSIF m = 'drop' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS test_fail_audit ON audit_log;
CREATE TRIGGER test_fail_audit BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION test_fail_audit();
"""


async def _row(db: asyncpg.Pool, event_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM events WHERE id = $1", event_id)
    assert row is not None
    return dict(row)


CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("", {"admit_per_minute": 7, "max_active": 3}),
    ("", {"closes_at": at(T0_MS + 9000 * 86400_000).isoformat()}),
    ("pause", {}),
    ("close", {}),
]


@pytest.mark.parametrize(
    "mode, status, code", [("refuse", 422, "invalid_input"), ("drop", 503, "busy")]
)
async def test_a_change_postgres_does_not_keep_leaves_redis_as_it_was(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Any, mode: str, status: int, code: str
) -> None:
    event_id = await add_event(db, rate=60, cap=1000)
    auth = {"authorization": f"Bearer {staff_token(tokens)}"}
    app = make_app()
    async with running(app) as client:
        # Redis holds the live event (a status read loads it).
        assert (
            await client.get(f"/admin/events/{event_id}/stats", headers=auth)
        ).status_code == 200
        store = store_of(app)
        event_key = keys.event(store.prefix, event_id)
        live_before = await store.client.hgetall(event_key)
        row_before = await _row(db, event_id)
        await db.execute(FAIL_AT_AUDIT)
        await db.execute("INSERT INTO test_fail_audit VALUES ($1, $2)", event_id, mode)
        for action, fields in CHANGES:
            path = f"/admin/events/{event_id}" + (f"/{action}" if action else "")
            if action:
                answer = await client.post(path, headers=auth)
            else:
                answer = await client.patch(path, json=fields, headers=auth)
            assert answer.status_code == status, (action, fields, answer.text)
            assert answer.json()["error"]["code"] == code
            assert await store.client.hgetall(event_key) == live_before, (action, fields)
            assert await _row(db, event_id) == (row_before)
        # Postgres keeps changes again: the same change goes through, in both places.
        await db.execute("DELETE FROM test_fail_audit")
        done = await client.patch(
            f"/admin/events/{event_id}", json={"admit_per_minute": 7}, headers=auth
        )
        assert done.status_code == 200, done.text
        assert (await store.client.hget(event_key, "rate")) in (b"7", "7")
        paused = await client.post(f"/admin/events/{event_id}/pause", headers=auth)
        assert paused.status_code == 200
        assert (await store.client.hget(event_key, "state")) in (b"paused", "paused")
        assert await db.fetchval("SELECT state::text FROM events WHERE id = $1", event_id) == (
            "paused"
        )
