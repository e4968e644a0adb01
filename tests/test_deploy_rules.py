"""The shipped Prometheus, Alertmanager and Grafana files: valid for their tools, tested, and
consistent with the metrics the exporter really publishes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from exporter.boomi import LISTENER_STATUSES
from exporter.metrics import ExporterMetrics, SnapshotCollector
from exporter.state import SnapshotStore
from tests.e2e_helpers import (
    ALERT_RULES,
    ALERT_TESTS,
    ALERTMANAGER_CONFIG,
    DASHBOARD,
    JOB,
    LOW_URGENCY_RECEIVER,
    PAGING_RECEIVER,
    PROMETHEUS_CONFIG,
    REMEDIATION_RECEIVER,
    TEST_VARIABLES,
    alert_rules,
    dashboard_panels,
    dashboard_queries,
    load_dashboard,
    load_yaml,
    require_binary,
    substitute_variables,
    write_yaml,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FILTER_VARIABLES = ("job", "instance", "account_id", "container_id")
# The labels the remediation webhook reads from BoomiListenerErrored.
WEBHOOK_LABELS = ("account_id", "container_id", "listener_id")
# Labels of the info series: names that become known, or change, while an alert is active.
NAME_LABELS = ("process_name", "container_name", "container_type")
# The labels an alert may take from an info series: the runtime's environment classification,
# which Alertmanager routes by.
JOINED_LABELS = ("environment_classification",)


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


def routes_test(amtool: str, labels: dict[str, str], expected: str) -> None:
    """`amtool config routes test`: the labels reach exactly the `expected` receivers."""
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
    assert result.stdout.strip() == expected, result.stdout


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
    remediated = f"{REMEDIATION_RECEIVER},{PAGING_RECEIVER}"
    routes_test(amtool, labels, remediated if labels.get("remediate") == "true" else "default")


@pytest.mark.parametrize(
    ("classification", "expected"),
    [
        ("PROD", f"{REMEDIATION_RECEIVER},{PAGING_RECEIVER}"),
        ("TEST", LOW_URGENCY_RECEIVER),
        # Not attached, or environments not readable: the label is absent; routed like PROD,
        # so that an outage is never quieter for want of an environment.
        (None, f"{REMEDIATION_RECEIVER},{PAGING_RECEIVER}"),
    ],
)
def test_alertmanager_routes_errored_listeners_by_environment(
    amtool: str, classification: str | None, expected: str
) -> None:
    (errored,) = [r for r in alert_rules() if r["alert"] == "BoomiListenerErrored"]
    labels = {
        "alertname": "BoomiListenerErrored",
        **errored["labels"],
        "account_id": "acme-AB12CD",
        "container_id": "1045759d-mol",
        "listener_id": "7f3e-orders",
    }
    if classification is not None:
        labels["environment_classification"] = classification
    routes_test(amtool, labels, expected)


def test_other_alerts_of_test_runtimes_go_to_the_default_receiver(amtool: str) -> None:
    labels = {"alertname": "BoomiRuntimeOffline", "severity": "warning"}
    routes_test(amtool, labels | {"environment_classification": "TEST"}, "default")


# -- alerts.yml and its tests ----------------------------------------------------------------


def exporter_series_names() -> set[str]:
    """Every series name the exporter can publish, from its own registry."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    store = SnapshotStore()
    # The store's families may be rendered apart from the registry (the exporter caches them):
    # SnapshotCollector names them either way.
    families = [*ExporterMetrics(store).registry.collect(), *SnapshotCollector(store).collect()]
    return {
        family.name + suffix for family in families for suffix in suffixes.get(family.type, ("",))
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


def test_errored_alert_carries_the_environment_and_its_tests_cover_prod_and_test() -> None:
    (errored,) = [r for r in alert_rules() if r["alert"] == "BoomiListenerErrored"]
    assert "group_left (environment_classification)" in " ".join(errored["expr"].split())
    seen = {
        alert["exp_labels"].get("environment_classification")
        for case in load_yaml(ALERT_TESTS)["tests"]
        for check in case.get("alert_rule_test", [])
        if check["alertname"] == "BoomiListenerErrored"
        for alert in check.get("exp_alerts") or []
    }
    assert {"PROD", "TEST", None} <= seen


def test_errored_alert_tests_check_the_labels_the_webhook_needs() -> None:
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            if check["alertname"] != "BoomiListenerErrored":
                continue
            for alert in check.get("exp_alerts") or []:
                labels = alert["exp_labels"]
                assert all(labels.get(name) for name in WEBHOOK_LABELS), (case["name"], labels)
                assert labels["remediate"] == "true", case["name"]


def test_alert_labels_never_carry_names() -> None:
    # A label that changes while an alert is pending or firing ends that alert and starts
    # another (restarting `for:`, and notifying the remediation webhook again): names are
    # looked up in the annotations instead, and never joined into an alert's labels. The one
    # label an alert takes from an info series is the environment classification, which
    # Alertmanager routes by (alerts.test.yml shows what its change does).
    for rule in alert_rules():
        expr = " ".join(rule["expr"].split())
        assert "boomi_listener_info" not in expr, rule["alert"]
        copied = {
            label.strip()
            for labels in re.findall(r"group_(?:left|right)\s*\(([^)]*)\)", expr)
            for label in labels.split(",")
        }
        assert copied <= set(JOINED_LABELS), (rule["alert"], copied)
        if "boomi_container_info" in expr:
            assert copied == set(JOINED_LABELS), rule["alert"]
        assert not set(NAME_LABELS) & set(rule.get("labels", {})), rule["alert"]
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            for alert in check.get("exp_alerts") or []:
                assert not set(NAME_LABELS) & set(alert["exp_labels"]), case["name"]


def test_offline_runtimes_are_left_to_their_own_alert() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert rules["BoomiRuntimeOffline"]["expr"].strip() == "boomi_container_online == 0"
    for name in ("BoomiContainerPollFailing", "BoomiListenerStatusStale"):
        expr = " ".join(rules[name]["expr"].split())
        assert (
            "unless on (job, instance, account_id, container_id) (boomi_container_online == 0)"
            in expr
        ), name


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


def test_container_variable_shows_names_and_selects_ids(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    names, ids = variables["container"], variables["container_id"]
    assert names["definition"].endswith(", container_name)"), names["definition"]
    assert names["datasource"] == DATASOURCE and names["multi"] and names["includeAll"]
    assert names.get("hide", 0) == 0, "the picker people use must be visible"
    # container_id holds the ids of the containers picked by name, and is what panels filter
    # on; "All" must mean those ids, not `.*`, or picking a name would filter nothing.
    assert 'container_name=~"$container"' in ids["definition"]
    assert ids["definition"].endswith(", container_id)"), ids["definition"]
    assert ids["hide"] == 2
    assert not ids.get("allValue")
    order = [v["name"] for v in dashboard["templating"]["list"]]
    assert order.index("account_id") < order.index("container") < order.index("container_id")


ENVIRONMENT_VARIABLES = ("environment_classification", "environment")
ENVIRONMENT_MATCHERS = (
    'environment_classification=~"$environment_classification"',
    'environment_name=~"$environment"',
)


def test_environment_variables_pick_the_containers_every_panel_shows(
    dashboard: dict[str, Any],
) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    order = [v["name"] for v in dashboard["templating"]["list"]]
    # Classification, then name, then the containers in those environments.
    assert (
        order.index("account_id")
        < order.index("environment_classification")
        < order.index("environment")
        < order.index("container")
    )
    for name in ENVIRONMENT_VARIABLES:
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE, name
        assert variable["multi"] and variable["includeAll"], name
        assert variable.get("hide", 0) == 0, name
        # All must be `.*`, which matches "": runtimes without an environment stay in view.
        assert variable["allValue"] == ".*", name
    classification = variables["environment_classification"]["definition"]
    assert classification.startswith("label_values(boomi_container_info{")
    assert classification.endswith(", environment_classification)")
    environment = variables["environment"]["definition"]
    assert ENVIRONMENT_MATCHERS[0] in environment
    assert environment.endswith(", environment_name)")
    # The container pickers, and so container_id, which every container panel filters on.
    for name in ("container", "container_id"):
        for matcher in ENVIRONMENT_MATCHERS:
            assert matcher in variables[name]["definition"], (name, matcher)
    for query in dashboard_queries(dashboard):
        if "container_id" in query.expr or "boomi_listener" in query.expr:
            assert 'container_id=~"$container_id"' in query.expr, query.panel


def test_the_listener_table_shows_the_environment(dashboard: dict[str, Any]) -> None:
    (query,) = [q for q in dashboard_queries(dashboard) if q.panel == "Listeners not listening"]
    assert {"environment_name", "environment_classification"} <= query.shows


def test_panels_name_the_listeners_and_containers_they_show(dashboard: dict[str, Any]) -> None:
    for query in dashboard_queries(dashboard):
        if "listener_id" in query.shows:
            assert "process_name" in query.shows, query.panel
        if "container_id" in query.shows:
            assert "container_name" in query.shows, query.panel
    for panel in dashboard_panels(dashboard):
        for target in panel["targets"]:
            legend = target.get("legendFormat", "")
            assert "{{listener_id}}" not in legend, (panel["title"], legend)
            assert "{{container_id}}" not in legend, (panel["title"], legend)


def test_process_name_joins_keep_listeners_without_a_name(dashboard: dict[str, Any]) -> None:
    # boomi_listener_info appears only once the exporter has resolved the name: a plain join
    # would hide every listener whose name is not known yet.
    for query in dashboard_queries(dashboard):
        if "boomi_listener_info" in query.expr:
            assert "or on (account_id, container_id, listener_id)" in query.expr, query.panel


def _dashboard_expr(dashboard: dict[str, Any], title: str) -> str:
    (query,) = [q for q in dashboard_queries(dashboard) if q.panel == title]
    return substitute_variables(query.expr)


def _selector(name: str = "", **labels: str) -> str:
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def test_dashboard_name_joins_evaluate_as_intended(
    promtool: str, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """The listener and runtime panels' queries, evaluated by promtool on known series: named
    and unnamed listeners, an HA pair of exporters, an OFFLINE runtime."""
    c1 = {"account_id": "acme", "container_id": "c1"}
    c2 = {"account_id": "acme", "container_id": "c2"}
    runtime_1 = {"container_name": "prod-molecule-1", "container_type": "MOLECULE"}
    runtime_2 = {"container_name": "prod-atom-1", "container_type": "ATOM"}
    statuses = {"l1": "paused", "l2": "errored", "l3": "listening"}
    series: list[tuple[str, str]] = []
    for instance in ("a:9877", "b:9877"):  # two exporters watching the same account
        target = {"job": JOB, "instance": instance}
        series += [
            (_selector("boomi_container_info", **target, **c1, **runtime_1), "1x5"),
            (_selector("boomi_container_info", **target, **c2, **runtime_2), "1x5"),
            (_selector("boomi_container_online", **target, **c1), "1x5"),
            (_selector("boomi_container_online", **target, **c2), "0x5"),
            # Only l1 is named (by both exporters); l2 and l3 are not yet.
            (
                _selector(
                    "boomi_listener_info", **target, **c1, listener_id="l1", process_name="Orders"
                ),
                "1x5",
            ),
        ]
        for listener, status in statuses.items():
            for value in ("listening", "paused", "errored", "unknown"):
                labels = {**target, **c1, "listener_id": listener, "connector_type": "wss"}
                selector = _selector("boomi_listener_status", **labels, status=value)
                series.append((selector, "1x5" if value == status else "0x5"))

    def expect(title: str, *samples: tuple[dict[str, str], float]) -> dict[str, Any]:
        return {
            "expr": _dashboard_expr(dashboard, title),
            "eval_time": "2m",
            "exp_samples": [
                {"labels": _selector(**labels), "value": value} for labels, value in samples
            ],
        }

    row = {**c1, "container_name": "prod-molecule-1", "connector_type": "wss"}
    line = {**c1, "container_name": "prod-molecule-1"}
    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series],
                "promql_expr_test": [
                    # The unnamed listener is listed too, with an empty Process column.
                    expect(
                        "Listeners not listening",
                        (
                            {
                                **row,
                                "listener_id": "l1",
                                "status": "paused",
                                "process_name": "Orders",
                            },
                            1,
                        ),
                        ({**row, "listener_id": "l2", "status": "errored"}, 1),
                    ),
                    # Unnamed listeners are named by their id (values: 1 listening, 2 paused,
                    # 3 errored).
                    expect(
                        "Listener status history",
                        ({**line, "listener_id": "l1", "process_name": "Orders"}, 2),
                        ({**line, "listener_id": "l2", "process_name": "l2"}, 3),
                        ({**line, "listener_id": "l3", "process_name": "l3"}, 1),
                    ),
                    expect("Runtimes OFFLINE in Boomi", ({**c2, **runtime_2}, 0)),
                ],
            }
        ],
    }
    tests = write_yaml(tmp_path / "dashboard.test.yml", document)
    assert_ok(run(promtool, "test", "rules", str(tests)))


