"""The lean generator's engine: residents asleep in a heap of due times, a few workers awake.

A resident in line spends almost all its time waiting for its next poll. Here that wait is
an entry in one heap (due time, number, resident) — about 0.8 KB per resident with its
record, against 2.2 KB for an asyncio task sleeping per resident (measured with 100,000 of
each on Python 3.11), and no timer per resident for the event loop to wake. A clock task
moves due residents to their service's queue every ``TICK_S``; a fixed set of workers, each
owning one keep-alive connection (``Lane``), takes them from there. So the sockets are
``waitroom_lanes + booking_lanes``, however long the line, and when the workers cannot keep
up the backlog shows as *lag* (due time to request), reported per window rather than hidden
in the latencies.
"""

from __future__ import annotations

import asyncio
import csv
import heapq
import json
import resource
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

import psutil

from loadtests.lean.client import Lane
from loadtests.lean.scenario import BOOKING_STEPS, Resident, Scenario, Step
from loadtests.lean.stats import HISTORY_COLUMNS, Histogram

TICK_S = 0.01
WINDOW_S = 10.0
# In-flight requests may finish after the run's time is up (locust's --stop-timeout 10).
STOP_GRACE_S = 10.0
# Connections to the waitroom and to booking. Requests in flight = rate × latency (Little):
# 5,000 a second answered in 100 ms (a loaded 2-core machine) keep 500 busy. Too few, and the
# pool, not the server, sets the pace: residents would poll late and the polling load would
# look lighter than it is (the lag column shows it). Booking: ~20 residents a second, each a
# handful of requests of up to ~1 s under load, more when holds are refused and retried.
DEFAULT_LANES = (512, 64)

TIMELINE_COLUMNS = [
    "unix_s",
    "elapsed_s",
    "arrived",
    "live",
    "waiting",  # told "waiting" last and polling as directed: the N of the polling formula
    "prequeue",
    "admitted",
    "left",
    "told_rate_per_min",
    "requests",
    "polls_directed",
    "polls_refresh",
    "joins",
    "lag_p50_ms",  # due to sent, waitroom requests (the polls)
    "lag_p99_ms",
    "lag_max_ms",
    "booking_lag_p99_ms",
    "queued",  # due, waiting for a free worker
    "asleep",  # in the heap until their next step
    "cpu_s",
    "rss_bytes",
    "connects",
    "resent",
]


def lanes_from(text: str | None) -> tuple[int, int]:
    """``LT_LEAN_LANES`` ("WAITROOM,BOOKING"), or the defaults."""
    if not text:
        return DEFAULT_LANES
    waitroom, _, booking = text.partition(",")
    return max(1, int(waitroom)), max(1, int(booking or DEFAULT_LANES[1]))


