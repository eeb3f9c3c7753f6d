"""A city's opening, second by second, without HTTP or Redis (``simulate_opening`` runs it).

Every wait a resident is told and every poll interval comes from the waitroom's own code:
the admission state of each second feeds ``pace.FlowHistory`` / ``limits_of`` /
``forecast`` exactly as ``Line._new_snapshot`` feeds them, and what a status tells is
``estimate_wait.status_at``'s arithmetic, applied to all the polls of a second at once
(numpy). Every ``check_every_s`` seconds one answer is also asked of the real
``status_at`` on a real ``Snapshot`` and must agree (wait, range, poll interval within
the jitter), or the run stops: the vectorised copy cannot drift from the code it copies.

Modelled, not run (the Lua scripts need Redis): ``admit_next-10.lua``'s admission —
token bucket at rate × factor with one second banked, ``n = min(tokens, cap − active,
waiting)``, active = booking sessions + turns without a pass younger than hold_s, its
dormant/matured counts (turns 20 s–hold_s old without a pass), the backpressure factor
(cut to target / p95 at once, recovering by recover_per_s) — called as often as the
refreshers call it (processes × 1000 / refresh_ms a second), the state it reads taken
once a second.

The scenario (``Scenario``; the README says why each figure): residents join in a
pre-queue (uniform over the 15 minutes before 09:00, placed in a uniformly random order
at opening — numpy's permutation stands in for ``prequeue_shuffle.permute``, which is
tested uniform and costs 35 µs a resident) and after 09:00 at a rate falling off as
exp(−t / 120 s) for 30 minutes. A resident polls when ``poll_after_s`` says, enters
(``/enter``: a pass, redeemed at once) at the first poll that finds them admitted, and
books in a log-normal time (median 4 min); half then press "finish", the others' session
lasts its TTL (booking ends it no sooner). An abandoner closes the tab at a uniformly
random moment of the wait first told (one whose turn comes sooner takes it): their turn
is admitted all the same and holds its place for hold_s, as in the real line. Booking
reports one slow spell (p95 above the target) during which admission slows.

Redis round trips are counted per operation from the code (see ``REDIS_CALLS`` and the
README); the same line polled every 20 s (Cloudflare Waiting Room's fixed refresh) is
counted exactly from the same joins, turns and departures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.waitroom.poll_wheel import WHEEL_S, Wheel
from benchmarks.waitroom.vector_status import (
    FloatArray,
    IntArray,
    jittered,
    poll_after_waits,
    waits_s,
)
from waitroom.services.estimate_wait import (
    JITTER,
    PREQUEUE_SPREAD_S,
    Phase,
    TicketStatus,
    status_at,
)
from waitroom.services.line import Snapshot, dormant_after_s
from waitroom.services.pace import FlowHistory, Forecast, forecast, limits_of
from waitroom.services.turn_notice import lead_residents
from waitroom.settings import WaitroomSettings
from waitroom.store.redis_store import LiveState

# What each waitroom operation costs in Redis round trips (read from the code; README).
REDIS_CALLS = {
    "admit_next-10": "refresher: 1 per event per process every refresh_ms (250 ms), "
    "+ 1 coalesced safety-net kick for a join with (almost) nobody ahead",
    "join_line-1": "1 per batch of joins (joins arriving while a call is in flight share the "
    "next): counted per process as λ / (1 + λ·rtt), λ its joins per second",
    "issue_pass-9": "1 per /enter of an admitted resident (0 when the snapshot says not yet)",
    "claim_optins-5": "notifier: 1 per event per process per second",
    "settle_optins-3": "1 per notifier round that claimed opt-ins (at most 1 per process a second)",
    "opt_in-5": "1 per 'your turn is near' sign-up",
    "status": "0: read from the process's snapshot (a ticket newer than the snapshot costs one "
    "kick; an expired-looking turn one ZSCORE: neither happens in this model)",
}
SIM_ENV = {
    "REDIS_URL": "redis://simulation",
    "DATABASE_URL": "postgresql://simulation/none",
    "MACHIAI_SECRET_KEYS": "simulation-only-key-not-for-signing-anything",
}
EVENT_ID = "sim-65plus"
T0_MS = 1_800_000_000_000  # unix ms of the pre-queue's start (any fixed time will do)


def default_settings() -> WaitroomSettings:
    """The waitroom's defaults (poll split 5, 2–300 s, hold 120 s, refresh 250 ms)."""
    return WaitroomSettings.from_env(SIM_ENV)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One opening: who comes when, how fast the city admits, how booking behaves."""

    residents: int = 1_000_000
    rate_per_min: int = 2_000
    cap: int = 40_000
    prequeue_share: float = 0.15  # joined in the pre-queue (the 15 min before opening)
    prequeue_s: int = 900
    burst_tau_s: float = 120.0  # after opening, arrivals fall off as exp(-t / tau) ...
    arrivals_s: int = 1_800  # ... until this long after opening
    abandon_share: float = 0.10  # close the tab at a random moment of the wait first told
    session_median_s: float = 240.0  # time in booking, log-normal
    session_sigma: float = 0.5
    session_ttl_s: int = 1_800  # booking forgets a session this long after it opened ...
    finish_share: float = 0.5  # ... unless its resident presses "finish" when done
    optin_share: float = 0.05  # ask for "your turn is near"
    processes: int = 4  # waitroom processes (refresher and notifier each)
    join_rtt_ms: float = 1.0  # one join_line-1 round trip, for the batching estimate
    slow_at_s: int = 1_800  # booking's p95 is slow_p95_ms from this long after opening ...
    slow_for_s: int = 300  # ... for this long (slow_p95_ms 0: never)
    slow_p95_ms: int = 2_000
    fixed_poll_s: int = 20  # the comparison: everyone polls this often (Cloudflare: 20 s)
    tracer_share: float = 0.01  # residents every answer of which is kept (ETA while waiting)
    check_every_s: int = 5  # one answer of every this many seconds also asked of status_at
    seed: int = 17


@dataclass
class Run:
    """What happened, per second from the pre-queue's start and per resident by line index.

    Invariant: ``admit_s`` never decreases along the line index (arrival order)."""

    scenario: Scenario
    settings: WaitroomSettings
    open_s: int
    series: dict[str, FloatArray]  # per second: joins, polls, enters, admitted, ...
    redis: dict[str, FloatArray]  # per second, round trips by script
    join_s: IntArray
    admit_s: IntArray
    notice_s: IntArray  # the poll (or join) that found the resident admitted; -1: left
    leave_s: IntArray  # an abandoner's tab closes then; a huge number for everyone else
    told_s: IntArray  # the wait first told (join, or the first status after opening)
    low_s: IntArray
    high_s: IntArray
    told_at_s: IntArray
    samples: IntArray  # rows of (second, line index, wait told) of the tracers' statuses
    enters: IntArray  # per resident: passes taken (0 or 1)
    checks: int = 0  # polls also answered by the real status_at, all in agreement
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    fixed: dict[str, FloatArray] = field(default_factory=dict)


class Mismatch(AssertionError):
    """The vectorised copy told something the waitroom's own status_at would not."""