def test_dashboard_queries_filter_by_environment(
    promtool: str, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """The variables as Grafana chains them, evaluated by promtool: the classification picks
    the container ids, and the panels show those containers only; All keeps the runtime
    attached to no environment."""
    target = {"job": JOB, "instance": "a:9877", "account_id": "acme"}
    environments = {
        "c1": ("e1", "Production", "PROD"),
        "c2": ("e2", "Test", "TEST"),
        "c3": ("", "", ""),  # attached to no environment
    }
    series: list[tuple[str, str]] = []
    for container, (env_id, env_name, classification) in environments.items():
        ids = {**target, "container_id": container}
        info = {
            **ids,
            "container_name": f"runtime-{container}",
            "container_type": "ATOM",
            "environment_id": env_id,
            "environment_name": env_name,
            "environment_classification": classification,
        }
        series.append((_selector("boomi_container_info", **info), "1x5"))
        for status in ("listening", "paused", "errored", "unknown"):
            labels = {**ids, "listener_id": f"l-{container}", "connector_type": "wss"}
            value = "1x5" if status == "errored" else "0x5"
            series.append((_selector("boomi_listener_status", **labels, status=status), value))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    selector, _ = (
        variables["container_id"]["definition"]
        .removeprefix("label_values(")
        .removesuffix(")")
        .rsplit(",", 1)
    )

    def chosen(classification: str) -> dict[str, str]:
        return {**TEST_VARIABLES, "environment_classification": classification}

    def ids_of(classification: str, *containers: str) -> dict[str, Any]:
        expr = f"count by (container_id) ({substitute_variables(selector, chosen(classification))})"
        return {
            "expr": expr,
            "eval_time": "2m",
            "exp_samples": [{"labels": _selector(container_id=c), "value": 1} for c in containers],
        }

    def panel(title: str, classification: str, container: str, *samples: Any) -> dict[str, Any]:
        # Grafana puts the ids of the picked containers into $container_id.
        values = chosen(classification) | {"container_id": container}
        (query,) = [q for q in dashboard_queries(dashboard) if q.panel == title]
        return {
            "expr": substitute_variables(query.expr, values),
            "eval_time": "2m",
            "exp_samples": [
                {"labels": _selector(**labels), "value": value} for labels, value in samples
            ],
        }

    test_row = {
        "account_id": "acme",
        "container_id": "c2",
        "listener_id": "l-c2",
        "connector_type": "wss",
        "status": "errored",
        "container_name": "runtime-c2",
        "environment_name": "Test",
        "environment_classification": "TEST",
    }
    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series],
                "promql_expr_test": [
                    ids_of("PROD", "c1"),
                    ids_of("TEST", "c2"),
                    ids_of(".*", "c1", "c2", "c3"),
                    panel("Listeners not listening", "TEST", "c2", (test_row, 1)),
                    panel(
                        "Listeners by status",
                        "PROD",
                        "c1",
                        *(({"status": s}, 1 if s == "errored" else 0) for s in LISTENER_STATUSES),
                    ),
                ],
            }
        ],
    }
    tests = write_yaml(tmp_path / "dashboard-environments.test.yml", document)
    assert_ok(run(promtool, "test", "rules", str(tests)))
