"""Find a time, hold it, check it, confirm it: the booking journey as plain forms.

Every step is POST → 303 → GET, so a reload never submits twice; the confirm form carries
an idempotency key, so a double tap books once. A refusal (the time was taken, the hold
ran out) takes the resident back to the list with a sentence saying what happened.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.domain import Clinic, HoldRef
from booking.http import JST, ctx_of
from booking.pages.common import (
    SECURITY_HEADERS,
    Form,
    clinic_name,
    clock,
    day,
    day_label,
    link,
    notice,
    page,
    render,
    see_other,
)
from booking.pages.done import EMAIL_PROBLEM, email_choice, keep_query
from booking.pages.session import current_session, nav, person, shown_booking
from booking.services import bookings, confirm, hold, sessions
from booking.services.availability import Availability, SearchFilter, SlotOffer
from machiai.i18n import N_, tr, tr_n

PAGE_SIZE = 10
MAX_PAGE = 1000  # a page number past it is the last one (no search skips further)
# Refusals that send the resident back to the list of times, with a sentence.
BACK_TO_LIST = {
    "slot_full",
    "slot_closed",
    "slot_not_bookable",
    "hold_expired",
    "already_booked",
    "dose_rule",
    "not_found",
}


def availability(request: Request) -> Availability:
    found: Availability = request.app.state.availability
    return found


def _until(left_ms: int) -> str:
    """When a hold lapses (unix ms), for the review page's link: the page shows it without
    asking Redis again. Only what the page says depends on it; confirming asks Redis."""
    return str(int(time.time() * 1000) + left_ms)


def _left_ms(until: str) -> int | None:
    # isascii too: isdigit() accepts "²" or "①", which int() refuses (a 500, not a page).
    return int(until) - int(time.time() * 1000) if until.isascii() and until.isdigit() else None


def _params(fields: Form) -> dict[str, str | None]:
    return {"who": fields.opt("who"), "replaces": fields.opt("replaces")}


def _back_to_list(exc: errors.AppError, fields: Form, lang: str) -> Response:
    """A refusal that leaves the resident choosing again: back to the list of times with a
    sentence saying what happened. Any other goes on to the problem page."""
    if exc.code not in BACK_TO_LIST:
        raise exc
    return see_other(
        link("/book/slots", s=fields.get("s"), notice=exc.code, lang=lang, **_params(fields))
    )


def _day(raw: str | None) -> date | None:
    try:
        return None if not raw else date.fromisoformat(raw)
    except ValueError:
        return None


@page
async def slots(request: Request, q: Form, lang: str) -> Response:
    token, session = await current_session(request, q)
    sessions.require_admitted(session)
    resident = person(session, q.opt("who"))
    ctx, avail = ctx_of(request), availability(request)
    window = await bookings.dose_window(ctx, resident, q.opt("replaces"))
    raw_page = q.get("page", "1")
    digits = raw_page.isascii() and raw_page.isdigit()
    number = max(1, min(int(raw_page), MAX_PAGE)) if digits else 1
    chosen = {"date": q.get("date"), "area": q.get("area"), "clinic": q.get("clinic")}
    context: dict[str, Any] = {
        "title": tr(lang, N_("Choose a time")),
        "heading": tr(lang, N_("Choose a time")),
        "notice": notice(lang, q.opt("notice")),
        "nav": nav(token, session, lang),
        "s": token,
        "who": resident.voucher,
        "household": session.household(),
        "replaces": q.opt("replaces"),
        "window": window,
        "chosen": chosen,
        "page": number,
        "offers": [],
        "more": False,
    }
    if window is not None:
        rules = SearchFilter(
            dose_number=window.dose, not_before=window.not_before, not_after=window.not_after
        )
        filt = dataclasses.replace(
            rules,
            day=_day(chosen["date"]),
            area=chosen["area"] or None,
            clinic_id=chosen["clinic"] or None,
        )
        choices = await avail.choices(ctx, session.event_id, rules)
        offers, more = await avail.search(
            ctx, session.event_id, filt, skip=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        clinic_of = await avail.clinics(
            ctx, [*choices.clinic_ids, *(o.meta.clinic_id for o in offers)]
        )
        clinics = sorted(
            (clinic_of[c] for c in choices.clinic_ids if c in clinic_of),
            key=lambda c: clinic_name(c, lang),
        )
        context.update(
            offers=[_shown(o, clinic_of, lang) for o in offers],
            more=more,
            date_options=options(
                [(d.isoformat(), day_label(d, lang)) for d in choices.days[:120]], chosen["date"]
            ),
            area_options=options([(a, a) for a in choices.areas], chosen["area"]),
            clinic_options=options(
                [(c.clinic_id, clinic_name(c, lang)) for c in clinics], chosen["clinic"]
            ),
        )
    return render(request, "slots.html", lang, context)


def _shown(offer: SlotOffer, clinic_of: dict[str, Clinic], lang: str) -> dict[str, Any]:
    """What a time's card says, worked out here once (a list page shows ten)."""
    m = offer.meta
    when_day, when_time = day(m.starts_at, lang), clock(m.starts_at)
    return {
        "slot_id": m.slot_id,
        "clinic": clinic_name(clinic_of.get(m.clinic_id), lang),
        "area": m.area,
        "when": f"{when_day} {when_time}",
        "left": tr_n(lang, "%(num)s place left", "%(num)s places left", offer.remaining),
        "choose": tr(lang, "Choose %(day)s %(time)s", day=when_day, time=when_time),
    }


