"""How fast the line will move: what limits admission now, what was measured, and a forecast.

Admission (``admit_next-10.lua``) is limited by

* the **rate budget**: ``rate × factor`` per minute. The factor drops below 1 while booking
  reports it is slow, and recovers by ``recover_per_s`` once booking is healthy again;
* the **active cap**: at most ``cap`` residents active in booking at once. A place frees when
  its resident leaves (booking session ended or expired, a turn abandoned after ``hold_s``),
  so once the cap binds admission runs at ``cap / D``, D being how long an admitted resident
  stays active;
* the line itself and the inventory (nobody left to admit, sold out): no wait is forecast
  there.

**D is measured, not assumed**, in two parts. A turn that takes no pass (the resident gave
up while waiting) holds its place for exactly ``hold_s``; the script counts, of the turns
admitted between ``hold_s`` and ``dormant_after_s`` ago, those still without a pass
("dormant"), which gives the share that abandon. The others ("engaged") hold their place as
long as their booking takes, measured with Little's law over the last ``WINDOW_S`` seconds
(since opening if sooner), flows in and out averaged (:meth:`FlowHistory.occupancy`): exact
in a steady state, and while the line fills (nobody has left yet) it reads as the time since
the first admission, growing until departures show the real figure. Then

    D = (1 − abandon) × D_engaged + abandon × hold_s

so the places that abandoned turns will hold are counted before they pile up. An achieved
rate is never taken for capacity: a line that was short admitted only whom it had.

**The forecast** is the fluid model of those limits: while places are free, ``r = rate ×
factor / 60`` per second with the active count moving as ``dA/dt = r − A/D``; once A reaches
the cap, ``cap / D`` per second. Three cases bound what is not known:

* *expected*: a slow spell (factor < 1) lasts as long again as it has so far (at least
  ``SLOW_MIN_S``), then the factor recovers at ``recover_per_s``; D as measured;
* *fast*: the factor recovers from now on; D shorter by its spread;
* *slow*: the slow spell lasts ``SLOW_FACTOR`` times longer; D longer by its spread, and at
  least ``hold_s`` until someone has left (before that D is known only from below).

D's spread is 1/√(departures measured + 1), at most ``MAX_SPREAD``. Each case is a short list
of breakpoints (seconds from now, admissions by then) computed once per refresh, so a status
poll reads its wait with one bisection per case and no Redis round trip.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

# Flows are measured over this much of the recent past: long enough that a few seconds of
# quiet or of burst do not read as the line's pace, short enough to follow a change.
WINDOW_S = 120.0
# A slow spell is expected to last as long again as it has lasted, and at least this long
# (booking's p95 is taken over 10 s: a spell rarely ends sooner).
SLOW_MIN_S = 20.0
SLOW_FACTOR = 3.0
MAX_SPREAD = 0.9
MIN_OCCUPANCY_S = 1.0
# A sample this much older than the last one is a late answer of an overlapping refresh
# (dropped); further back, the clock itself went back (the history starts again).
OUT_OF_ORDER_S = 5.0
# Breakpoints stop here; the last pace continues beyond.
HORIZON_S = 7 * 86400.0
# Steps of the forecast grow geometrically from FIRST_STEP_S: precise near, coarse far.
FIRST_STEP_S = 1.0
STEP_GROWTH = 1.25


@dataclass(frozen=True, slots=True)
class Limits:
    """What limits admission now, as one refresh saw it (rates per minute, times in seconds)."""

    rate_per_min: float
    factor: float
    recover_per_s: float
    cap: int
    active: int
    occupancy_s: float | None  # D as measured; None before anyone was admitted in the window
    departures: int  # residents seen leaving in the window (what D rests on)
    spread: float  # relative uncertainty of occupancy_s
    slow_for_s: float  # how long the factor has been below 1 (0 when it is 1)
    hold_s: float  # an admitted resident who does nothing holds a place this long


@dataclass(frozen=True, slots=True)
class Curve:
    """Admissions from now: ``counts[i]`` admitted by ``times[i]`` seconds (linear in between),
    then ``tail_per_s`` per second for ever.

    Invariant: times and counts start at 0 and never decrease."""

    times: tuple[float, ...]
    counts: tuple[float, ...]
    tail_per_s: float

    def wait_s(self, admissions: float) -> float:
        """Seconds until ``admissions`` more residents are admitted."""
        counts = self.counts
        if admissions >= counts[-1]:
            return self.times[-1] + (admissions - counts[-1]) / self.tail_per_s
        i = bisect.bisect_right(counts, admissions)
        c0, c1 = counts[i - 1], counts[i]
        t0, t1 = self.times[i - 1], self.times[i]
        return t0 + (t1 - t0) * (admissions - c0) / (c1 - c0)

    @property
    def first_per_s(self) -> float:
        """The pace right now (admissions per second)."""
        if len(self.times) < 2:
            return self.tail_per_s
        return (self.counts[1] - self.counts[0]) / (self.times[1] - self.times[0])


@dataclass(frozen=True, slots=True)
class Forecast:
    """The three cases of the line's pace (see the module docstring).

    Invariant: for any number of admissions, fast ≤ expected ≤ slow in time."""

    expected: Curve
    fast: Curve
    slow: Curve
    # All three cases agree and the pace is steady (rate-bound, factor 1): then a wait is
    # (ahead + 0.5) / per_s, one division (the common case, on the status poll's hot path).
    exact: bool
    per_s: float  # the steady pace when exact
    pace_per_min: float  # the expected pace right now

    def waits_s(self, ahead: int) -> tuple[float, float, float]:
        """(expected, low, high) seconds until a resident with ``ahead`` before them is
        admitted: on average their own admission is half a token away after the last one
        ahead of them."""
        n = ahead + 0.5
        if self.exact:
            wait = n / self.per_s
            return wait, wait, wait
        expected = self.expected.wait_s(n)
        return expected, min(expected, self.fast.wait_s(n)), max(expected, self.slow.wait_s(n))


@dataclass(slots=True)
class _Sample:
    t_s: float
    admitted: int
    engaged: int  # active minus dormant: residents using (or about to use) their turn
    dormant: int
    matured: int
    area: float  # ∫ engaged dt from the first sample kept, in place-seconds


@dataclass(frozen=True, slots=True)
class Occupancy:
    """How long an admitted resident holds a place, as measured over the window.

    Invariant: ``mean_s = (1 − abandon) × engaged_s + abandon × hold_s`` when measured."""

    engaged_s: float | None  # D of residents who use their turn; None: nothing measured
    abandon: float  # share of turns that take no pass (they hold a place for hold_s)
    departures: int  # engaged residents seen leaving (what engaged_s rests on)

    def mean_s(self, hold_s: float) -> float | None:
        if self.engaged_s is None:
            # Nobody seen using a turn: known only if nobody does (every turn held hold_s).
            return hold_s if self.abandon >= 1.0 else None
        return (1 - self.abandon) * self.engaged_s + self.abandon * hold_s


class FlowHistory:
    """One event's admitted counter, engaged and dormant counts over time, as this process's
    refreshes saw them, kept for ``WINDOW_S``.

    Invariant: samples are in time order and the admitted counter never decreases; a
    history that sees time or the counter go back (Redis lost the line, a test's clock)
    starts again."""

    def __init__(self, dormant_after_s: float = 20.0) -> None:
        self._samples: deque[_Sample] = deque()
        self.slow_since_s: float | None = None
        self.dormant_after_s = dormant_after_s

    def add(
        self,
        t_s: float,
        admitted: int,
        active: int,
        factor: float,
        dormant: int = 0,
        matured: int = 0,
    ) -> None:
        samples = self._samples
        if samples:
            last = samples[-1]
            if t_s < last.t_s and last.t_s - t_s < OUT_OF_ORDER_S:
                return  # two refreshes overlapped and the older answer came back last
            if t_s < last.t_s or admitted < last.admitted:
                samples.clear()
                self.slow_since_s = None
        area = 0.0
        if samples:
            last = samples[-1]
            area = last.area + last.engaged * (t_s - last.t_s)
        engaged = max(0, active - dormant)
        samples.append(_Sample(t_s, admitted, engaged, dormant, matured, area))
        # Keep one sample at or before the window's start, so the window is fully covered.
        while len(samples) > 2 and samples[1].t_s <= t_s - WINDOW_S:
            samples.popleft()
        if factor < 1.0:
            if self.slow_since_s is None:
                self.slow_since_s = t_s
        else:
            self.slow_since_s = None

    def occupancy(self) -> Occupancy:
        """Little's law over the window for the engaged, the abandon share from the dormant.

        Of the turns that matured (admitted between hold_s and dormant_after_s ago) the
        dormant ones took no pass: ``abandon = Σ dormant / Σ matured`` over the samples. The
        engaged count rises by every admission and falls by every engaged departure and by
        every turn that turns dormant (about ``abandon`` of the admissions), so over the
        window, with ``a`` admitted and E the engaged count,

            departures = (1 − abandon) a − ΔE,  D = (∫E dt − abandon · a · dormant_after_s)
                                                    / ((1 − abandon) a − ΔE / 2)

        — flows in and out averaged; the abandoners' first seconds, spent among the engaged,
        taken out of the area."""
        samples = self._samples
        matured = sum(x.matured for x in samples)
        abandon = min(1.0, sum(x.dormant for x in samples) / matured) if matured else 0.0
        if len(samples) < 2:
            return Occupancy(None, abandon, 0)
        first, last = samples[0], samples[-1]
        admitted = last.admitted - first.admitted
        engaged_in = (1 - abandon) * admitted
        rise = last.engaged - first.engaged
        departures = max(0, round(engaged_in - rise))
        flows = engaged_in - rise / 2
        area = last.area - first.area - abandon * admitted * self.dormant_after_s
        if flows <= 0 or area <= 0:
            return Occupancy(None, abandon, departures)
        return Occupancy(max(MIN_OCCUPANCY_S, area / flows), abandon, departures)

    def slow_for_s(self, now_s: float) -> float:
        return 0.0 if self.slow_since_s is None else max(0.0, now_s - self.slow_since_s)


def limits_of(
    history: FlowHistory,
    *,
    now_s: float,
    rate_per_min: float,
    factor: float,
    recover_per_s: float,
    cap: int,
    active: int,
    hold_s: float,
) -> Limits:
    occupancy = history.occupancy()
    return Limits(
        rate_per_min=rate_per_min,
        factor=factor,
        recover_per_s=recover_per_s,
        cap=cap,
        active=active,
        occupancy_s=occupancy.mean_s(hold_s),
        departures=occupancy.departures,
        spread=min(MAX_SPREAD, 1.0 / math.sqrt(occupancy.departures + 1)),
        slow_for_s=history.slow_for_s(now_s),
        hold_s=hold_s,
    )


def _step(a: float, r: float, cap: float, d: float, dt: float) -> list[tuple[float, float, float]]:
    """The fluid model over ``dt`` seconds at ``r`` per second from ``a`` active: a list of
    (seconds into the step, admissions so far, active then) ending at ``dt``, exact for a
    constant rate (a breakpoint where the cap starts to bind)."""
    points: list[tuple[float, float, float]] = []
    t = 0.0
    n = 0.0
    if a > cap:  # more active than the cap allows (it was lowered): nobody until some leave
        drain = d * math.log(a / cap)
        if drain >= dt:
            return [(dt, 0.0, a * math.exp(-dt / d))]
        t, a = drain, cap
        points.append((t, n, a))
    left = dt - t
    if r * d <= cap:  # never binds: the active count settles at r·d
        return [*points, (dt, n + r * left, r * d + (a - r * d) * math.exp(-left / d))]
    # Binds once the active count reaches the cap; from then on places free at cap / d.
    bind = 0.0 if a >= cap else d * math.log((r * d - a) / (r * d - cap))
    if bind >= left:
        return [*points, (dt, n + r * left, r * d + (a - r * d) * math.exp(-left / d))]
    if bind > 0:
        n += r * bind
        points.append((t + bind, n, cap))
    return [*points, (dt, n + (left - bind) * cap / d, cap)]


def _factor_pieces(lim: Limits, slow_for_s: float) -> list[tuple[float, float]]:
    """(until second, factor) pieces: ``lim.factor`` for ``slow_for_s``, then a linear
    recovery to 1 (taken piecewise by its midpoints), then 1."""
    if lim.factor >= 1.0:
        return [(HORIZON_S, 1.0)]
    pieces = [(slow_for_s, lim.factor)] if slow_for_s > 0 else []
    ramp_s = (1.0 - lim.factor) / lim.recover_per_s
    steps = 4
    for k in range(steps):
        mid = lim.factor + (1.0 - lim.factor) * (k + 0.5) / steps
        pieces.append((slow_for_s + ramp_s * (k + 1) / steps, mid))
    pieces.append((HORIZON_S, 1.0))
    return pieces


def _curve(lim: Limits, slow_for_s: float, occupancy_s: float | None) -> Curve:
    base_per_s = lim.rate_per_min / 60.0
    pieces = _factor_pieces(lim, slow_for_s)
    cap = float(max(lim.cap, 0))
    # Nothing measured: the cap is taken as not binding (the slow case passes hold_s).
    d = math.inf if occupancy_s is None else occupancy_s
    unbound = math.isinf(d) or (base_per_s * d <= cap and lim.active <= cap)
    if unbound and len(pieces) == 1:
        return Curve((0.0,), (0.0,), max(base_per_s * pieces[0][1], 1e-9))
    times, counts = [0.0], [0.0]
    t, n, a = 0.0, 0.0, float(lim.active)
    step = FIRST_STEP_S
    piece = 0
    while t < HORIZON_S:
        while pieces[piece][0] <= t:
            piece += 1
        end = min(t + step, pieces[piece][0], HORIZON_S)
        r = base_per_s * pieces[piece][1]
        if math.isinf(d):
            n += r * (end - t)
            times.append(end)
            counts.append(n)
        else:
            points = _step(a, r, cap, d, end - t)
            for dt, dn, _active in points:
                times.append(t + dt)
                counts.append(n + dn)
            n, a = counts[-1], points[-1][2]
        t = end
        step *= STEP_GROWTH
    if math.isinf(d):
        tail = base_per_s
    else:
        tail = base_per_s if base_per_s * d <= cap else cap / d
    if tail <= 0:
        tail = 1e-9  # a cap of 0: nobody is admitted, and the wait is "very long"
    return Curve(tuple(times), tuple(counts), tail)


def forecast(lim: Limits) -> Forecast:
    """The three cases of the line's pace from ``lim`` (see the module docstring).

    Invariant: nothing but the limits goes in — a rate achieved while the line was short
    is never taken for what admission can do."""
    spell = max(lim.slow_for_s, SLOW_MIN_S) if lim.factor < 1.0 else 0.0
    d = lim.occupancy_s
    expected = _curve(lim, spell, d)
    long_d = lim.hold_s if d is None else d * (1 + lim.spread)
    if lim.departures == 0:
        long_d = max(long_d, lim.hold_s)
    if lim.factor >= 1.0 and lim.active <= lim.cap and lim.rate_per_min / 60.0 * long_d <= lim.cap:
        # Rate-bound whatever D turns out to be: the three cases are one.
        exact = len(expected.times) == 1
        return Forecast(
            expected, expected, expected, exact, expected.tail_per_s, expected.first_per_s * 60
        )
    fast = _curve(lim, 0.0, None if d is None else d * (1 - lim.spread))
    slow = _curve(lim, spell * SLOW_FACTOR, long_d)
    return Forecast(expected, fast, slow, False, expected.tail_per_s, expected.first_per_s * 60)
