"""Entering booking: an admitted ticket gets its one live admission pass."""

from __future__ import annotations

import time
from dataclasses import dataclass

from machiai.tokens import AdmissionPass, Ticket, Tokens, new_id
from waitroom.errors import (
    SCRIPT_ERRORS,
    EventClosed,
    NotAdmittedYet,
    ScriptError,
    StoreUnavailable,
)
from waitroom.services.estimate_wait import line_index
from waitroom.services.line import MAX_RELOADS, Clock, Line
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

    Invariant: one ticket has at most one live pass, and Redis decides which before
    anything is signed; the same pass is signed again at its issue time, so the same
    token comes back until it is redeemed or expires (a ticket cannot open several
    sessions). An event Redis lost is reloaded at most MAX_RELOADS times, then busy."""
    for _ in range(1 + MAX_RELOADS):
        snap = await line.snapshot(ticket.event_id)
        index = line_index(ticket, snap)
        if snap.live.state == "closed":
            raise EventClosed()
        # Refuse from the snapshot when clearly not admitted: no Redis round trip for
        # impatience. Not when the turn may have come since: another process's newer
        # snapshot may have told this resident "admitted" (with several workers, snapshots
        # differ by up to a refresh), and a resident told so is never refused here; within
        # a minute's admissions of the counter, the script decides.
        if index is None or index >= snap.live.admitted + max(1, snap.admitted_last_min):
            raise NotAdmittedYet()
        try:
            result: PassResult = await store.issue_pass(
                ticket.event_id,
                ticket_id=ticket.ticket_id,
                line_index=index,
                pass_id=new_id(),
                # This process's wall clock, never the injected one: booking checks the
                # pass's age on its own clock and refuses a pass signed in the future.
                issued_s=int(time.time()),
                pass_ttl_ms=settings.core.pass_ttl_s * 1000,
                grace_ms=settings.grace_s * 1000,
                hold_ms=settings.hold_s * 1000,
                now_ms=clock(),
                # A resident who asked to be told their turn is near keeps it longer.
                extra_grace_ms=settings.notify_extra_grace_s * 1000,
            )
        except ScriptRefused as refused:
            if refused.code is not ScriptError.NOT_LOADED:
                raise SCRIPT_ERRORS[refused.code]() from None
            line.forget(ticket.event_id)  # the next snapshot loads it from Postgres again
            continue
        admission = AdmissionPass(
            ticket.event_id, ticket.ticket_id, result.pass_id, issued_at_s=result.issued_s
        )
        token = tokens.dump_pass(admission)
        return Entry(
            pass_token=token,
            redirect_url=f"{settings.booking_url}/enter?pass={token}",
            expires_ms=result.expires_ms,
            new=result.new,
        )
    raise StoreUnavailable()
