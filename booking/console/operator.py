"""The call-centre console (operators and administrators): book for residents who phone in.

GET  /staff/operator               find the caller: voucher number, birth date, event
POST /staff/operator               → 303 to the caller's page (a new call), or the form again
GET  /staff/operator/call          the caller's page: their bookings (change, cancel) and
                                   the free times (date, area, clinic), places kept for the
                                   phone included
GET  /staff/operator/member        look up another person of the household
POST /staff/operator/member        → 303 to the caller's page, for that person
POST /staff/operator/end           → 303 to the find page; the call's record is deleted
(holding, reviewing, confirming, cancelling: booking.console.operator_booking)

How the caller's identity travels between steps: it does not. The find step checks the
voucher number and birth date against the registry (``sessions.verify_resident``, the
JSON API's check: one refusal whichever part is wrong) and keeps them in a server-side
call record (booking.services.operator_calls) bound to this console session; pages and
forms carry only the call's opaque id (``c``) and which person of the call (``who``, an
index). No birth date, and no voucher number, is ever in a URL.

Every step is a plain form (POST → 303 → GET), works without JavaScript, and carries
the console's CSRF secret; every refusal comes back as words on the caller's page
(booking.console.operator_web).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.console import operator_booking
from booking.console.common import render, see_other
from booking.console.operator_web import (
    CALL,
    FIND,
    Here,
    here,
    notice,
    operator_page,
    search_of,
)
from booking.domain import Clinic
from booking.http import ctx_of
from booking.pages.book import options
from booking.pages.common import Form, clinic_name, clock, day, day_label, link
from booking.pages.forms import FormErrors, birth_date, era_of, voucher_number, western_year
from booking.services import bookings, operator, sessions
from booking.services.availability import Availability, SearchFilter, SlotOffer
from booking.services.console import Console
from booking.services.operator_calls import MAX_PEOPLE, Person, add_person, end_call, open_call
from machiai.i18n import N_, tr, tr_n

# A call-centre screen is dense: twice the residents' ten times per page.
PAGE_SIZE = 20
MAX_PAGE = 500
IDENTITY_FIELDS = ("voucher", "year", "month", "day")
CHOOSE_EVENT = N_("Choose the event.")
NOT_IN_REGISTRY = N_(
    "The voucher number and the date of birth do not match the registry. Check both "
    "with the caller."
)


def availability(request: Request) -> Availability:
    found: Availability = request.app.state.availability
    return found


# -- identity: the find page and the household page share the fields ---------------------
def _values(f: Form) -> dict[str, str]:
    return {name: f.get(name)[:20] for name in IDENTITY_FIELDS}


def _era(values: dict[str, str]) -> str:
    year = western_year(values["year"]) if values.get("year") else None
    return era_of(year) if year is not None and 1868 <= year <= 2100 else ""


def _read(f: Form) -> tuple[str, date | None, FormErrors]:
    """The voucher and birth date as residents say them (full-width digits, hyphens,
    昭和20): the residents' own parsing (booking.pages.forms)."""
    problems = FormErrors()
    voucher = voucher_number(f.get("voucher"), problems)
    born = birth_date(f.get("year"), f.get("month"), f.get("day"), problems)
    return voucher, born, problems


async def _events(request: Request, console: Console) -> list[dict[str, Any]]:
    """The municipality's events not yet over, soonest opening first."""
    found = await bookings.open_events(ctx_of(request))
    return [e for e in found if e["municipality_code"] == console.claims.municipality_code]


def _open_now(events: list[dict[str, Any]]) -> str:
    """The event a call is most likely about: the first one open now, else the first."""
    now = datetime.now(UTC)
    live = [e for e in events if e["state"] == "open" and e["opens_at"] <= now]
    chosen = (live or events or [{"id": ""}])[0]
    return str(chosen["id"])


def _find_page(
    request: Request,
    lang: str,
    console: Console,
    events: list[dict[str, Any]],
    *,
    values: dict[str, str],
    problems: dict[str, str] | None = None,
    code: str | None = None,
    status: int = 200,
) -> Response:
    chosen = values.get("event") or _open_now(events)
    now = datetime.now(UTC)
    open_now = ("（{}）" if lang == "ja" else " ({})").format(tr(lang, N_("Open now")))
    labels = [
        (
            str(e["id"]),
            (e["name_ja"] if lang == "ja" else e["name_en"])
            + (open_now if e["state"] == "open" and e["opens_at"] <= now else ""),
        )
        for e in events
    ]
    return render(
        request,
        "staff_operator_find.html",
        lang,
        {
            "title": tr(lang, N_("Find the caller")),
            "notice": notice(lang, code),
            "values": values,
            "problems": problems or {},
            "era": _era(values),
            "event_options": options(labels, chosen),
            "has_events": bool(events),
        },
        console,
        status=status,
    )


