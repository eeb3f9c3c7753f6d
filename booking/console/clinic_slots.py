"""The clinic's times: places, booked and left for a day or a week; capacity; closing
(with a confirmation step) and reopening.

GET  /staff/clinic/slots?date=&span=day|week
POST /staff/clinic/slots/capacity      → 303 to the list with a sentence; a capacity below
                                         what is booked, or not a number, shows the list
                                         again with the reason beside the field (409 / 422)
GET  /staff/clinic/slots/close?slot=&date=&span=   what closing does, and "yes, close"
POST /staff/clinic/slots/close         → 303 to the list
POST /staff/clinic/slots/reopen        → 303 to the list (reopening takes nothing away)

Every change goes through ``booking.services.clinic.update_slot``: the clinic's own slots
only (another clinic's is not found), never below what is booked, audited, and mirrored
to Redis at once.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from booking import errors
from booking.console.clinic_common import (
    ROLE,
    SLOTS,
    clinic_label,
    day_or_today,
    instant,
    notice,
    read_day,
    staff_of,
    today,
    whole_number,
)
from booking.console.common import console_page, render, see_other
from booking.http import JST, ctx_of
from booking.pages.common import Form, clock, day_label, link
from booking.services import clinic
from booking.services.console import Console
from machiai.i18n import N_, tr, tr_n

CLOSE = SLOTS + "/close"
SPANS = {"day": 1, "week": 7}
DAY_TITLE = N_("Times on %(day)s")
WEEK_TITLE = N_("Times for the week from %(day)s")
DONE = {
    "capacity": N_("%(day)s %(time)s: the capacity is now %(n)s."),
    "closed": N_("%(day)s %(time)s is closed for booking. Bookings already made stay."),
    "reopened": N_("%(day)s %(time)s is open for booking again."),
}


def _span(fields: Form) -> str:
    return "week" if fields.get("span") == "week" else "day"


def _where(day: date, span: str, lang: str, path: str = SLOTS, **params: Any) -> str:
    """A page of the list (the same day and span), with ``params``."""
    week = span if span == "week" else None
    return link(path, date=day.isoformat(), span=week, **params, lang=lang)


def _slot(slot: dict[str, Any], day: date, span: str, lang: str) -> dict[str, Any]:
    starts = instant(slot["starts_at"])
    ends = starts + timedelta(minutes=int(slot["duration_min"]))
    capacity, booked = int(slot["capacity"]), int(slot["booked"])
    return {
        "id": slot["slot_id"],
        "day": day_label(starts.astimezone(JST).date(), lang),
        "time": clock(starts),
        "until": clock(ends),
        "dose": slot["dose_number"],
        "vaccine": slot["vaccine_code"],
        "capacity": capacity,
        "booked": booked,
        "left": max(capacity - booked, 0),
        "closed": bool(slot["closed"]),
        "close_url": _where(day, span, lang, path=CLOSE, slot=slot["slot_id"]),
    }


async def _days(
    request: Request, console: Console, day: date, span: str, lang: str
) -> list[dict[str, Any]]:
    staff = staff_of(console)
    found = []
    for offset in range(SPANS[span]):
        d = day + timedelta(days=offset)
        slots = await clinic.clinic_slots(ctx_of(request), staff, d)
        found.append(
            {"label": day_label(d, lang), "slots": [_slot(s, day, span, lang) for s in slots]}
        )
    return found


def _notice(
    lang: str, fields: Form, days: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, str]:
    """The sentence for ``notice=`` (a fixed text per code, about the slot ``s=`` names
    when it is on this page), and the row to mark."""
    code = fields.get("notice")
    if code == "published":
        n = whole_number(fields.get("n"), 1_000_000) or 0
        text = tr_n(lang, "%(num)s new time is published.", "%(num)s new times are published.", n)
        return {"text": text, "ok": True}, ""
    row = next((s for d in days for s in d["slots"] if s["id"] == fields.get("s")), None)
    if code not in DONE or row is None:
        return None, ""
    values = {"day": row["day"], "time": row["time"], "n": row["capacity"]}
    return notice(lang, DONE[code], ok=True, **values), row["id"]


async def _page(
    request: Request,
    lang: str,
    console: Console,
    day: date,
    span: str,
    *,
    fields: Form | None = None,
    unreadable: bool = False,
    problems: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    days = await _days(request, console, day, span, lang)
    said, changed = _notice(lang, fields, days) if fields is not None else (None, "")
    if unreadable:
        said = notice(lang, N_("That date could not be read, so today is shown."), ok=False)
    step = timedelta(days=SPANS[span])
    week = span == "week"
    label = day_label(day, lang)
    return render(
        request,
        "staff_clinic_slots.html",
        lang,
        {
            "title": tr(lang, WEEK_TITLE if week else DAY_TITLE, day=label),
            "clinic": await clinic_label(request, staff_of(console), lang),
            "day": day.isoformat(),
            "span": span,
            "days": days,
            "is_today": day == today(),
            "prev": _where(day - step, span, lang),
            "next": _where(day + step, span, lang),
            "prev_label": tr(lang, N_("Previous week") if week else N_("Previous day")),
            "next_label": tr(lang, N_("Next week") if week else N_("Next day")),
            "today_url": _where(today(), span, lang),
            "other_span_url": _where(day, "day" if week else "week", lang),
            "notice": said,
            "changed": changed,
            "problems": problems or {},
            "typed": typed or {},
        },
        console,
        status=status,
    )


@console_page(ROLE)
async def slots_list(request: Request, fields: Form, lang: str, console: Console) -> Response:
    day, unreadable = day_or_today(fields)
    span = _span(fields)
    return await _page(request, lang, console, day, span, fields=fields, unreadable=unreadable)


@console_page(ROLE)
async def change_capacity(request: Request, fields: Form, lang: str, console: Console) -> Response:
    """A new capacity; never below the places booked (the service's check, in Postgres,
    under the slot's row lock), said with the number booked."""
    day = read_day(fields.get("date")) or today()
    span = _span(fields)
    slot_id, raw = fields.get("slot"), fields.get("capacity")
    capacity = whole_number(raw)
    if capacity is None:
        message = tr(lang, N_("Enter the capacity as a whole number from 0 to 100000."))
        return await _refused(request, lang, console, day, span, slot_id, raw, message, 422)
    try:
        await clinic.update_slot(ctx_of(request), staff_of(console), slot_id, capacity, None)
    except errors.CapacityBelowBooked as exc:
        booked = int(exc.detail.get("booked", 0))
        message = tr_n(
            lang,
            "%(num)s person has booked this time, so the capacity cannot be lower than "
            "%(num)s. Enter %(num)s or more.",
            "%(num)s people have booked this time, so the capacity cannot be lower than "
            "%(num)s. Enter %(num)s or more.",
            booked,
        )
        return await _refused(request, lang, console, day, span, slot_id, raw, message, 409)
    return see_other(_where(day, span, lang, notice="capacity", s=slot_id) + f"#s-{slot_id}")


async def _refused(
    request: Request,
    lang: str,
    console: Console,
    day: date,
    span: str,
    slot_id: str,
    typed: str,
    message: str,
    status: int,
) -> Response:
    """The list again, as it was, with what was typed and why it was refused beside it
    (and in the summary at the top, which links to the field)."""
    return await _page(
        request,
        lang,
        console,
        day,
        span,
        problems={f"cap-{slot_id}": message},
        typed={slot_id: typed[:20]},
        status=status,
    )


async def _find(
    request: Request, console: Console, slot_id: str, day: date, span: str
) -> dict[str, Any]:
    """This clinic's slot among the days of the list it was chosen from; another clinic's,
    or one that is not there, is not found."""
    for offset in range(SPANS[span]):
        d = day + timedelta(days=offset)
        for slot in await clinic.clinic_slots(ctx_of(request), staff_of(console), d):
            if slot["slot_id"] == slot_id:
                return slot
    raise errors.NotFound()


@console_page(ROLE)
async def close_confirm(request: Request, fields: Form, lang: str, console: Console) -> Response:
    """Closing is the destructive step of this page: it asks first, saying what it does."""
    day, _ = day_or_today(fields)
    span = _span(fields)
    slot = _slot(await _find(request, console, fields.get("slot"), day, span), day, span, lang)
    if slot["closed"]:
        return see_other(_where(day, span, lang))
    return render(
        request,
        "staff_clinic_close.html",
        lang,
        {
            "title": tr(lang, N_("Close this time for booking?")),
            "slot": slot,
            "day": day.isoformat(),
            "span": span,
            "back": _where(day, span, lang) + f"#s-{slot['id']}",
        },
        console,
    )


async def _open_or_close(
    request: Request, fields: Form, lang: str, console: Console, closed: bool
) -> Response:
    day = read_day(fields.get("date")) or today()
    span = _span(fields)
    slot_id = fields.get("slot")
    await clinic.update_slot(ctx_of(request), staff_of(console), slot_id, None, closed)
    code = "closed" if closed else "reopened"
    return see_other(_where(day, span, lang, notice=code, s=slot_id) + f"#s-{slot_id}")


@console_page(ROLE)
async def close(request: Request, fields: Form, lang: str, console: Console) -> Response:
    return await _open_or_close(request, fields, lang, console, closed=True)


@console_page(ROLE)
async def reopen(request: Request, fields: Form, lang: str, console: Console) -> Response:
    return await _open_or_close(request, fields, lang, console, closed=False)
