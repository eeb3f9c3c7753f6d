"""The lean generator as the harness runs it: started, watched, and what its run showed.

Watched every second while it runs: its CPU (as the harness watches locust) and the memory
of every process of the run — the generator, and each service the harness names (waitroom,
booking, Redis, Postgres). Memory is the peak RSS of the process itself and the peak PSS
(proportional set size: shared pages divided among the processes sharing them) of the process
with its children, which is the honest sum for Postgres (a postmaster and its backends share
their buffers).

``LT_GENERATOR_CPUS`` (e.g. ``1``, or ``2,3``) pins the generator to those cores; run the
harness itself under ``taskset`` to keep the services off them.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import psutil

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from loadtests.lean.engine import DEFAULT_LANES, lanes_from  # noqa: E402
from loadtests.profiles import Profile  # noqa: E402
from loadtests.seed import Dataset  # noqa: E402

# The waitroom's polling settings the formula is computed with: the services' defaults unless
# the environment the harness hands them says otherwise (waitroom/README.md, "Settings").
POLL_DEFAULTS = {
    "WAITROOM_POLL_SPLIT": 5.0,
    "WAITROOM_POLL_MIN_S": 2.0,
    "WAITROOM_POLL_MAX_S": 300.0,
}
# A window whose polls went out this late (p99, due to sent) measured the system's pace.
LATE_MS = 5000.0
MEMORY_EVERY_S = 5.0  # PSS reads every process's smaps: not free with 30 of them


def polls_per_second(
    line: float, rate_per_min: float, split: float, min_s: float, max_s: float
) -> float:
    """The polling load of a line of ``line`` residents admitted at ``rate_per_min``, as
    ``waitroom/README.md`` ("Poll interval and polling load") gives it:
    split·r·(1 + ln(min(N, split·r·max_s) / (split·r·min_s))) + max(0, N − split·r·max_s) / max_s,
    with the front (N below split·r·min_s, all polling every min_s) summed as it is."""
    r = rate_per_min / 60.0
    if line <= 0 or r <= 0:
        return 0.0
    near = min(line, split * r * min_s)
    far = min(line, split * r * max_s)
    total = near / min_s
    if far > near:
        total += split * r * math.log(far / near)
    return total + (line - far) / max_s


@dataclass(slots=True)
class Memory:
    """Peak bytes of one process: its own RSS, and the PSS of it with its children."""

    rss: int = 0
    tree_pss: int = 0
    processes: int = 0  # in the tree, at the PSS peak


def _read_memory(pid: int) -> tuple[int, int, int] | None:
    try:
        root = psutil.Process(pid)
        rss = root.memory_info().rss
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    pss = 0
    for member in tree:
        try:
            pss += member.memory_full_info().pss
        except psutil.Error:
            continue
    return rss, pss, len(tree)


@dataclass(slots=True)
class LeanRun:
    """One run of ``python -m loadtests.lean``; ``service_pids`` names the system's processes."""

    service_pids: Callable[[], dict[str, int]]
    memory: dict[str, Memory] = field(default_factory=dict)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    cpus: str = ""
    lanes: tuple[int, int] = DEFAULT_LANES
    # The machine's 1-minute load average through the run: other work shares the cores.
    load: list[float] = field(default_factory=list)

    def run(
        self,
        profile: Profile,
        waitroom_url: str,
        booking_url: str,
        dataset: Dataset,
        out: Path,
        sampled: dict[int, float],
    ) -> tuple[int, float]:
        """Run it, bounded by the profile's time; returns its exit code and CPU seconds
        (``sampled`` gets its CPU so far, by pid, every second, as for locust)."""
        records = out / "records"
        records.mkdir(parents=True, exist_ok=True)
        self.cpus = os.environ.get("LT_GENERATOR_CPUS", "")
        self.lanes = lanes_from(os.environ.get("LT_LEAN_LANES"))
        env = {
            **os.environ,
            "LT_WAITROOM_URL": waitroom_url,
            "LT_BOOKING_URL": booking_url,
            "LT_PROFILE": json.dumps({**asdict(profile), "fault": profile.fault.value}),
            "LT_DATASET": json.dumps({**asdict(dataset), "opens_at": dataset.opens_at.isoformat()}),
            "LT_RECORDS_DIR": str(records),
            "LT_OUT_DIR": str(out),
        }
        cores = {int(c) for c in self.cpus.split(",") if c.strip()}
        deadline = time.monotonic() + profile.duration_s + 60
        started = time.monotonic()
        next_memory = 0.0
        with open(out / "lean.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "loadtests.lean"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,  # noqa: PLW1509
            )
            try:
                while True:
                    try:
                        times = psutil.Process(proc.pid).cpu_times()
                        sampled[proc.pid] = times.user + times.system
                    except psutil.Error:
                        pass
                    if time.monotonic() >= next_memory:
                        next_memory = time.monotonic() + MEMORY_EVERY_S
                        self._sample_memory({"generator": proc.pid, **self.service_pids()})
                        self.load.append(os.getloadavg()[0])
                    try:
                        code = proc.wait(timeout=1)
                        break
                    except subprocess.TimeoutExpired:
                        if time.monotonic() > deadline:
                            raise
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        self.wall_s = time.monotonic() - started
        self.cpu_s = sampled.get(proc.pid, 0.0)
        return code, self.cpu_s

    def _describe(self, rows: list[dict[str, float]], windows: list[dict[str, float]]) -> str:
        """The generator's line: where it ran, its connections, CPU and lag."""
        requests = sum(row["requests"] for row in rows)
        last = rows[-1] if rows else {}
        where = f"one process{', cores ' + self.cpus if self.cpus else ', unpinned'}"
        late = sum(w["lag_p99_ms"] > LATE_MS for w in windows)
        return (
            f"lean (asyncio + httptools, {where}; {self.lanes[0]} keep-alive connections to "
            f"the waitroom, {self.lanes[1]} to booking); CPU {self.cpu_s:.1f} s over "
            f"{self.wall_s:.0f} s ({self.cpu_s / max(self.wall_s, 1.0):.0%} of one core), "
            f"busiest 10 s {max((w['cpu_share'] for w in windows), default=0):.0%}, "
            f"{self.cpu_s / max(requests, 1.0) * 1e6:.0f} µs per request; due to sent, worst "
            f"10 s p99: waitroom requests {_worst(windows, 'lag_p99_ms'):,.0f} ms ({late} of "
            f"{len(windows)} windows over {LATE_MS / 1000:.0f} s), booking requests "
            f"{_worst(windows, 'booking_lag_p99_ms'):,.0f} ms; connections opened "
            f"{int(last.get('connects', 0))}, requests sent again on a fresh connection "
            f"{int(last.get('resent', 0))}"
        )

    def _sample_memory(self, pids: dict[str, int]) -> None:
        for name, pid in pids.items():
            read = _read_memory(pid)
            if read is None:
                continue
            peak = self.memory.setdefault(name, Memory())
            rss, pss, count = read
            peak.rss = max(peak.rss, rss)
            if pss > peak.tree_pss:
                peak.tree_pss, peak.processes = pss, count

    def figures(self, out: Path) -> tuple[dict[str, str], list[str], dict[str, Any]]:
        """The summary's lines, its charts, and the figures for ``verdict.json``."""
        rows = _timeline(out / "lean_timeline.csv")
        settings = {name: float(os.environ.get(name, d)) for name, d in POLL_DEFAULTS.items()}
        windows = _windows(rows, *settings.values())
        min_s = settings["WAITROOM_POLL_MIN_S"]
        extra: dict[str, str] = {"generator": self._describe(rows, windows)}
        busy = [w for w in windows if w["line"] >= 1 and w["told_rate_per_min"] > 0]
        if busy:
            peak = max(busy, key=lambda w: w["line"])
            on_time = [w for w in busy if w["lag_p99_ms"] <= LATE_MS]
            share = sum(w["polls_per_s"] for w in on_time) / max(
                1.0, sum(w["formula_per_s"] for w in on_time)
            )
            extra["status polls per second against waitroom/README.md's formula"] = (
                "split {:g}, min {:g} s, max {:g} s; r = the pace the line was told".format(
                    *settings.values()
                )
                + f"; at the longest line (N {peak['line']:,.0f} polling, r "
                f"{peak['told_rate_per_min']:,.0f}/min, {peak['t_s']:.0f} s in): measured "
                f"**{peak['polls_per_s']:,.0f}/s**, formula {peak['formula_per_s']:,.0f}/s, "
                f"everyone every {min_s:g} s would be {peak['everyone_every_min_s']:,.0f}/s; "
                f"in the {len(on_time)} of {len(busy)} windows whose polls went out on time "
                f"(lag p99 ≤ {LATE_MS / 1000:.0f} s) measured {share:.0%} of the formula; "
                "per minute (measured vs formula, mean N): " + _per_minute(busy)
            )
        all_requests = [w["requests_per_s"] for w in windows]
        if all_requests:
            extra["requests per second, all endpoints (10 s windows)"] = (
                f"peak {max(all_requests):,.0f}, mean {sum(all_requests) / len(all_requests):,.0f}"
                f"; refreshers' polls at most "
                f"{max(w['refresh_polls_per_s'] for w in windows):,.0f}/s (not in the formula)"
            )
        peak_live = max((r["live"] for r in rows), default=0)
        generator_memory = self.memory.get("generator")
        if rows and generator_memory is not None and peak_live:
            per_resident = (generator_memory.rss - rows[0]["rss_bytes"]) / peak_live
            extra["generator memory"] = (
                f"peak RSS {generator_memory.rss / 2**20:.0f} MiB with up to {peak_live:,.0f} "
                f"residents on their way: ~{per_resident:,.0f} bytes per resident above its "
                f"{rows[0]['rss_bytes'] / 2**20:.0f} MiB at start"
            )
        extra["memory, peak (MiB): RSS of the process / PSS of it with its children"] = ", ".join(
            f"{name} {m.rss / 2**20:.0f} / {m.tree_pss / 2**20:.0f}"
            + (f" ({m.processes} processes)" if m.processes > 1 else "")
            for name, m in sorted(self.memory.items())
        )
        statuses = _statuses(out / "lean_statuses.csv")
        if statuses:
            extra["answers by status (lean_statuses.csv)"] = "; ".join(
                f"{name}: " + ", ".join(f"{status} ×{count:,}" for status, count in counts)
                for name, counts in statuses.items()
            )
        if self.load:
            extra["machine load (1-minute load average through the load, 5 s samples)"] = (
                f"min {min(self.load):.1f}, mean {sum(self.load) / len(self.load):.1f}, "
                f"max {max(self.load):.1f} on {os.cpu_count()} cores"
            )
        charts = [c for c in [_chart_polls(windows, out)] if c]
        figures = {
            "name": "lean",
            "cores": self.cpus or "unpinned",
            "connections": {"waitroom": self.lanes[0], "booking": self.lanes[1]},
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
            "memory_peak_bytes": {name: asdict(m) for name, m in self.memory.items()},
            "poll_settings": settings,
            "load_average": self.load,
            "windows": windows,
        }
        return extra, charts, figures


