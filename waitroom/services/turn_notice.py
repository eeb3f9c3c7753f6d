""" "Your turn is near" (issue 15): a waiting resident leaves an e-mail address or a bridge's
webhook id; about ``notify_lead_s`` before their turn one message goes out with the link
back to their place, and their turn waits ``notify_extra_grace_s`` longer.

Costs nothing on the status poll: opt-ins live in a Redis sorted set by line index, apart
from the line; the notifier (one per process, any number of processes) reads the admitted
counter and takes the opt-ins below ``admitted + lead`` in one script call per event and
refresh, where lead = residents the line admits in the lead time (the admission pace).

Invariant: each opt-in's message reaches the outbox exactly once. A claim moves it to a
leased set atomically (two notifiers never take the same one); the outbox write is keyed
by (event, ticket) in Postgres (a claim handed out again writes nothing twice); a failed
write puts the claims back, and a notifier that dies between claim and write leaves them
leased until the lease lapses, when the next claim hands them out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from machiai import contact
from machiai.i18n import N_
from machiai.tokens import Ticket
from waitroom.errors import (
    SCRIPT_ERRORS,
    EventNotOpenYet,
    ScriptError,
    StoreUnavailable,
    TicketUnknown,
)
from waitroom.services.context import Waitroom
from waitroom.services.estimate_wait import line_index
from waitroom.services.line import MAX_RELOADS, Line, Snapshot
from waitroom.services.tickets import FRESH_TICKET_S
from waitroom.settings import WaitroomSettings
from waitroom.store.redis_store import RedisStore, ScriptRefused

log = logging.getLogger(__name__)

# A claim not settled this long (its notifier died) is handed out again.
LEASE_MS = 60_000
# Most opt-ins one claim takes per event (the next round takes the rest).
CLAIM_MOST = 500
NOTIFY_EVERY_S = 1.0

# Writes (event id, [(ticket id, payload)]) to the outbox; returns how many were new.
Writer = Callable[[str, Sequence[tuple[str, dict[str, Any]]]], Awaitable[int]]


class Kind:
    EMAIL = "email"
    WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True)
class OptIn:
    """Where a resident asked the message to go, and in which language."""

    kind: str  # Kind.EMAIL or Kind.WEBHOOK
    address: str
    locale: str

    def record(self, token: str) -> str:
        # Neither an address nor a webhook id nor a ticket token contains "|" (their
        # patterns refuse it), so the record splits back unambiguously.
        return f"{self.locale}|{self.kind}|{self.address}|{token}"


def read_opt_in(email: str, webhook_id: str, locale: str) -> tuple[OptIn | None, dict[str, str]]:
    """The opt-in a form gave (exactly one of an address or a webhook id), or the
    problems by field (catalog msgids), each field checked on its own."""
    problems: dict[str, str] = {}
    given_email, given_hook = email.strip(), webhook_id.strip()
    if not given_email and not given_hook:
        problems["email"] = N_("Enter an e-mail address such as taro@example.jp.")
        return None, problems
    if given_email and given_hook:
        problems["webhook_id"] = N_("Give an e-mail address or an ID, not both.")
        return None, problems
    if given_email:
        address = contact.email_address(given_email)
        if address is None:
            problems["email"] = N_("Enter an e-mail address such as taro@example.jp.")
            return None, problems
        return OptIn(Kind.EMAIL, address, contact.locale(locale)), problems
    hook = contact.webhook_id(given_hook)
    if hook is None:
        problems["webhook_id"] = N_("The ID is letters, digits and . _ : + - (at most 64).")
        return None, problems
    return OptIn(Kind.WEBHOOK, hook, contact.locale(locale)), problems


async def opt_in(wr: Waitroom, ticket: Ticket, token: str, choice: OptIn) -> int:
    """Record the waiting ticket's opt-in (0 new, 1 replaced, 2 already being sent).

    Refused (nothing written) before the line has opened (a pre-queue place is known only
    at the draw), for a ticket the line does not know, after the turn came, and when the
    event is closed."""
    snap = await wr.line.fresh_snapshot(ticket.event_id)
    try:
        index = _index(ticket, snap)
    except TicketUnknown:
        # A ticket newer than the snapshot (another process made it): one refresh.
        if ticket.issued_at_s < time.time() - snap.age_s() - FRESH_TICKET_S:
            raise
        index = _index(ticket, await wr.line.kick(ticket.event_id))
    if index is None:
        raise EventNotOpenYet()
    for _ in range(1 + MAX_RELOADS):
        try:
            return await wr.store.opt_in(
                ticket.event_id, ticket.ticket_id, index, choice.record(token)
            )
        except ScriptRefused as refused:
            if refused.code is not ScriptError.NOT_LOADED:
                raise SCRIPT_ERRORS[refused.code]() from None
            wr.line.forget(ticket.event_id)  # Redis lost the event: load it again
            await wr.line.snapshot(ticket.event_id)
    raise StoreUnavailable()


def _index(ticket: Ticket, snap: Snapshot) -> int | None:
    if snap.live.n_pre is None:
        return None  # before opening: the draw has not placed anyone yet
    return line_index(ticket, snap)


def lead_residents(snap: Snapshot, lead_s: int) -> int:
    """How many residents the line admits in ``lead_s`` at the pace it moves now: the
    opt-ins that many places from the front get their message (0 while nobody moves)."""
    return math.ceil(snap.forecast.pace_per_min / 60 * lead_s)


def payload(snap: Snapshot, settings: WaitroomSettings, data: str, admitted: int) -> dict[str, Any]:
    """The outbox payload of one claimed opt-in (data: "index|locale|kind|address|token")."""
    index, locale, kind, address, token = data.split("|", 4)
    link = f"{settings.public_url}/events/{snap.event_id}/wait?t={quote(token)}&lang={locale}"
    return {
        "event_id": snap.event_id,
        "municipality_code": snap.municipality,
        "locale": locale,
        "email" if kind == Kind.EMAIL else "webhook_id": address,
        "link": link,
        "ahead": max(0, int(index) - admitted),
    }


async def notify_event(
    store: RedisStore,
    write: Writer,
    snap: Snapshot,
    settings: WaitroomSettings,
    now_ms: int | None = None,
) -> int:
    """One round for one event: claim the opt-ins whose turn is near, write their outbox
    rows, settle the claims. Returns how many claims were settled as written."""
    lead = lead_residents(snap, settings.notify_lead_s) if snap.live.state == "open" else 0
    admitted, taken = await store.claim_optins(
        snap.event_id, lead=lead, most=CLAIM_MOST, lease_ms=LEASE_MS, now_ms=now_ms
    )
    if not taken:
        return 0
    ids = [ticket_id for ticket_id, _ in taken]
    try:
        notices = [(t, payload(snap, settings, data, admitted)) for t, data in taken]
        await write(snap.event_id, notices)
    except BaseException:
        # Not written (Postgres down, a bad record, a cancel): back in line for the next
        # round (a cancel may find Redis gone too: then the lease hands them out again).
        with contextlib.suppress(StoreUnavailable):
            await store.settle_optins(snap.event_id, ids, done=False)
        raise
    await store.settle_optins(snap.event_id, ids, done=True)
    return len(ids)


class TurnNotifier:
    """The process's notifier: every NOTIFY_EVERY_S, each event this process has in use."""

    def __init__(
        self, line: Line, store: RedisStore, write: Writer, settings: WaitroomSettings
    ) -> None:
        self.line, self.store, self.write, self.settings = line, store, write, settings
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, now_ms: int | None = None) -> int:
        sent = 0
        for snap in self.line.snapshots():
            try:
                sent += await notify_event(self.store, self.write, snap, self.settings, now_ms)
            except StoreUnavailable:
                log.warning("turn notices of %s: store unavailable, retried", snap.event_id)
            except ScriptRefused:
                pass  # Redis lost the event: the refresher reloads it, the next round goes on
        return sent

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.run_once(self.line.clock())
            except Exception:
                log.exception("turn notifier round failed")
            await asyncio.sleep(max(0.0, NOTIFY_EVERY_S - (time.monotonic() - started)))

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="waitroom-turn-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
