"""Joining the line: the ticket a resident holds, or a new number in arrival order."""

from __future__ import annotations

from machiai.tokens import Ticket, new_id
from waitroom.errors import EventClosed, TicketRefused, TicketUnknown, TooManyRequests
from waitroom.services.context import Waitroom
from waitroom.services.estimate_wait import TicketStatus, status_at
from waitroom.services.tickets import load_ticket, status_of
from waitroom.store.redis_store import LineKind


async def join_line(
    wr: Waitroom, event_id: str, token: str | None, client: str
) -> tuple[str, TicketStatus, bool]:
    """A ticket for this resident: the one sent if valid (same place), else a new number.

    Invariant: a resident who sends a valid ticket keeps its place (no second number);
    new numbers go out in arrival order, counted against the client's limit first.
    Returns (ticket token, status, whether it is new)."""
    ticket: Ticket | None = None
    if token is not None:
        try:
            ticket = load_ticket(wr, token, event_id)
        except TicketRefused:
            ticket = None  # a spoilt old ticket does not stop a fresh join
    if ticket is None:
        # Counted before anything is looked up: floods (also of made-up events) stop here.
        _count_join(wr, client)
    snap = await wr.line.fresh_snapshot(event_id)
    if ticket is not None:
        assert token is not None
        try:
            return token, await status_of(wr, ticket, snap), False
        except TicketUnknown:
            # The line lost this place (Redis lost its counters): the resident is told to
            # join again, and joining again must give a new place, not the same refusal.
            _count_join(wr, client)
    if snap.live.state == "closed":
        raise EventClosed()
    number = await wr.batcher.take_number(event_id)
    prequeue = number.kind is LineKind.PREQUEUE
    ticket = Ticket(event_id, number.number, new_id(), prequeue)
    token = wr.tokens.dump_ticket(ticket)
    index = number.line_index
    if index is not None and index - number.admitted < max(1.0, snap.live.rate / 60):
        if snap.live.state == "open":
            # Safety net: nobody (or hardly anyone) ahead: admit now if booking has room.
            snap = await wr.line.kick(event_id)
    # The join's own reply knows its counters: no need to wait for the next refresh.
    admitted = max(number.admitted, snap.live.admitted)
    return token, status_at(index, admitted, snap, wr.settings, wr.clock), True


def _count_join(wr: Waitroom, client: str) -> None:
    """A new place costs the client one join of its allowance (429 beyond it)."""
    wait_s = wr.limiter.check(client)
    if wait_s:
        raise TooManyRequests(wait_s)
