"""The shipped Prometheus, Alertmanager and Grafana files: valid for their tools, tested, and
consistent with the metrics the exporter really publishes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from exporter.metrics import ExporterMetrics
from exporter.state import SnapshotStore
from tests.e2e_helpers import (
    ALERT_RULES,
    ALERT_TESTS,
    ALERTMANAGER_CONFIG,
    DASHBOARD,
    PROMETHEUS_CONFIG,
    REMEDIATION_RECEIVER,
    alert_rules,
    dashboard_panels,
    dashboard_queries,
    load_dashboard,
    load_yaml,
    require_binary,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILTER_VARIABLES = ("job", "instance", "account_id", "container_id")
# The labels the remediation webhook reads from BoomiListenerErrored.
WEBHOOK_LABELS = ("account_id", "container_id", "listener_id")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)}\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool", package="prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_binary("amtool", package="prometheus-alertmanager")


# -- the tools' own checks -------------------------------------------------------------------


def test_promtool_check_rules(promtool: str) -> None:
    assert_ok(run(promtool, "check", "rules", str(ALERT_RULES)))


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    assert_ok(run(promtool, "test", "rules", str(ALERT_TESTS)))


def test_promtool_check_config(promtool: str) -> None:
    # Also checks the rule files the config names, resolved next to it.
    assert_ok(run(promtool, "check", "config", str(PROMETHEUS_CONFIG)))


def test_amtool_check_config(amtool: str) -> None:
    assert_ok(run(amtool, "check-config", str(ALERTMANAGER_CONFIG)))


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alertmanager_routes_only_remediable_alerts_to_the_webhook(
    amtool: str, rule: dict[str, Any]
) -> None:
    labels = {
        "alertname": rule["alert"],
        **rule.get("labels", {}),
        "account_id": "acme-AB12CD",
        "container_id": "1045759d-mol",
        "listener_id": "7f3e-orders",
    }
    expected = REMEDIATION_RECEIVER if labels.get("remediate") == "true" else "default"
    result = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={expected}",
        *(f"{name}={value}" for name, value in labels.items()),
    )
    assert_ok(result)


# -- alerts.yml and its tests ----------------------------------------------------------------


def exporter_series_names() -> set[str]:
    """Every series name the exporter can publish, from its own registry."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    registry = ExporterMetrics(SnapshotStore()).registry
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def boomi_names(expr: str) -> set[str]:
    return set(re.findall(r"\bboomi_[a-z0-9_]+", expr))


def test_alerts_are_named_labelled_and_annotated() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), names
    for rule in rules:
        assert re.fullmatch(r"Boomi(?:[A-Z][a-z]+)+", rule["alert"]), rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), rule["alert"]
        assert {"summary", "description"} <= set(rule.get("annotations", {})), rule["alert"]


def test_only_the_errored_alert_is_remediated() -> None:
    remediated = [r["alert"] for r in alert_rules() if r.get("labels", {}).get("remediate")]
    assert remediated == ["BoomiListenerErrored"]
    (errored,) = [r for r in alert_rules() if r["alert"] == "BoomiListenerErrored"]
    assert errored["labels"]["remediate"] == "true"


def test_rules_use_only_metrics_the_exporter_publishes() -> None:
    published = exporter_series_names()
    for rule in alert_rules():
        used = boomi_names(rule["expr"]) | boomi_names(str(rule.get("annotations", {})))
        assert used <= published, (rule["alert"], used - published)


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            counts = firing if check.get("exp_alerts") else quiet
            counts[check["alertname"]] = counts.get(check["alertname"], 0) + 1
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - set(firing) == set(), "alerts without a test where they fire"
    assert alerts - set(quiet) == set(), "alerts without a test where they must not fire"
    assert set(firing) | set(quiet) <= alerts, "tests for alerts that do not exist"


def test_errored_alert_tests_check_the_labels_the_webhook_needs() -> None:
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            if check["alertname"] != "BoomiListenerErrored":
                continue
            for alert in check.get("exp_alerts") or []:
                labels = alert["exp_labels"]
                assert all(labels.get(name) for name in WEBHOOK_LABELS), (case["name"], labels)
                assert labels["remediate"] == "true", case["name"]


# -- the Grafana dashboard -------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_dashboard_is_provisionable_as_is(dashboard: dict[str, Any]) -> None:
    text = DASHBOARD.read_text(encoding="utf-8")
    assert "${DS_" not in text
    assert "__inputs" not in dashboard
    assert dashboard["uid"] == "boomi-listeners"
    assert dashboard["title"]
    assert "boomi" in dashboard["tags"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    for name in FILTER_VARIABLES:
        variable = variables[name]
        assert variable["type"] == "query", name
        assert variable["datasource"] == DATASOURCE, name
        assert variable["definition"].startswith("label_values("), name
        assert variable["multi"] and variable["includeAll"], name


def test_every_panel_uses_the_datasource_variable_and_has_a_unit(
    dashboard: dict[str, Any],
) -> None:
    panels = list(dashboard_panels(dashboard))
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["fieldConfig"]["defaults"].get("unit"), title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, (title, target["refId"])
            assert target.get("expr", "").strip(), (title, target["refId"])


def test_every_filter_variable_is_applied_by_every_listener_query(
    dashboard: dict[str, Any],
) -> None:
    # A panel that ignores a selection silently shows the whole fleet.
    for query in dashboard_queries(dashboard):
        for selector in re.findall(r"\b(boomi_[a-z0-9_]+)\{([^}]*)\}", query.expr):
            metric, matchers = selector
            expected: tuple[str, ...] = FILTER_VARIABLES
            if metric.startswith("boomi_api_"):
                expected = ("job", "instance", "account_id")  # no container on API calls
            for name in expected:
                assert f'{name}=~"${name}"' in matchers, (query.panel, metric, name)


def test_dashboard_uses_only_metrics_the_exporter_publishes(dashboard: dict[str, Any]) -> None:
    published = exporter_series_names()
    for query in dashboard_queries(dashboard):
        assert boomi_names(query.expr) <= published, (query.panel, boomi_names(query.expr))
    for variable in dashboard["templating"]["list"]:
        assert boomi_names(variable.get("definition", "")) <= published, variable["name"]


def test_grafana_provisioning_examples_point_at_the_dashboard() -> None:
    grafana = Path(DASHBOARD).parent.parent
    (provider,) = load_yaml(grafana / "provisioning" / "dashboards" / "boomi.yml")["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    (source,) = load_yaml(grafana / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert source["type"] == "prometheus"