@operator_page
async def find(request: Request, q: Form, lang: str, console: Console) -> Response:
    events = await _events(request, console)
    return _find_page(request, lang, console, events, values={}, code=q.opt("notice"))


@operator_page
async def find_post(request: Request, f: Form, lang: str, console: Console) -> Response:
    ctx = ctx_of(request)
    events = await _events(request, console)
    values = {**_values(f), "event": f.get("event")[:63]}
    voucher, born, problems = _read(f)
    event = next((e for e in events if e["id"] == values["event"]), None)
    if event is None:
        problems.add("event", CHOOSE_EVENT)

    def again(found: dict[str, str], status: int) -> Response:
        return _find_page(
            request, lang, console, events, values=values, problems=found, status=status
        )

    if problems or born is None or event is None:
        return again(problems.problems, 422)
    try:
        # The API's identity check, and its one refusal whichever part is wrong.
        await sessions.verify_resident(
            ctx, console.claims.municipality_code, voucher, born, str(event["id"])
        )
    except errors.IdentityRefused:
        return again({"voucher": NOT_IN_REGISTRY}, 403)
    except errors.NotFound:
        return again({"event": CHOOSE_EVENT}, 422)
    call = await open_call(
        ctx,
        console,
        str(event["id"]),
        (str(event["name_ja"]), str(event["name_en"])),
        Person(voucher, born),
    )
    return see_other(link(CALL, c=call.call_id, lang=lang))


# -- the caller's page -----------------------------------------------------------------
def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _booking(b: dict[str, Any], lang: str) -> dict[str, Any]:
    starts = datetime.fromisoformat(b["starts_at"])
    on, at = day(starts, lang), clock(starts)
    return {
        **b,
        "day": on,
        "time": at,
        "when": f"{on} {at}",
        "clinic": b["clinic_name_ja"] if lang == "ja" else b["clinic_name_en"],
        "open": b["status"] == "confirmed",
    }


def _offer(o: SlotOffer, clinic_of: dict[str, Clinic], lang: str) -> dict[str, Any]:
    m = o.meta
    on, at = day(m.starts_at, lang), clock(m.starts_at)
    return {
        "slot_id": m.slot_id,
        "day": on,
        "time": at,
        "when": f"{on} {at}",
        "clinic": clinic_name(clinic_of.get(m.clinic_id), lang),
        "area": m.area,
        # Under the column "Places left": the count and its counter word, kept together.
        "left": tr_n(lang, "%(num)s place", "%(num)s places", o.remaining),
    }


