"""The line of every live event as this process sees it, and the refresher that admits.

Each process keeps, per event, the state admit_next-10.lua last returned. A
background task calls that script for every event in use a few times a second:
one round trip per event per refresh advances admission (leaderless: any
process may) *and* refreshes the snapshot that every status poll of this
process reads — so polls cost no Redis round trip at all. An event is loaded
from Postgres into Redis on first use (and again if Redis lost it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from machiai import metrics
from waitroom.errors import EventNotFound, ScriptError, StoreUnavailable
from waitroom.services.pace import FlowHistory, Forecast, forecast, limits_of
from waitroom.settings import WaitroomSettings
from waitroom.store.redis_store import EventConfig, LiveState, RedisStore, ScriptRefused

log = logging.getLogger(__name__)

# Tests inject time here (Redis TIME otherwise): a callable giving unix ms, or None.
Clock = Callable[[], int | None]
ConfigLoader = Callable[[str], Awaitable[EventConfig | None]]
# Writes a clock-driven state change (event id, old state, new state) back to Postgres.
StateRecorder = Callable[[str, str, str], Awaitable[None]]
CLOCK_STATES = ("prequeue", "open", "closed")
IDLE_EVENT_S = 600.0
UNKNOWN_EVENT_CACHE_S = 5.0
RATE_WINDOW_S = 60
MAX_UNKNOWN_EVENTS = 10_000
COLD_LOADS_PER_S = 20.0
COLD_LOADS_BURST = 50.0
# A script that finds its event gone from Redis (flush, new server) reloads it from Postgres
# and tries again at most this often, then answers busy: a Redis that keeps losing the event
# must not keep a request (or the refresher) looping.
MAX_RELOADS = 2
DORMANT_AFTER_S = 20


def redis_clock() -> int | None:
    return None


def dormant_after_s(settings: WaitroomSettings) -> int:
    """A turn with no pass this long after admission is taken as abandoned (for the wait
    forecast only): a resident who is there notices within a poll or two at the front."""
    return min(DORMANT_AFTER_S, max(1, settings.hold_s // 2))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An event's line as seen by this process at ``fetched_mono`` (time.monotonic())."""

    event_id: str
    municipality: str
    name_ja: str
    name_en: str
    live: LiveState
    # (second, admitted counter after it), ascending, covering the retention window.
    batches: tuple[tuple[int, int], ...]
    fetched_mono: float
    # Residents admitted in the last RATE_WINDOW_S (a fact for the stats, not a forecast).
    admitted_last_min: int
    # How fast the line will move from here (waitroom.services.pace): every wait told comes
    # from it, computed once per refresh.
    forecast: Forecast

    def age_s(self) -> float:
        return time.monotonic() - self.fetched_mono

    def now_ms(self, clock: Clock) -> int:
        """Redis time now, extrapolated from the refresh (or the injected test clock)."""
        given = clock()
        if given is not None:
            return given
        return self.live.now_ms + int((time.monotonic() - self.fetched_mono) * 1000)

    def admitted_at_s(self, index: int) -> int | None:
        """The Redis second when line index ``index`` was admitted; None if before retention."""
        if index < self.live.floor:
            return None
        counters = [c for _, c in self.batches]
        pos = bisect.bisect_right(counters, index)
        return self.batches[pos][0] if pos < len(self.batches) else None

    @property
    def sold_out(self) -> bool:
        return self.live.sold_out


def _admitted_last_min(live: LiveState, batches: tuple[tuple[int, int], ...]) -> int:
    """Residents admitted in the last RATE_WINDOW_S seconds: a count over a whole minute,
    never a rate extrapolated from its first second."""
    if live.opened_ms is None:
        return 0
    now_s = live.now_ms // 1000
    seconds = [s for s, _ in batches]
    pos = bisect.bisect_right(seconds, now_s - RATE_WINDOW_S)
    # Before the oldest batch kept, the counter was at most the floor (the last one pruned).
    counter_then = batches[pos - 1][1] if pos > 0 else live.floor
    return max(0, live.admitted - counter_then)


@dataclass
class _EventEntry:
    config: EventConfig
    snapshot: Snapshot | None = None
    since_s: int = 0
    last_used: float = field(default_factory=time.monotonic)
    kick: asyncio.Future[Snapshot] | None = None
    # Admitted and active over the last minutes (this process's refreshes): what D rests on.
    history: FlowHistory = field(default_factory=FlowHistory)
    # The state last written back to Postgres (clock-driven changes: opened, closed).
    recorded_state: str = ""