def arrivals(sc: Scenario, rng: np.random.Generator) -> tuple[IntArray, IntArray, int]:
    """(join second of each line index, pre-queue line indexes in join order, n_pre)."""
    n_pre = round(sc.residents * sc.prequeue_share)
    n_post = sc.residents - n_pre
    pre_join = np.sort(rng.integers(0, sc.prequeue_s, n_pre))
    # Truncated exponential by its inverse distribution function.
    u = rng.random(n_post)
    span = 1 - math.exp(-sc.arrivals_s / sc.burst_tau_s)
    after = np.floor(-sc.burst_tau_s * np.log1p(-u * span)).astype(np.int64)
    join_s = np.empty(sc.residents, np.int64)
    order = rng.permutation(n_pre)  # pre-queue number p stands at line index order[p]
    join_s[order] = pre_join
    join_s[n_pre:] = sc.prequeue_s + np.sort(after)
    return join_s, order.astype(np.int64), n_pre


NEVER = np.iinfo(np.int64).max // 4
SESSION_RING = 4096  # > any session's length in seconds (checked in Opening.__init__)


class Opening:
    """The state of one opening as the waitroom and its residents would have it, advanced a
    second at a time by :meth:`step`."""

    def __init__(self, sc: Scenario, settings: WaitroomSettings) -> None:
        if sc.session_ttl_s >= SESSION_RING or settings.poll_max_s * (1 + JITTER) >= WHEEL_S:
            raise ValueError("sessions or poll intervals longer than the simulation's rings")
        self.sc, self.s = sc, settings
        self.rng = np.random.default_rng(sc.seed)
        self.join_s, self.pre_order, self.n_pre = arrivals(sc, self.rng)
        self.open_s = sc.prequeue_s
        self.pre_sorted = self.join_s[self.pre_order]
        self.post_sorted = self.join_s[self.n_pre :]
        self.last_join = int(self.join_s.max())
        self.no_one = np.empty(0, np.int64)
        n = sc.residents
        self.abandoner = self.rng.random(n) < sc.abandon_share
        self.opts_in = self.rng.random(n) < sc.optin_share
        self.optins = np.flatnonzero(self.opts_in)
        self.signed_up = 0  # opt-ins made this second (at the first wait told)
        self.leave_s = np.full(n, NEVER, np.int64)
        self.admit_s = np.full(n, -1, np.int64)
        self.notice_s = np.full(n, -1, np.int64)
        self.told_s = np.full(n, -1, np.int64)
        self.low_s = np.full(n, -1, np.int64)
        self.high_s = np.full(n, -1, np.int64)
        self.told_at_s = np.full(n, -1, np.int64)
        self.enters = np.zeros(n, np.int64)
        self.tracer = self.rng.random(n) < sc.tracer_share
        self.samples: list[tuple[int, IntArray, IntArray]] = []  # second, indexes, waits told
        self.wheel = Wheel()
        self.untold = self.n_pre  # pre-queue residents not yet told a wait
        self.pollers = 0  # residents whose tab polls (waiting, not yet seen leaving)
        self.checks = 0
        # admit_next-10's state: counters, bucket, factor, and what "active" is built from.
        self.admitted = 0
        self.arrived = 0
        self.tokens: float | None = None
        self.factor = 1.0
        self.sessions = 0
        self.session_ends = np.zeros(SESSION_RING, np.int64)
        horizon = self.open_s + sc.arrivals_s + 4 * n * 60 // max(1, sc.rate_per_min) + 4096
        self.counter = np.zeros(horizon, np.int64)  # admitted counter after each second
        self.passes_at = np.zeros(horizon, np.int64)  # passes taken, by the turn's second
        self.in_hold = 0  # passes of turns younger than hold_s: the issued zset's size
        self.in_dormant = 0  # ... of turns younger than dormant_after_s
        self.dormant_after = dormant_after_s(settings)
        self.refreshes_per_s = max(1, round(sc.processes * 1000 / settings.refresh_ms))
        self.history = FlowHistory(self.dormant_after)
        self.front = 0  # opt-ins below this index have been claimed by a notifier
        self.rows: dict[str, list[float]] = {
            k: [] for k in ("joins", "polls", "enters", "admitted", "waiting", "pollers",
                            "pace_per_min", "factor", "active")
        }  # fmt: skip
        self.calls: dict[str, list[float]] = {k: [] for k in REDIS_CALLS if k != "status"}

    # -- one second ------------------------------------------------------------------------
    def step(self, t: int) -> None:
        if t >= self.counter.shape[0]:
            self.counter = np.concatenate([self.counter, np.zeros_like(self.counter)])
            self.passes_at = np.concatenate([self.passes_at, np.zeros_like(self.passes_at)])
        ring = t % SESSION_RING
        self.sessions -= int(self.session_ends[ring])
        self.session_ends[ring] = 0
        hold, dorm = self.s.hold_s, self.dormant_after
        if t >= hold:
            self.in_hold -= int(self.passes_at[t - hold])
        if t >= dorm:
            self.in_dormant -= int(self.passes_at[t - dorm])
        # The numbers handed out this second (join_line-1), then admission (admit_next-10).
        pre = self.no_one
        if t < self.open_s:
            pre = self.pre_order[
                np.searchsorted(self.pre_sorted, t) : np.searchsorted(self.pre_sorted, t + 1)
            ]
        lo = hi = self.n_pre + self.arrived
        if t <= self.last_join:
            lo = self.n_pre + int(np.searchsorted(self.post_sorted, t))
            hi = self.n_pre + int(np.searchsorted(self.post_sorted, t + 1))
        self.arrived = hi - self.n_pre
        kicks = 0
        if t >= self.open_s and hi > lo:
            # The safety net: a join with (almost) nobody ahead kicks a refresh at once.
            near = math.ceil(self.admitted + max(1.0, self.sc.rate_per_min / 60))
            kicks = max(0, min(near, hi) - lo)
        snap = self.admit(t)
        polls = self.wheel.pop(t)
        entered = 0
        entered += self.answer_prequeue(t, pre, snap)
        entered += self.answer(t, np.arange(lo, hi, dtype=np.int64), snap, joined=True)
        polled = 0
        if polls.shape[0]:
            open_tabs = polls[self.leave_s[polls] > t]  # abandoners closed theirs
            self.pollers -= polls.shape[0] - open_tabs.shape[0]
            polls = open_tabs
            polled = polls.shape[0]
            if t < self.open_s:
                self.answer_prequeue(t, polls, snap, joined=False)
            else:
                entered += self.answer(t, polls, snap, joined=False)
        self.count_calls(t, pre.shape[0] + hi - lo, kicks, entered, snap)
        live = snap.live
        for key, value in (
            ("joins", pre.shape[0] + hi - lo), ("polls", polled), ("enters", entered),
            ("admitted", live.admitted), ("waiting", live.line_length - live.admitted),
            ("pollers", self.pollers), ("pace_per_min", snap.forecast.pace_per_min),
            ("factor", live.factor), ("active", live.active),
        ):  # fmt: skip
            self.rows[key].append(float(value))

    def admit(self, t: int) -> Snapshot:
        """admit_next-10.lua's calls of second ``t`` (every process's refresher), then the
        snapshot a refresher builds from the last of them."""
        s, sc = self.s, self.sc
        opened = t >= self.open_s
        slow_from = self.open_s + sc.slow_at_s
        slow = sc.slow_p95_ms > s.target_p95_ms and slow_from <= t < slow_from + sc.slow_for_s
        target = max(0.05, s.target_p95_ms / sc.slow_p95_ms) if slow else 1.0
        hold, dorm = s.hold_s, self.dormant_after
        at_boundary = int(self.counter[t - hold]) if t >= hold else 0
        fresh = max(0, self.admitted - at_boundary - self.in_hold)
        at_mature = int(self.counter[t - dorm]) if t >= dorm else 0
        matured = max(0, at_mature - at_boundary) if dorm < hold else 0
        dormant = max(0, min(fresh, matured - (self.in_hold - self.in_dormant)))
        active = self.sessions + fresh  # passes are redeemed at once: none outstanding
        waiting = self.n_pre + self.arrived - self.admitted if opened else 0
        # The bucket is filled call by call: a once-a-second fill would lose the fraction
        # above the one second banked (1 % of 2,000/min) that the real refreshers keep.
        calls = self.refreshes_per_s
        admit = 0
        tokens = self.tokens
        factor, rate, cap = self.factor, sc.rate_per_min, sc.cap
        per_s = rate * factor / 60
        if (
            tokens is not None
            and tokens < 1
            and factor == target
            and per_s / calls + 1 <= max(1.0, per_s)
            and min(cap - active, waiting) >= tokens + per_s
        ):
            # Nothing binds this second (no clamp at one second banked, no cap, no end of
            # the line): the calls below add up to one second's fill.
            admit = math.floor(tokens + per_s)
            tokens += per_s - admit
            active += admit
            calls = 0
        for _ in range(calls):
            dt_s = 0.0 if tokens is None else 1 / calls
            if factor != target:
                factor = min(target, factor + s.recover_per_s * dt_s, 1.0)
            burst = max(1.0, rate * factor / 60)
            tokens = burst if tokens is None else min(burst, tokens + rate * factor / 60 * dt_s)
            n = min(math.floor(tokens), cap - active, waiting - admit)
            if n > 0:
                admit += n
                tokens -= n
                active += n
        self.factor = factor
        if admit:
            self.admit_s[self.admitted : self.admitted + admit] = t
            self.admitted += admit
        self.tokens = tokens
        self.counter[t] = self.admitted
        now_ms = T0_MS + t * 1000
        if opened:
            self.history.add(now_ms / 1000, self.admitted, active, self.factor, dormant, matured)
        limits = limits_of(
            self.history, now_s=now_ms / 1000, rate_per_min=sc.rate_per_min, factor=self.factor,
            recover_per_s=s.recover_per_s, cap=sc.cap, active=active, hold_s=s.hold_s,
        )  # fmt: skip
        live = LiveState(
            state="open" if opened else "prequeue", rate=sc.rate_per_min, cap=sc.cap,
            admitted=self.admitted, arrivals=self.arrived,
            prequeue=self.n_pre if opened else int(np.searchsorted(self.pre_sorted, t + 1)),
            n_pre=self.n_pre if opened else None, seed="5a" * 16 if opened else None,
            opened_ms=T0_MS + self.open_s * 1000 if opened else None,
            prequeue_at_ms=T0_MS, opens_at_ms=T0_MS + self.open_s * 1000,
            closes_at_ms=T0_MS + 7 * 86_400_000, remaining=None, sold_out=False,
            active=active, sessions=self.sessions, fresh=fresh + admit, outstanding=0,
            dormant=dormant, matured=matured, factor=self.factor, floor=0, now_ms=now_ms,
            admitted_now=admit, batches=(),
        )  # fmt: skip
        return Snapshot(
            event_id=EVENT_ID, municipality="000000", name_ja="模擬", name_en="simulation",
            live=live, batches=(), fetched_mono=time.monotonic(), admitted_last_min=0,
            forecast=forecast(limits),
        )  # fmt: skip

    # -- what a join or a poll is told --------------------------------------------------------
    def answer_prequeue(self, t: int, ids: IntArray, snap: Snapshot, joined: bool = True) -> int:
        """Before opening: come back just after the draw (status_at's PREQUEUE branch)."""
        k = ids.shape[0]
        if not k:
            return 0
        if joined:
            self.pollers += k
        opens_in = max(0, self.open_s - t)
        raw = np.minimum(
            float(self.s.poll_max_s), opens_in + self.rng.uniform(1, PREQUEUE_SPREAD_S, k)
        )
        after = jittered(raw, self.rng)
        if t % self.sc.check_every_s == 0:
            self.check(t, int(ids[0]), snap, None, (opens_in + 1.0, opens_in + PREQUEUE_SPREAD_S))
        self.wheel.add(ids, t + after)
        return 0

    def answer(self, t: int, ids: IntArray, snap: Snapshot, joined: bool) -> int:
        """Status of line indexes ``ids`` at ``t`` (status_at's admitted / waiting branches):
        the admitted enter, the others are told their wait and when to poll again."""
        if not ids.shape[0]:
            return 0
        entered = 0
        waiting = ids >= self.admitted
        still = ids[waiting]
        if still.shape[0] < ids.shape[0]:  # a few turns a second among thousands of polls
            entered = self.enter(t, ids[~waiting], polled=not joined)
            ids = still
            if not ids.shape[0]:
                return entered
        if joined:
            self.pollers += ids.shape[0]
        fc = snap.forecast
        ahead = ids - self.admitted
        (expected,) = waits_s(fc, ahead, with_range=False)
        if joined:
            self.tell_first(t, ids, ahead, fc)
        elif self.untold:  # pre-queue residents hear their first wait after the draw
            first = self.told_s[ids] < 0
            if first.any():
                self.tell_first(t, ids[first], ahead[first], fc)
        poll = poll_after_waits(expected, self.s)
        if t % self.sc.check_every_s == 0:
            self.check(t, int(ids[0]), snap, float(expected[0]), (float(poll[0]),) * 2)
        self.wheel.add(ids, t + jittered(poll, self.rng))
        traced = np.flatnonzero(self.tracer[ids])
        if traced.shape[0]:
            self.samples.append((t, ids[traced], np.ceil(expected[traced]).astype(np.int64)))
        return entered

    def tell_first(self, t: int, ids: IntArray, ahead: IntArray, fc: Forecast) -> None:
        """The first wait a resident is told: what the ETA is judged by, and what an
        abandoner's patience is drawn from."""
        e, low, high = waits_s(fc, ahead, with_range=True)
        told = np.ceil(e).astype(np.int64)
        self.told_s[ids] = told
        self.low_s[ids] = np.ceil(low)
        self.high_s[ids] = np.ceil(high)
        self.told_at_s[ids] = t
        self.untold -= int((ids < self.n_pre).sum())
        self.signed_up += int(self.opts_in[ids].sum())
        quit_ = self.abandoner[ids]
        if quit_.any():
            patience = np.floor(self.rng.random(int(quit_.sum())) * told[quit_])
            self.leave_s[ids[quit_]] = t + patience.astype(np.int64)

    def enter(self, t: int, ids: IntArray, polled: bool) -> int:
        """Residents who found their turn: a pass (issue_pass-9), redeemed at once, and a
        booking session of a log-normal length."""
        k = ids.shape[0]
        self.notice_s[ids] = t
        self.enters[ids] += 1
        if polled:
            self.pollers -= k
        hold, dorm = self.s.hold_s, self.dormant_after
        turn = self.admit_s[ids]
        inside = turn[turn > t - hold]  # issue_pass-9 records the pass in "issued" only then
        if inside.shape[0]:
            base = t - hold + 1
            self.passes_at[base : t + 1] += np.bincount(inside - base, minlength=hold)
            self.in_hold += inside.shape[0]
            self.in_dormant += int((inside > t - dorm).sum())
        sc = self.sc
        # Booking ends a session when its resident presses "finish" (or logs out), otherwise
        # when it expires: one who books and closes the tab holds a place until then.
        stay = sc.session_median_s * np.exp(sc.session_sigma * self.rng.standard_normal(k))
        stay = np.where(self.rng.random(k) < sc.finish_share, stay, sc.session_ttl_s)
        stay_s = np.clip(np.round(stay), 1, sc.session_ttl_s).astype(np.int64)
        ends = np.bincount(stay_s, minlength=sc.session_ttl_s + 1)  # from t on
        first = t % SESSION_RING
        wrap = max(0, first + ends.shape[0] - SESSION_RING)
        self.session_ends[first : first + ends.shape[0] - wrap] += ends[: ends.shape[0] - wrap]
        self.session_ends[:wrap] += ends[ends.shape[0] - wrap :]
        self.sessions += k
        return int(k)

    def check(
        self, t: int, index: int, snap: Snapshot, expected: float | None,
        poll: tuple[float, float],
    ) -> None:  # fmt: skip
        """One answer of this second, asked of the real ``status_at``: it must agree."""
        clock_ms = T0_MS + t * 1000
        line_index = None if expected is None else index
        st: TicketStatus = status_at(line_index, self.admitted, snap, self.s, lambda: clock_ms)
        if expected is None:
            agree = st.phase is Phase.PREQUEUE
        else:
            e, low, high = waits_s(snap.forecast, np.array([index - self.admitted]), True)
            agree = st.phase is Phase.WAITING and (
                st.estimated_wait_s,
                st.wait_low_s,
                st.wait_high_s,
            ) == (math.ceil(expected), math.ceil(low[0]), math.ceil(high[0]))
        lowest = max(1, round(min(poll[0], self.s.poll_max_s) * (1 - JITTER)))
        highest = max(1, round(min(poll[1], self.s.poll_max_s) * (1 + JITTER)))
        if not (agree and lowest <= st.poll_after_s <= highest):
            raise Mismatch(f"second {t}, index {index}: real {st}, copy {expected} {poll}")
        self.checks += 1

    # -- Redis round trips -----------------------------------------------------------------
    def count_calls(self, t: int, joins: int, kicks: int, entered: int, snap: Snapshot) -> None:
        """This second's round trips of every waitroom process, by script (REDIS_CALLS)."""
        sc, procs = self.sc, self.sc.processes
        per_proc = joins / procs
        batched = procs * per_proc / (1 + per_proc * sc.join_rtt_ms / 1000)
        front = self.front
        if snap.live.state == "open":
            front = max(front, self.admitted + lead_residents(snap, self.s.notify_lead_s))
        crossed = int(
            np.searchsorted(self.optins, front) - np.searchsorted(self.optins, self.front)
        )
        self.front = front
        calls = {
            "admit_next-10": self.refreshes_per_s + min(kicks, procs),
            "join_line-1": batched,
            "issue_pass-9": float(entered),
            "claim_optins-5": float(procs),
            "settle_optins-3": float(min(procs, crossed)),
            "opt_in-5": float(self.signed_up),
        }
        self.signed_up = 0
        for key, rows in self.calls.items():
            rows.append(calls.get(key, 0.0))


