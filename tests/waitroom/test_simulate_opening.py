"""The opening simulation (benchmarks/waitroom): small openings, judged on what the waitroom
promises — arrival order, polling load that follows the admission rate and not the line's
length, Redis calls where the code makes them, waits told — and its vectorised copy of the
wait arithmetic checked against the waitroom's own."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.waitroom.opening_model import REDIS_CALLS, Run, Scenario, default_settings, simulate
from benchmarks.waitroom.poll_wheel import Wheel
from benchmarks.waitroom.simulation_report import bound_series, figures, window_means
from benchmarks.waitroom.vector_status import curve_waits_s, waits_s
from waitroom.services.pace import Limits, forecast

# Small and quick: 600 admissions a minute, everyone in within a minute of opening, no
# pre-queue and no slow spell unless a test asks for them.
BASE = Scenario(
    residents=20_000,
    rate_per_min=600,
    prequeue_share=0.0,
    arrivals_s=60,
    burst_tau_s=20.0,
    slow_p95_ms=0,
    tracer_share=0.05,
    check_every_s=1,
)
STEADY_S = 60 + 330  # all joined, and every resident has polled since (longest interval)


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    return {
        "20k": simulate(BASE),
        "10k": simulate(replace(BASE, residents=10_000)),
        "spell": simulate(
            replace(
                BASE,
                prequeue_share=0.15,
                prequeue_s=300,
                slow_at_s=600,
                slow_for_s=120,
                slow_p95_ms=2_000,
            )
        ),  # fmt: skip
        "cap": simulate(replace(BASE, residents=5_000, cap=800, finish_share=1.0)),
    }


def test_every_resident_is_admitted_once_in_arrival_order(runs: dict[str, Run]) -> None:
    for run in runs.values():
        n = run.scenario.residents
        n_pre = int((run.join_s < run.open_s).sum())
        assert (run.admit_s >= 0).all()
        assert (np.diff(run.admit_s) >= 0).all(), "a later place admitted before an earlier"
        assert (np.diff(run.join_s[n_pre:]) >= 0).all(), "places after opening by arrival"
        assert (run.admit_s >= run.open_s).all()
        # The admitted counter of every second counts exactly the places admitted by then.
        by_second = np.bincount(run.admit_s, minlength=run.series["admitted"].shape[0])
        assert (np.cumsum(by_second) == run.series["admitted"]).all()
        assert run.series["admitted"][-1] == n
        # Each turn is taken at most once, never before it came; the others were abandoned.
        assert set(np.unique(run.enters).tolist()) <= {0, 1}
        took = run.enters == 1
        assert (run.notice_s[took] >= run.admit_s[took]).all()
        assert (run.leave_s[~took] < run.notice_s.max()).all()
        assert run.checks > 0  # answers also given by the real status_at, in agreement


def test_admission_keeps_to_the_rate_and_the_cap(runs: dict[str, Run]) -> None:
    for run in runs.values():
        sc = run.scenario
        per_minute = np.convolve(np.diff(run.series["admitted"], prepend=0), np.ones(60), "valid")
        assert per_minute.max() <= sc.rate_per_min + sc.rate_per_min / 60 + 1
        assert run.series["active"].max() <= sc.cap
    capped = runs["cap"]
    assert capped.series["active"].max() == capped.scenario.cap  # the cap bound there


def test_polls_follow_the_admission_rate_not_the_line(runs: dict[str, Run]) -> None:
    settings = default_settings()
    peaks, fixed, lines = [], [], []
    for key in ("10k", "20k"):
        run = runs[key]
        steady = run.open_s + STEADY_S
        polls = window_means(run.series["polls"][steady:], settings.poll_max_s)
        bound = window_means(bound_series(run)[steady:], settings.poll_max_s)
        # The README's formula, from the admission rate: polls keep to it (within jitter
        # and rounding), and it is not a loose bound either.
        assert (polls <= 1.1 * bound).all(), (polls / bound).round(2)
        assert (polls >= 0.6 * bound).all(), (polls / bound).round(2)
        peaks.append(polls[0])
        fixed.append(window_means(run.fixed["polls"][steady:], settings.poll_max_s)[0])
        lines.append(run.series["waiting"][steady])
    line_ratio = lines[1] / lines[0]
    assert line_ratio > 2.0
    # Fixed 20 s polling grows as the line; machiai's polls by less than half as much.
    assert fixed[1] / fixed[0] == pytest.approx(line_ratio, rel=0.2)
    assert peaks[1] / peaks[0] < 1 + (line_ratio - 1) / 2


def test_fixed_polling_is_the_line_over_twenty_seconds(runs: dict[str, Run]) -> None:
    run = runs["20k"]
    steady = run.open_s + STEADY_S
    period = run.scenario.fixed_poll_s
    fixed = window_means(run.fixed["polls"][steady:], period)
    waiting = window_means(run.series["waiting"][steady:], period)
    # Every resident with the page open polls once a period: those waiting (but the
    # abandoned, who closed it) and those admitted who have not polled since.
    seeing = run.scenario.rate_per_min / 60 * period
    long_ = waiting > 10 * seeing  # the line's tail is the turns, not the line
    assert long_.sum() > 20
    assert (fixed[long_] <= (waiting[long_] + seeing) / period + 1).all()
    assert (fixed[long_] >= 0.85 * waiting[long_] / period).all()


def test_waits_told_are_exact_while_the_rate_binds(runs: dict[str, Run]) -> None:
    f = figures(runs["20k"])
    assert f.eta_first.count > 0.85 * BASE.residents
    assert f.eta_first.abs_p99_s <= 1  # whole seconds: the simulation's grain
    assert all(b.abs_p99_s <= 1 for b in f.eta_bands if b.count)


def test_a_slow_spell_delays_everyone_behind_it_by_the_admissions_it_lost(
    runs: dict[str, Run],
) -> None:
    run = runs["spell"]
    sc = run.scenario
    lost_s = float((1 - run.series["factor"][run.open_s :]).sum())
    assert lost_s >= (1 - 800 / sc.slow_p95_ms) * sc.slow_for_s  # factor target/p95 = 0.4
    spell_at = run.open_s + sc.slow_at_s
    told = run.told_s >= 0
    across = told & (run.told_at_s < spell_at) & (run.admit_s > spell_at + 2 * sc.slow_for_s)
    err = (run.admit_s - run.told_at_s - run.told_s)[across]
    assert err.shape[0] > 1_000
    assert np.abs(err - lost_s).max() <= 2
    f = figures(run)
    assert math.isfinite(f.eta_first.abs_p99_s) and f.eta_first.abs_p50_s > 0


def test_eta_errors_are_finite_when_the_cap_binds(runs: dict[str, Run]) -> None:
    f = figures(runs["cap"])
    first = f.eta_first
    assert first.count > 0.8 * runs["cap"].scenario.residents
    assert all(math.isfinite(x) for x in (first.abs_p50_s, first.abs_p90_s, first.abs_p99_s))
    assert first.abs_p50_s <= first.abs_p90_s <= first.abs_p99_s
    assert f.hours > 0 and first.abs_p99_s < f.hours * 3600


def test_redis_is_called_where_the_code_calls_it(runs: dict[str, Run]) -> None:
    run = runs["20k"]
    sc, s = run.scenario, run.settings
    assert set(run.redis) == {k for k in REDIS_CALLS if k != "status"} | {"load_event-1"}
    assert run.redis["issue_pass-9"].sum() == run.enters.sum()
    # Once all have joined, every second costs the refreshers and notifiers, one call per
    # entry, claim and opt-in — and nothing for the polls, however many.
    after = slice(run.open_s + STEADY_S, None)
    total = np.sum(list(run.redis.values()), axis=0)[after]
    per_entry = sum(run.redis[k][after] for k in ("issue_pass-9", "settle_optins-3", "opt_in-5"))
    fixed_cost = sc.processes * 1000 / s.refresh_ms + sc.processes
    assert (total - per_entry == fixed_cost).all()
    polls = run.series["polls"][after]
    assert polls.max() > 2 * polls.min() + 100


def test_the_vectorised_waits_are_the_waitrooms_own() -> None:
    rng = np.random.default_rng(3)
    cases = [
        Limits(2000, 1.0, 0.05, 6000, 6000, 220.0, 3000, 0.02, 0.0, 120),  # cap-bound
        Limits(2000, 0.4, 0.05, 40_000, 9000, 300.0, 500, 0.04, 45.0, 120),  # slow spell
        Limits(600, 1.0, 0.05, 800, 900, None, 0, 0.9, 0.0, 120),  # over the cap, unmeasured
        Limits(2000, 1.0, 0.05, 40_000, 100, 240.0, 10, 0.3, 0.0, 120),  # rate-bound
    ]
    for lim in cases:
        fc = forecast(lim)
        ahead = np.concatenate([[0, 1, 2], rng.integers(0, 2_000_000, 2_000)]).astype(np.int64)
        expected, low, high = waits_s(fc, ahead, with_range=True)
        for i, a in enumerate(ahead.tolist()):
            assert (expected[i], low[i], high[i]) == fc.waits_s(a)
        for curve in (fc.expected, fc.fast, fc.slow):
            at = np.asarray(curve.counts[:-1], dtype=np.float64)  # exactly on breakpoints
            assert curve_waits_s(curve, at).tolist() == [curve.wait_s(c) for c in at.tolist()]


def test_the_wheel_returns_each_resident_at_its_second() -> None:
    rng = np.random.default_rng(5)
    wheel = Wheel(width=8)  # grows as needed
    due: dict[int, list[int]] = {}
    for second in range(2_000):
        for i in wheel.pop(second).tolist():
            assert i in due[second]
            due[second].remove(i)
        assert not due.get(second)
        ids = np.asarray(rng.integers(0, 10**6, int(rng.integers(0, 50))), dtype=np.int64)
        at = np.asarray(second + rng.integers(1, 400, ids.shape[0]), dtype=np.int64)
        wheel.add(ids, at)
        for i, d in zip(ids.tolist(), at.tolist(), strict=True):
            due.setdefault(d, []).append(i)
    with pytest.raises(ValueError):
        wheel.add(np.array([1], np.int64), np.array([1_999 + 600], np.int64))
