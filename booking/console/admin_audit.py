"""The audit log viewer (administrators): GET /staff/admin/audit, filterable and paged.

Filters travel in the query (a GET form: a filtered view is a link one can share with a
colleague); nothing here writes."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking.console.common import console_page, render
from booking.http import JST, ctx_of
from booking.pages.common import Form, link
from booking.services.audit_view import AuditFilter, audit_entries, changes
from booking.services.console import Console
from machiai.i18n import N_, tr

ACTION = re.compile(r"[a-z_]+(\.[a-z_]+)*")
FILTERS = ("actor", "action", "target", "from", "to")


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


def _start(day: date) -> datetime:
    """Midnight in Japan at the start of ``day`` (the log's days are Japan's)."""
    return datetime.combine(day, time(), JST)


def parse_filter(q: Form) -> tuple[AuditFilter, dict[str, str]]:
    """The filter the query asks for, and a problem per field that does not parse."""
    problems: dict[str, str] = {}
    action = q.get("action").strip() or None
    if action is not None and not ACTION.fullmatch(action):
        problems["action"] = N_("An action looks like booking.booking.confirmed (or its start).")
    since_day = _day(q.get("from")) if q.get("from").strip() else None
    until_day = _day(q.get("to")) if q.get("to").strip() else None
    if q.get("from").strip() and since_day is None:
        problems["from"] = N_("Enter a date as 2026-12-01.")
    if q.get("to").strip() and until_day is None:
        problems["to"] = N_("Enter a date as 2026-12-01.")
    before_raw = q.get("before")
    filt = AuditFilter(
        actor=q.get("actor").strip()[:100] or None,
        action=None if "action" in problems else action,
        target=q.get("target").strip()[:200] or None,
        since=None if since_day is None else _start(since_day),
        # "To" a day includes that whole day.
        until=None if until_day is None else _start(until_day + timedelta(days=1)),
        before_id=int(before_raw) if before_raw.isdigit() and len(before_raw) < 19 else None,
    )
    return filt, problems


ACTOR_KINDS = {"resident": N_("Resident"), "system": N_("System")}


@console_page("admin")
async def audit(request: Request, q: Form, lang: str, console: Console) -> Response:
    filt, problems = parse_filter(q)
    page = await audit_entries(ctx_of(request), console.claims, filt)
    values = {name: q.get(name) for name in FILTERS}
    rows = [
        {
            "entry": e,
            "at": e.at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S"),
            "who": e.actor_login
            or (tr(lang, ACTOR_KINDS[e.actor_kind]) if e.actor_kind in ACTOR_KINDS else e.actor_id),
            "changes": changes(e),
        }
        for e in page.entries
    ]
    kept = {name: value for name, value in values.items() if value}
    return render(
        request,
        "staff_admin_audit.html",
        lang,
        {
            "title": tr(lang, N_("Audit log")),
            "rows": rows,
            "values": values,
            "problems": problems,
            "older": None
            if page.older is None
            else link("/staff/admin/audit", **kept, before=page.older, lang=lang),
            "newest": link("/staff/admin/audit", **kept, lang=lang) if filt.before_id else None,
        },
        console,
        status=422 if problems else 200,
    )


def routes() -> list[Route]:
    return [Route("/staff/admin/audit", audit, methods=["GET"])]
