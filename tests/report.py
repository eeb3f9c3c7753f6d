"""What the fault tests saw, gathered into one table the test command prints at its end
(and writes to reports/faults.md): each fault tried, what residents saw, confirmed
bookings lost, places oversold, how long recovery took; and the fuzzing runs' counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "reports" / "faults.md"


@dataclass(frozen=True, slots=True)
class Fault:
    fault: str
    residents_saw: str
    lost: str  # confirmed bookings lost ("–" where the fault touches no booking)
    oversold: str
    recovery: str


FAULTS: list[Fault] = []
FUZZ: list[str] = []  # one line per fuzzed service: requests, operations, answers by class


def record(fault: Fault) -> None:
    FAULTS.append(fault)


def fuzzed(line: str) -> None:
    FUZZ.append(line)


def table() -> str:
    lines = [
        "| fault | what residents saw | confirmed lost | oversold | recovery |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.fault} | {f.residents_saw} | {f.lost} | {f.oversold} | {f.recovery} |"
        for f in FAULTS
    ]
    if FUZZ:
        lines += ["", "Fuzzing (schemathesis, both OpenAPI documents):", *FUZZ]
    return "\n".join(lines)


def write() -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("# Faults tried by the test command\n\n" + table() + "\n", "utf-8")
