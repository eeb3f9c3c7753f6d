"""My bookings: see every booking of the resident and their household, cancel (the place
returns at once), change (a change competes for places, so it goes through the line
unless the session came through it), finish (the session ends at once)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.http import ctx_of
from booking.pages.common import Form, link, notice, page, render, see_other
from booking.pages.session import current_session, nav, person, shown_booking
from booking.services import bookings, confirm, sessions
from machiai.i18n import N_, tr


def _shown(booking: dict[str, Any], lang: str) -> dict[str, Any]:
    return {
        **booking,
        "starts": datetime.fromisoformat(booking["starts_at"]),
        "clinic": booking["clinic_name_ja"] if lang == "ja" else booking["clinic_name_en"],
    }


@page
async def mine(request: Request, q: Form, lang: str) -> Response:
    ctx = ctx_of(request)
    token, session = await current_session(request, q)
    people = [
        {
            "voucher": r.voucher,
            "bookings": [_shown(b, lang) for b in await bookings.resident_bookings(ctx, r)],
        }
        for r in session.household()
    ]
    return render(
        request,
        "mine.html",
        lang,
        {
            "title": tr(lang, N_("My bookings")),
            "notice": notice(lang, q.opt("notice")),
            "nav": nav(token, session, lang),
            "s": token,
            "admitted": session.admitted,
            "people": people,
            "waitroom_url": link(
                f"{ctx.settings.waitroom_url}/events/{session.event_id}/wait", lang=lang
            ),
        },
    )


@page
async def cancel(request: Request, q: Form, lang: str) -> Response:
    found = await shown_booking(request, q)
    token, session, resident, booking = found.token, found.session, found.resident, found.booking
    shown = _shown(booking, lang)
    return render(
        request,
        "cancel.html",
        lang,
        {
            "title": tr(lang, N_("Cancel this booking?")),
            "nav": nav(token, session, lang),
            "s": token,
            "who": resident.voucher,
            "booking": booking,
            "starts_at": shown["starts"],
            "clinic": shown["clinic"],
            "key": secrets.token_hex(16),
        },
    )


@page
async def cancel_post(request: Request, f: Form, lang: str) -> Response:
    token, session = await current_session(request, f)
    booking_id = f.get("b")
    idem = confirm.idempotency(
        session.actor, "cancel", f.get("key")[:200] or None, {"booking_id": booking_id}
    )
    try:
        resident = person(session, f.opt("who"))
        await confirm.cancel_booking(
            ctx_of(request), session.actor, booking_id, resident.voucher, idem
        )
    except (errors.BookingState, errors.NoBooking, errors.DoseRule) as exc:
        # Already cancelled, not this household's, or a later dose hangs on it: say so on
        # the list, which shows the booking as it is now.
        return see_other(link("/book/mine", s=token, notice=exc.code, lang=lang))
    return see_other(link("/book/mine", s=token, notice="cancelled", lang=lang))


@page
async def finish_post(request: Request, f: Form, lang: str) -> Response:
    """End the session at once (a shared phone or a library computer)."""
    try:
        _, session = await current_session(request, f)
        await sessions.end_session(ctx_of(request), session)
    except errors.SessionExpired:
        pass  # ended already: finishing again is done
    return see_other(link("/", lang=lang))


def routes() -> list[Route]:
    return [
        Route("/book/mine", mine, methods=["GET"]),
        Route("/book/cancel", cancel, methods=["GET"]),
        Route("/book/cancel", cancel_post, methods=["POST"]),
        Route("/book/finish", finish_post, methods=["POST"]),
    ]