class Engine:
    """Plays ``residents`` arriving at ``spawn_per_s`` until all have left or ``duration_s``."""

    def __init__(
        self,
        scenario: Scenario,
        records_dir: Path,
        out_dir: Path,
        waitroom_lanes: int,
        booking_lanes: int,
    ) -> None:
        self.scenario = scenario
        profile, dataset = scenario.profile, scenario.dataset
        self.residents = int(profile["residents"])
        if self.residents > int(dataset["resident_block"]):
            raise ValueError("more residents than the seed registered vouchers for")
        self.spawn_per_s = float(profile["spawn_per_s"])
        self.duration_s = float(profile["duration_s"])
        self.first_voucher = int(dataset["first_voucher"])
        self.records_dir = records_dir
        self.out_dir = out_dir
        self.lanes = {
            False: [Lane(scenario.waitroom) for _ in range(waitroom_lanes)],
            True: [Lane(scenario.booking) for _ in range(booking_lanes)],
        }
        # Keyed by "is it a booking step": the waitroom's queue and booking's.
        self.queues: dict[bool, asyncio.Queue[tuple[float, Resident]]] = {}
        self.heap: list[tuple[float, int, Resident]] = []
        self.live: dict[int, Resident] = {}
        self.arrived = 0
        self.left = 0
        self.admitted = 0
        self.in_flight = 0
        self.stopping = False
        self.lag = {False: Histogram(), True: Histogram()}  # the waitroom's, booking's
        self.polls = {False: 0, True: 0}  # refreshers' polls apart from the directed ones
        self._records: TextIO | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.queues = {False: asyncio.Queue(), True: asyncio.Queue()}
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        records_path = self.records_dir / f"lean-{psutil.Process().pid}.jsonl"
        history_path = self.out_dir / "lean_stats_history.csv"
        timeline_path = self.out_dir / "lean_timeline.csv"
        started = loop.time()
        with (
            records_path.open("w", encoding="utf-8") as records,
            history_path.open("w", newline="", encoding="utf-8") as history,
            timeline_path.open("w", newline="", encoding="utf-8") as timeline,
        ):
            self._records = records
            csv.writer(history).writerow(HISTORY_COLUMNS)
            csv.writer(timeline).writerow(TIMELINE_COLUMNS)
            self.roll(started, history, timeline)  # the start: memory before any resident
            workers = [
                asyncio.create_task(self.work(lane, self.queues[booking], booking))
                for booking, lanes in self.lanes.items()
                for lane in lanes
            ]
            windows = asyncio.create_task(self.windows(started, history, timeline))
            try:
                await self.clock(started)
                self.stopping = True
                grace_until = loop.time() + STOP_GRACE_S
                while self.in_flight and loop.time() < grace_until:
                    await asyncio.sleep(0.05)
            finally:
                self.stopping = True
                for task in [*workers, windows]:
                    task.cancel()
                await asyncio.gather(*workers, windows, return_exceptions=True)
                for lanes in self.lanes.values():
                    for lane in lanes:
                        lane.close()
            self.roll(started, history, timeline)
            # Residents the end of the run caught on the way: their records so far, as locust
            # writes its users' at the stop.
            for r in self.live.values():
                records.write(json.dumps(r.record(self.first_voucher)) + "\n")
            if self.scenario.stats.server_errors:
                errors = dict(self.scenario.stats.server_errors)
                records.write(json.dumps({"server_errors": errors}) + "\n")
        self.scenario.stats.write(self.out_dir, "lean", loop.time() - started)

    async def clock(self, started: float) -> None:
        """Arrivals at their pace and residents whose time has come, every tick, until all have
        arrived and left, or the time is up."""
        loop = asyncio.get_running_loop()
        waitroom = self.queues[False]
        heap = self.heap
        next_expiry = 0.0
        while True:
            now = loop.time()
            if now - started >= self.duration_s:
                return
            due = min(self.residents, int((now - started) * self.spawn_per_s) + 1)
            while self.arrived < due:
                r = Resident.arriving(self.arrived, self.scenario.profile)
                self.live[r.n] = r
                waitroom.put_nowait((now, r))
                self.arrived += 1
            while heap and heap[0][0] <= now:
                when, _n, r = heapq.heappop(heap)
                self.queues[r.step in BOOKING_STEPS].put_nowait((when, r))
            if self.arrived == self.residents and not self.live:
                return
            if now >= next_expiry:
                next_expiry = now + 1.0
                for lanes in self.lanes.values():
                    for lane in lanes:
                        lane.expire(time.monotonic())
            await asyncio.sleep(TICK_S)

    async def work(
        self, lane: Lane, queue: asyncio.Queue[tuple[float, Resident]], booking: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        scenario = self.scenario
        while not self.stopping:
            due, r = await queue.get()
            if self.stopping:
                return
            self.lag[booking].add((loop.time() - due) * 1000)
            if r.step is Step.POLL:
                self.polls[r.refreshes] += 1
            was_admitted = r.admitted_at is not None
            self.in_flight += 1
            try:
                delay = await scenario.step(r, lane)
            except Exception:  # a bug in a step must not silently cost a worker: counted
                traceback.print_exc()
                scenario.stats.record("", "generator error", 0.0, 200, "exception")
                delay = None
            finally:
                self.in_flight -= 1
            if not was_admitted and r.admitted_at is not None:
                self.admitted += 1
            if delay is None:
                self.leave(r)
            elif not self.stopping:
                self.schedule(r, delay)

    def schedule(self, r: Resident, delay_s: float) -> None:
        now = asyncio.get_running_loop().time()
        if delay_s <= 0:
            self.queues[r.step in BOOKING_STEPS].put_nowait((now, r))
        else:
            heapq.heappush(self.heap, (now + delay_s, r.n, r))

    def leave(self, r: Resident) -> None:
        if r.left_at is None:
            r.left_at = time.time()
        del self.live[r.n]
        self.left += 1
        assert self._records is not None
        self._records.write(json.dumps(r.record(self.first_voucher)) + "\n")

    async def windows(self, started: float, history: TextIO, timeline: TextIO) -> None:
        while True:
            await asyncio.sleep(WINDOW_S)
            self.roll(started, history, timeline)

    def roll(self, started: float, history: TextIO, timeline: TextIO) -> None:
        """One window's figures: latencies per endpoint, and the generator's own state."""
        now = time.time()
        elapsed = asyncio.get_running_loop().time() - started
        counts = self.scenario.stats.roll(now, WINDOW_S, history)
        waiting = prequeue = 0
        for r in self.live.values():
            if r.step is Step.POLL and not r.refreshes:
                if r.last_state == "waiting":
                    waiting += 1
                elif r.last_state == "prequeue":
                    prequeue += 1
        usage = resource.getrusage(resource.RUSAGE_SELF)
        lanes = [lane for group in self.lanes.values() for lane in group]
        row: list[Any] = [
            f"{now:.1f}",
            f"{elapsed:.1f}",
            self.arrived,
            len(self.live),
            waiting,
            prequeue,
            self.admitted,
            self.left,
            self.scenario.told_rate_per_min if self.scenario.told_rate_per_min is not None else "",
            sum(counts.values()),
            self.polls[False],
            self.polls[True],
            counts.get(("POST", "waitroom join"), 0),
            f"{self.lag[False].quantile(0.5):g}",
            f"{self.lag[False].quantile(0.99):g}",
            f"{self.lag[False].max_ms:.1f}",
            f"{self.lag[True].quantile(0.99):g}",
            sum(q.qsize() for q in self.queues.values()),
            len(self.heap),
            f"{usage.ru_utime + usage.ru_stime:.2f}",
            psutil.Process().memory_info().rss,
            sum(lane.connects for lane in lanes),
            sum(lane.resent for lane in lanes),
        ]
        csv.writer(timeline).writerow(row)
        timeline.flush()
        assert self._records is not None
        self._records.flush()
        self.lag = {False: Histogram(), True: Histogram()}
        self.polls = {False: 0, True: 0}
