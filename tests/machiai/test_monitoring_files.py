"""The monitoring files in infra/monitoring/ hold: promtool accepts the rules and the
scrape configuration, the rules' own unit tests pass (each alert fires on the series that
should fire it and not on a look-alike), and every metric the alerts and the dashboard
query is one machiai/metrics.py exports, with every dashboard query valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from machiai import metrics

MONITORING = Path(__file__).resolve().parents[2] / "infra" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian's package prometheus; ./machiai.sh test installs it "
    "as root on Debian)",
)
# PromQL words that look like metric names in an expression.
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "le", "inf", "nan",
}  # fmt: skip
_NAME = re.compile(r"\b(machiai_[a-z0-9_]+)\b")


def _promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _exported() -> set[str]:
    """Every series name machiai/metrics.py's metrics expose (counters as ``_total``,
    histograms as ``_bucket``/``_sum``/``_count``)."""
    names = set()
    for metric in (m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)):
        base = metric._name
        kind = metric._type
        if kind == "counter":
            names |= {f"{base}_total"}
        elif kind == "histogram":
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        else:
            names.add(base)
    return names


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text("utf-8"))
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MONITORING / "grafana-dashboard.json").read_text("utf-8"))
    return loaded


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def _unknown_names(exprs: list[str]) -> set[str]:
    used = {name for e in exprs for name in _NAME.findall(e)}
    return used - _exported()


def test_alerts_and_dashboard_query_only_exported_metrics() -> None:
    assert _unknown_names(_alert_exprs()) == set()
    assert _unknown_names(_dashboard_exprs()) == set()
    # The check sees a typo (it would pass nothing unchecked).
    assert _unknown_names(["rate(machiai_http_requests[5m])"]) == {"machiai_http_requests"}


def test_the_dashboard_is_laid_out_and_bound_to_a_datasource() -> None:
    dash = _dashboard()
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not area & cells, f"{p['title']} overlaps another panel"
        cells |= area
        assert p["datasource"]["uid"] == "${datasource}"
        assert p["targets"], p["title"]
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert variables == {"datasource", "event"}


@needs_promtool
def test_promtool_accepts_the_rules_and_their_tests_pass() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = _promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_the_rule_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation is caught: the unit tests above are not vacuous."""
    shutil.copy(MONITORING / "alerts.yml", tmp_path / "alerts.yml")
    text = (MONITORING / "alerts_test.yml").read_text("utf-8")
    assert "185 messages" in text
    (tmp_path / "alerts_test.yml").write_text(text.replace("185 messages", "186 messages"))
    tested = _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (Grafana's ``$event`` sits inside a
    string, where PromQL takes any text)."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": e}
                    for n, e in enumerate(_dashboard_exprs())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))
    checked = _promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "broken.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "b", "rules": [{"record": "b:x", "expr": "sum(("}]}]})
    )
    assert _promtool("check", "rules", "broken.yml", cwd=tmp_path).returncode != 0
