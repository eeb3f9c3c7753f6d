"""Every Redis key of the waitroom, built in this one module.

All keys of one event share the ``{ev:<id>}`` hash tag (``machiai.keys.event_tag``),
so each Lua script's keys live on one Redis Cluster slot together with the keys
booking shares with us (sessions, used passes, inventory, load report).
"""

from __future__ import annotations

from machiai import keys as shared
from machiai.inputs import EVENT_ID

__all__ = ["EVENT_ID"]  # what the events table accepts as an id; nothing else reaches a key


def event(prefix: str, event_id: str) -> str:
    """HASH: configuration, live state and counters of one event's line (see admit_next-10.lua)."""
    return f"{shared.event_tag(prefix, event_id)}:wr:event"


def batches(prefix: str, event_id: str) -> str:
    """ZSET: admission batches, score = Redis TIME second, member = admitted counter after it."""
    return f"{shared.event_tag(prefix, event_id)}:wr:batches"


def issued(prefix: str, event_id: str) -> str:
    """ZSET: ticket ids whose turn (still inside the hold) already got a pass -> turn ms."""
    return f"{shared.event_tag(prefix, event_id)}:wr:issued"


def passes(prefix: str, event_id: str) -> str:
    """ZSET: "pass id|ticket id" of passes issued, not yet seen redeemed -> expiry ms (active)."""
    return f"{shared.event_tag(prefix, event_id)}:wr:passes"


def pass_tickets(prefix: str, event_id: str) -> str:
    """HASH: pass id -> ticket id, for every member of ``passes`` (found from a used pass id)."""
    return f"{shared.event_tag(prefix, event_id)}:wr:pass-tickets"


def entered(prefix: str, event_id: str) -> str:
    """ZSET: ticket ids whose pass booking redeemed -> when seen (a ticket enters once)."""
    return f"{shared.event_tag(prefix, event_id)}:wr:entered"


def ticket_pass(prefix: str, event_id: str, ticket_id: str) -> str:
    """STRING with expiry: the pass of one admitted ticket ("pass_id|expires_ms|issued_s")."""
    return f"{shared.event_tag(prefix, event_id)}:wr:tp:{ticket_id}"


# -- "your turn is near" (issue 15): opt-ins of residents who left an address --------------
def optins(prefix: str, event_id: str) -> str:
    """ZSET: ticket ids waiting for their "your turn is near" message -> line index."""
    return f"{shared.event_tag(prefix, event_id)}:wr:optins"


def optin_data(prefix: str, event_id: str) -> str:
    """HASH: ticket id -> "line index|locale|kind|address|ticket token" of an opt-in not sent."""
    return f"{shared.event_tag(prefix, event_id)}:wr:optin-data"


def optin_claims(prefix: str, event_id: str) -> str:
    """ZSET: ticket ids a notifier took and has not yet written -> lease expiry ms."""
    return f"{shared.event_tag(prefix, event_id)}:wr:optin-claims"


def grace_ext(prefix: str, event_id: str) -> str:
    """ZSET: ticket ids whose turn's grace is extended (they opted in) -> line index."""
    return f"{shared.event_tag(prefix, event_id)}:wr:grace-ext"
