"""A million residents at a city's opening, simulated without HTTP or Redis (issue 17):

    .venv/bin/python -m benchmarks.waitroom.simulate_opening [--residents 1000000]
        [--rate 2000] [--cap 40000] [--finish-share 0.5] [--slow-p95-ms 2000]
        [--processes 4] [--seed 17]
        [--out benchmarks/waitroom/simulation.png]

Runs the opening of ``benchmarks.waitroom.opening_model`` (the waitroom's own wait and
poll-interval code, admit_next-10's admission step, one second at a time), prints the
summary table — runtime, polls per second against the README's formula and against
fixed 20 s polling, Redis round trips per second by script, the error of the waits told —
and writes the chart (``benchmarks/waitroom/README.md`` shows and explains both).
About 20 s of one core for 1,000,000 residents (more wall time on a busy machine).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from benchmarks.waitroom.opening_model import Scenario, simulate
from benchmarks.waitroom.simulation_report import figures, summary, write_chart

DEFAULT_OUT = Path(__file__).with_name("simulation.png")


def main(argv: list[str] | None = None) -> None:
    base = Scenario()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=base.residents)
    parser.add_argument("--rate", type=int, default=base.rate_per_min, help="admissions/min")
    parser.add_argument("--cap", type=int, default=base.cap, help="most active in booking")
    parser.add_argument(
        "--finish-share", type=float, default=base.finish_share,
        help='share of booking sessions ended by "finish" (the others last their TTL)',
    )  # fmt: skip
    parser.add_argument(
        "--slow-p95-ms", type=int, default=base.slow_p95_ms,
        help="booking's p95 during its one slow spell (0: none)",
    )  # fmt: skip
    parser.add_argument("--processes", type=int, default=base.processes)
    parser.add_argument("--seed", type=int, default=base.seed)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the chart (PNG)")
    args = parser.parse_args(argv)
    scenario = replace(
        base, residents=args.residents, rate_per_min=args.rate, cap=args.cap,
        finish_share=args.finish_share, slow_p95_ms=args.slow_p95_ms, processes=args.processes,
        seed=args.seed,
    )  # fmt: skip
    run = simulate(scenario)
    f = figures(run)
    print(summary(run, f))
    write_chart(run, f, args.out)
    print(f"chart: {args.out}")


if __name__ == "__main__":
    main()
