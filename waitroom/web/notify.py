"""GET|POST /events/{event_id}/notify: "get a message when your turn is near" (issue 15).

A page of its own, not a form on the waiting page: the waiting page reloads itself without
JavaScript, which would wipe an address being typed. A plain form (POST → 303 → the
waiting page), Japanese first, working without JavaScript or cookies (the ticket travels
as ``t`` like everywhere in the waitroom). A refused address shows the form again with
what was typed and why; a refusal of the line (turn came, event closed, not opened yet)
says so in words, never JSON.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from machiai.errors import AppError, Busy
from machiai.i18n import N_, tr
from machiai.pages import SECURITY_HEADERS
from machiai.tokens import Ticket
from waitroom.errors import BodyTooLarge, EventNotFound
from waitroom.services.tickets import load_ticket
from waitroom.services.turn_notice import OptIn, opt_in, read_opt_in
from waitroom.web.common import english, event_id_of, ticket_token, waitroom
from waitroom.web.page import BUSY_RETRY_S, page_response, render_page

MAX_FORM_BYTES = 8 * 1024
# Refusals of an opt-in said the way this page says them (others: the error's own words).
NOTIFY_REFUSALS = {
    "already_admitted": N_(
        "It is already your turn: no message is needed. Please go back and go to the booking page."
    ),
    "event_not_open_yet": N_(
        "You can ask for a message once the line has opened (your place is drawn at "
        "opening). Please come back to this page then."
    ),
    "event_closed": N_("This booking event has closed."),
}


def _lang(request: Request, fields: dict[str, str] | None = None) -> str:
    given = (fields or {}).get("lang")
    if given in ("en", "ja"):
        return str(given)
    return "en" if english(request) else "ja"


def _urls(event_id: str, token: str, lang: str) -> tuple[str, str]:
    """(this page, the waiting page), both carrying the ticket."""
    q = f"t={quote(token)}&lang={lang}"
    return f"/events/{event_id}/notify?{q}", f"/events/{event_id}/wait?{q}"


def _render(
    request: Request, event_id: str, token: str, lang: str, status: int = 200, **context: Any
) -> Response:
    wr = waitroom(request)
    here, back = _urls(event_id, token, lang)
    snap = wr.line.cached(event_id)
    name = tr(lang, "Waiting line")
    if snap is not None:
        name = snap.name_en if lang == "en" else snap.name_ja
    base: dict[str, Any] = {
        "title": tr(lang, "Get a message when your turn is near"),
        "event_name": name,
        "action": f"/events/{event_id}/notify",
        "ticket": token,
        "back_url": back,
        "lead_min": max(1, round(wr.settings.notify_lead_s / 60)),
        "extra_min": round(wr.settings.notify_extra_grace_s / 60),
        "form": True,
        "problems": {},
        "email": "",
        "webhook_id": "",
        "message": "",
    }
    base.update(context)
    retry_s = BUSY_RETRY_S if status == 503 else None
    return page_response(render_page("notify.html", lang, here, base), status, retry_s)


async def notify_form(request: Request) -> Response:
    event_id = event_id_of(request)
    lang = _lang(request)
    token = ticket_token(request.scope, event_id) or ""
    try:
        load_ticket(waitroom(request), token or None, event_id)
    except AppError as exc:
        return _refused(request, event_id, token, lang, exc)
    return _render(request, event_id, token, lang)


async def notify_post(request: Request) -> Response:
    event_id = event_id_of(request)
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BodyTooLarge()
    fields = {k: v[0][:500] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    lang = _lang(request, fields)
    token = fields.get("t") or ticket_token(request.scope, event_id) or ""
    email, hook = fields.get("email", ""), fields.get("webhook_id", "")
    wr = waitroom(request)
    try:
        ticket = load_ticket(wr, token or None, event_id)
    except AppError as exc:
        return _refused(request, event_id, token, lang, exc)
    choice, problems = read_opt_in(email, hook, lang)
    if choice is None:
        return _render(
            request, event_id, token, lang, 422, problems=problems, email=email, webhook_id=hook
        )
    return await _record(request, event_id, token, lang, ticket, choice)


async def _record(
    request: Request, event_id: str, token: str, lang: str, ticket: Ticket, choice: OptIn
) -> Response:
    try:
        await opt_in(waitroom(request), ticket, token, choice)
    except AppError as exc:
        return _refused(request, event_id, token, lang, exc)
    _, back = _urls(event_id, token, lang)
    return RedirectResponse(f"{back}&notify=saved", status_code=303, headers=SECURITY_HEADERS)


def _refused(request: Request, event_id: str, token: str, lang: str, exc: AppError) -> Response:
    """A refusal of the line, in words, and the way back to the waiting page."""
    if isinstance(exc, Busy):
        text = tr(lang, "The service is busy. Please try again in a moment.")
        return _render(request, event_id, token, lang, 503, form=False, message=text)
    if isinstance(exc, EventNotFound):
        text = tr(lang, "This booking event was not found.")
        return _render(request, event_id, token, lang, 404, form=False, message=text)
    said = NOTIFY_REFUSALS.get(exc.code)
    message = tr(lang, said) if said else (exc.message_en if lang == "en" else exc.message_ja)
    return _render(request, event_id, token, lang, exc.status, form=False, message=message)