def simulate(sc: Scenario, settings: WaitroomSettings | None = None) -> Run:
    """The whole opening, from the pre-queue's start until the last resident has entered or
    closed the tab."""
    s = settings if settings is not None else default_settings()
    started, cpu = time.perf_counter(), time.process_time()
    op = Opening(sc, s)
    last_join = int(op.join_s.max())
    limit = 64 * op.counter.shape[0]
    t = 0
    while t <= last_join or op.admitted < sc.residents or op.pollers > 0:
        op.step(t)
        t += 1
        if t > limit:
            raise RuntimeError(f"the line did not drain in {limit} s")
    samples = np.empty((0, 3), np.int64)
    if op.samples:
        samples = np.stack(
            [
                np.concatenate([np.full(ids.shape[0], t) for t, ids, _ in op.samples]),
                np.concatenate([ids for _, ids, _ in op.samples]),
                np.concatenate([told for _, _, told in op.samples]),
            ],
            axis=1,
        )
    run = Run(
        scenario=sc, settings=s, open_s=op.open_s,
        series={k: np.asarray(v) for k, v in op.rows.items()},
        redis={k: np.asarray(v) for k, v in op.calls.items()},
        join_s=op.join_s, admit_s=op.admit_s, notice_s=op.notice_s, leave_s=op.leave_s,
        told_s=op.told_s, low_s=op.low_s, high_s=op.high_s, told_at_s=op.told_at_s,
        samples=samples, enters=op.enters, checks=op.checks,
    )  # fmt: skip
    run.redis["load_event-1"] = np.zeros(t)
    run.redis["load_event-1"][0] = sc.processes
    run.fixed = fixed_polling(run)
    run.elapsed_s = time.perf_counter() - started
    run.cpu_s = time.process_time() - cpu
    return run


