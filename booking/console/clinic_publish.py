"""Publishing times: a weekly plan, or pasted CSV rows; each previewed before anything is
written.

GET  /staff/clinic/plan              the plan's form (event, days, hours, slot length, …)
POST /staff/clinic/plan/preview      the times it makes, by day, and every problem; writes nothing
POST /staff/clinic/plan/publish      → 303 to the week's times (times already published are
                                     left as they are)
GET  /staff/clinic/import            a text box for the CSV
POST /staff/clinic/import/preview    every row that would be created, and every bad row and
                                     column with the reason; writes nothing
POST /staff/clinic/import/apply      → 303 to the times (all rows or none)

The preview → apply step carries the content itself: the plan's fields, or the CSV text,
in hidden fields of the apply form, and the apply step checks everything again through
the same service (``booking.services.publish``; all or nothing), so a changed page or a
change in the meantime (a time published since, a time now past) is refused with the
same table, never half written. Nothing is kept on the server between the two steps.

The CSV is pasted, not uploaded as a file: an ``<input type="file">`` needs a multipart
body, which Starlette reads only with python-multipart, not installed here. Text copied
from Excel's cells arrives tab-separated and is read as well.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import OrderedDict
from datetime import date, datetime, time, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from booking import errors
from booking.console.clinic_common import (
    PLAN,
    ROLE,
    SLOTS,
    reason_text,
    staff_of,
    today,
    whole_number,
)
from booking.console.common import LongForm, console_page, render, see_other
from booking.domain import SlotSpec
from booking.http import JST, ctx_of
from booking.pages.common import Form, clock, day_label, link
from booking.services import bookings, publish
from booking.services.console import Console
from booking.services.csv_rows import CellError, Parsed, date_cell, parse
from machiai.i18n import N_, tr

# What a pasted CSV may weigh, form-encoded (the app's own body limit applies too):
# several thousand rows; a larger file goes through the JSON API's streamed import.
MAX_PASTE_BYTES = 1_048_576
# The optional columns of a slot CSV, as booking.services.publish.import_slots_csv reads them.
OPTIONAL_COLUMNS = ("publish_from", "publish_until")
PLAN_FIELDS = (
    "event",
    "from_date",
    "to_date",
    "opens",
    "closes",
    "slot_min",
    "capacity",
    "vaccine",
    "dose",
    "break_start",
    "break_end",
    "closed_days",
)
WEEKDAYS = (
    N_("Monday"),
    N_("Tuesday"),
    N_("Wednesday"),
    N_("Thursday"),
    N_("Friday"),
    N_("Saturday"),
    N_("Sunday"),
)
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_SEPARATORS = re.compile(r"[\s,、，]+")
# Which form field a service's column complaint is about.
PLAN_COLUMNS = {
    "event_id": "event",
    "starts_at": "from_date",
    "vaccine_code": "vaccine",
    "dose_number": "dose",
}
SAME_CAPACITY = N_("Enter the capacity as a whole number from 0 to 100000.")


async def _events(request: Request, console: Console, lang: str) -> list[dict[str, str]]:
    """The municipality's events not yet over: the ones a clinic may publish times for."""
    found = await bookings.open_events(ctx_of(request))
    return [
        {"id": str(e["id"]), "name": str(e["name_ja"] if lang == "ja" else e["name_en"])}
        for e in found
        if e["municipality_code"] == console.claims.municipality_code
    ]


# -- the weekly plan -----------------------------------------------------------------------
def _defaults(events: list[dict[str, str]]) -> dict[str, Any]:
    monday = today() + timedelta(days=7 - today().weekday())
    return {
        "event": events[0]["id"] if events else "",
        "from_date": monday.isoformat(),
        "to_date": (monday + timedelta(days=6)).isoformat(),
        "weekdays": ["0", "1", "2", "3", "4"],
        "opens": "09:00",
        "closes": "17:00",
        "slot_min": "30",
        "capacity": "",
        "vaccine": "",
        "dose": "1",
        "break_start": "12:00",
        "break_end": "13:00",
        "closed_days": "",
    }


def _values(fields: Form) -> dict[str, Any]:
    values: dict[str, Any] = {name: fields.get(name)[:200] for name in PLAN_FIELDS}
    values["weekdays"] = [d for d in fields.values.get("weekdays", []) if d in "0123456"][:7]
    return values


def _clock(raw: str) -> time | None:
    match = _CLOCK.fullmatch(unicodedata.normalize("NFKC", raw).strip())
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        return None
    return time(int(match[1]), int(match[2]))


def _day(raw: str) -> date | None:
    try:
        return date_cell(unicodedata.normalize("NFKC", raw).strip(), "")
    except CellError:
        return None


