"""GET /events/{event_id}/status: a resident's place, from this process's snapshot (no Redis).

``web/hot.py`` answers the well-formed polls before routing; this endpoint answers the
rest (HEAD, a malformed event id) through the same functions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from waitroom.services.tickets import load_ticket, status_of
from waitroom.web.common import event_id_of, status_response, ticket_token, waitroom


def enter_path(event_id: str) -> str:
    return f"/events/{event_id}/enter"


async def status(request: Request) -> Response:
    wr = waitroom(request)
    event_id = event_id_of(request)
    ticket = load_ticket(wr, ticket_token(request.scope, event_id), event_id)
    snap = await wr.line.fresh_snapshot(event_id)
    return status_response(event_id, await status_of(wr, ticket, snap))
