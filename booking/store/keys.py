"""Every Redis key booking writes, built in this one module.

Hash tags keep each Lua script's keys on one cluster slot: a slot's inventory
and its holds share ``{sl:<slot id>}``; a resident's hold pointer and throttle
counter live under ``{rs:<municipality>:<voucher>}``. The waitroom handoff keys
(``{ev:<event id>}``) come from :mod:`machiai.keys`.
"""

from __future__ import annotations


def slot_tag(prefix: str, slot_id: str) -> str:
    return f"{prefix}{{sl:{slot_id}}}"


def slot_inventory(prefix: str, slot_id: str) -> str:
    """HASH: cap, booked, closed (0/1), from_ms, until_ms (bookable window), phone (of booked,
    the operators'), kept (places kept for the phone until) release_ms, ver (Postgres)."""
    return f"{slot_tag(prefix, slot_id)}:inv"


def slot_holds(prefix: str, slot_id: str) -> str:
    """ZSET of web holds: ``<token>:<municipality>:<voucher>`` -> expiry (ms, Redis TIME).
    Expired members are skipped and pruned lazily."""
    return f"{slot_tag(prefix, slot_id)}:holds"


def slot_phone_holds(prefix: str, slot_id: str) -> str:
    """ZSET of operators' holds, as :func:`slot_holds`: apart, so the hold script can count
    what the phone occupies of its kept share."""
    return f"{slot_tag(prefix, slot_id)}:phone-holds"


def resident_hold(prefix: str, municipality: str, voucher: str) -> str:
    """STRING ``<slot id>.<token>`` (the public hold id) with PX = hold time: the
    resident's one live hold. The slot's holds ZSET member is ``<token>:<resident>``."""
    return f"{prefix}{{rs:{municipality}:{voucher}}}:hold"


def resident_hold_extended(prefix: str, municipality: str, voucher: str) -> str:
    """STRING: the public id of the hold the resident extended once, PX = the pointer's."""
    return f"{prefix}{{rs:{municipality}:{voucher}}}:extended"


def throttle_voucher(prefix: str, municipality: str, voucher: str) -> str:
    """STRING counter of failed identity attempts for one voucher, PX = window."""
    return f"{prefix}{{rs:{municipality}:{voucher}}}:attempts"


def throttle_client(prefix: str, client: str) -> str:
    """STRING counter of identity attempts from one client address, PX = window."""
    return f"{prefix}{{cl:{client}}}:attempts"


def event_marks(prefix: str) -> str:
    """HASH: event id -> what its slots were last mirrored from (window, closed, phone
    share: booking.store.pg.EVENT_MARK_SQL); a different one in Postgres (an administrator
    changed the event) mirrors them again."""
    return f"{prefix}booking:event-marks"


def lookup_sessions(prefix: str, event_id: str) -> str:
    """ZSET: "my bookings" session ids of this event -> expiry (unix ms). Booking's own:
    these sessions see and cancel, they are not residents active in booking (the
    waitroom's ``booking-sessions``)."""
    return f"{prefix}{{ev:{event_id}}}:lookup-sessions"


def epoch(prefix: str) -> str:
    """STRING: set once the inventory was rebuilt; its absence means Redis lost our data."""
    return f"{prefix}booking:epoch"


def staff_console(prefix: str, session_id: str) -> str:
    """STRING (JSON: the staff token, the session's CSRF secret, the login) with PX = the
    console's idle timeout, reset on every page: a staff member's signed-in browser."""
    return f"{prefix}staff-console:{session_id}"
