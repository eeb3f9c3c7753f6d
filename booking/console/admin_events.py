"""The administrators' events: list, create, edit, pause / resume / close, live figures.

GET  /staff/admin/events                     the municipality's events
GET  /staff/admin/events/new                 the form for a new event
POST /staff/admin/events                     create it (→ 303 to its page)
GET  /staff/admin/events/{id}                settings form and the actions
POST /staff/admin/events/{id}                change what the form changed
GET  /staff/admin/events/{id}/confirm        "are you sure?" for pause / resume / close
POST /staff/admin/events/{id}/state          do it (→ 303 to the event's page)
GET  /staff/admin/events/{id}/live           live figures, refreshing by itself

The waitroom does every change (booking.services.waitroom_admin): its validation, its
audit entries; this module turns its refusals into messages next to the fields. Times
are typed and shown in Japan time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.console.common import console_page, problem, render, see_other
from booking.http import JST, ctx_of
from booking.middleware import p95_ms
from booking.pages.common import Form, link
from booking.services import event_view, waitroom_admin
from booking.services.console import Console
from booking.services.waitroom_admin import WaitroomRefused
from machiai.i18n import N_, tr

EVENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
TIME_FIELDS = ("prequeue_at", "opens_at", "closes_at")
INT_FIELDS = {"admit_per_minute": (1, 1_000_000), "max_active": (1, 10_000_000)}
TEXT_FIELDS = {"name_ja": 200, "name_en": 200}
ACTIONS = ("pause", "resume", "close")
# How far back the live page's chart goes, and how often the page reloads itself.
CHART_MINUTES = 30
LIVE_REFRESH_S = 10

STATE_LABELS = {
    "scheduled": N_("Scheduled"),
    "prequeue": N_("Pre-queue open"),
    "open": N_("Open"),
    "paused": N_("Paused"),
    "sold_out": N_("Fully booked"),
    "closed": N_("Closed"),
}
ACTION_TEXTS = {
    "pause": (
        N_("Pause admission"),
        N_(
            "Nobody more is let into booking until you resume. The line keeps its order and "
            "people can still join it."
        ),
    ),
    "resume": (N_("Resume admission"), N_("Admission starts again at the set rate.")),
    "close": (
        N_("Close the event"),
        N_(
            "The line closes for good: nobody can join or be admitted any more. Bookings "
            "already made stay. This cannot be undone."
        ),
    ),
}
DONE = {
    "created": N_("The event is created."),
    "changed": N_("The changes are saved and in effect."),
    "paused": N_("Admission is paused."),
    "resumed": N_("Admission has resumed."),
    "closed": N_("The event is closed."),
}
PROBLEMS = {
    "name_ja": N_("Enter a name in Japanese (up to 200 characters)."),
    "name_en": N_("Enter a name in English (up to 200 characters)."),
    "id": N_("Use up to 63 lower-case letters, digits and hyphens (not a hyphen first)."),
    "prequeue_at": N_("Enter a date and time."),
    "opens_at": N_("Enter a date and time."),
    "closes_at": N_("Enter a date and time."),
    "admit_per_minute": N_("Enter a whole number from 1 to 1,000,000."),
    "max_active": N_("Enter a whole number from 1 to 10,000,000."),
    "phone_share_pct": N_("Enter a whole number from 0 to 100."),
    "phone_release_at": N_("Enter a date and time, or leave it empty."),
    "eligibility_group": N_("Up to 40 characters, or leave it empty."),
}


def local_input(value: Any) -> str:
    """A stored instant as a datetime-local field shows it (Japan time, to the minute)."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(value.astimezone(JST).strftime("%Y-%m-%dT%H:%M"))


def shown(value: Any) -> str:
    return local_input(value).replace("T", " ")


def _instant(raw: str) -> str | None:
    """A datetime-local value (Japan time) as ISO 8601 with its offset; None if not one."""
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=JST)
    if not 2000 <= parsed.year <= 2999:
        return None
    return parsed.isoformat()


