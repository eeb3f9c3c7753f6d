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
from booking.pages.common import (
    ctx_of,
    form,
    language,
    link,
    notice,
    problem,
    query,
    render,
    see_other,
)
from booking.pages.session import current_session, nav, person, shown_booking
from booking.services import bookings, confirm, sessions
from machiai.i18n import N_, tr


def _shown(booking: dict[str, Any], lang: str) -> dict[str, Any]:
    return {
        **booking,
        "starts": datetime.fromisoformat(booking["starts_at"]),
        "clinic": booking["clinic_name_ja"] if lang == "ja" else booking["clinic_name_en"],
    }


async def mine(request: Request) -> Response:
    lang = language(request)
    ctx = ctx_of(request)
    try:
        token, session = await current_session(request)
        people = [
            {
                "voucher": r.voucher,
                "bookings": [_shown(b, lang) for b in await bookings.resident_bookings(ctx, r)],
            }
            for r in session.household()
        ]
    except errors.AppError as exc:
        return problem(request, lang, exc)
    return render(
        request,
        "mine.html",
        lang,
        {
            "title": tr(lang, N_("My bookings")),
            "notice": notice(lang, query(request).opt("notice")),
            "nav": nav(token, session, lang),
            "s": token,
            "admitted": session.admitted,
            "people": people,
            "waitroom_url": link(
                f"{ctx.settings.waitroom_url}/events/{session.event_id}/wait", lang=lang
            ),
        },
    )


async def cancel(request: Request) -> Response:
    lang = language(request)
    try:
        found = await shown_booking(request)
    except errors.AppError as exc:
        return problem(request, lang, exc)
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


async def cancel_post(request: Request) -> Response:
    f = await form(request)
    lang = language(request, f.opt("lang"))
    ctx = ctx_of(request)
    try:
        token, session = await current_session(request, f)
        resident = person(session, f.opt("who"))
        booking_id = f.get("b")
        idem = confirm.idempotency(
            session.actor, "cancel", f.get("key")[:200] or None, {"booking_id": booking_id}
        )
        await confirm.cancel_booking(ctx, session.actor, booking_id, resident.voucher, idem)
    except errors.AppError as exc:
        if exc.code in ("booking_state", "no_booking", "dose_rule"):
            return see_other(link("/book/mine", s=f.get("s"), notice=exc.code, lang=lang))
        return problem(request, lang, exc)
    return see_other(link("/book/mine", s=token, notice="cancelled", lang=lang))


async def finish_post(request: Request) -> Response:
    """End the session at once (a shared phone or a library computer)."""
    f = await form(request)
    lang = language(request, f.opt("lang"))
    try:
        _, session = await current_session(request, f)
        await sessions.end_session(ctx_of(request), session)
    except errors.SessionExpired:
        pass
    except errors.AppError as exc:
        return problem(request, lang, exc)
    return see_other(link("/", lang=lang))


def routes() -> list[Route]:
    return [
        Route("/book/mine", mine, methods=["GET"]),
        Route("/book/cancel", cancel, methods=["GET"]),
        Route("/book/cancel", cancel_post, methods=["POST"]),
        Route("/book/finish", finish_post, methods=["POST"]),
    ]