def _read_plan(
    values: dict[str, Any], events: list[dict[str, str]]
) -> tuple[publish.WeeklyPlan | None, dict[str, str]]:
    """The plan the form describes, or what is wrong with it, field by field (in the
    form's order, as the summary lists them)."""
    problems: dict[str, str] = {}
    if values["event"] not in {e["id"] for e in events}:
        problems["event"] = N_("Choose the event.")
    first, last = _day(values["from_date"]), _day(values["to_date"])
    if first is None:
        problems["from_date"] = N_("Enter the first day as a date, for example 2031-04-01.")
    if last is None:
        problems["to_date"] = N_("Enter the last day as a date, for example 2031-04-30.")
    elif first is not None and last < first:
        problems["to_date"] = N_("The last day must not be before the first day.")
    if not values["weekdays"]:
        problems["weekdays"] = N_("Choose at least one day of the week.")
    opens, closes = _clock(values["opens"]), _clock(values["closes"])
    if opens is None:
        problems["opens"] = N_("Enter the opening time as hours and minutes, for example 9:00.")
    if closes is None:
        problems["closes"] = N_("Enter the closing time as hours and minutes, for example 17:00.")
    elif opens is not None and closes <= opens:
        problems["closes"] = N_("The closing time must be after the opening time.")
    slot_min = whole_number(values["slot_min"], 1440)
    if slot_min is None or slot_min < 5:
        problems["slot_min"] = N_("Enter the length of each time in minutes, from 5 to 1440.")
    capacity = whole_number(values["capacity"])
    if capacity is None:
        problems["capacity"] = SAME_CAPACITY
    vaccine = unicodedata.normalize("NFKC", values["vaccine"]).strip().lower()
    if not publish.VACCINE_CODE.match(vaccine):
        problems["vaccine"] = N_("Enter the vaccine's code, for example comirnaty.")
    dose = whole_number(values["dose"], 9)
    if dose is None or dose < 1:
        problems["dose"] = N_("Enter the dose as a number from 1 to 9.")
    breaks: tuple[publish.Break, ...] = ()
    if values["break_start"].strip() or values["break_end"].strip():
        start, end = _clock(values["break_start"]), _clock(values["break_end"])
        if start is None or end is None or end <= start:
            problems["break_start"] = N_(
                "Enter the break as two times, for example 12:00 and 13:00, or leave both empty."
            )
        else:
            breaks = (publish.Break(start, end),)
    closed: list[date] = []
    for word in _SEPARATORS.split(unicodedata.normalize("NFKC", values["closed_days"])):
        found = _day(word) if word else None
        if word and found is None:
            problems["closed_days"] = N_(
                "Write the closed days as dates separated by spaces, for example "
                "2031-04-29 2031-05-03."
            )
        elif found is not None:
            closed.append(found)
    if problems:
        return None, problems
    assert first and last and opens and closes and slot_min and capacity is not None and dose
    return publish.WeeklyPlan(
        event_id=values["event"],
        from_date=first,
        to_date=last,
        weekdays=frozenset(int(d) for d in values["weekdays"]),
        opens=opens,
        closes=closes,
        slot_min=slot_min,
        capacity=capacity,
        vaccine_code=vaccine,
        dose_number=dose,
        breaks=breaks,
        exceptions=tuple(publish.Exception_(day, closed=True) for day in closed),
    ), {}


def _plan_form(
    request: Request,
    lang: str,
    console: Console,
    events: list[dict[str, str]],
    values: dict[str, Any],
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "staff_clinic_plan.html",
        lang,
        {
            "title": tr(lang, N_("Publish a weekly plan")),
            "events": events,
            "values": values,
            "weekdays": [(str(i), tr(lang, name)) for i, name in enumerate(WEEKDAYS)],
            "problems": problems or {},
        },
        console,
        status=status,
    )


@console_page(ROLE)
async def plan_form(request: Request, fields: Form, lang: str, console: Console) -> Response:
    events = await _events(request, console, lang)
    values = _values(_unflat(fields)) if fields.get("from_date") else _defaults(events)
    return _plan_form(request, lang, console, events, values)


def _by_day(specs: list[SlotSpec], skipped: set[int], lang: str) -> list[dict[str, Any]]:
    """The plan's new times as a clinic checks them: per day, how many, how many places,
    and the hours they cover (a break shows as a gap: 9:00–12:00, 13:00–17:00)."""
    days: OrderedDict[date, dict[str, Any]] = OrderedDict()
    for index, spec in enumerate(specs):
        starts = spec.starts_at.astimezone(JST)
        fresh = {"label": day_label(starts.date(), lang), "new": 0, "existing": 0}
        entry = days.setdefault(starts.date(), {**fresh, "places": 0, "spans": []})
        if index in skipped:
            entry["existing"] += 1
            continue
        entry["new"] += 1
        entry["places"] += spec.capacity
        ends = spec.starts_at + timedelta(minutes=spec.duration_min)
        spans: list[list[datetime]] = entry["spans"]
        if spans and spans[-1][1] == spec.starts_at:
            spans[-1][1] = ends
        else:
            spans.append([spec.starts_at, ends])
    comma = "、" if lang == "ja" else ", "
    return [
        {**e, "hours": comma.join(f"{clock(a)}–{clock(b)}" for a, b in e["spans"])}
        for e in days.values()
    ]


