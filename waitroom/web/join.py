"""POST /events/{event_id}/join: a signed ticket with the next number in line."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from machiai.errors import AppError
from waitroom.errors import BodyTooLarge, InvalidInput
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
from waitroom.web.page import error_page

MAX_BODY_BYTES = 4096


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) once it passes ``limit`` bytes: never read it all first."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
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
            f"/events/{event_id}/wait?t={token}&lang={lang}", status_code=303
        )
    else:
        response = status_response(
            event_id, result, 201 if created else 200, ticket=token,
            status_url=f"/events/{event_id}/status",
        )  # fmt: skip
    set_ticket_cookie(response, wr, event_id, token)
    return response
