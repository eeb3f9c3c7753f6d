"""GET /events/{event_id}/status: a resident's place, from this process's snapshot (no Redis)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from machiai.tokens import Ticket
from waitroom.errors import StoreUnavailable, TicketUnknown
from waitroom.services.admit_next import Snapshot
from waitroom.services.estimate_wait import TicketStatus, ticket_status
from waitroom.web.common import (
    Waitroom,
    event_id_of,
    load_ticket,
    status_response,
    ticket_token,
    waitroom,
)

# How much older than the snapshot a ticket may be and still be newer than it (clock skew).
FRESH_TICKET_S = 5


async def fresh_snapshot(wr: Waitroom, event_id: str) -> Snapshot:
    """The snapshot, refused as stale when the refresher has not reached Redis for a while."""
    snap = await wr.line.snapshot(event_id)
    if snap.age_s() > wr.settings.snapshot_stale_s:
        raise StoreUnavailable()
    return snap


async def status_of(wr: Waitroom, ticket: Ticket, snap: Snapshot) -> TicketStatus:
    try:
        return ticket_status(ticket, snap, wr.settings, wr.clock)
    except TicketUnknown:
        # A ticket newer than this process's snapshot (another process made it): refresh once.
        # An old ticket the line does not know stays unknown, at no Redis cost.
        snapshot_taken_s = time.time() - snap.age_s()  # both on this machine's wall clock
        if ticket.issued_at_s < snapshot_taken_s - FRESH_TICKET_S:
            raise
        snap = await wr.line.kick(ticket.event_id)
        return ticket_status(ticket, snap, wr.settings, wr.clock)


def enter_path(event_id: str) -> str:
    return f"/events/{event_id}/enter"


async def status(request: Request) -> Response:
    wr = waitroom(request)
    event_id = event_id_of(request)
    ticket = load_ticket(wr, ticket_token(request, event_id), event_id)
    snap = await fresh_snapshot(wr, event_id)
    result = await status_of(wr, ticket, snap)
    return status_response(event_id, result)
