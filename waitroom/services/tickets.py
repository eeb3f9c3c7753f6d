"""A resident's ticket: verified as sent, and where it stands in this process's snapshot."""

from __future__ import annotations

import time

from machiai.tokens import Ticket, TokenError
from waitroom.errors import TicketMissing, TicketRefused, TicketUnknown
from waitroom.services.context import Waitroom
from waitroom.services.estimate_wait import TicketStatus, ticket_status
from waitroom.services.line import Snapshot

MAX_TOKEN_CHARS = 512
# How much older than the snapshot a ticket may be and still be newer than it (clock skew).
FRESH_TICKET_S = 5

TOKEN_ERRORS = {
    "token_invalid": ("ticket_invalid", "整理券が正しくありません。", "This ticket is not valid."),
    "token_expired": (
        "ticket_expired",
        "整理券の有効期限が切れました。もう一度列に並んでください。",
        "This ticket has expired. Please join the line again.",
    ),
    "token_wrong_event": (
        "ticket_wrong_event",
        "この整理券は別の予約受付のものです。",
        "This ticket belongs to another booking event.",
    ),
}


def load_ticket(wr: Waitroom, token: str | None, event_id: str) -> Ticket:
    """A verified ticket of this event, or a refusal with a precise code.

    Invariant: a ticket that is missing, oversized, tampered, expired or of another event
    grants nothing."""
    if token is None:
        raise TicketMissing()
    if len(token) > MAX_TOKEN_CHARS:
        raise TicketRefused()
    try:
        return wr.tokens.load_ticket(token, wr.settings.ticket_ttl_s, event_id)
    except TokenError as exc:
        code, ja, en = TOKEN_ERRORS.get(exc.code, TOKEN_ERRORS["token_invalid"])
        raise TicketRefused(en, ja, code=code) from None


async def status_of(wr: Waitroom, ticket: Ticket, snap: Snapshot) -> TicketStatus:
    """Where the ticket stands, from the snapshot.

    Invariant: a poll costs no Redis round trip, except once for a ticket newer than the
    snapshot (another process made it)."""
    try:
        return ticket_status(ticket, snap, wr.settings, wr.clock)
    except TicketUnknown:
        # An old ticket the line does not know stays unknown, at no Redis cost.
        snapshot_taken_s = time.time() - snap.age_s()  # both on this machine's wall clock
        if ticket.issued_at_s < snapshot_taken_s - FRESH_TICKET_S:
            raise
        snap = await wr.line.kick(ticket.event_id)
        return ticket_status(ticket, snap, wr.settings, wr.clock)
