"""Plain ASGI for the two hottest requests: status polls and API joins.

``GET /events/{id}/status`` comes from this process's snapshot with no Redis
round trip, and ``POST /events/{id}/join`` shares one round trip with the joins
around it, so the framework's routing and request objects become a large
share of their cost. This middleware answers them straight from the ASGI
scope — through the same functions, with the same bodies and errors as the
endpoints it stands in front of — and passes everything else on (form joins
from the waiting page, joins with a body, every other path).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from machiai.errors import AppError, app_error_handler
from waitroom.store.keys import EVENT_ID
from waitroom.web.common import (
    TICKET_HEADER,
    TICKET_QUERY,
    Waitroom,
    cookie_name,
    load_ticket,
    ticket_cookie,
)
from waitroom.web.common import status_json as render_status
from waitroom.web.join import join_line
from waitroom.web.status import fresh_snapshot, status_of

_HEADER = TICKET_HEADER.encode()
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _token(scope: Scope, event_id: str) -> str | None:
    """The ticket from the header, ``?t=`` or the cookie, read off the raw scope."""
    cookie = b""
    for name, value in scope["headers"]:
        if name == _HEADER:
            return str(value.decode("latin-1"))
        if name == b"cookie":
            cookie = value
    query = scope.get("query_string", b"")
    if query:
        found = parse_qs(query.decode("latin-1")).get(TICKET_QUERY)
        if found:
            return str(found[0])
    if cookie:
        wanted = cookie_name(event_id) + "="
        for part in cookie.decode("latin-1").split(";"):
            part = part.strip()
            if part.startswith(wanted):
                return str(part[len(wanted) :]) or None
    return None


class HotPaths:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/events/"):
            method = scope["method"]
            if method == "GET" and path.endswith("/status"):
                event_id = path[8:-7]
                if EVENT_ID.match(event_id):
                    await self.status(scope, receive, send, event_id)
                    return
            elif method == "POST" and path.endswith("/join") and _bodiless(scope):
                event_id = path[8:-5]
                if EVENT_ID.match(event_id):
                    await self.join(scope, receive, send, event_id)
                    return
        await self.app(scope, receive, send)

    async def status(self, scope: Scope, receive: Receive, send: Send, event_id: str) -> None:
        wr: Waitroom = scope["app"].state.waitroom
        try:
            ticket = load_ticket(wr, _token(scope, event_id), event_id)
            snap = await fresh_snapshot(wr, event_id)
            body = render_status(event_id, await status_of(wr, ticket, snap))
        except AppError as exc:
            response = await app_error_handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        await _send_json(send, 200, body)

    async def join(self, scope: Scope, receive: Receive, send: Send, event_id: str) -> None:
        wr: Waitroom = scope["app"].state.waitroom
        try:
            token, result, created = await join_line(
                wr, event_id, _token(scope, event_id), _client(scope, wr)
            )
        except AppError as exc:
            response = await app_error_handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        body = render_status(
            event_id, result, ticket=token, status_url=f"/events/{event_id}/status"
        )
        cookie = (b"set-cookie", ticket_cookie(wr, event_id, token))
        await _send_json(send, 201 if created else 200, body, cookie)


async def _send_json(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _bodiless(scope: Scope) -> bool:
    """A join without a body and not from the page's form (those go the framework's way)."""
    for name, value in scope["headers"]:
        if (
            (name == b"content-length" and value != b"0")
            or name == b"transfer-encoding"
            or (name == b"content-type" and b"form" in value)
        ):
            return False
    return True


def _client(scope: Scope, wr: Waitroom) -> str:
    if wr.settings.trust_forwarded:
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                return str(value.decode("latin-1").split(",")[0].strip())
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
