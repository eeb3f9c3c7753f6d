"""POST /events/{event_id}/join: a signed ticket with the next number in line.

A join another site's page sent (``web/origin.py``) gets no place and writes no cookie:
the browser left the resident's SameSite=Lax ticket cookie out of it, so the ticket it
holds cannot be seen here, and a new one would replace it (and with it their place). A
browser is sent to the waiting page instead, which sees the cookie and shows the place
held, or the join button to a first-comer from a city's site; a JSON client is refused
(403 ``cross_site_join``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from machiai.errors import AppError
from machiai.pages import SECURITY_HEADERS
from waitroom.errors import BodyTooLarge, CrossSiteJoin, InvalidInput
from waitroom.services.join_line import join_line
from waitroom.web.common import (
    client_id,
    english,
    event_id_of,
    set_ticket_cookie,
    status_response,
    ticket_token,
    waitroom,
    wants_json,
)
from waitroom.web.origin import from_another_site
from waitroom.web.page import error_page

MAX_BODY_BYTES = 4096


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) once it passes ``limit`` bytes: never read it all first."""
    declared = request.headers.get("content-length")
    # isascii: a header decoded as latin-1 may hold "²", which isdigit() takes and int() not.
    digits = declared is not None and declared.isascii() and declared.isdigit()
    if declared is not None and (not digits or int(declared) > limit):
        raise BodyTooLarge()
    if declared == "0" or (declared is None and "transfer-encoding" not in request.headers):
        return b""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def body_ticket(request: Request) -> str | None:
    """A ticket sent in a JSON body ({"ticket": ...}) or a form field ``t``."""
    raw = await bounded_body(request, MAX_BODY_BYTES)
    if not raw:
        return None
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            data: Any = json.loads(raw)
        except ValueError:
            raise InvalidInput(
                "Malformed JSON body.", "送信データの形式が正しくありません。"
            ) from None
        value = data.get("ticket") if isinstance(data, dict) else None
        return value if isinstance(value, str) and value else None
    fields = parse_qs(raw.decode("utf-8", "replace"))
    return fields.get("t", [None])[0]


async def join(request: Request) -> Response:
    event_id = event_id_of(request)
    if from_another_site(request.scope):
        if wants_json(request):
            raise CrossSiteJoin()
        lang = "en" if english(request) else "ja"
        return RedirectResponse(f"/events/{event_id}/wait?lang={lang}", 303, SECURITY_HEADERS)
    html = "form" in request.headers.get("content-type", "") and not wants_json(request)
    if not html:
        return await _join(request, event_id, html)
    try:
        return await _join(request, event_id, html)
    except AppError as exc:
        return error_page(request, event_id, exc)


async def _join(request: Request, event_id: str, html: bool) -> Response:
    wr = waitroom(request)
    token = ticket_token(request.scope, event_id, await body_ticket(request))
    token, result, created = await join_line(
        wr, event_id, token, client_id(request.scope, wr.settings)
    )
    if html:
        lang = "en" if english(request) else "ja"
        response: Response = RedirectResponse(
            f"/events/{event_id}/wait?t={token}&lang={lang}", 303, SECURITY_HEADERS
        )
    else:
        response = status_response(
            event_id, result, 201 if created else 200, ticket=token,
            status_url=f"/events/{event_id}/status",
        )  # fmt: skip
    set_ticket_cookie(response, wr, event_id, token)
    return response
