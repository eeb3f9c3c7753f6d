"""Staff console sessions in Redis: one key per signed-in browser, expiring when idle.

Single-key commands only (any cluster slot). Redis losing the keys signs staff out; they
sign in again (nothing a console does lives only here)."""

from __future__ import annotations

import json
from typing import Any

from booking.store import keys
from booking.store.redis_store import RedisStore, _translate


@_translate
async def open_console(
    store: RedisStore, session_id: str, record: dict[str, str], idle_ms: int
) -> None:
    key = keys.staff_console(store.prefix, session_id)
    await store.wire.execute("SET", key, json.dumps(record), "PX", idle_ms)


@_translate
async def touch_console(store: RedisStore, session_id: str, idle_ms: int) -> dict[str, Any] | None:
    """The session's record, its idle clock started again (one round trip); None when it
    ended or idled out."""
    key = keys.staff_console(store.prefix, session_id)
    raw = await store.wire.execute("GETEX", key, "PX", idle_ms)
    if raw is None:
        return None
    found: dict[str, Any] = json.loads(raw)
    return found


@_translate
async def end_console(store: RedisStore, session_id: str) -> None:
    await store.wire.execute("DEL", keys.staff_console(store.prefix, session_id))