def _timeline(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [
            {key: float(value) if value else 0.0 for key, value in row.items()}
            for row in csv.DictReader(fh)
        ]


def _windows(
    rows: list[dict[str, float]], split: float, min_s: float, max_s: float
) -> list[dict[str, float]]:
    """Per timeline window: the line, the pace told, the load measured and the formula's."""
    windows = []
    for prev, row in zip(rows, rows[1:], strict=False):
        span = row["elapsed_s"] - prev["elapsed_s"]
        if span <= 0:
            continue
        line = (prev["waiting"] + row["waiting"]) / 2
        rate = row["told_rate_per_min"]
        windows.append(
            {
                "t_s": row["elapsed_s"],
                "line": line,
                "told_rate_per_min": rate,
                "requests_per_s": row["requests"] / span,
                "polls_per_s": row["polls_directed"] / span,
                "refresh_polls_per_s": row["polls_refresh"] / span,
                "formula_per_s": polls_per_second(line, rate, split, min_s, max_s),
                "everyone_every_min_s": line / min_s,
                "cpu_share": (row["cpu_s"] - prev["cpu_s"]) / span,
                "lag_p99_ms": row["lag_p99_ms"],
                "booking_lag_p99_ms": row.get("booking_lag_p99_ms", 0.0),
            }
        )
    return windows


def _worst(windows: list[dict[str, float]], key: str) -> float:
    return max((w[key] for w in windows), default=0.0)


def _statuses(path: Path) -> dict[str, list[tuple[str, int]]]:
    """Per endpoint, its answers by status (status 0: no answer)."""
    found: dict[str, list[tuple[str, int]]] = {}
    if path.exists():
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                name = f"{row['Method']} {row['Name']}"
                found.setdefault(name, []).append((row["Status"], int(row["Count"])))
    return found


def _per_minute(windows: list[dict[str, float]]) -> str:
    minutes: dict[int, list[dict[str, float]]] = {}
    for w in windows:
        minutes.setdefault(int(w["t_s"] // 60), []).append(w)
    parts = []
    for minute, group in sorted(minutes.items()):
        measured = sum(w["polls_per_s"] for w in group) / len(group)
        formula = sum(w["formula_per_s"] for w in group) / len(group)
        line = sum(w["line"] for w in group) / len(group)
        parts.append(f"min {minute + 1}: {measured:,.0f} vs {formula:,.0f} (N {line:,.0f})")
    return "; ".join(parts)


def _chart_polls(windows: list[dict[str, float]], out: Path) -> str | None:
    if not windows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ts = [w["t_s"] for w in windows]
    ax.plot(ts, [w["polls_per_s"] for w in windows], label="status polls/s (as directed)")
    ax.plot(ts, [w["formula_per_s"] for w in windows], linestyle="--", label="formula")
    ax.plot(ts, [w["requests_per_s"] for w in windows], linewidth=0.8, label="all requests/s")
    behind = [w for w in windows if w["lag_p99_ms"] > LATE_MS]
    for i, w in enumerate(behind):
        # Polls went out late here (the system answered slower than the line asked):
        # what was measured is what it served, not what the formula asks for.
        label = f"polls late (lag p99 > {LATE_MS / 1000:.0f} s)" if i == 0 else None
        ax.axvspan(w["t_s"] - 10, w["t_s"], color="red", alpha=0.08, linewidth=0, label=label)
    ax.set_xlabel("seconds since the generator started")
    ax.set_ylabel("per second")
    line = ax.twinx()
    line.plot(ts, [w["line"] for w in windows], color="grey", linewidth=0.8)
    line.set_ylabel("residents waiting (grey)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Polling load against the formula (waitroom/README.md)")
    fig.tight_layout()
    fig.savefig(out / "polls.png", dpi=90)
    plt.close(fig)
    return "polls.png"
