"""What a simulated opening shows: its figures, the summary table and the chart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.waitroom.opening_model import Run
from benchmarks.waitroom.vector_status import FloatArray
from waitroom.services.estimate_wait import JITTER, polls_per_second

# Remaining waits (s) the ETA error is judged by while waiting: the load test's bar is
# "within ±20 % for waits of two minutes or more".
BANDS = ((0, 120), (120, 600), (600, 3_600), (3_600, 10_800), (10_800, 10**9))
LONG_WAIT_S = 120
MINUTE = 60


@dataclass(frozen=True, slots=True)
class EtaBand:
    """The error of the waits told to residents who then waited ``low_s``–``high_s``."""

    low_s: int
    high_s: int
    count: int
    abs_p50_s: float
    abs_p90_s: float
    abs_p99_s: float
    rel_p90: float  # |error| / real wait, 90th percentile


def _band(err: FloatArray, real: FloatArray, low: int, high: int) -> EtaBand:
    inside = (real >= low) & (real < high)
    e = np.abs(err[inside])
    if not e.shape[0]:
        return EtaBand(low, high, 0, np.nan, np.nan, np.nan, np.nan)
    p50, p90, p99 = np.percentile(e, (50, 90, 99))
    rel = float(np.percentile(e / np.maximum(real[inside], 1), 90))
    return EtaBand(low, high, int(e.shape[0]), float(p50), float(p90), float(p99), rel)


def bound_series(run: Run) -> FloatArray:
    """The README's polls/s formula (``polls_per_second``) each second: the residents
    polling then, at the fastest pace told in the last longest poll interval (a resident
    told a faster pace polls sooner until their next answer)."""
    s = run.series
    span = math.ceil(run.settings.poll_max_s * (1 + JITTER))
    pace = s["pace_per_min"]
    padded = np.concatenate([np.full(span - 1, pace[0]), pace])
    recent = np.lib.stride_tricks.sliding_window_view(padded, span).max(axis=1)
    return np.array(
        [
            polls_per_second(int(n), max(p, 1e-6), run.settings)
            for n, p in zip(s["pollers"], recent, strict=True)
        ]
    )


def window_means(values: FloatArray, width: int = 60) -> FloatArray:
    """Means over consecutive windows of ``width`` seconds (a last partial one dropped)."""
    whole = values.shape[0] // width * width
    means: FloatArray = values[:whole].reshape(-1, width).mean(axis=1)
    return means


def minute_means(values: FloatArray) -> FloatArray:
    return window_means(values, MINUTE)


def first_errors(run: Run) -> tuple[FloatArray, FloatArray]:
    """(real wait, real − told) of every resident told a wait, from their first one."""
    told = run.told_s >= 0
    real = (run.admit_s - run.told_at_s)[told].astype(np.float64)
    return real, real - run.told_s[told]


def later_errors(run: Run) -> tuple[FloatArray, FloatArray]:
    """(real remaining wait, real − told) of every status the tracers were given."""
    smp = run.samples
    real = (run.admit_s[smp[:, 1]] - smp[:, 0]).astype(np.float64)
    return real, real - smp[:, 2]


def eta_errors(run: Run) -> list[tuple[str, FloatArray]]:
    """The chart's ETA curves: first waits told, later ones by how long was really left."""
    curves = [("first wait told", first_errors(run)[1])]
    real, err = later_errors(run)
    for low, high in ((0, 600), (600, 3_600), (3_600, 10**9)):
        curves.append((f"later, {_span(low, high)} left", err[(real >= low) & (real < high)]))
    return curves


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures the README reports, from one run."""

    residents: int
    prequeue: int
    hours: float  # from opening until the last admission
    joins_peak: float
    polls_peak: float
    polls_peak_after_arrivals: float
    polls_total: float
    bound_ratio_max: float  # adaptive polls / formula, minute means, after the arrivals
    bound_ratio_span_max: float  # ... means over poll_max_s (a far-back resident's interval)
    fixed_peak: float
    fixed_peak_after_arrivals: float
    fixed_total: float
    redis_peak: float
    redis_median: float
    redis_by_script: dict[str, float]  # calls over the opening
    eta_first: EtaBand  # every resident, their first wait told
    eta_first_signed: tuple[float, float, float]  # p1, p50, p99 of real − told (s)
    eta_first_long_within_20: float  # share within ±20 %, real wait ≥ 2 min
    eta_first_in_range: float  # share whose real wait fell in the range told
    eta_bands: tuple[EtaBand, ...]  # every status of the tracers, by remaining wait
    notice_p50: float
    notice_p99: float
    fixed_notice_p50: float
    fixed_notice_p99: float
    abandoned: float  # share of turns never taken
    checks: int
    elapsed_s: float
    cpu_s: float


def figures(run: Run) -> Figures:
    s, sc = run.series, run.scenario
    after = run.open_s + sc.arrivals_s
    polls, fixed = s["polls"], run.fixed["polls"]
    told = run.told_s >= 0
    real, err = first_errors(run)
    long_ = real >= LONG_WAIT_S
    within = np.abs(err[long_]) <= 0.2 * real[long_]
    # Within a second either side: the simulation's grain (turns come at whole seconds).
    in_range = (run.low_s[told] - 1 <= real) & (real <= run.high_s[told] + 1)
    sample_real, sample_err = later_errors(run)
    bound = bound_series(run)[after:]
    ratio = minute_means(polls[after:]) / np.maximum(minute_means(bound), 1)
    span = run.settings.poll_max_s
    ratio_span = window_means(polls[after:], span) / np.maximum(window_means(bound, span), 1)
    entered = run.notice_s >= 0
    notice = (run.notice_s - run.admit_s)[entered]
    total = np.sum(list(run.redis.values()), axis=0)
    opened = total[run.open_s : int(run.admit_s.max()) + 1]
    p1, p50, p99 = np.percentile(err, (1, 50, 99))
    return Figures(
        residents=sc.residents,
        prequeue=int((run.join_s < run.open_s).sum()),
        hours=(int(run.admit_s.max()) - run.open_s) / 3600,
        joins_peak=float(s["joins"].max()),
        polls_peak=float(polls.max()),
        polls_peak_after_arrivals=float(polls[after:].max()),
        polls_total=float(polls.sum()),
        bound_ratio_max=float(ratio.max()) if ratio.shape[0] else np.nan,
        bound_ratio_span_max=float(ratio_span.max()) if ratio_span.shape[0] else np.nan,
        fixed_peak=float(fixed.max()),
        fixed_peak_after_arrivals=float(fixed[after:].max()),
        fixed_total=float(fixed.sum()),
        redis_peak=float(total.max()),
        redis_median=float(np.median(opened)),
        redis_by_script={k: float(v.sum()) for k, v in run.redis.items()},
        eta_first=_band(err, real, 0, 10**9),
        eta_first_signed=(float(p1), float(p50), float(p99)),
        eta_first_long_within_20=float(within.mean()) if within.shape[0] else np.nan,
        eta_first_in_range=float(in_range.mean()),
        eta_bands=tuple(_band(sample_err, sample_real, lo, hi) for lo, hi in BANDS),
        notice_p50=float(np.percentile(notice, 50)),
        notice_p99=float(np.percentile(notice, 99)),
        fixed_notice_p50=float(np.percentile(run.fixed["notice_delay_s"], 50)),
        fixed_notice_p99=float(np.percentile(run.fixed["notice_delay_s"], 99)),
        abandoned=float((~entered).mean()),
        checks=run.checks,
        elapsed_s=run.elapsed_s,
        cpu_s=run.cpu_s,
    )


def _span(low: int, high: int) -> str:
    def words(x: int) -> str:
        return f"{x // 3600} h" if x >= 3600 and x % 3600 == 0 else f"{x // 60} min"

    return f"≥ {words(low)}" if high >= 10**9 else f"{words(low)}–{words(high)}"


def summary(run: Run, f: Figures) -> str:
    """The table the command prints (and the README quotes)."""
    sc = run.scenario
    rows = [
        ("residents (pre-queue)", f"{f.residents:,} ({f.prequeue:,})"),
        (
            "admission",
            f"{sc.rate_per_min:,}/min, cap {sc.cap:,}; last turn {f.hours:.2f} h after opening",
        ),
        ("runtime", f"{f.elapsed_s:.1f} s wall, {f.cpu_s:.1f} s CPU"),
        ("checks against status_at", f"{f.checks:,} answers, all in agreement"),
        ("joins/s, peak", f"{f.joins_peak:,.0f}"),
        ("polls/s, peak (adaptive | every 20 s)", f"{f.polls_peak:,.0f} | {f.fixed_peak:,.0f}"),
        (
            "polls/s, peak once all have joined",
            f"{f.polls_peak_after_arrivals:,.0f} | {f.fixed_peak_after_arrivals:,.0f}",
        ),
        (
            "polls, whole opening",
            f"{f.polls_total / 1e6:,.1f} M | {f.fixed_total / 1e6:,.1f} M "
            f"({f.fixed_total / f.polls_total:.1f}×)",
        ),
        (
            f"adaptive polls / formula, worst minute | {run.settings.poll_max_s} s",
            f"{f.bound_ratio_max:.2f} | {f.bound_ratio_span_max:.2f}",
        ),
        ("Redis calls/s, peak | median", f"{f.redis_peak:,.0f} | {f.redis_median:,.0f}"),
        (
            "Redis calls by script",
            ", ".join(f"{k} {v:,.0f}" for k, v in f.redis_by_script.items() if v),
        ),
        (
            "first ETA |error| p50/p90/p99",
            f"{f.eta_first.abs_p50_s:,.0f} / {f.eta_first.abs_p90_s:,.0f} / "
            f"{f.eta_first.abs_p99_s:,.0f} s (real − told p1/p50/p99: "
            + " / ".join(f"{x:+,.0f}" for x in f.eta_first_signed)
            + " s)",
        ),
        (
            "first ETA within ±20 % (waits ≥ 2 min) | in the range told",
            f"{f.eta_first_long_within_20:.1%} | {f.eta_first_in_range:.1%}",
        ),
        *(
            (
                f"ETA while waiting, {_span(b.low_s, b.high_s)} left",
                f"|error| p50/p90/p99 {b.abs_p50_s:,.0f} / {b.abs_p90_s:,.0f} / "
                f"{b.abs_p99_s:,.0f} s, p90 {b.rel_p90:.1%} ({b.count:,} statuses)",
            )
            for b in f.eta_bands
        ),
        (
            "turn seen after (adaptive | every 20 s) p50, p99",
            f"{f.notice_p50:.0f}, {f.notice_p99:.0f} s | "
            f"{f.fixed_notice_p50:.0f}, {f.fixed_notice_p99:.0f} s",
        ),
        ("turns never taken (abandoned)", f"{f.abandoned:.1%}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_chart(run: Run, f: Figures, path: Path) -> None:
    """Four panels: requests in the first minutes, polls over the whole opening against the
    formula and fixed polling, Redis calls by script, and the ETA error by remaining wait."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, sc = run.series, run.scenario
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (first, whole), (redis, eta) = axes
    zoom = slice(0, min(s["polls"].shape[0], run.open_s + 45 * MINUTE))
    t = (np.arange(s["polls"].shape[0]) - run.open_s) / MINUTE
    first.plot(
        t[zoom], run.fixed["polls"][zoom], color="tab:red", lw=0.8, label="polls, every 20 s"
    )
    first.plot(t[zoom], s["polls"][zoom], color="tab:blue", lw=0.8, label="polls, machiai")
    first.plot(t[zoom], s["joins"][zoom], color="tab:gray", lw=0.8, label="joins")
    first.set(yscale="log", xlabel="minutes after opening (09:00)", ylabel="requests / s")
    first.set_title("The first minutes (per second)", fontsize=10)
    first.legend(fontsize=8)

    hours = (np.arange(minute_means(s["polls"]).shape[0]) * MINUTE - run.open_s) / 3600
    whole.plot(hours, minute_means(run.fixed["polls"]), color="tab:red", label="every 20 s")
    whole.plot(hours, minute_means(s["polls"]), color="tab:blue", label="machiai")
    whole.plot(
        hours, minute_means(bound_series(run)), color="black", ls="--", lw=0.8,
        label="formula (waitroom/README.md)",
    )  # fmt: skip
    line = whole.twinx()
    line.plot(hours, minute_means(s["waiting"]) / 1000, color="tab:green", lw=0.8)
    line.set_ylabel("in line (thousands)", color="tab:green")
    whole.set(yscale="log", xlabel="hours after opening", ylabel="polls / s (minute means)")
    whole.set_title(
        f"{sc.residents:,} residents, {sc.rate_per_min:,}/min: polls follow the admission rate",
        fontsize=10,
    )
    whole.legend(fontsize=8, loc="upper right")

    total = np.sum(list(run.redis.values()), axis=0)
    redis.plot(hours, minute_means(total), color="black", lw=1.2, label="all")
    for key, values in run.redis.items():
        means = minute_means(values)
        if means.max() > 0:
            redis.plot(hours, means, lw=0.9, label=key)
    redis.set(yscale="log", xlabel="hours after opening", ylabel="Redis round trips / s")
    redis.set_title(f"Redis, {sc.processes} waitroom processes (status polls: none)", fontsize=10)
    redis.legend(fontsize=7, ncol=2)

    for label, errors in eta_errors(run):
        if errors.shape[0]:
            eta.plot(np.sort(errors), np.linspace(0, 1, errors.shape[0]), label=label)
    eta.set(xscale="symlog", xlabel="real wait − wait told (s)", ylabel="share (cumulative)")
    eta.set_title("ETA error: each resident's first, and every later status", fontsize=10)
    eta.legend(fontsize=8, loc="lower right")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