async def _plan_preview(
    request: Request,
    lang: str,
    console: Console,
    events: list[dict[str, Any]],
    values: dict[str, Any],
    plan: publish.WeeklyPlan,
    status: int = 200,
) -> Response:
    """What the plan would publish, and what is wrong with it, as the service checks it."""
    specs = publish.expand_plan(plan)
    found = await publish.check_specs(ctx_of(request), staff_of(console), specs)
    existing = {i for i, _, reason in found if reason == "slot already exists"}
    problems = [
        {
            "day": day_label(specs[i].starts_at.astimezone(JST).date(), lang),
            "time": clock(specs[i].starts_at),
            "column": column,
            "reason": reason_text(lang, reason),
        }
        for i, column, reason in found
        if reason != "slot already exists" and 0 <= i < len(specs)
    ]
    new = len(specs) - len(existing)
    event = next((e["name"] for e in events if e["id"] == plan.event_id), plan.event_id)
    return render(
        request,
        "staff_clinic_plan_preview.html",
        lang,
        {
            "title": tr(lang, N_("Check the plan before publishing")),
            "event": event,
            "values": values,
            "period": f"{day_label(plan.from_date, lang)} – {day_label(plan.to_date, lang)}",
            "weekdays": [tr(lang, WEEKDAYS[d]) for d in sorted(plan.weekdays)],
            "days": _by_day(specs, existing, lang),
            "new": new,
            "existing": len(existing),
            "problems": problems,
            "change_url": link(PLAN, **_flat(values), lang=lang),
        },
        console,
        status=status,
    )


def _flat(values: dict[str, Any]) -> dict[str, str]:
    """The plan's values as one query (the weekdays as one field: "0 1 2")."""
    flat = {k: v for k, v in values.items() if k != "weekdays" and v}
    return {**flat, "days": " ".join(values["weekdays"])}


def _unflat(fields: Form) -> Form:
    """A plan in a query (``_flat``) read as the form sends it."""
    values = {k: list(v) for k, v in fields.values.items()}
    if "days" in values:
        values["weekdays"] = values.pop("days")[0].split()
    return Form(values)


async def _plan_step(
    request: Request, fields: Form, lang: str, console: Console
) -> tuple[list[dict[str, str]], dict[str, Any], publish.WeeklyPlan] | Response:
    """The events, the form's values and the plan they make; or the form again, with
    what is wrong beside each field."""
    events = await _events(request, console, lang)
    values = _values(fields)
    plan, problems = _read_plan(values, events)
    if plan is not None:
        try:
            publish.expand_plan(plan)  # its own limits: a year at most, not too many times
        except errors.Invalid as exc:
            plan, problems = None, {"to_date": exc.message_ja if lang == "ja" else exc.message_en}
    if plan is None:
        return _plan_form(request, lang, console, events, values, problems, status=422)
    return events, values, plan


@console_page(ROLE)
async def plan_preview(request: Request, fields: Form, lang: str, console: Console) -> Response:
    """Writes nothing: the answer to this POST is the preview itself (a reload asks again)."""
    step = await _plan_step(request, fields, lang, console)
    if isinstance(step, Response):
        return step
    events, values, plan = step
    return await _plan_preview(request, lang, console, events, values, plan)


@console_page(ROLE)
async def plan_publish(request: Request, fields: Form, lang: str, console: Console) -> Response:
    step = await _plan_step(request, fields, lang, console)
    if isinstance(step, Response):
        return step
    events, values, plan = step
    try:
        done = await publish.publish_slots(
            ctx_of(request),
            staff_of(console),
            publish.expand_plan(plan),
            dry_run=False,
            skip_existing=True,  # a plan published twice adds only what is new
        )
    except errors.Invalid:
        # Something changed since the preview (a time now past, an event closed): the
        # preview again, as things are now. Nothing was written (all or nothing).
        return await _plan_preview(request, lang, console, events, values, plan, status=409)
    return see_other(
        link(
            SLOTS,
            date=plan.from_date.isoformat(),
            span="week",
            notice="published",
            n=done["created"],
            lang=lang,
        )
    )