def parse_event_form(f: Form, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The API fields the form gives, and a problem (a message id) per field at fault."""
    out: dict[str, Any] = {}
    problems: dict[str, str] = {}
    if creating:
        event_id = f.get("id").strip()
        if not EVENT_ID.fullmatch(event_id):
            problems["id"] = PROBLEMS["id"]
        out["id"] = event_id
    for name, max_len in TEXT_FIELDS.items():
        value = f.get(name).strip()
        if not 1 <= len(value) <= max_len:
            problems[name] = PROBLEMS[name]
        out[name] = value
    for name in TIME_FIELDS:
        instant = _instant(f.get(name))
        if instant is None:
            problems[name] = PROBLEMS[name]
        out[name] = instant
    for name, (low, high) in {**INT_FIELDS, "phone_share_pct": (0, 100)}.items():
        raw = f.get(name).strip().replace(",", "")
        if name == "phone_share_pct" and raw == "":
            raw = "0"
        if not raw.isdigit() or not low <= int(raw) <= high:
            problems[name] = PROBLEMS[name]
            continue
        out[name] = int(raw)
    release = f.get("phone_release_at").strip()
    out["phone_release_at"] = _instant(release) if release else None
    if release and out["phone_release_at"] is None:
        problems["phone_release_at"] = PROBLEMS["phone_release_at"]
    group = f.get("eligibility_group").strip()
    if len(group) > 40:
        problems["eligibility_group"] = PROBLEMS["eligibility_group"]
    if creating or group:
        out["eligibility_group"] = group or None
    return out, problems


def _form_values(event: dict[str, Any] | None, f: Form | None = None) -> dict[str, str]:
    """What the form's fields show: what was typed (after a refusal), else the event."""
    names = ("id", *TEXT_FIELDS, *TIME_FIELDS, *INT_FIELDS, "phone_share_pct")
    names += ("phone_release_at", "eligibility_group")
    if f is not None:
        return {name: f.get(name) for name in names}
    if event is None:
        return {name: "" for name in names} | {"phone_share_pct": "0"}
    values = {name: "" if event.get(name) is None else str(event[name]) for name in names}
    for name in (*TIME_FIELDS, "phone_release_at"):
        values[name] = local_input(event.get(name))
    return values


def _changed(event: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """Only the fields the administrator changed (a PATCH of everything would re-set
    times to the minute and touch what nobody meant to touch)."""
    out: dict[str, Any] = {}
    for name, value in wanted.items():
        current = event.get(name)
        if name in (*TIME_FIELDS, "phone_release_at"):
            if local_input(current) != local_input(value):
                out[name] = value
        elif name == "eligibility_group":
            if (current or None) != (value or None):
                out[name] = value
        elif current != value:
            out[name] = value
    return out


async def _event(request: Request, console: Console) -> dict[str, Any]:
    event_id = str(request.path_params["event_id"])
    if not EVENT_ID.fullmatch(event_id):
        raise errors.NotFound()
    event = await event_view.municipality_event(ctx_of(request), console.claims, event_id)
    if event is None:
        raise errors.NotFound()
    return event


def _waitroom(request: Request) -> str:
    return ctx_of(request).settings.waitroom_url


def _state(lang: str, state: str) -> str:
    return tr(lang, STATE_LABELS.get(state, state))


@console_page("admin")
async def events(request: Request, q: Form, lang: str, console: Console) -> Response:
    rows = await event_view.municipality_events(ctx_of(request), console.claims)
    listed = [
        {
            **row,
            "name": row["name_ja"] if lang == "ja" else row["name_en"],
            "state_label": _state(lang, row["state"]),
            "opens": shown(row["opens_at"]),
            "closes": shown(row["closes_at"]),
            "url": link(f"/staff/admin/events/{row['id']}", lang=lang),
        }
        for row in rows
    ]
    return render(
        request,
        "staff_admin_events.html",
        lang,
        {"title": tr(lang, N_("Events")), "events": listed},
        console,
    )


def _edit_page(
    request: Request,
    lang: str,
    console: Console,
    event: dict[str, Any] | None,
    values: dict[str, str],
    problems: dict[str, str],
    status: int = 200,
    notice: str = "",
) -> Response:
    creating = event is None
    title = tr(lang, N_("New event"))
    action_url = "/staff/admin/events"
    live_url = None
    actions = []
    if event is not None:
        title = event["name_ja"] if lang == "ja" else event["name_en"]
        action_url = f"/staff/admin/events/{event['id']}"
        live_url = link(f"/staff/admin/events/{event['id']}/live", lang=lang)
        state = event["state"]
        possible = {
            "pause": state not in ("paused", "closed"),
            "resume": state == "paused",
            "close": state != "closed",
        }
        actions = [
            {
                "label": tr(lang, ACTION_TEXTS[a][0]),
                "url": link(f"/staff/admin/events/{event['id']}/confirm", action=a, lang=lang),
                "danger": a == "close",
            }
            for a in ACTIONS
            if possible[a]
        ]
    return render(
        request,
        "staff_admin_event.html",
        lang,
        {
            "title": title,
            "event": event,
            "creating": creating,
            "state_label": "" if event is None else _state(lang, event["state"]),
            "values": values,
            "problems": problems,
            "field_problems": {k: v for k, v in problems.items() if k != "_"},
            "notice": notice,
            "actions": actions,
            "action_url": action_url,
            "live_url": live_url,
        },
        console,
        status=status,
    )


@console_page("admin")
async def new_event(request: Request, q: Form, lang: str, console: Console) -> Response:
    return _edit_page(request, lang, console, None, _form_values(None), {})


def _refusal_problems(refused: WaitroomRefused) -> dict[str, str]:
    """The waitroom's refusal next to the field it names (else at the top, as given)."""
    if refused.field in PROBLEMS:
        return {refused.field: PROBLEMS[refused.field]}
    return {"_": refused.message_en}


@console_page("admin")
async def create(request: Request, f: Form, lang: str, console: Console) -> Response:
    wanted, problems = parse_event_form(f, creating=True)
    if not problems:
        try:
            event = await waitroom_admin.create_event(
                _waitroom(request), console.token, lang, wanted
            )
        except WaitroomRefused as refused:
            if refused.code == "event_exists":
                problems = {"id": N_("An event with this id already exists.")}
            else:
                problems = _refusal_problems(refused)
        else:
            return see_other(link(f"/staff/admin/events/{event['id']}", done="created", lang=lang))
    return _edit_page(request, lang, console, None, _form_values(None, f), problems, status=422)


@console_page("admin")
async def event_page(request: Request, q: Form, lang: str, console: Console) -> Response:
    event = await _event(request, console)
    done = DONE.get(q.get("done"))
    notice = tr(lang, done) if done else ""
    return _edit_page(request, lang, console, event, _form_values(event), {}, notice=notice)


@console_page("admin")
async def change(request: Request, f: Form, lang: str, console: Console) -> Response:
    event = await _event(request, console)
    wanted, problems = parse_event_form(f, creating=False)
    if not problems:
        changes = _changed(event, wanted)
        if not changes:
            return see_other(link(f"/staff/admin/events/{event['id']}", lang=lang))
        try:
            await waitroom_admin.change_event(
                _waitroom(request), console.token, lang, event["id"], changes
            )
        except WaitroomRefused as refused:
            problems = _refusal_problems(refused)
        else:
            return see_other(link(f"/staff/admin/events/{event['id']}", done="changed", lang=lang))
    return _edit_page(request, lang, console, event, _form_values(event, f), problems, status=422)


@console_page("admin")
async def confirm_state(request: Request, q: Form, lang: str, console: Console) -> Response:
    event = await _event(request, console)
    action = q.get("action")
    if action not in ACTIONS:
        raise errors.NotFound()
    heading, consequence = ACTION_TEXTS[action]
    return render(
        request,
        "staff_admin_event_confirm.html",
        lang,
        {
            "title": tr(lang, heading),
            "event": event,
            "name": event["name_ja"] if lang == "ja" else event["name_en"],
            "consequence": tr(lang, consequence),
            "action": action,
            "back": link(f"/staff/admin/events/{event['id']}", lang=lang),
        },
        console,
    )


@console_page("admin")
async def change_state(request: Request, f: Form, lang: str, console: Console) -> Response:
    event = await _event(request, console)
    action = f.get("action")
    if action not in ACTIONS:
        raise errors.NotFound()
    try:
        await waitroom_admin.event_action(
            _waitroom(request), console.token, lang, event["id"], action
        )
    except WaitroomRefused as refused:
        return problem(request, lang, refused, console)
    done = {"pause": "paused", "resume": "resumed", "close": "closed"}[action]
    return see_other(link(f"/staff/admin/events/{event['id']}", done=done, lang=lang))


def chart(per_minute: dict[datetime, int], until: datetime) -> dict[str, Any]:
    """Bars of bookings per minute for the last CHART_MINUTES minutes, as SVG geometry
    (drawn by the template with attributes only: the pages' CSP allows no inline style)."""
    end = until.replace(second=0, microsecond=0)
    minutes = [end - timedelta(minutes=CHART_MINUTES - 1 - i) for i in range(CHART_MINUTES)]
    counts = [per_minute.get(m, 0) for m in minutes]
    top = max(max(counts), 1)
    width, height, gap = 600, 160, 2
    bar = width / CHART_MINUTES
    bars = [
        {
            "x": round(i * bar, 1),
            "y": round(height - n * height / top, 1),
            "w": round(bar - gap, 1),
            "h": round(n * height / top, 1),
            "n": n,
            "at": m.astimezone(JST).strftime("%H:%M"),
        }
        for i, (m, n) in enumerate(zip(minutes, counts, strict=True))
    ]
    return {
        "bars": bars,
        "top": top,
        "width": width,
        "height": height,
        "total": sum(counts),
        "first": minutes[0].astimezone(JST).strftime("%H:%M"),
        "last": minutes[-1].astimezone(JST).strftime("%H:%M"),
    }


@console_page("admin")
async def live(request: Request, q: Form, lang: str, console: Console) -> Response:
    event = await _event(request, console)
    now = datetime.now(UTC)
    per_minute = await event_view.bookings_per_minute(
        ctx_of(request), event["id"], now - timedelta(minutes=CHART_MINUTES), now
    )
    figures: dict[str, Any] | None
    try:
        stats = await waitroom_admin.event_stats(
            _waitroom(request), console.token, lang, event["id"]
        )
        figures = {
            name: "–"
            if value is None
            else f"{value:,}"
            if isinstance(value, int) and not isinstance(value, bool)
            else value
            for name, value in stats["live"].items()
        }
        figures["state_label"] = _state(lang, str(stats["live"].get("state", "")))
    except errors.AppError:
        # The page still shows what Postgres knows; the figures say they are missing.
        figures = None
    samples = getattr(request.app.state, "latency_samples", None)
    p95 = None if samples is None else round(p95_ms(samples))
    return render(
        request,
        "staff_admin_event_live.html",
        lang,
        {
            "title": tr(lang, N_("Live figures")),
            "name": event["name_ja"] if lang == "ja" else event["name_en"],
            "event_url": link(f"/staff/admin/events/{event['id']}", lang=lang),
            "live": figures,
            "booking_p95_ms": p95,
            "chart": chart(per_minute, now),
            "refresh_s": LIVE_REFRESH_S,
            "at": now.astimezone(JST).strftime("%H:%M:%S"),
        },
        console,
    )


def routes() -> list[Route]:
    base = "/staff/admin/events"
    return [
        Route(base, events, methods=["GET"]),
        Route(base, create, methods=["POST"]),
        Route(f"{base}/new", new_event, methods=["GET"]),
        Route(f"{base}/{{event_id}}", event_page, methods=["GET"]),
        Route(f"{base}/{{event_id}}", change, methods=["POST"]),
        Route(f"{base}/{{event_id}}/confirm", confirm_state, methods=["GET"]),
        Route(f"{base}/{{event_id}}/state", change_state, methods=["POST"]),
        Route(f"{base}/{{event_id}}/live", live, methods=["GET"]),
    ]
