"""SQL of the administrators' audit log viewer: one municipality's entries, newest first,
filtered, a page at a time (keyset on the id: page 500 costs what page 1 does)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from machiai.pg import Conn


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What the administrator narrowed the log to; None = anything."""

    actor: str | None = None  # a staff login, or an actor id as written
    action: str | None = None  # a prefix: "booking.booking" finds confirmed and cancelled
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # the page after the one that ended at this id


@dataclass(frozen=True, slots=True)
class AuditEntry:
    entry_id: int
    at: datetime
    actor_kind: str
    actor_id: str
    actor_login: str | None
    action: str
    target: str
    before: Any
    after: Any
    request_id: str | None


# The staff table resolves staff actors to their login (ids mean nothing to a reader); a
# filter by login finds the id first, so the log's index on (municipality, at) still serves.
_PAGE_SQL = """
SELECT a.id, a.at, a.actor_kind, a.actor_id, s.login, a.action, a.target,
       a.before::text AS before, a.after::text AS after, a.request_id
FROM audit_log a
LEFT JOIN staff s ON a.actor_kind = 'staff' AND s.id::text = a.actor_id
WHERE a.municipality_code = $1
  AND ($2::text IS NULL OR a.actor_id = $2
       OR a.actor_id IN (SELECT id::text FROM staff WHERE login = $2 AND municipality_code = $1))
  AND ($3::text IS NULL OR a.action = $3 OR starts_with(a.action, $3 || '.'))
  AND ($4::text IS NULL OR a.target = $4)
  AND ($5::timestamptz IS NULL OR a.at >= $5)
  AND ($6::timestamptz IS NULL OR a.at < $6)
  AND ($7::bigint IS NULL OR a.id < $7)
ORDER BY a.id DESC
LIMIT $8
"""


async def audit_page(
    conn: Conn, municipality: str, filt: AuditFilter, limit: int
) -> list[AuditEntry]:
    rows = await conn.fetch(
        _PAGE_SQL,
        municipality,
        filt.actor,
        filt.action,
        filt.target,
        filt.since,
        filt.until,
        filt.before_id,
        limit,
    )
    return [
        AuditEntry(
            int(r["id"]),
            r["at"],
            r["actor_kind"],
            r["actor_id"],
            r["login"],
            r["action"],
            r["target"],
            None if r["before"] is None else json.loads(r["before"]),
            None if r["after"] is None else json.loads(r["after"]),
            r["request_id"],
        )
        for r in rows
    ]