# -- the CSV ---------------------------------------------------------------------------
def as_csv(text: str) -> str:
    """The pasted text as CSV: cells copied from Excel arrive tab-separated (a first line
    with tabs and no comma), and are rewritten with commas; row numbers stay the same."""
    head = text.lstrip("\ufeff").split("\n", 1)[0]
    if "\t" not in head or "," in head:
        return text
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for cells in csv.reader(io.StringIO(text), delimiter="\t"):
        writer.writerow(cells)
    return out.getvalue()


def _parsed(text: str) -> Parsed[SlotSpec] | None:
    """The rows that read as times (for the table); None when the header is unusable."""
    try:
        return parse(
            text,
            publish.SLOT_COLUMNS,
            OPTIONAL_COLUMNS,
            publish.slot_from_cells,
            publish.MAX_SLOTS,
        )
    except errors.CsvInvalid:
        return None


def _import_page(
    request: Request,
    lang: str,
    console: Console,
    text: str,
    *,
    checked: bool = False,
    problems: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Response:
    """The text box, and after a check: every problem (row, column, reason) and the rows
    that would be created."""
    problems = problems or []
    bad_rows = {p["row"] for p in problems}
    parsed = _parsed(as_csv(text)) if checked and text.strip() else None
    rows = []
    for number, spec in zip(
        parsed.row_numbers if parsed else [], parsed.rows if parsed else [], strict=True
    ):
        if number in bad_rows:
            continue
        starts = spec.starts_at.astimezone(JST)
        rows.append(
            {
                "row": number,
                "event": spec.event_id,
                "day": day_label(starts.date(), lang),
                "time": clock(spec.starts_at),
                "minutes": spec.duration_min,
                "capacity": spec.capacity,
                "vaccine": spec.vaccine_code,
                "dose": spec.dose_number,
                "window": _window(spec, lang),
            }
        )
    return render(
        request,
        "staff_clinic_import.html",
        lang,
        {
            "title": tr(lang, N_("Import times from a CSV")),
            "text": text,
            "checked": checked,
            "problems": [{**p, "reason": reason_text(lang, str(p["reason"]))} for p in problems],
            "rows": rows,
            "columns": publish.SLOT_COLUMNS,
            "optional": OPTIONAL_COLUMNS,
            "empty": checked and not text.strip(),
        },
        console,
        status=status,
    )


def _window(spec: SlotSpec, lang: str) -> str:
    """When the time can be booked, if the row says (else the event's booking period)."""
    ends = [spec.publish_from, spec.publish_until]
    if ends == [None, None]:
        return ""
    first, last = (
        f"{day_label(t.astimezone(JST).date(), lang)} {clock(t)}" if t else "" for t in ends
    )
    return f"{first} – {last}"


async def _verdict(request: Request, console: Console, text: str, apply: bool) -> Any:
    """The service's word on the text: its result, or the CsvInvalid with every problem."""
    data = as_csv(text).encode("utf-8")
    return await publish.import_slots_csv(ctx_of(request), staff_of(console), data, not apply)


def _pasted(fields: Form) -> str:
    """The CSV text whole (``long_form_page`` gives a LongForm; a Form cuts at 500)."""
    return fields.text("csv") if isinstance(fields, LongForm) else fields.get("csv")


@console_page(ROLE)
async def import_form(request: Request, fields: Form, lang: str, console: Console) -> Response:
    return _import_page(request, lang, console, "")


@console_page(ROLE, max_bytes=MAX_PASTE_BYTES)
async def import_preview(request: Request, fields: Form, lang: str, console: Console) -> Response:
    """Writes nothing: a dry run of the very import the apply step makes."""
    text = _pasted(fields)
    if not text.strip():
        return _import_page(request, lang, console, text, checked=True, status=422)
    try:
        await _verdict(request, console, text, apply=False)
    except errors.CsvInvalid as exc:
        found = list(exc.detail.get("errors", []))
        return _import_page(request, lang, console, text, checked=True, problems=found, status=422)
    return _import_page(request, lang, console, text, checked=True)


@console_page(ROLE, max_bytes=MAX_PASTE_BYTES)
async def import_apply(request: Request, fields: Form, lang: str, console: Console) -> Response:
    text = _pasted(fields)
    try:
        done = await _verdict(request, console, text, apply=True)
    except errors.CsvInvalid as exc:
        found = list(exc.detail.get("errors", []))
        return _import_page(request, lang, console, text, checked=True, problems=found, status=409)
    parsed = _parsed(as_csv(text))
    first = min((s.starts_at for s in parsed.rows), default=None) if parsed else None
    day = first.astimezone(JST).date() if isinstance(first, datetime) else today()
    return see_other(
        link(
            SLOTS,
            date=day.isoformat(),
            span="week",
            notice="published",
            n=done["created"],
            lang=lang,
        )
    )