def fixed_polling(run: Run) -> dict[str, FloatArray]:
    """The same residents polling every ``fixed_poll_s`` from their join (Cloudflare Waiting
    Room's refresh), counted exactly: polls per second, and when each saw their turn.

    Same joins, turns and tab closings; a resident polls at join + k·period until the first
    poll at or after their turn (then enters) or until the tab closes."""
    period = run.scenario.fixed_poll_s
    join, admit = run.join_s, run.admit_s
    turn_polls = -((join - admit) // period)  # ceil((admit − join) / period), ≥ 0
    notice = join + period * turn_polls
    end = np.minimum(notice, run.leave_s)
    made = (end - join) // period
    last = join + period * made
    length = run.series["polls"].shape[0]
    width = length + 2 * period + 2
    phase = join % period
    polled = made >= 1
    starts = np.bincount(phase[polled] * width + join[polled] + 1, minlength=period * width)
    stops = np.bincount(phase[polled] * width + last[polled] + 1, minlength=period * width)
    live = np.cumsum((starts - stops).reshape(period, width), axis=1)
    t = np.arange(length)
    entered = run.leave_s >= notice
    return {
        "polls": live[t % period, t].astype(np.float64),
        "notice_delay_s": (notice - admit)[entered].astype(np.float64),
    }