async def _search(
    request: Request,
    h: Here,
    q: Form,
    lang: str,
    window: bookings.DoseWindow,
    moving_from: str | None,
) -> dict[str, Any]:
    """The free times of the call's event this person may book (their dose, its rules),
    narrowed by date, area and clinic; places kept for the phone count as free. A change
    is not offered the time it moves from."""
    ctx, avail = ctx_of(request), availability(request)
    chosen = {"date": q.get("date"), "area": q.get("area"), "clinic": q.get("clinic")}
    raw_page = q.get("page", "1")
    number = (
        max(1, min(int(raw_page), MAX_PAGE)) if raw_page.isascii() and raw_page.isdigit() else 1
    )
    rules = SearchFilter(
        dose_number=window.dose, not_before=window.not_before, not_after=window.not_after
    )
    filt = dataclasses.replace(
        rules,
        day=_day(chosen["date"]),
        area=chosen["area"] or None,
        clinic_id=chosen["clinic"] or None,
    )
    choices = await avail.choices(ctx, h.call.event_id, rules)
    offers, more = await avail.search(
        ctx,
        h.call.event_id,
        filt,
        skip=(number - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
        channel=h.actor.channel,
    )
    clinic_of = await avail.clinics(ctx, [*choices.clinic_ids, *(o.meta.clinic_id for o in offers)])
    clinics = sorted(
        (clinic_of[c] for c in choices.clinic_ids if c in clinic_of),
        key=lambda c: clinic_name(c, lang),
    )
    kept = {k: v for k, v in chosen.items() if v}

    def page_url(n: int) -> str:
        return h.caller_url(lang, replaces=window.replaces, **kept, page=n)

    return {
        "chosen": chosen,
        "offers": [_offer(o, clinic_of, lang) for o in offers if o.meta.slot_id != moving_from],
        "earlier": page_url(number - 1) if number > 1 else None,
        "later": page_url(number + 1) if more else None,
        "date_options": options(
            [(d.isoformat(), day_label(d, lang)) for d in choices.days[:120]], chosen["date"]
        ),
        "area_options": options([(a, a) for a in choices.areas], chosen["area"]),
        "clinic_options": options(
            [(c.clinic_id, clinic_name(c, lang)) for c in clinics], chosen["clinic"]
        ),
    }


@operator_page
async def caller(request: Request, q: Form, lang: str, console: Console) -> Response:
    ctx = ctx_of(request)
    h = await here(request, console, q)
    # Looking at a caller's bookings is audited (services.operator.caller_bookings).
    rows = [
        _booking(b, lang) for b in await operator.caller_bookings(ctx, h.actor, h.person.voucher)
    ]
    code = q.opt("notice")
    replaces = q.opt("replaces")
    changing = next((b for b in rows if b["booking_id"] == replaces and b["open"]), None)
    if replaces and changing is None:
        replaces, code = None, "no_booking"
    window = await bookings.dose_window(ctx, h.resident, replaces)
    # already_booked: the booking to change instead, and the time that was asked for.
    existing = next((b for b in rows if b["booking_id"] == q.get("b") and b["open"]), None)
    context: dict[str, Any] = {
        "title": tr(lang, N_("Caller")) if h.index == 0 else tr(lang, N_("Household member")),
        "notice": notice(lang, code),
        "h": h,
        "hidden": h.hidden(),
        "people": [
            {"voucher": p.voucher, "url": link(CALL, c=h.call.call_id, who=i or None, lang=lang)}
            for i, p in enumerate(h.call.people)
        ],
        "can_add": len(h.call.people) < MAX_PEOPLE,
        "member_url": h.url("/staff/operator/member", lang),
        "bookings": rows,
        "changing": changing,
        "stop_changing": h.caller_url(lang, **search_of(q)),
        "existing": existing,
        "asked_slot": q.get("slot") if existing else "",
        "change_existing": h.caller_url(lang, replaces=existing["booking_id"]) if existing else "",
        "window": window,
        "search_values": search_of(q),
    }
    if window is not None:
        moving_from = None if changing is None else str(changing["slot_id"])
        context.update(await _search(request, h, q, lang, window, moving_from))
    return render(request, "staff_operator_call.html", lang, context, console)


# -- another person of the household ----------------------------------------------------
def _member_page(
    request: Request,
    lang: str,
    console: Console,
    h: Here,
    *,
    values: dict[str, str],
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "staff_operator_member.html",
        lang,
        {
            "title": tr(lang, N_("Book for another person in the household")),
            "h": h,
            "hidden": h.hidden(),
            "back": h.caller_url(lang),
            "values": values,
            "problems": problems or {},
            "era": _era(values),
        },
        console,
        status=status,
    )


@operator_page
async def member(request: Request, q: Form, lang: str, console: Console) -> Response:
    h = await here(request, console, q)
    return _member_page(request, lang, console, h, values={})


@operator_page
async def member_post(request: Request, f: Form, lang: str, console: Console) -> Response:
    ctx = ctx_of(request)
    h = await here(request, console, f)
    values = _values(f)
    voucher, born, problems = _read(f)
    if problems or born is None:
        return _member_page(
            request, lang, console, h, values=values, problems=problems.problems, status=422
        )
    known = h.call.index_of(voucher)
    if known is None and len(h.call.people) >= MAX_PEOPLE:
        return see_other(h.caller_url(lang, notice="household_full"))
    try:
        # Each person of the household is checked on their own voucher and birth date.
        await sessions.verify_resident(
            ctx, console.claims.municipality_code, voucher, born, h.call.event_id
        )
    except errors.IdentityRefused:
        return _member_page(
            request, lang, console, h, values=values, problems={"voucher": NOT_IN_REGISTRY},
            status=403,
        )  # fmt: skip
    _, index = await add_person(ctx, console, h.call, Person(voucher, born))
    return see_other(
        link(CALL, c=h.call.call_id, who=index or None, notice="member_added", lang=lang)
    )


@operator_page
async def end(request: Request, f: Form, lang: str, console: Console) -> Response:
    """The call is over: its record (with the birth dates) is deleted at once."""
    await end_call(ctx_of(request), console, f.get("c"))
    return see_other(link(FIND, notice="call_ended", lang=lang))


def routes() -> list[Route]:
    return [
        Route(FIND, find, methods=["GET"]),
        Route(FIND, find_post, methods=["POST"]),
        Route(CALL, caller, methods=["GET"]),
        Route("/staff/operator/member", member, methods=["GET"]),
        Route("/staff/operator/member", member_post, methods=["POST"]),
        Route("/staff/operator/end", end, methods=["POST"]),
        *operator_booking.routes(),
    ]
