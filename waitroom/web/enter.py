"""GET|POST /events/{event_id}/enter: an admitted ticket's pass, and the way into booking."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from machiai import request_id
from machiai.errors import AppError, Busy
from machiai.pages import SECURITY_HEADERS
from waitroom.services.issue_pass import issue_pass
from waitroom.services.tickets import load_ticket
from waitroom.web.common import english, event_id_of, ticket_token, waitroom, wants_json
from waitroom.web.join import body_ticket


async def enter(request: Request) -> Response:
    wr = waitroom(request)
    event_id = event_id_of(request)
    token = ticket_token(request.scope, event_id, await body_ticket(request))
    try:
        ticket = load_ticket(wr, token, event_id)
        entry = await issue_pass(
            ticket, line=wr.line, store=wr.store, tokens=wr.tokens, settings=wr.settings,
            clock=wr.clock,
        )  # fmt: skip
    except AppError as exc:
        if wants_json(request) or isinstance(exc, Busy) or token is None:
            raise
        # A browser is sent back to its waiting page, which says where it stands.
        lang = "en" if english(request) else "ja"
        return RedirectResponse(
            f"/events/{event_id}/wait?t={token}&lang={lang}", 303, SECURITY_HEADERS
        )
    # One request id from the waitroom into booking (machiai/request_id.py): booking's
    # /enter adopts it, so both services' logs tell this resident's way in.
    redirect_url = f"{entry.redirect_url}&{request_id.QUERY_KEY}={request_id.current()}"
    if wants_json(request):
        return JSONResponse(
            {
                "pass": entry.pass_token,
                "redirect_url": redirect_url,
                "expires_at_ms": entry.expires_ms,
            }
        )
    # The pass rides in the URL: no Referer takes it along, no cache keeps it.
    return RedirectResponse(redirect_url, 303, SECURITY_HEADERS)