def options(pairs: list[tuple[str, str]], chosen: str) -> Markup:
    """``<option>`` elements, escaped once here rather than piece by piece in the template."""
    return Markup("").join(
        Markup('<option value="{}"{}>{}</option>').format(
            value, Markup(" selected") if value == chosen else "", label
        )
        for value, label in pairs
    )


@page
async def hold_post(request: Request, f: Form, lang: str) -> Response:
    params = _params(f)
    token, session = await current_session(request, f)
    sessions.require_admitted(session)
    resident = person(session, params["who"])
    try:
        held = await hold.hold_slot(ctx_of(request), session.actor, resident, f.get("slot_id"))
    except errors.HoldExists as exc:
        current = exc.detail.get("hold_id")
        if not current:
            raise
        return see_other(
            link("/book/review", s=token, h=current, notice="hold_exists", lang=lang, **params)
        )
    except errors.AppError as exc:
        return _back_to_list(exc, f, lang)
    return see_other(
        link(
            "/book/review",
            s=token,
            h=held.hold_id,
            u=_until(held.expires_in_ms),
            lang=lang,
            **params,
        )
    )


@page
async def review(request: Request, q: Form, lang: str) -> Response:
    return await review_page(request, q, lang)


async def review_page(
    request: Request,
    q: Form,
    lang: str,
    *,
    email: str = "",
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The review page; again with the typed address and its problem when the confirm
    refused the address (nothing was booked; the hold is still the resident's)."""
    params = _params(q)
    ctx = ctx_of(request)
    token, session = await current_session(request, q)
    sessions.require_admitted(session)
    resident = person(session, params["who"])
    try:
        hold_id = q.get("h")
        ref = HoldRef.parse(hold_id)
        left_ms = _left_ms(q.get("u"))
        if ref is None or left_ms is None:
            left_ms = await hold.hold_left_ms(ctx, resident, hold_id)
        elif left_ms <= 0:
            raise errors.HoldExpired()
        assert ref is not None  # hold_left_ms refuses what does not parse
        meta = await hold.visible_slot(ctx, session.actor, ref.slot_id)
        clinic = (await availability(request).clinics(ctx, [meta.clinic_id])).get(meta.clinic_id)
    except errors.AppError as exc:
        return _back_to_list(exc, q, lang)
    expires_at = datetime.now(JST) + timedelta(milliseconds=left_ms)
    return render(
        request,
        "review.html",
        lang,
        {
            "title": tr(lang, N_("Check your booking")),
            "notice": notice(lang, q.opt("notice")),
            "nav": nav(token, session, lang),
            "s": token,
            "who": resident.voucher,
            "replaces": params["replaces"],
            "hold_id": hold_id,
            "meta": meta,
            "clinic": clinic,
            "expires_at": expires_at,
            "expires_at_ms": int(expires_at.timestamp() * 1000),
            "extended": q.get("x") == "1",
            # One key per review: the same form sent twice books once.
            "key": secrets.token_hex(16),
            "email": email,
            "problems": problems or {},
        },
        status=status,
    )


@page
async def extend_post(request: Request, f: Form, lang: str) -> Response:
    params = _params(f)
    back = {"s": f.get("s"), "h": f.get("h"), "lang": lang, **params}
    _, session = await current_session(request, f)
    resident = person(session, params["who"])
    try:
        left_ms = await hold.extend_hold(ctx_of(request), resident, f.get("h"))
    except errors.ExtendedBefore:
        return see_other(link("/book/review", x="1", notice="hold_extended_before", **back))
    except errors.AppError as exc:
        return _back_to_list(exc, f, lang)
    return see_other(link("/book/review", x="1", u=_until(left_ms), **back))


@page
async def release_post(request: Request, f: Form, lang: str) -> Response:
    params = _params(f)
    _, session = await current_session(request, f)
    resident = person(session, params["who"])
    try:
        await hold.release_hold(ctx_of(request), resident, f.get("h"))
    except errors.HoldExpired:
        pass  # already gone: nothing to give back
    return see_other(link("/book/slots", s=f.get("s"), lang=lang, **params))


@page
async def confirm_post(request: Request, f: Form, lang: str) -> Response:
    params = _params(f)
    replaces = params["replaces"]
    token, session = await current_session(request, f)
    sessions.require_admitted(session)
    resident = person(session, params["who"])
    hold_id = f.get("h")
    typed = f.get("email")
    contact = email_choice(typed, lang)
    if contact is None:
        # The address is refused before anything is booked: the review page again, with
        # what was typed and why (the hold is untouched).
        keep_query(request, f)
        problems = {"email": EMAIL_PROBLEM}
        return await review_page(request, f, lang, email=typed, problems=problems, status=422)
    idem = confirm.idempotency(
        session.actor,
        "change" if replaces else "confirm",
        f.get("key")[:200] or None,
        {"hold_id": hold_id, "voucher": resident.voucher, "replaces": replaces},
    )
    try:
        result = await confirm.confirm_booking(
            ctx_of(request), session.actor, resident, hold_id, idem, replaces=replaces,
            contact=contact,
        )  # fmt: skip
    except errors.AppError as exc:
        return _back_to_list(exc, f, lang)
    booking_id = result["booking"]["booking_id"]
    return see_other(
        link(
            "/book/done",
            s=token,
            b=booking_id,
            who=params["who"],
            changed="1" if replaces else None,
            lang=lang,
        )
    )


def _ics_text(value: str) -> str:
    """RFC 5545 TEXT: backslash, semicolon, comma and newline escaped."""
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


@page
async def ics(request: Request, q: Form, lang: str) -> Response:
    """The booking as a calendar entry (.ics) any phone's calendar can add."""
    ctx = ctx_of(request)
    booking = (await shown_booking(request, q)).booking
    meta = await ctx.catalog.get(booking["slot_id"])
    clinic = (await availability(request).clinics(ctx, [booking["clinic_id"]])).get(
        booking["clinic_id"]
    )
    starts = datetime.fromisoformat(booking["starts_at"])
    minutes = meta.duration_min if meta is not None else 30
    stamp = "%Y%m%dT%H%M%SZ"
    place = clinic_name(clinic, lang) + (f", {clinic.address}" if clinic and clinic.address else "")
    summary = tr(lang, N_("Vaccination (dose %(n)s)"), n=booking["dose_number"])
    description = tr(lang, N_("Confirmation code: %(code)s"), code=booking["confirmation_code"])
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//machiai//booking//JA",
        "CALSCALE:GREGORIAN",
        "BEGIN:VEVENT",
        f"UID:{booking['booking_id']}@machiai",
        f"DTSTAMP:{datetime.now(UTC).strftime(stamp)}",
        f"DTSTART:{starts.astimezone(UTC).strftime(stamp)}",
        f"DTEND:{(starts + timedelta(minutes=minutes)).astimezone(UTC).strftime(stamp)}",
        f"SUMMARY:{_ics_text(summary)}",
        f"LOCATION:{_ics_text(place)}",
        f"DESCRIPTION:{_ics_text(description)}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return Response(
        "\r\n".join(lines) + "\r\n",
        media_type="text/calendar; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": 'attachment; filename="vaccination.ics"',
        },
    )


def routes() -> list[Route]:
    return [
        Route("/book/slots", slots, methods=["GET"]),
        Route("/book/hold", hold_post, methods=["POST"]),
        Route("/book/review", review, methods=["GET"]),
        Route("/book/extend", extend_post, methods=["POST"]),
        Route("/book/release", release_post, methods=["POST"]),
        Route("/book/confirm", confirm_post, methods=["POST"]),
        Route("/book/ics", ics, methods=["GET"]),
    ]
