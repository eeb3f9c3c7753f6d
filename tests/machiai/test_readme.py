"""The README is a newcomer's contract: CI runs its commands; every variable is documented."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_READ = re.compile(
    r"""(?:env|self)\.(?:text|integer|number|flag|url|raw)\(\s*"([A-Z][A-Z0-9_]+)\""""
)


def test_every_environment_variable_is_documented() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    names = set()
    for package in ("machiai", "waitroom", "booking"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(ENV_READ.findall(path.read_text("utf-8")))
    assert {"REDIS_URL", "DATABASE_URL", "MACHIAI_SECRET_KEYS"} <= names
    undocumented = sorted(n for n in names if f"`{n}`" not in readme)
    assert undocumented == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert "./machiai.sh test" in readme
    assert "./machiai.sh run" in readme
    assert "./machiai.sh test" in ci
