"""A resident's ticket: verified as sent, and where it stands in this process's snapshot."""

from __future__ import annotations

import time
from dataclasses import replace

from machiai.tokens import Ticket, TokenError
from waitroom.errors import TicketMissing, TicketRefused, TicketUnknown
from waitroom.services.context import Waitroom
from waitroom.services.estimate_wait import Phase, TicketStatus, ticket_status
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
        st = ticket_status(ticket, snap, wr.settings, wr.clock)
    except TicketUnknown:
        # An old ticket the line does not know stays unknown, at no Redis cost.
        snapshot_taken_s = time.time() - snap.age_s()  # both on this machine's wall clock
        if ticket.issued_at_s < snapshot_taken_s - FRESH_TICKET_S:
            raise
        snap = await wr.line.kick(ticket.event_id)
        st = ticket_status(ticket, snap, wr.settings, wr.clock)
    if st.phase is Phase.EXPIRED:
        # A turn that looks expired may run on a "your turn is near" opt-in's extra grace:
        # one Redis read, for such turns only (every other poll stays without one).
        return await _longer_grace(wr, ticket, snap, st)
    return st


async def _longer_grace(
    wr: Waitroom, ticket: Ticket, snap: Snapshot, st: TicketStatus
) -> TicketStatus:
    """The status of a turn past its plain grace: still admitted, with the time left, when
    the resident opted in and the longer grace has not passed (what issue_pass-9 lets in:
    every answer — poll, page, enter — says the same)."""
    extra_s = wr.settings.notify_extra_grace_s
    if extra_s <= 0 or st.line_index is None:
        return st
    turn_s = snap.admitted_at_s(st.line_index)
    if turn_s is None:
        return st
    left_s = turn_s + wr.settings.grace_s + extra_s - snap.now_ms(wr.clock) // 1000
    if left_s <= 0 or not await wr.store.grace_extended(ticket.event_id, ticket.ticket_id):
        return st
    return replace(
        st, phase=Phase.ADMITTED, ahead=0, position=1, enter_within_s=left_s, longer_grace=True
    )
