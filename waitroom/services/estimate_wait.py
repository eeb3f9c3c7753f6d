"""A ticket's place, wait and next poll, computed from the process snapshot (no Redis).

Position is arithmetic: line index - admitted counter. A pre-queue ticket's
index is its shuffled place (prequeue_shuffle.permute), a later arrival's is
n_pre + arrival number.

The wait comes from the snapshot's forecast (``waitroom.services.pace``: the rate ×
backpressure factor, the active cap and how long residents stay in booking), as an
expected figure and a low–high range; the range is shown when it is wide.

Poll interval (the "next poll in N s" of every status):

    interval(ahead) = clamp(wait(ahead) / split, min_s, max_s)     (± 10 % jitter)

which is ahead / (split * r) at a steady r admissions per second. A resident
polls ~split times per halving of their wait, so the whole line sends about

    polls/s ≈ split*r * (1 + ln(min(N, split*r*max_s) / (split*r*min_s)))
              + max(0, N - split*r*max_s) / max_s

— the first term depends on the admission rate only; the second is the price
of every resident hearing about "sold out" or "closed" within max_s. For
N = 1,000,000 at r = 1000/min, split 5, min 2 s, max 300 s: ≈ 83 * (1 +
ln(150)) + 975,000 / 300 ≈ 500 + 3,250 ≈ 3,750 polls/s (vs 500,000 polls/s if
everyone polled every 2 s). ``polls_per_second`` computes it exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from machiai.tokens import Ticket
from waitroom.errors import TicketUnknown
from waitroom.services.line import Clock, Snapshot
from waitroom.services.prequeue_shuffle import permute
from waitroom.settings import WaitroomSettings

JITTER = 0.1
PREQUEUE_SPREAD_S = 10.0


class Phase(StrEnum):
    """Where one resident stands."""

    PREQUEUE = "prequeue"  # arrived before opening; placed at random at opening
    WAITING = "waiting"
    PAUSED = "paused"  # admission paused by the municipality; place kept
    SOLD_OUT = "sold_out"  # no slots left; standby in the same order
    ADMITTED = "admitted"  # your turn: enter before enter_by
    EXPIRED = "expired"  # the turn came and the grace period passed
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class TicketStatus:
    """What one resident is told.

    Invariant: a wait is told only while waiting, always with its range
    (low <= estimated <= high)."""

    phase: Phase
    event_state: str
    line_index: int | None
    position: int | None  # 1 = next
    ahead: int | None
    estimated_wait_s: int | None
    admission_rate_per_min: float
    slots_left: int | None
    poll_after_s: int
    opens_in_s: int | None
    enter_within_s: int | None
    wait_low_s: int | None = None
    wait_high_s: int | None = None
    # A pre-queue ticket's own number, told once the shuffle placed it (auditable).
    prequeue_no: int | None = None
    # More people ahead than places left: the page says what that means.
    more_ahead_than_slots: bool = False
    # Admitted on the extra grace of a "your turn is near" opt-in (the plain one passed).
    longer_grace: bool = False


def line_index(ticket: Ticket, snap: Snapshot) -> int | None:
    """The ticket's index in the line; None while its pre-queue is not yet shuffled.

    Raises TicketUnknown when the snapshot does not know the ticket's number:
    either the snapshot predates the join (refresh and ask again) or Redis lost
    the line (the ticket's place cannot be honoured)."""
    live = snap.live
    if ticket.prequeue:
        if live.n_pre is None:
            return None
        if ticket.arrival_no >= live.n_pre or live.seed is None:
            raise TicketUnknown()
        return permute(ticket.arrival_no, live.n_pre, live.seed)
    if live.n_pre is None or ticket.arrival_no >= live.arrivals:
        raise TicketUnknown()
    return live.n_pre + ticket.arrival_no


def poll_interval_s(ahead: int, rate_s: float, settings: WaitroomSettings) -> float:
    """Seconds until the next poll at a steady ``rate_s``: grows with the distance from the
    front (see module doc)."""
    return poll_after_wait_s(ahead / rate_s, settings)


def poll_after_wait_s(wait_s: float, settings: WaitroomSettings) -> float:
    """Seconds until the next poll for a resident ``wait_s`` from their turn."""
    raw = wait_s / settings.poll_split
    return float(min(settings.poll_max_s, max(settings.poll_min_s, raw)))


def polls_per_second(n: int, rate_per_min: float, settings: WaitroomSettings) -> float:
    """Steady polling load of a line of ``n`` at ``rate_per_min``, summed position by position.

    Exact sum for the first positions, integral of 1/interval beyond (no jitter)."""
    rate_s = rate_per_min / 60.0
    split_r = settings.poll_split * rate_s
    near = min(n, int(split_r * settings.poll_min_s))  # these poll every min_s
    far_from = min(n, int(split_r * settings.poll_max_s))  # from here on every max_s
    total = near / settings.poll_min_s
    if far_from > near:
        total += split_r * math.log(far_from / max(near, 1))
    total += (n - far_from) / settings.poll_max_s
    return total


def ticket_status(
    ticket: Ticket, snap: Snapshot, settings: WaitroomSettings, clock: Clock
) -> TicketStatus:
    """Everything a waiting resident is told, from the snapshot alone."""
    index = line_index(ticket, snap)
    prequeue_no = ticket.arrival_no if ticket.prequeue and index is not None else None
    return status_at(index, snap.live.admitted, snap, settings, clock, prequeue_no)


def status_at(
    index: int | None,
    admitted: int,
    snap: Snapshot,
    settings: WaitroomSettings,
    clock: Clock,
    prequeue_no: int | None = None,
) -> TicketStatus:
    """The status of line index ``index`` (None: pre-queue before the shuffle) when ``admitted``
    places are admitted (a fresh join may know a newer counter than the snapshot)."""
    live = snap.live
    now_ms = snap.now_ms(clock)
    event_state = "sold_out" if snap.sold_out and live.state == "open" else live.state
    ahead: int | None = None
    wait_s: int | None = None
    low: int | None = None
    high: int | None = None
    short = False
    opens_in_s: int | None = None
    enter_within_s: int | None = None
    if index is None:
        # Pre-queue before opening: come back just after the shuffle, spread over a few seconds.
        opens_in_s = max(0, math.ceil((live.opens_at_ms - now_ms) / 1000))
        phase = Phase.PREQUEUE
        poll = min(settings.poll_max_s, opens_in_s + random.uniform(1, PREQUEUE_SPREAD_S))
    elif index < admitted:
        turn_s = snap.admitted_at_s(index)
        left_s = None if turn_s is None else turn_s + settings.grace_s - now_ms // 1000
        poll = settings.poll_max_s
        if live.state == "closed":
            phase = Phase.CLOSED
        elif left_s is None or left_s <= 0:
            phase = Phase.EXPIRED
        else:
            phase, poll, ahead, enter_within_s = Phase.ADMITTED, settings.poll_min_s, 0, left_s
    else:
        ahead = index - admitted
        fc = snap.forecast
        if fc.exact:  # the common case, inlined: a status poll is the hottest request
            expected_s = low_s = high_s = (ahead + 0.5) / fc.per_s
        else:
            expected_s, low_s, high_s = fc.waits_s(ahead)
        poll = poll_after_wait_s(expected_s, settings)
        remaining = live.remaining
        # Sold out says so itself; this is for the line still moving towards too few places.
        short = remaining is not None and 0 < remaining <= ahead and live.state != "closed"
        if live.state == "closed":
            phase, poll = Phase.CLOSED, settings.poll_max_s
        elif snap.sold_out:
            phase = Phase.SOLD_OUT
        elif live.state == "paused":
            phase, poll = Phase.PAUSED, max(poll, 10.0)
        else:
            phase, wait_s = Phase.WAITING, math.ceil(expected_s)
            low, high = (wait_s, wait_s) if fc.exact else (math.ceil(low_s), math.ceil(high_s))
    return TicketStatus(
        phase=phase,
        event_state=event_state,
        line_index=index,
        position=None if ahead is None else ahead + 1,
        ahead=ahead,
        estimated_wait_s=wait_s,
        admission_rate_per_min=round(snap.forecast.pace_per_min, 1),
        slots_left=live.remaining,
        poll_after_s=max(1, round(poll * random.uniform(1 - JITTER, 1 + JITTER))),
        opens_in_s=opens_in_s,
        enter_within_s=enter_within_s,
        wait_low_s=low,
        wait_high_s=high,
        prequeue_no=prequeue_no,
        more_ahead_than_slots=short,
    )
