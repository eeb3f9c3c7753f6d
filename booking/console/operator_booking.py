"""Hold, check, confirm, change and cancel for the person on the phone.

POST /staff/operator/hold      hold a time (``replaces``: for a change) → 303 to the review
GET  /staff/operator/review    what will be booked, the hold's time left; confirm or release
POST /staff/operator/release   give the held time back → 303 to the caller's page
POST /staff/operator/confirm   book (or change) → 303 to the confirmation panel
GET  /staff/operator/done      the confirmation code to read out
GET  /staff/operator/cancel    the booking to cancel, asked once more
POST /staff/operator/cancel    cancel → 303 to the caller's page

Promises kept here: the confirm and cancel forms carry an idempotency key made for each
review (each cancel page), so a double submit (two clicks, a resent form) books or
cancels once and both answers show the same booking; a refused step goes back to the
caller's page with words (booking.console.operator_web), never a dead end. The rules
(one booking per resident and dose, no oversell, the phone's share) are the services'.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.console.common import render, see_other
from booking.console.operator_web import Here, back, here, notice, notice_code, operator_page
from booking.domain import HoldRef
from booking.http import JST, ctx_of
from booking.pages.common import Form, clock, day
from booking.services import bookings, confirm, hold, operator
from booking.services.availability import Availability
from booking.services.console import Console
from machiai.i18n import N_, tr

REVIEW = "/staff/operator/review"
MAX_KEY = 64


def availability(request: Request) -> Availability:
    found: Availability = request.app.state.availability
    return found


def _key(f: Form) -> str | None:
    """The form's idempotency key (made by the page that showed the form)."""
    return f.get("key")[:MAX_KEY] or None


@operator_page
async def hold_post(request: Request, f: Form, lang: str, console: Console) -> Response:
    h = await here(request, console, f)
    replaces = f.opt("replaces")
    slot_id = f.get("slot_id")
    try:
        # The registry check again, the dose already booked, the phone's share: the
        # operator lane's own hold (services.operator.hold_for_caller), as the API's.
        held = await operator.hold_for_caller(
            ctx_of(request), h.actor, h.person.voucher, h.person.born, slot_id, replaces
        )
    except errors.HoldExists as exc:
        current = exc.detail.get("hold_id")
        if not current:
            return back(h, f, lang, "hold_exists")
        # The person already holds a time: show that one (confirm it or release it).
        return see_other(h.url(REVIEW, lang, hold=current, notice="hold_exists"))
    except errors.AlreadyBooked as exc:
        # Promise "one booking per resident and dose": say so, with the booking to change
        # and the time that was asked for (a change of that booking to it is one click).
        return back(h, f, lang, "already_booked", b=exc.detail.get("booking_id"), slot=slot_id)
    except errors.AppError as exc:
        return back(h, f, lang, notice_code(exc))
    return see_other(h.url(REVIEW, lang, hold=held.hold_id, replaces=replaces))


