"""Did it hold? Invariants judged from Postgres, the residents' own records and locust's stats.

Each check returns a number that must be zero (or a distribution to report).
The residents' records are JSON lines written by the locust scenarios: what
each resident was told, and when, by the server's own responses.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg


@dataclass(slots=True)
class Verdict:
    oversold_slots: int = 0
    booked_counter_drift: int = 0
    double_bookings: int = 0
    lost_bookings: int = 0
    order_inversions: int = 0
    server_errors: int = 0
    confirmed: int = 0
    admitted: int = 0
    # Residents whose records say they joined (None: not counted, e.g. a judged database
    # alone); a run whose residents never joined judged nothing and does not hold.
    joined: int | None = None
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    wait_error_s: dict[str, float] = field(default_factory=dict)
    # The first estimate's relative error on waits of LONG_WAIT_S or more (estimate_error).
    estimate_error: dict[str, float] = field(default_factory=dict)
    notice_lag_s: dict[str, float] = field(default_factory=dict)
    admitted_per_minute: list[int] = field(default_factory=list)
    # Messages still undelivered when the drain after the load gave up (loadtests/outbox.py).
    outbox_left: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> dict[str, int]:
        return {
            "oversold_slots": self.oversold_slots,
            "booked_counter_drift": self.booked_counter_drift,
            "double_bookings": self.double_bookings,
            "lost_bookings": self.lost_bookings,
            "order_inversions": self.order_inversions,
            "server_errors_5xx": self.server_errors,
            "wait_estimate_p90_over_20pct": estimate_over_bar(self.estimate_error),
            "outbox_not_drained": self.outbox_left,
            "nobody_joined": 1 if self.joined == 0 else 0,
        }

    @property
    def held(self) -> bool:
        return all(v == 0 for v in self.violations.values())


ACTIVE = "('confirmed', 'attended')"


async def judge_database(conn: asyncpg.Connection, event_id: str, verdict: Verdict) -> None:
    """Oversell, counter drift and double bookings straight from the source of truth."""
    verdict.oversold_slots = await conn.fetchval(
        f"""
        SELECT count(*) FROM slots s
        WHERE s.event_id = $1 AND (s.booked > s.capacity OR
              (SELECT count(*) FROM bookings b WHERE b.slot_id = s.id AND b.status IN {ACTIVE})
              > s.capacity)
        """,
        event_id,
    )
    verdict.booked_counter_drift = await conn.fetchval(
        f"""
        SELECT count(*) FROM slots s
        WHERE s.event_id = $1 AND s.booked <>
              (SELECT count(*) FROM bookings b WHERE b.slot_id = s.id AND b.status IN {ACTIVE})
        """,
        event_id,
    )
    verdict.double_bookings = await conn.fetchval(
        f"""
        SELECT count(*) FROM (
            SELECT 1 FROM bookings b
            WHERE b.status IN {ACTIVE}
            GROUP BY b.municipality_code, b.voucher_number, b.dose_number
            HAVING count(*) > 1
        ) AS doubles
        """
    )
    verdict.confirmed = await conn.fetchval(
        f"SELECT count(*) FROM bookings b JOIN slots s ON s.id = b.slot_id "
        f"WHERE s.event_id = $1 AND b.status IN {ACTIVE}",
        event_id,
    )


async def count_lost(conn: asyncpg.Connection, codes: Sequence[str]) -> int:
    """Confirmation codes a resident was given that Postgres no longer holds as active."""
    if not codes:
        return 0
    found = await conn.fetchval(
        f"SELECT count(*) FROM bookings WHERE confirmation_code = ANY($1::text[]) "
        f"AND status IN {ACTIVE}",
        list(codes),
    )
    return len(set(codes)) - int(found)


def read_records(records_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(records_dir.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


def order_inversions(journeys: Iterable[dict[str, Any]], tolerance_s: float) -> int:
    """Residents told "still waiting" after someone who arrived later was already admitted.

    ``tolerance_s`` covers the snapshot lag between waitroom processes. Pre-queue
    residents are compared only with later arrivals (their own order is a shuffle).
    """
    admitted = sorted(
        (j["arrival_no"], j["admitted_at"], j.get("prequeue", False))
        for j in journeys
        if j.get("admitted_at") is not None and j.get("arrival_no") is not None
    )
    waiting = sorted(
        (j["arrival_no"], j["last_waiting_at"], j.get("prequeue", False))
        for j in journeys
        if j.get("last_waiting_at") is not None and j.get("arrival_no") is not None
    )
    inversions = 0
    # For each waiting observation, was anyone with a larger arrival number admitted before it?
    # Sweep arrival numbers from the top, tracking the earliest admission seen so far.
    earliest_later_admission = float("inf")
    index = len(admitted) - 1
    for arrival_no, last_waiting_at, prequeue in reversed(waiting):
        while index >= 0 and admitted[index][0] > arrival_no:
            if not (prequeue and admitted[index][2]):
                earliest_later_admission = min(earliest_later_admission, admitted[index][1])
            index -= 1
        if last_waiting_at > earliest_later_admission + tolerance_s:
            inversions += 1
    return inversions


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of an ascending, non-empty sequence (nearest rank below)."""
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _distribution(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return quantile(ordered, q)

    return {
        "count": float(len(values)),
        "median": round(statistics.median(values), 2),
        "p10": round(pick(0.10), 2),
        "p90": round(pick(0.90), 2),
        "mean_abs": round(statistics.fmean(abs(v) for v in values), 2),
    }


def turn_times(journeys: Sequence[dict[str, Any]]) -> dict[int, float]:
    """When the server admitted each resident (by position in ``journeys``), as opposed to when
    the resident's next poll noticed it. An admitted resident is told ``enter_within_s``, the
    grace left since its turn; the full grace is the largest value anyone was told."""
    told = [j.get("enter_within_s") for j in journeys]
    grace = max((float(t) for t in told if t is not None), default=None)
    if grace is None:
        return {}
    return {
        i: float(j["admitted_at"]) - (grace - float(j["enter_within_s"]))
        for i, j in enumerate(journeys)
        if j.get("admitted_at") is not None and j.get("enter_within_s") is not None
    }


def wait_error(journeys: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Predicted wait at join versus when the server actually admitted the resident (seconds;
    positive = too hopeful). Without the server's time (older records), when it was noticed."""
    turns = turn_times(journeys)
    return _distribution(
        [
            (turns.get(i, j["admitted_at"]) - j["joined_at"]) - j["predicted_wait_s"]
            for i, j in enumerate(journeys)
            if j.get("admitted_at") is not None and j.get("predicted_wait_s") is not None
        ]
    )


# The bar of issue 18: for residents whose real wait was at least LONG_WAIT_S, the estimate on
# their first status is within ESTIMATE_BAR of the real wait for 90 % of them.
LONG_WAIT_S = 120.0
ESTIMATE_BAR = 0.20
# Fewer long waits than this say nothing about a 90th percentile: reported, not judged.
ESTIMATE_MIN_SAMPLE = 20


def estimate_error(
    journeys: Sequence[dict[str, Any]], min_wait_s: float = LONG_WAIT_S
) -> dict[str, float]:
    """How far the first estimate a resident was told lay from the real wait (relative to the
    real wait), for residents who waited at least ``min_wait_s`` from that first estimate until
    the server admitted them.

    Residents who saw "sold out" on the way are left out (and counted): standby until places
    come back is a stall no estimate can foresee. ``p90`` is the figure the bar applies to;
    ``in_range`` is the share whose real wait fell inside the low–high range they were shown."""
    turns = turn_times(journeys)
    errors: list[float] = []
    signed: list[float] = []
    in_range = 0
    stalled = 0
    for i, j in enumerate(journeys):
        told_at, told = j.get("first_estimate_at"), j.get("first_estimate_s")
        if told_at is None or told is None or j.get("admitted_at") is None:
            continue
        real = turns.get(i, float(j["admitted_at"])) - float(told_at)
        if real < min_wait_s:
            continue
        if j.get("sold_out_seen"):
            stalled += 1
            continue
        errors.append(abs(float(told) - real) / real)
        signed.append((float(told) - real) / real)
        low, high = j.get("first_estimate_low_s"), j.get("first_estimate_high_s")
        if low is not None and high is not None and float(low) - 1 <= real <= float(high) + 1:
            in_range += 1
    if not errors:
        return {"count": 0.0, "left_out_sold_out": float(stalled)}
    ordered = sorted(errors)
    return {
        "count": float(len(errors)),
        "p50": round(quantile(ordered, 0.5), 3),
        "p90": round(quantile(ordered, 0.9), 3),
        "max": round(ordered[-1], 3),
        "mean_signed": round(statistics.fmean(signed), 3),
        "in_range": round(in_range / len(errors), 3),
        "left_out_sold_out": float(stalled),
    }


def estimate_over_bar(error: dict[str, float]) -> int:
    """1 when the estimate misses the bar (p90 relative error above ESTIMATE_BAR over enough
    long waits to mean something), else 0: a violation like the others."""
    if error.get("count", 0) < ESTIMATE_MIN_SAMPLE:
        return 0
    return int(error["p90"] > ESTIMATE_BAR)


def notice_lag(journeys: Sequence[dict[str, Any]]) -> dict[str, float]:
    """How long after their turn residents noticed it: the price of polling as directed."""
    turns = turn_times(journeys)
    return _distribution([float(journeys[i]["admitted_at"]) - t for i, t in turns.items()])


def per_minute(times: Iterable[float], start: float) -> list[int]:
    buckets: dict[int, int] = {}
    for t in times:
        buckets[int((t - start) // 60)] = buckets.get(int((t - start) // 60), 0) + 1
    return [buckets.get(m, 0) for m in range(max(buckets) + 1)] if buckets else []


def server_errors(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """5xx responses and dropped connections per endpoint, as the scenarios counted them."""
    total: dict[str, int] = {}
    for row in records:
        for name, count in row.get("server_errors", {}).items():
            total[name] = total.get(name, 0) + int(count)
    return total


def read_locust_stats(stats_csv: Path) -> tuple[dict[str, dict[str, float]], int]:
    """Latency percentiles per endpoint and the number of failed requests locust saw."""
    latency: dict[str, dict[str, float]] = {}
    with stats_csv.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated" or not row["Request Count"].isdigit():
                continue
            latency[f"{row['Type']} {row['Name']}"] = {
                "requests": float(row["Request Count"]),
                "p50": float(row["50%"] or 0),
                "p95": float(row["95%"] or 0),
                "p99": float(row["99%"] or 0),
            }
    failed = 0
    failures_csv = stats_csv.with_name(stats_csv.name.replace("_stats.csv", "_failures.csv"))
    if failures_csv.exists():
        with failures_csv.open(encoding="utf-8") as fh:
            failed = sum(int(row["Occurrences"]) for row in csv.DictReader(fh))
    return latency, failed
