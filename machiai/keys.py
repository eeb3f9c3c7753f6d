"""Redis keys that both services touch: the admission handoff from waitroom to booking.

Everything of one event shares the hash tag ``{ev:<event id>}`` so that the
waitroom's admission script and booking's session scripts can read each
other's keys atomically, on one Redis and on Redis Cluster alike.
Service-private keys live in each service's own keys module.
"""

from __future__ import annotations


def event_tag(prefix: str, event_id: str) -> str:
    return f"{prefix}{{ev:{event_id}}}"


def booking_sessions(prefix: str, event_id: str) -> str:
    """ZSET: booking session ids of this event -> expiry (ms, Redis TIME). Booking writes it;
    the waitroom counts its live members as residents active in booking."""
    return f"{event_tag(prefix, event_id)}:booking-sessions"


def used_passes(prefix: str, event_id: str) -> str:
    """ZSET: pass ids already redeemed for a booking session -> redemption time (ms).
    Booking adds a pass here atomically when it opens a session (a pass opens one session);
    the waitroom stops counting a redeemed pass as "admitted but not yet entered"."""
    return f"{event_tag(prefix, event_id)}:used-passes"


def booking_load(prefix: str, event_id: str) -> str:
    """HASH: booking's load report for this event (e.g. p95 latency ms, updated_ms);
    the waitroom's admission controller slows admission when it degrades."""
    return f"{event_tag(prefix, event_id)}:booking-load"


def event_inventory(prefix: str, event_id: str) -> str:
    """HASH: booking's count of bookable places left in this event ("remaining") and when it
    was computed ("updated_ms", Redis TIME taken just before the count). Before the event
    opens, "remaining" counts the places that will be bookable at opening. Booking refreshes
    it at least every second and at once when it hits 0 or comes back; the waitroom tells its
    line "sold out" only from a count taken after opening ("updated_ms" >= opening), and
    admits again when places come back."""
    return f"{event_tag(prefix, event_id)}:inventory"
