"""The one-page summary of a load test: verdict, figures and charts (PNG), in Markdown and HTML."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from loadtests import judge  # noqa: E402
from loadtests.judge import Verdict  # noqa: E402
from loadtests.profiles import Profile  # noqa: E402


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def chart_line_length(journeys: Sequence[dict[str, Any]], start: float, out: Path) -> str:
    events: list[tuple[float, int]] = []
    for j in journeys:
        if j.get("joined_at") is None:
            continue
        events.append((j["joined_at"] - start, 1))
        left = j.get("admitted_at") or j.get("left_at")
        if left is not None:
            events.append((left - start, -1))
    events.sort()
    xs, ys, level = [0.0], [0], 0
    for t, delta in events:
        level += delta
        xs.append(t)
        ys.append(level)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.step(xs, ys, where="post")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("residents in line")
    ax.set_title("People in line over time")
    return _save(fig, out / "line_length.png")


def chart_outbox(samples: Sequence[tuple[float, int]], load_end_s: float, out: Path) -> str | None:
    """The outbox's backlog over the run and its drain after the load stopped."""
    if not samples:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([t for t, _ in samples], [n for _, n in samples], drawstyle="steps-post")
    ax.axvline(load_end_s, color="grey", linestyle="--", label="load stopped")
    ax.legend()
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("messages waiting")
    ax.set_title("Outbox backlog (must drain)")
    return _save(fig, out / "outbox.png")


def chart_per_minute(
    values: Sequence[int], title: str, ylabel: str, out: Path, name: str, limit: int | None = None
) -> str:
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(1, len(values) + 1), values)
    ax.set_xticks(range(1, len(values) + 1))
    if limit is not None:
        ax.axhline(limit, color="red", linestyle="--", label=f"configured {limit}/min")
        ax.legend()
    ax.set_xlabel("minute of the run")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, out / name)


def chart_latency(history_csv: Path, out: Path) -> str | None:
    if not history_csv.exists():
        return None
    xs: list[float] = []
    series: dict[str, list[float]] = {"50%": [], "95%": [], "99%": []}
    first: float | None = None
    with history_csv.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] != "Aggregated" or row["50%"] in ("", "N/A"):
                continue
            t = float(row["Timestamp"])
            first = t if first is None else first
            xs.append(t - first)
            for key in series:
                series[key].append(float(row[key]))
    if not xs:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    for key, ys in series.items():
        ax.plot(xs, ys, label=f"p{key.rstrip('%')}")
    ax.set_xlabel("seconds")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Latency percentiles (all requests)")
    return _save(fig, out / "latency.png")


def chart_wait(journeys: Sequence[dict[str, Any]], out: Path) -> str | None:
    """The first estimate each resident was told against the real wait from that moment,
    with the ±20 % band of the bar (judged on real waits of two minutes or more)."""
    turns = judge.turn_times(journeys)
    points = [
        (j["first_estimate_s"], turns.get(i, j["admitted_at"]) - j["first_estimate_at"])
        for i, j in enumerate(journeys)
        if j.get("admitted_at") is not None and j.get("first_estimate_s") is not None
    ]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter([a for _, a in points], [p for p, _ in points], s=6, alpha=0.5)
    top = max(max(p, a) for p, a in points) or 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle="--")
    bar = judge.ESTIMATE_BAR
    for k in (1 - bar, 1 + bar):
        ax.plot([0, top], [0, top * k], color="grey", linestyle=":", linewidth=0.8)
    ax.axvline(judge.LONG_WAIT_S, color="red", linestyle=":", linewidth=0.8)
    ax.set_xlabel("real wait from the first estimate until admitted (s)")
    ax.set_ylabel("first estimate told (s)")
    ax.set_title("Estimated vs real wait (±20 % dotted)")
    return _save(fig, out / "wait.png")


