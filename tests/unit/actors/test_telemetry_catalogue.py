"""Dashboard, alert rules and metric catalogue agree; the rules pass promtool (no Ray)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from actors.telemetry import CATALOGUE

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "marketray.json"
EXPORTED = re.compile(r"\bray_(marketray_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SOURCE_DIRS = ("actors", "serve", "market", "rag", "pipelines")


def catalogue_name(exported: str) -> str:
    """The catalogue name behind an exported series name (histograms add suffixes)."""
    if exported in CATALOGUE:
        return exported
    for suffix in HISTOGRAM_SUFFIXES:
        base = exported.removesuffix(suffix)
        if base != exported and base in CATALOGUE and CATALOGUE[base].kind == "histogram":
            return base
    raise AssertionError(f"ray_{exported} is not a metric the service exports")


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def rule_expressions() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_every_dashboard_metric_is_exported() -> None:
    names = {m for expr in dashboard_expressions() for m in EXPORTED.findall(expr)}

    assert len(names) >= 30
    for name in names:
        catalogue_name(name)


def test_every_alert_metric_is_exported() -> None:
    names = {m for expr in rule_expressions() for m in EXPORTED.findall(expr)}

    assert len(names) >= 7
    for name in names:
        catalogue_name(name)


def test_unknown_metric_name_rejected() -> None:
    with pytest.raises(AssertionError, match="not a metric"):
        catalogue_name("marketray_requests_totl")
    with pytest.raises(AssertionError, match="not a metric"):
        catalogue_name("marketray_requests_total_bucket")  # a counter has no buckets


def test_every_catalogue_metric_recorded_in_code() -> None:
    sources = "\n".join(
        path.read_text() for folder in SOURCE_DIRS for path in (ROOT / folder).rglob("*.py"))
    # Once where the catalogue declares it, at least once more where something records it.
    unused = [name for name in CATALOGUE if sources.count(f'"{name}"') < 2]

    assert unused == []


def test_every_catalogue_metric_on_dashboard() -> None:
    shown = {catalogue_name(m) for e in dashboard_expressions() for m in EXPORTED.findall(e)}

    assert sorted(set(CATALOGUE) - shown) == []


def test_histograms_have_at_most_twelve_buckets() -> None:
    histograms = {name: list(spec.buckets) for name, spec in CATALOGUE.items()
                  if spec.kind == "histogram"}
    assert histograms, "the catalogue declares no histogram"

    # Boundaries only: Prometheus adds +Inf, so 11 boundaries make 12 buckets.
    too_many = [name for name, bounds in histograms.items() if not 1 <= len(bounds) <= 11]
    unordered = [name for name, bounds in histograms.items()
                 if any(b <= a for a, b in zip(bounds, bounds[1:], strict=False))
                 or bounds[0] <= 0]
    assert too_many == []
    assert unordered == []


def test_labels_bounded_no_symbol_or_path_labels() -> None:
    for spec in CATALOGUE.values():
        assert not {"symbol", "path", "subject", "client", "request_id"} & set(spec.tags)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed "
                    "(make prometheus installs it; make test runs these checks itself)")
@pytest.mark.parametrize("args", [
    ["check", "rules", "alerts.yml"],
    ["test", "rules", "alerts_test.yml"],
    ["check", "config", "prometheus.yml"],
    ["check", "config", "prometheus-local.yml"],
])
def test_promtool_accepts_rules_and_configs(args: list[str]) -> None:
    result = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True,
                            text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
