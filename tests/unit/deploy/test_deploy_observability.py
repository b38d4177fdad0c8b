"""The alert rules and the Grafana dashboard: promtool accepts the rules and their unit
tests pass, and every metric an alert or a panel reads is one the code exports."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import deploy_kit as kit
import yaml

from kairo_ingest import metrics
from support import outcomes

ALERTS = kit.PROMETHEUS / "alerts.yaml"
ALERT_TESTS = kit.PROMETHEUS / "alerts.test.yaml"
DASHBOARD = kit.GRAFANA / "kairo-ingest.json"

# Series that Prometheus makes itself, not the workers.
PROMETHEUS_OWN = {"up"}
# Metrics that work in flight on other branches adds; until it lands they are not in the
# registry. Once one is, this test fails until it is removed from here.
ASSUMED: dict[str, str] = {}

_NAME = re.compile(r"\b(?:kairo|process|python)_[a-z0-9_]+\b|\bup\b(?=\{)")


def _exported() -> set[str]:
    """Every sample name the registry can produce, labelled children or not."""
    names: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
    }
    for family in metrics.REGISTRY.collect():
        names |= {sample.name for sample in family.samples}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kit.promtool(), *args],
        capture_output=True,
        text=True,
        cwd=kit.PROMETHEUS,
        timeout=kit.TOOL_TIMEOUT_SECONDS,
        check=False,
    )


def _alert_exprs() -> dict[str, str]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def _panel_exprs() -> dict[str, list[str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return {
        p["title"]: [t["expr"] for t in p["targets"]]
        for p in dashboard["panels"]
        if p["type"] != "row"
    }


def test_promtool_accepts_the_alert_rules() -> None:
    done = _promtool("check", "rules", ALERTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_fires_on_the_series_it_watches() -> None:
    done = _promtool("test", "rules", ALERT_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_an_alert_or_a_panel_reads_is_exported() -> None:
    exported = _exported()
    assert set(ASSUMED) & exported == set(), "landed: drop it from ASSUMED"
    used: dict[str, str] = {}
    for alert, expr in _alert_exprs().items():
        used |= dict.fromkeys(_NAME.findall(expr), f"alert {alert}")
    for title, exprs in _panel_exprs().items():
        for expr in exprs:
            used |= dict.fromkeys(_NAME.findall(expr), f"panel {title!r}")
    assert len(used) >= 20  # the pattern finds the names (not a vacuous pass)
    unknown = {
        name: where
        for name, where in used.items()
        if name not in exported and name not in PROMETHEUS_OWN and name not in ASSUMED
    }
    assert unknown == {}


def test_every_panel_reads_the_dashboards_datasource_and_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variable = outcomes.only(dashboard["templating"]["list"])
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${" + variable["name"] + "}"
        assert panel["targets"]
        assert all(t["expr"].strip() for t in panel["targets"])