class Line:
    """Snapshots of live events, the refresher that advances admission, and on-demand loading."""

    def __init__(
        self,
        store: RedisStore,
        load_config: ConfigLoader,
        settings: WaitroomSettings,
        clock: Clock = redis_clock,
        record_state: StateRecorder | None = None,
    ) -> None:
        self.store = store
        self.load_config = load_config
        self.record_state = record_state
        self._recording: set[asyncio.Task[None]] = set()
        self.settings = settings
        self.clock = clock
        self._events: dict[str, _EventEntry] = {}
        self._unknown: dict[str, float] = {}
        self._loading: dict[str, asyncio.Future[_EventEntry]] = {}
        self._task: asyncio.Task[None] | None = None
        self._kicks: set[asyncio.Future[None]] = set()
        self._failing: set[str] = set()
        # Flow histories of events forgotten until their next load (at most one per event).
        self._histories: dict[str, FlowHistory] = {}
        # Postgres lookups of events this process does not know: a bucket against floods of
        # made-up event ids (a real new event is looked up once per process).
        self._cold_tokens = COLD_LOADS_BURST
        self._cold_at = time.monotonic()

    # -- snapshots -----------------------------------------------------------------------
    async def snapshot(self, event_id: str) -> Snapshot:
        """The event's current snapshot; loads the event on first use. Raises EventNotFound."""
        entry = self._events.get(event_id)
        if entry is not None and entry.snapshot is not None:
            entry.last_used = time.monotonic()
            return entry.snapshot
        entry = await self._entry(event_id)
        if entry.snapshot is None:
            return await self.kick(event_id)  # the first look: one shared round trip
        return entry.snapshot

    def snapshots(self) -> list[Snapshot]:
        """The snapshots of the events this process has in use (the notifier's round)."""
        return [e.snapshot for e in self._events.values() if e.snapshot is not None]

    def cached(self, event_id: str) -> Snapshot | None:
        entry = self._events.get(event_id)
        return entry.snapshot if entry is not None else None

    async def _entry(self, event_id: str) -> _EventEntry:
        entry = self._events.get(event_id)
        if entry is not None:
            return entry
        until = self._unknown.get(event_id)
        if until is not None and until > time.monotonic():
            raise EventNotFound()
        pending = self._loading.get(event_id)
        if pending is not None:
            return await asyncio.shield(pending)
        self._take_cold_load()
        future: asyncio.Future[_EventEntry] = asyncio.get_running_loop().create_future()
        self._loading[event_id] = future
        try:
            config = await self.load_config(event_id)
            if config is None:
                if len(self._unknown) >= MAX_UNKNOWN_EVENTS:
                    now = time.monotonic()
                    self._unknown = {k: v for k, v in self._unknown.items() if v > now}
                self._unknown[event_id] = time.monotonic() + UNKNOWN_EVENT_CACHE_S
                raise EventNotFound()
            await self.store.load_event(config)
            # A reloaded configuration keeps the measured flows (an admin's change of rate
            # does not change how long residents stay in booking).
            history = self._histories.pop(event_id, None) or self._new_history()
            entry = self._events.setdefault(event_id, _EventEntry(config, history=history))
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._loading[event_id]

    def _new_history(self) -> FlowHistory:
        return FlowHistory(dormant_after_s(self.settings))

    def _take_cold_load(self) -> None:
        now = time.monotonic()
        self._cold_tokens = min(
            COLD_LOADS_BURST, self._cold_tokens + (now - self._cold_at) * COLD_LOADS_PER_S
        )
        self._cold_at = now
        if self._cold_tokens < 1:
            raise StoreUnavailable()  # busy: retry shortly (nothing was looked up)
        self._cold_tokens -= 1

    def forget(self, event_id: str) -> None:
        """Drop the cached configuration (an admin changed it); the next use reloads."""
        entry = self._events.pop(event_id, None)
        if entry is not None:
            self._histories[event_id] = entry.history
        self._unknown.pop(event_id, None)

    async def fresh_snapshot(self, event_id: str) -> Snapshot:
        """The snapshot, refused as busy when the refresher has not reached Redis for a while.

        Invariant: nobody is told a place older than ``snapshot_stale_s``."""
        snap = await self.snapshot(event_id)
        if snap.age_s() > self.settings.snapshot_stale_s:
            raise StoreUnavailable()
        return snap

    # -- admission -------------------------------------------------------------------------
    async def refresh(self, event_id: str) -> Snapshot:
        """One admit_next round trip for this event: admit what may be admitted, re-snapshot.

        Invariant: an event Redis lost is reloaded at most MAX_RELOADS times, then busy."""
        for _ in range(1 + MAX_RELOADS):
            entry = await self._entry(event_id)
            try:
                live = await self._admit_next(entry)
            except ScriptRefused as refused:
                if refused.code is not ScriptError.NOT_LOADED:
                    raise
                self.forget(event_id)  # the next _entry loads it from Postgres again
                continue
            return self._new_snapshot(entry, live)
        raise StoreUnavailable()

    async def _admit_next(self, entry: _EventEntry) -> LiveState:
        s = self.settings
        return await self.store.admit_next(
            entry.config.event_id,
            seed_hex=secrets.token_hex(16),
            hold_ms=s.hold_s * 1000,
            retention_s=s.retention_s,
            since_s=entry.since_s,
            target_p95_ms=s.target_p95_ms,
            recover_per_s=s.recover_per_s,
            load_stale_ms=s.load_stale_s * 1000,
            dormant_after_ms=dormant_after_s(s) * 1000,
            now_ms=self.clock(),
        )

    def _new_snapshot(self, entry: _EventEntry, live: LiveState) -> Snapshot:
        """The new snapshot: this refresh's batches merged into those kept from before."""
        s = self.settings
        old = entry.snapshot.batches if entry.snapshot is not None else ()
        keep_from_s = live.now_ms // 1000 - s.retention_s
        merged = [b for b in old if b[0] < entry.since_s and b[0] > keep_from_s]
        merged.extend(live.batches)
        batches = tuple(merged)
        entry.since_s = batches[-1][0] if batches else 0
        now_s = live.now_ms / 1000
        metrics.report_line(
            entry.config.event_id,
            waiting=max(0, live.line_length - live.admitted),
            admitted=live.admitted,
            active=live.active,
            factor=live.factor,
            is_open=live.state == "open",
            abandoned=live.dormant,
            left=live.remaining,
        )
        if live.opened_ms is not None:
            entry.history.add(
                now_s, live.admitted, live.active, live.factor, live.dormant, live.matured
            )
        limits = limits_of(
            entry.history,
            now_s=now_s,
            rate_per_min=live.rate,
            factor=live.factor,
            recover_per_s=s.recover_per_s,
            cap=live.cap,
            active=live.active,
            hold_s=s.hold_s,
        )
        cfg = entry.config
        snapshot = Snapshot(
            event_id=cfg.event_id,
            municipality=cfg.municipality,
            name_ja=cfg.name_ja,
            name_en=cfg.name_en,
            live=live,
            batches=batches,
            fetched_mono=time.monotonic(),
            admitted_last_min=_admitted_last_min(live, batches),
            forecast=forecast(limits),
        )
        entry.snapshot = snapshot
        self._record(entry, live.state)
        return snapshot

    def _record(self, entry: _EventEntry, state: str) -> None:
        """Postgres learns the states the clock brought (scheduled → prequeue → open, closed)."""
        if not entry.recorded_state:
            entry.recorded_state = entry.config.state
        old = entry.recorded_state
        if self.record_state is None or state == old or state not in CLOCK_STATES:
            return
        entry.recorded_state = state
        recorder = self.record_state

        async def write() -> None:
            try:
                await recorder(entry.config.event_id, old, state)
            except Exception:  # retried at the next refresh that sees the state
                log.warning("recording %s state %s failed", entry.config.event_id, state)
                entry.recorded_state = old

        task = asyncio.get_running_loop().create_task(write())
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def kick(self, event_id: str) -> Snapshot:
        """A refresh that starts after this call (coalesced): the safety net for a fresh join."""
        entry = await self._entry(event_id)
        if entry.kick is None:
            entry.kick = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._start_kick, event_id, entry)
        return await asyncio.shield(entry.kick)

    def _start_kick(self, event_id: str, entry: _EventEntry) -> None:
        future, entry.kick = entry.kick, None
        assert future is not None

        async def run() -> None:
            try:
                future.set_result(await self.refresh(event_id))
            except Exception as exc:  # handed to every waiter, who re-raises it
                future.set_exception(exc)
                future.exception()

        self._kicks.add(task := asyncio.ensure_future(run()))
        task.add_done_callback(self._kicks.discard)

    async def refresh_all(self) -> None:
        now = time.monotonic()
        live = [
            event_id
            for event_id, entry in self._events.items()
            if now - entry.last_used < IDLE_EVENT_S
        ]
        results = await asyncio.gather(*(self.refresh(e) for e in live), return_exceptions=True)
        for event_id, result in zip(live, results, strict=True):
            if isinstance(result, StoreUnavailable):
                if event_id not in self._failing:  # once per outage, not 4 times a second
                    self._failing.add(event_id)
                    log.warning("waitroom refresh of %s: Redis unavailable", event_id)
                continue
            if event_id in self._failing:
                self._failing.discard(event_id)
                log.warning("waitroom refresh of %s: Redis reachable again", event_id)
            if isinstance(result, EventNotFound):
                self.forget(event_id)
            elif isinstance(result, BaseException):
                log.error("waitroom refresh of %s failed", event_id, exc_info=result)

    async def run(self) -> None:
        """The background refresher: every refresh_ms, each event in use, concurrently."""
        interval_s = self.settings.refresh_ms / 1000
        while True:
            started = time.monotonic()
            await self.refresh_all()
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="waitroom-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in [*self._kicks, *self._recording]:
            task.cancel()
        await asyncio.gather(*self._recording, return_exceptions=True)