@operator_page
async def review(request: Request, q: Form, lang: str, console: Console) -> Response:
    ctx = ctx_of(request)
    h = await here(request, console, q)
    hold_id = q.get("hold")
    replaces = q.opt("replaces")
    try:
        ref = HoldRef.parse(hold_id)
        # Asked of Redis each time: the time left shown is the hold's, not the page's.
        left_ms = await hold.hold_left_ms(ctx, h.resident, hold_id)
        assert ref is not None  # hold_left_ms refuses what does not parse
        meta = await hold.visible_slot(ctx, h.actor, ref.slot_id)
        moving = None
        if replaces:
            moving = await bookings.resident_booking(ctx, h.resident, replaces)
    except errors.AppError as exc:
        return back(h, q, lang, notice_code(exc))
    clinic = (await availability(request).clinics(ctx, [meta.clinic_id])).get(meta.clinic_id)
    until = datetime.now(JST) + timedelta(milliseconds=left_ms)
    moving_starts = None if moving is None else datetime.fromisoformat(moving["starts_at"])
    return render(
        request,
        "staff_operator_review.html",
        lang,
        {
            "title": tr(lang, N_("Check the booking with the caller")),
            "notice": notice(lang, q.opt("notice")),
            "h": h,
            "hidden": h.hidden(),
            "hold_id": hold_id,
            "replaces": replaces,
            "moving": moving,
            "moving_when": None
            if moving_starts is None
            else f"{day(moving_starts, lang)} {clock(moving_starts)}",
            "meta": meta,
            "clinic": clinic,
            "until": clock(until),
            "minutes_left": max(1, left_ms // 60_000),
            # Promise "a double submit books once": one key per review page.
            "key": secrets.token_hex(16),
            "back": h.caller_url(lang, replaces=replaces),
        },
        console,
    )


@operator_page
async def release_post(request: Request, f: Form, lang: str, console: Console) -> Response:
    h = await here(request, console, f)
    try:
        await operator.release_for_caller(ctx_of(request), h.actor, h.person.voucher, f.get("hold"))
    except errors.HoldExpired:
        pass  # gone already: nothing to give back, and nothing was booked
    return back(h, f, lang, "released")


@operator_page
async def confirm_post(request: Request, f: Form, lang: str, console: Console) -> Response:
    h = await here(request, console, f)
    replaces = f.opt("replaces")
    hold_id = f.get("hold")
    idem = confirm.idempotency(
        h.actor,
        "change" if replaces else "confirm",
        _key(f),
        {"voucher": h.person.voucher, "hold_id": hold_id, "replaces": replaces},
    )
    try:
        # A second submit of the same form finds the hold gone and gets the first's
        # booking back (confirm.replay): one booking, the same confirmation panel.
        result = await confirm.confirm_booking(
            ctx_of(request), h.actor, h.resident, hold_id, idem, replaces=replaces
        )
    except errors.AppError as exc:
        return back(h, f, lang, notice_code(exc))
    return see_other(
        h.url(
            "/staff/operator/done",
            lang,
            b=result["booking"]["booking_id"],
            changed="1" if replaces else None,
        )
    )


def _shown(booking: dict[str, Any], lang: str) -> dict[str, Any]:
    starts = datetime.fromisoformat(booking["starts_at"])
    return {
        **booking,
        "starts": starts,
        "clinic_label": booking["clinic_name_ja"] if lang == "ja" else booking["clinic_name_en"],
        # Read out in two halves of four: fewer letters to hold in mind at once.
        "code_spaced": f"{booking['confirmation_code'][:4]} {booking['confirmation_code'][4:]}",
    }


async def _booking(request: Request, h: Here, q: Form, lang: str) -> dict[str, Any]:
    """The booking ``b`` of the person on the call (another person's is not found)."""
    return _shown(await bookings.resident_booking(ctx_of(request), h.resident, q.get("b")), lang)


@operator_page
async def done(request: Request, q: Form, lang: str, console: Console) -> Response:
    h = await here(request, console, q)
    try:
        booking = await _booking(request, h, q, lang)
    except errors.NoBooking:
        return back(h, q, lang, "no_booking")
    clinic = (await availability(request).clinics(ctx_of(request), [booking["clinic_id"]])).get(
        booking["clinic_id"]
    )
    changed = q.get("changed") == "1"
    return render(
        request,
        "staff_operator_done.html",
        lang,
        {
            "title": tr(lang, N_("The booking is changed"))
            if changed
            else tr(lang, N_("The booking is confirmed")),
            "h": h,
            "hidden": h.hidden(),
            "booking": booking,
            "clinic": clinic,
            "back": h.caller_url(lang),
            "member_url": h.url("/staff/operator/member", lang),
        },
        console,
    )


@operator_page
async def cancel(request: Request, q: Form, lang: str, console: Console) -> Response:
    h = await here(request, console, q)
    try:
        booking = await _booking(request, h, q, lang)
    except errors.NoBooking:
        return back(h, q, lang, "no_booking")
    if booking["status"] != "confirmed":
        return back(h, q, lang, "booking_state")
    return render(
        request,
        "staff_operator_cancel.html",
        lang,
        {
            "title": tr(lang, N_("Cancel this booking?")),
            "h": h,
            "hidden": h.hidden(),
            "booking": booking,
            "back": h.caller_url(lang),
            "key": secrets.token_hex(16),
        },
        console,
    )


@operator_page
async def cancel_post(request: Request, f: Form, lang: str, console: Console) -> Response:
    h = await here(request, console, f)
    booking_id = f.get("b")
    idem = confirm.idempotency(h.actor, "cancel", _key(f), {"booking_id": booking_id})
    try:
        # Only this person's booking (the voucher scopes it), audited with the operator.
        await confirm.cancel_booking(ctx_of(request), h.actor, booking_id, h.person.voucher, idem)
    except errors.DoseRule:
        return back(h, f, lang, "later_dose")
    except errors.AppError as exc:
        return back(h, f, lang, notice_code(exc))
    return back(h, f, lang, "cancelled")


def routes() -> list[Route]:
    return [
        Route("/staff/operator/hold", hold_post, methods=["POST"]),
        Route(REVIEW, review, methods=["GET"]),
        Route("/staff/operator/release", release_post, methods=["POST"]),
        Route("/staff/operator/confirm", confirm_post, methods=["POST"]),
        Route("/staff/operator/done", done, methods=["GET"]),
        Route("/staff/operator/cancel", cancel, methods=["GET"]),
        Route("/staff/operator/cancel", cancel_post, methods=["POST"]),
    ]