def estimate_line(error: dict[str, float]) -> str:
    """The estimate's figure for the summary, with the bar it is judged against."""
    bar = f"bar: p90 ≤ {judge.ESTIMATE_BAR:.0%} over waits ≥ {judge.LONG_WAIT_S:.0f} s"
    count = int(error.get("count", 0))
    left_out = int(error.get("left_out_sold_out", 0))
    if count < judge.ESTIMATE_MIN_SAMPLE:
        return (
            f"wait estimate (first status): not judged, {count} resident(s) waited "
            f"≥ {judge.LONG_WAIT_S:.0f} s (fewer than {judge.ESTIMATE_MIN_SAMPLE}); "
            f"{left_out} left out after seeing sold out ({bar})"
        )
    return (
        f"wait estimate (first status, real waits ≥ {judge.LONG_WAIT_S:.0f} s): relative error "
        f"p50 {error['p50']:.1%}, **p90 {error['p90']:.1%}**, max {error['max']:.1%}, mean "
        f"signed {error['mean_signed']:+.1%} (+ = told too long) over {count} residents; "
        f"real wait inside the range shown: {error['in_range']:.0%}; {left_out} left out "
        f"after seeing sold out ({bar})"
    )


def write_summary(
    out: Path, profile: Profile, verdict: Verdict, charts: Sequence[str], extra: dict[str, str]
) -> tuple[Path, Path]:
    held = "HELD — every invariant holds" if verdict.held else "FAILED — invariants violated"
    lines = [
        f"# machiai load test: {profile.name}",
        "",
        f"**{held}**",
        "",
        profile.description,
        "",
        "## Invariants (all must be 0)",
        "",
        "| invariant | count |",
        "|---|---|",
        *[f"| {name} | {count} |" for name, count in verdict.violations.items()],
        "",
        "## Figures",
        "",
        f"- residents joined: {verdict.joined}; admitted: {verdict.admitted}; "
        f"bookings confirmed: {verdict.confirmed} (seeded capacity {profile.capacity})",
        f"- admitted per minute: {verdict.admitted_per_minute} "
        f"(configured {profile.admit_per_minute}/min)",
        f"- {estimate_line(verdict.estimate_error)}",
        "- estimated-wait error at join (admitted by the server − estimated, s): "
        f"{verdict.wait_error_s or 'n/a'}",
        "- turn noticed after (next poll − admission by the server, s): "
        f"{verdict.notice_lag_s or 'n/a'}",
        *[f"- {key}: {value}" for key, value in extra.items()],
        "",
        "## Latency per endpoint (ms)",
        "",
        "| endpoint | requests | p50 | p95 | p99 |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {int(v['requests'])} | {v['p50']:.0f} | {v['p95']:.0f} | {v['p99']:.0f} |"
            for name, v in sorted(verdict.latency_ms.items())
        ],
        "",
        *[f"- note: {note}" for note in verdict.notes],
        "",
        "## Charts",
        "",
        *[f"![{c}]({c})" for c in charts],
        "",
        "locust's own report: `locust.html`; raw numbers: `locust_*.csv`, `records/*.jsonl`.",
    ]
    md_path = out / "summary.md"
    md_path.write_text("\n".join(lines) + "\n", "utf-8")
    body = []
    for line in lines:
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("![") and "](" in line:
            src = line[line.index("](") + 2 : -1]
            body.append(f'<p><img src="{html.escape(src)}" alt="{html.escape(src)}"></p>')
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= {"-"}:
                continue
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        elif line:
            body.append(f"<p>{html.escape(line.strip('*'))}</p>")
    page = (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        f"<title>machiai load test: {html.escape(profile.name)}</title>"
        "<style>body{font:16px/1.5 sans-serif;max-width:60em;margin:2em auto}"
        "td{border:1px solid #ccc;padding:2px 8px}</style><body>"
        + "\n".join(_wrap_tables(body))
        + "</body></html>"
    )
    html_path = out / "summary.html"
    html_path.write_text(page, "utf-8")
    return md_path, html_path


def _wrap_tables(body: list[str]) -> list[str]:
    wrapped: list[str] = []
    in_table = False
    for item in body:
        if item.startswith("<tr>") and not in_table:
            wrapped.append("<table>")
            in_table = True
        elif not item.startswith("<tr>") and in_table:
            wrapped.append("</table>")
            in_table = False
        wrapped.append(item)
    if in_table:
        wrapped.append("</table>")
    return wrapped
