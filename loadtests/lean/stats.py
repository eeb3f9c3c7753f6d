"""What the lean generator measured, in the files the judge and the report read.

``lean_stats.csv`` and ``lean_failures.csv`` have locust's columns (the ones
``judge.read_locust_stats`` reads), ``lean_stats_history.csv`` has locust's history columns
(``report.chart_latency`` reads its "Aggregated" rows) with one row per endpoint per window.
Latencies are kept as counts per rounded value, as locust does, so a run of millions of
requests costs kilobytes, not a list of floats.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import TextIO

AGGREGATED = "Aggregated"
HISTORY_COLUMNS = ["Timestamp", "Type", "Name", "Requests/s", "Failures/s", "50%", "95%", "99%"]


def rounded_ms(ms: float) -> float:
    """The bucket a latency is counted in: 0.1 ms below 10 ms, then two significant figures
    (locust keeps whole ms below 100, then tens, then hundreds)."""
    if ms < 10:
        return int(ms * 10 + 0.5) / 10
    if ms < 100:
        return float(int(ms + 0.5))
    if ms < 1000:
        return float(int(ms / 10 + 0.5) * 10)
    return float(int(ms / 100 + 0.5) * 100)


class Histogram:
    __slots__ = ("counts", "n", "total_ms", "max_ms")

    def __init__(self) -> None:
        self.counts: Counter[float] = Counter()
        self.n = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        self.counts[rounded_ms(ms)] += 1
        self.n += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)
        self.n += other.n
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float:
        """The smallest bucket at or above the ``q`` share of the counts (0 when empty)."""
        if not self.n:
            return 0.0
        rank = q * self.n
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= rank:
                return value
        return self.max_ms


class Stats:
    """Per (method, endpoint name): latencies over the run and over the current window;
    failures by reason; 5xx and no-answer counts by name (the judge's ``server_errors``)."""

    def __init__(self) -> None:
        self.total: dict[tuple[str, str], Histogram] = {}
        self.window: dict[tuple[str, str], Histogram] = {}
        self.failed: Counter[tuple[str, str]] = Counter()
        self.window_failed: Counter[tuple[str, str]] = Counter()
        self.reasons: Counter[tuple[str, str, str]] = Counter()
        self.server_errors: Counter[str] = Counter()
        # Every answer by status, expected ones too: a hold refused (409) is no failure, but
        # how often it happens says what booking's search showed.
        self.statuses: Counter[tuple[str, str, int]] = Counter()

    def record(self, method: str, name: str, ms: float, status: int, failure: str | None) -> None:
        key = (method, name)
        hist = self.window.get(key)
        if hist is None:
            hist = self.window[key] = Histogram()
        hist.add(ms)
        if failure is not None:
            self.failed[key] += 1
            self.window_failed[key] += 1
            self.reasons[(method, name, failure)] += 1
        if status >= 500 or status == 0:
            self.server_errors[name] += 1
        self.statuses[(method, name, status)] += 1

    def roll(self, timestamp: float, window_s: float, out: TextIO) -> dict[tuple[str, str], int]:
        """Close the window: write its history rows, fold it into the totals; returns its
        request count per endpoint."""
        writer = csv.writer(out)
        aggregated = Histogram()
        counts: dict[tuple[str, str], int] = {}
        for key, hist in sorted(self.window.items()):
            failed = self.window_failed[key]
            writer.writerow(_history_row(timestamp, key, hist, failed, window_s))
            aggregated.merge(hist)
            counts[key] = hist.n
            self.total.setdefault(key, Histogram()).merge(hist)
        failed_all = sum(self.window_failed.values())
        writer.writerow(_history_row(timestamp, ("", AGGREGATED), aggregated, failed_all, window_s))
        out.flush()
        self.window = {}
        self.window_failed = Counter()
        return counts

    def requests(self) -> int:
        return sum(h.n for h in self.total.values()) + sum(h.n for h in self.window.values())

    def write(self, out: Path, prefix: str, wall_s: float) -> None:
        """``<prefix>_stats.csv`` and ``<prefix>_failures.csv`` in locust's columns, and
        ``<prefix>_statuses.csv``: answers per endpoint and status."""
        with (out / f"{prefix}_stats.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["Type", "Name", "Request Count", "Failure Count", "Average Response Time",
                 "Max Response Time", "Requests/s", "50%", "95%", "99%", "100%"]
            )  # fmt: skip
            aggregated = Histogram()
            for (method, name), hist in sorted(self.total.items()):
                writer.writerow(_stats_row(method, name, hist, self.failed[(method, name)], wall_s))
                aggregated.merge(hist)
            writer.writerow(
                _stats_row("", AGGREGATED, aggregated, sum(self.failed.values()), wall_s)
            )
        with (out / f"{prefix}_failures.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["Method", "Name", "Error", "Occurrences"])
            for (method, name, reason), count in sorted(self.reasons.items()):
                writer.writerow([method, name, reason, count])
        with (out / f"{prefix}_statuses.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["Method", "Name", "Status", "Count"])
            for (method, name, status), count in sorted(self.statuses.items()):
                writer.writerow([method, name, status, count])


def _stats_row(method: str, name: str, hist: Histogram, failed: int, wall_s: float) -> list[str]:
    return [
        method,
        name,
        str(hist.n),
        str(failed),
        f"{hist.total_ms / hist.n if hist.n else 0:.2f}",
        f"{hist.max_ms:.1f}",
        f"{hist.n / wall_s if wall_s else 0:.2f}",
        *(f"{hist.quantile(q):g}" for q in (0.5, 0.95, 0.99)),
        f"{hist.max_ms:.1f}",
    ]


def _history_row(
    timestamp: float, key: tuple[str, str], hist: Histogram, failed: int, window_s: float
) -> list[str]:
    return [
        f"{timestamp:.0f}",
        key[0],
        key[1],
        f"{hist.n / window_s:.2f}",
        f"{failed / window_s:.2f}",
        *(f"{hist.quantile(q):g}" if hist.n else "" for q in (0.5, 0.95, 0.99)),
    ]
