"""The audit log as an administrator reads it: who did what, when, before and after.

Only the administrator's own municipality; a page at a time, newest first."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from booking.services.context import Ctx
from booking.store import pg
from booking.store.pg_audit_view import AuditEntry, AuditFilter, audit_page
from machiai.tokens import StaffClaims

__all__ = ["AuditFilter", "AuditPage", "Change", "audit_entries", "changes"]

PAGE_ROWS = 50


@dataclass(frozen=True, slots=True)
class Change:
    """One field an entry changed (``before`` / ``after`` as text; "" when absent)."""

    field: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    # The filter's ``before_id`` for the next (older) page; None on the last page.
    older: int | None


async def audit_entries(ctx: Ctx, admin: StaffClaims, filt: AuditFilter) -> AuditPage:
    async with pg.acquire(ctx.pool) as conn:
        rows = await audit_page(conn, admin.municipality_code, filt, PAGE_ROWS + 1)
    more = len(rows) > PAGE_ROWS
    rows = rows[:PAGE_ROWS]
    return AuditPage(rows, rows[-1].entry_id if more else None)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def changes(entry: AuditEntry) -> list[Change]:
    """What differs between before and after, field by field (objects), or as a whole."""
    before, after = entry.before, entry.after
    if isinstance(before, dict) or isinstance(after, dict):
        old = before if isinstance(before, dict) else {}
        new = after if isinstance(after, dict) else {}
        return [
            Change(name, _text(old.get(name)), _text(new.get(name)))
            for name in sorted(old.keys() | new.keys())
            if old.get(name) != new.get(name)
        ]
    if before is None and after is None:
        return []
    return [Change("", _text(before), _text(after))]
