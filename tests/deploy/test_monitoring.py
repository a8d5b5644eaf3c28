"""Prometheus config and rules (promtool), PromQL in rules and the Grafana dashboard, metric names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "robeserve.json"
# DESIGN.md section 6; histograms are read through their _bucket/_sum/_count series.
SERVICE_METRICS = {
    "robeserve_requests_total", "robeserve_inferences_total", "robeserve_request_duration_seconds",
    "robeserve_queue_duration_seconds", "robeserve_compute_duration_seconds", "robeserve_batch_size",
    "robeserve_queue_depth", "robeserve_model_parameter_bytes", "robeserve_model_ready",
}  # fmt: skip
REQUIRED_PANELS = {
    "Samples/s per model", "ROBE / full throughput ratio", "Request latency p50 / p99", "Mean batch size",
    "Batch size distribution", "Queue depth",
}  # fmt: skip


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    return {rule.get("record") or rule["alert"]: rule["expr"] for g in groups for rule in g["rules"]}


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    # Grafana substitutes its variables before the query reaches Prometheus.
    return [
        t["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")
        for p in panels for t in p["targets"]
    ]  # fmt: skip


def metric_names(expr: str) -> set[str]:
    import promql_parser as promql
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql.walk(promql.parse(expr), visit)
    return names


def base_name(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def test_promtool_checks_config_rules_and_rule_unit_tests(validator) -> None:
    for args in (
        ("check", "config", "--syntax-only", PROMETHEUS / "prometheus.yml"),
        ("check", "rules", PROMETHEUS / "rules.yml"),
        ("test", "rules", PROMETHEUS / "rules_test.yml"),
    ):
        result = validator("promtool", *args)
        assert result.returncode == 0, f"promtool {args}: {result.stdout}{result.stderr}"


def test_promtool_rejects_a_broken_rule(validator, tmp_path: Path) -> None:
    bad = tmp_path / "rules.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - record: a:b\n        expr: sum(rate(x[1m])\n")
    assert validator("promtool", "check", "rules", bad).returncode != 0


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_query_parses_and_reads_only_service_metrics(source: str) -> None:
    expressions = list(rule_expressions().values()) if source == "rules" else dashboard_expressions()
    recorded = {name for name in rule_expressions() if ":" in name}
    assert expressions
    for expr in expressions:
        for name in metric_names(expr):
            assert base_name(name) in SERVICE_METRICS or name in recorded, f"{name} in {expr}"


def test_the_service_declares_every_metric_the_deploy_files_read() -> None:
    from prometheus_client import REGISTRY

    import service.metrics as metrics

    assert metrics.REQUESTS is not None  # importing service.metrics registered its metrics
    declared = {f.name + ("_total" if f.type == "counter" else "") for f in REGISTRY.collect()}
    used = set().union(*map(metric_names, [*rule_expressions().values(), *dashboard_expressions()]))
    recorded = {name for name in rule_expressions() if ":" in name}
    for name in used - recorded:
        assert name in declared or base_name(name) in declared, name


def test_dashboard_is_complete_and_uses_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    provisioned = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    datasources = yaml.safe_load(provisioned.read_text())
    uid = datasources["datasources"][0]["uid"]
    panels = dashboard["panels"]
    assert {p["title"] for p in panels} >= REQUIRED_PANELS
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == uid and panel["targets"]
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    assert dashboard["uid"] == "robeserve" and dashboard["templating"]["list"][0]["name"] == "model"


def test_dashboard_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, panel["title"]
        cells |= mine
