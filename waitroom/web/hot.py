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

import time

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from machiai.errors import AppError, app_error_handler
from machiai.metrics import RequestTally
from waitroom.services.context import Waitroom
from waitroom.services.join_line import join_line
from waitroom.services.tickets import load_ticket, status_of
from waitroom.store.keys import EVENT_ID
from waitroom.web.common import client_id, ticket_cookie, ticket_token
from waitroom.web.common import status_json as render_status

# The routes these answers stand in for (waitroom/app.py routes the same paths).
STATUS_ROUTE = "/events/{event_id}/status"
JOIN_ROUTE = "/events/{event_id}/join"
_JSON_HEADERS = [(b"content-type", b"application/json")]


class HotPaths:
    """``tally``: the service's metrics (None when off); these answers go into it here,
    with the status they were sent with, as the metrics middleware would record them."""

    def __init__(self, app: ASGIApp, tally: RequestTally | None = None) -> None:
        self.app = app
        self.tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/events/"):
            method = scope["method"]
            if method == "GET" and path.endswith("/status"):
                event_id = path[8:-7]
                if EVENT_ID.match(event_id):
                    started = time.monotonic()
                    answered = await self.status(scope, receive, send, event_id)
                    if self.tally is not None:
                        self.tally.record(scope, STATUS_ROUTE, answered, started)
                    return
            elif method == "POST" and path.endswith("/join") and _bodiless(scope):
                event_id = path[8:-5]
                if EVENT_ID.match(event_id):
                    started = time.monotonic()
                    answered = await self.join(scope, receive, send, event_id)
                    if self.tally is not None:
                        self.tally.record(scope, JOIN_ROUTE, answered, started)
                    return
        await self.app(scope, receive, send)

    async def status(self, scope: Scope, receive: Receive, send: Send, event_id: str) -> int:
        wr: Waitroom = scope["app"].state.waitroom
        try:
            ticket = load_ticket(wr, ticket_token(scope, event_id), event_id)
            snap = await wr.line.fresh_snapshot(event_id)
            body = render_status(event_id, await status_of(wr, ticket, snap))
        except AppError as exc:
            response = await app_error_handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return response.status_code
        await _send_json(send, 200, body)
        return 200

    async def join(self, scope: Scope, receive: Receive, send: Send, event_id: str) -> int:
        wr: Waitroom = scope["app"].state.waitroom
        try:
            token, result, created = await join_line(
                wr, event_id, ticket_token(scope, event_id), client_id(scope, wr.settings)
            )
        except AppError as exc:
            response = await app_error_handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return response.status_code
        body = render_status(
            event_id, result, ticket=token, status_url=f"/events/{event_id}/status"
        )
        cookie = (b"set-cookie", ticket_cookie(wr, event_id, token))
        answered = 201 if created else 200
        await _send_json(send, answered, body, cookie)
        return answered


async def _send_json(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _bodiless(scope: Scope) -> bool:
    """A join without a body and not from a browser's page: forms, bodies and whatever a
    browser sends with Origin or Sec-Fetch-Site (another site's page may post an empty
    text/plain form) go the framework's way, where ``join`` looks at where they came from."""
    for name, value in scope["headers"]:
        if (
            (name == b"content-length" and value != b"0")
            or name == b"transfer-encoding"
            or (name == b"content-type" and b"form" in value)
            or name == b"origin"
            or name == b"sec-fetch-site"
        ):
            return False
    return True
