"""Entering booking: an admitted ticket gets its one live admission pass."""

from __future__ import annotations

from dataclasses import dataclass

from machiai.tokens import AdmissionPass, Ticket, Tokens, new_id
from waitroom.errors import SCRIPT_ERRORS, EventClosed, NotAdmittedYet, ScriptError
from waitroom.services.admit_next import Clock, Line
from waitroom.services.estimate_wait import line_index
from waitroom.settings import WaitroomSettings
from waitroom.store.redis_store import PassResult, RedisStore, ScriptRefused


@dataclass(frozen=True, slots=True)
class Entry:
    pass_token: str
    redirect_url: str
    expires_ms: int
    new: bool


async def issue_pass(
    ticket: Ticket,
    *,
    line: Line,
    store: RedisStore,
    tokens: Tokens,
    settings: WaitroomSettings,
    clock: Clock,
) -> Entry:
    """The ticket's pass into booking, if its turn came within the grace period.

    Invariant: one ticket has at most one live pass (the same token comes back
    until it is redeemed or expires), so a ticket cannot open several sessions."""
    snap = await line.snapshot(ticket.event_id)
    index = line_index(ticket, snap)
    if snap.live.state == "closed":
        raise EventClosed()
    # Refuse from the snapshot when clearly not admitted: no Redis round trip for impatience.
    if index is None or index >= snap.live.admitted:
        raise NotAdmittedYet()
    pass_id = new_id()
    token = tokens.dump_pass(AdmissionPass(ticket.event_id, ticket.ticket_id, pass_id))
    try:
        result: PassResult = await store.issue_pass(
            ticket.event_id,
            ticket_id=ticket.ticket_id,
            line_index=index,
            pass_id=pass_id,
            token=token,
            pass_ttl_ms=settings.core.pass_ttl_s * 1000,
            grace_ms=settings.grace_s * 1000,
            hold_ms=settings.hold_s * 1000,
            now_ms=clock(),
        )
    except ScriptRefused as refused:
        if refused.code is ScriptError.NOT_LOADED:
            line.forget(ticket.event_id)
            return await issue_pass(
                ticket, line=line, store=store, tokens=tokens, settings=settings, clock=clock
            )
        raise SCRIPT_ERRORS[refused.code]() from None
    return Entry(
        pass_token=result.token,
        redirect_url=f"{settings.booking_url}/enter?pass={result.token}",
        expires_ms=result.expires_ms,
        new=result.new,
    )
