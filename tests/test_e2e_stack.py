"""The shipped deploy files against real binaries: simulator -> exporter -> Prometheus (with the
shipped alert rules) -> Alertmanager (with the shipped routing) -> the exporter's webhook.

Everything listens on 127.0.0.1; Prometheus and Alertmanager run as child processes that the
fixtures stop. Alert `for:` durations and Alertmanager waits are shortened, nothing else. The
restart test runs the shipped TLS and basic-auth setup (deploy/compose/tls): the exporter serves
HTTPS with basic auth, Prometheus scrapes it with scheme https, tls_config.ca_file and
basic_auth.password_file, and Alertmanager calls the webhook over TLS.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.config import Config
from exporter.daemon import Exporter
from exporter.websecurity import WebSecurity
from tests.conftest import ACCOUNT, Running, SimServer, StartExporter, config_for
from tests.e2e_helpers import (
    JOB,
    LOW_URGENCY_RECEIVER,
    PAGING_RECEIVER,
    REMEDIATION_RECEIVER,
    TEST_VARIABLES,
    TLS_DIR,
    HttpService,
    ManagedProcess,
    Prometheus,
    PromQLError,
    dashboard_queries,
    demo_scrape_password,
    free_port,
    load_dashboard,
    make_certificates,
    require_binary,
    substitute_variables,
    tls_scrape_settings,
    wait_until,
    write_alertmanager_config,
    write_fast_rules,
    write_prometheus_config,
    write_tls_web_config,
)

pytestmark = pytest.mark.e2e

# Each test's own bound; with process start-up and teardown it stays under 90 s.
TEST_TIMEOUT = 75

# Dashboard panels that may legitimately show nothing on a healthy fleet with remediation off.
# Every other panel must return data once the exporter has been scraped a few times.
MAY_BE_EMPTY = {
    "Boomi API errors by operation",  # no failed calls
    "Remediation outcomes",  # remediation disabled
}

# The table of runtimes Boomi reports OFFLINE: the test makes exactly one runtime OFFLINE.
OFFLINE_PANEL = "Runtimes OFFLINE in Boomi"

REMEDIATION_OUTCOME_METRIC = "boomi_remediation_actions_total"


async def remediation_outcomes(
    running: Running, listener_id: str | None = None
) -> dict[str, float]:
    """{outcome: count} of boomi_remediation_actions_total, for one listener or for all."""
    outcomes: dict[str, float] = {}
    for (name, labels), value in (await running.samples()).items():
        label = dict(labels)
        if name == REMEDIATION_OUTCOME_METRIC and listener_id in (None, label["listener_id"]):
            outcomes[label["outcome"]] = outcomes.get(label["outcome"], 0) + value
    return outcomes


def address(running: Running) -> str:
    """host:port of the exporter, as a scrape target."""
    return running.url.removeprefix("http://").removeprefix("https://")


# (exporter, alertmanager, scrape_tls=None); (webhook URL, token, ca_file=None)
StartPrometheus = Callable[..., Awaitable[Prometheus]]
StartAlertmanager = Callable[..., Awaitable[HttpService]]
StartTlsExporter = Callable[[Config], Awaitable[Running]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        yield client


@pytest.fixture
async def start_prometheus(
    tmp_path: Path, session: aiohttp.ClientSession
) -> AsyncIterator[StartPrometheus]:
    binary = require_binary("prometheus", package="prometheus")
    processes: list[ManagedProcess] = []

    async def start(
        exporter: str, alertmanager: str | None, scrape_tls: dict[str, Any] | None = None
    ) -> Prometheus:
        directory = tmp_path / "prometheus"
        directory.mkdir()
        rules = write_fast_rules(directory / "alerts.yml")
        config = write_prometheus_config(
            directory / "prometheus.yml",
            exporter=exporter,
            rules=rules,
            alertmanager=alertmanager,
            scrape_tls=scrape_tls,
        )
        port = free_port()
        process = await ManagedProcess.start(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            directory / "prometheus.log",
        )
        processes.append(process)
        prometheus = Prometheus(process, f"http://127.0.0.1:{port}", session)
        await prometheus.wait_ready()
        return prometheus

    yield start
    for process in processes:
        await process.stop()


@pytest.fixture
async def start_alertmanager(
    tmp_path: Path, session: aiohttp.ClientSession
) -> AsyncIterator[StartAlertmanager]:
    binary = require_binary(
        "prometheus-alertmanager", "alertmanager", package="prometheus-alertmanager"
    )
    processes: list[ManagedProcess] = []

    async def start(webhook_url: str, token: str, ca_file: Path | None = None) -> HttpService:
        directory = tmp_path / "alertmanager"
        directory.mkdir()
        token_file = directory / "boomi-webhook-token"
        token_file.write_text(token + "\n", encoding="utf-8")  # as `echo token > file` writes it
        config = write_alertmanager_config(
            directory / "alertmanager.yml",
            webhook_url=webhook_url,
            token_file=token_file,
            ca_file=ca_file,
        )
        port = free_port()
        process = await ManagedProcess.start(
            "alertmanager",
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip port: a single, loopback-only instance
                "--log.level=debug",  # the log then shows each webhook attempt
            ],
            directory / "alertmanager.log",
        )
        processes.append(process)
        alertmanager = HttpService(process, f"http://127.0.0.1:{port}", session)
        await alertmanager.wait_ready()
        return alertmanager

    yield start
    for process in processes:
        await process.stop()


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """The shipped make-certs.sh run into a test folder: ca.crt, exporter.crt, exporter.key."""
    return make_certificates(tmp_path / "tls")


@pytest.fixture
async def start_tls_exporter(tmp_path: Path, certificates: Path) -> AsyncIterator[StartTlsExporter]:
    """The exporter with the shipped TLS web config; a session that trusts the demo CA and
    sends the demo scrape credentials."""
    started: list[Running] = []

    async def start(config: Config) -> Running:
        web_config = write_tls_web_config(tmp_path / "web-config.yml", certificates)
        exporter = Exporter(
            config, security=WebSecurity(web_config), storage_path=str(tmp_path / "data")
        )
        port = await exporter.start("127.0.0.1", 0)
        trust = ssl.create_default_context(cafile=str(certificates / "ca.crt"))
        credentials = base64.b64encode(f"prometheus:{demo_scrape_password()}".encode()).decode()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=trust),
            headers={"Authorization": f"Basic {credentials}"},
            timeout=aiohttp.ClientTimeout(total=5),
        )
        running = Running(exporter, f"https://127.0.0.1:{port}", session)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.session.close()
        await running.exporter.stop()


async def scraped_a_few_times(prometheus: Prometheus) -> bool | None:
    """True once every container has at least 3 samples of boomi_container_up (so rate() works)."""
    result = await prometheus.query(
        f'min(count_over_time(boomi_container_up{{job="{JOB}"}}[1m])) >= 3'
    )
    return True if result else None


async def _explain_prometheus(prometheus: Prometheus) -> str:
    targets = await prometheus.get_json("/api/v1/targets")
    return (
        f"targets: {json.dumps(targets.get('data', {}).get('activeTargets'), indent=1)}\n"
        f"prometheus log:\n{prometheus.process.log_tail()}"
    )


async def test_every_dashboard_query_parses_and_returns_data(
    sim_server: SimServer,
    start_exporter: StartExporter,
    start_prometheus: StartPrometheus,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        account = sim_server.account
        # One runtime OFFLINE in Boomi, so the runtimes panels and alerts have something to show.
        offline = account.containers[sim_server.container_ids()[-1]]
        offline.status = "OFFLINE"
        # At least one listener not listening, so that table has a row to show.
        listener_id = next(
            listener.listener_id
            for listener in account.listeners.values()
            if listener.container_id != offline.container_id
        )
        sim_server.sim.set_status(ACCOUNT, listener_id, "paused")
        running = await start_exporter(config_for(sim_server, interval_seconds=1))
        prometheus = await start_prometheus(address(running), None)
        await wait_until(
            lambda: scraped_a_few_times(prometheus),
            timeout=30,
            what="three scrapes of every container",
            explain=lambda: _explain_prometheus(prometheus),
        )

        async def query_nonempty(expr: str) -> list[dict[str, Any]] | None:
            return await prometheus.query(expr) or None

        # The exporter resolves process names and runtime status in the background, shortly
        # after it has seen a listener or started: the panels must show them once it has.
        await wait_until(
            lambda: query_nonempty(
                f'boomi_listener_info{{job="{JOB}",listener_id="{listener_id}"}}'
            ),
            timeout=40,
            what="boomi_listener_info of the paused listener (process names resolved)",
            explain=lambda: _explain_prometheus(prometheus),
        )
        await wait_until(
            lambda: query_nonempty(f'boomi_container_online{{job="{JOB}"}} == 0'),
            timeout=20,
            what="boomi_container_online == 0 for the OFFLINE runtime",
            explain=lambda: _explain_prometheus(prometheus),
        )
        # And the environments, read in the same background round as the runtimes.
        await wait_until(
            lambda: query_nonempty(
                f'count(boomi_container_info{{job="{JOB}",environment_classification!=""}})'
                f" == {len(account.attachments)}"
            ),
            timeout=20,
            what="the environment labels of every attached runtime",
            explain=lambda: _explain_prometheus(prometheus),
        )
        # Names a panel must show when it displays that label (in a legend or as a column) or
        # joins the info series that carries it: at least one of the simulator's.
        names = {
            "process_name": {listener.process_name for listener in account.listeners.values()},
            "container_name": {container.name for container in account.containers.values()},
            "container_type": {container.type for container in account.containers.values()},
            "environment_name": {e.name for e in account.environments.values()},
            "environment_classification": {"PROD", "TEST"},
        }
        joined = {"boomi_listener_info": "process_name", "boomi_container_info": "container_name"}

        dashboard = load_dashboard()
        queries = dashboard_queries(dashboard)
        panels = {query.panel for query in queries}
        assert panels >= MAY_BE_EMPTY, f"MAY_BE_EMPTY names missing panels: {MAY_BE_EMPTY - panels}"
        assert OFFLINE_PANEL in panels
        failures = []
        for query in queries:
            expr = substitute_variables(query.expr)
            try:
                result = await prometheus.query(expr)
            except PromQLError as error:
                failures.append(f"{query.panel} [{query.ref_id}]: {error}\n{expr}")
                continue
            if not result and query.panel not in MAY_BE_EMPTY:
                failures.append(f"{query.panel} [{query.ref_id}]: no data\n{expr}")
            wanted = set(query.shows) | {
                label for info, label in joined.items() if info in query.expr
            }
            for label in sorted(wanted & set(names)):
                shown = {series["metric"].get(label) for series in result}
                if not shown & names[label]:
                    failures.append(
                        f"{query.panel} [{query.ref_id}]: no {label} among {sorted(map(str, shown))}"
                    )
            if query.panel == OFFLINE_PANEL:
                rows = [
                    (
                        s["metric"]["container_id"],
                        s["metric"]["container_name"],
                        s["metric"]["container_type"],
                    )
                    for s in result
                ]
                if rows != [(offline.container_id, offline.name, offline.type)]:
                    failures.append(f"{query.panel} [{query.ref_id}]: {rows}")
        assert not failures, "\n\n".join(failures)

        # The template variables' label_values(metric{...}, label) queries, as PromQL.
        for variable in dashboard["templating"]["list"]:
            definition = variable.get("definition", "")
            if not definition.startswith("label_values("):
                continue
            selector, label = (
                definition.removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
            )
            expr = f"count by ({label.strip()}) ({substitute_variables(selector)})"
            assert await prometheus.query(expr), f"variable {variable['name']}: no values"

        await dashboard_filters_by_environment(
            prometheus, sim_server, dashboard, offline.container_id
        )

        # Every shipped rule evaluates without error against the real metrics.
        async def rules_evaluated() -> list[dict[str, Any]] | None:
            rules = await prometheus.rules()
            return rules if all(rule["health"] != "unknown" for rule in rules) else None

        rules = await wait_until(rules_evaluated, timeout=10, what="a first rule evaluation")
        broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
        assert not broken, broken

        # The OFFLINE runtime is reported as such (named and typed), and not as a poll failure.
        offline_alerts = f'container_id="{offline.container_id}",alertstate="firing"'
        (alert,) = await wait_until(
            lambda: query_nonempty(f'ALERTS{{alertname="BoomiRuntimeOffline",{offline_alerts}}}'),
            timeout=10,
            what="BoomiRuntimeOffline to fire for the OFFLINE runtime",
            explain=lambda: _explain_prometheus(prometheus),
        )
        assert alert["metric"]["account_id"] == ACCOUNT
        assert not await prometheus.query(
            f'ALERTS{{alertname=~"BoomiContainerPollFailing|BoomiListenerStatusStale",'
            f'container_id="{offline.container_id}"}}'
        )
        (rule,) = [r for r in await prometheus.rules() if r["name"] == "BoomiRuntimeOffline"]
        (active,) = rule["alerts"]
        kind = offline.type.lower().title()
        assert active["annotations"]["summary"] == f"Boomi {kind} {offline.name} is OFFLINE"


async def dashboard_filters_by_environment(
    prometheus: Prometheus, sim_server: SimServer, dashboard: dict[str, Any], offline: str
) -> None:
    """Each classification, picked as Grafana chains the variables: the container ids it
    yields are the runtimes in those environments, and no panel shows any other container."""
    account = sim_server.account
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    selector = variables["container_id"]["definition"].removeprefix("label_values(")
    selector = selector.removesuffix(")").rsplit(",", 1)[0]
    failures = []
    for classification in ("PROD", "TEST"):
        values = TEST_VARIABLES | {"environment_classification": classification}
        expected = {
            container_id
            for container_id, environment_id in account.attachments.items()
            if account.environments[environment_id].classification == classification
        }
        result = await prometheus.query(
            f"count by (container_id) ({substitute_variables(selector, values)})"
        )
        picked = {series["metric"]["container_id"] for series in result}
        assert picked == expected, (classification, picked, expected)
        # Grafana's All of a variable without allValue: the picked ids as a regex.
        values["container_id"] = "|".join(sorted(picked))
        shown_any = False
        for query in dashboard_queries(dashboard):
            if "container_id" not in query.expr:
                continue  # the Boomi API panels are per account
            rows = await prometheus.query(substitute_variables(query.expr, values))
            shown = {
                row["metric"]["container_id"] for row in rows if "container_id" in row["metric"]
            }
            shown_any = shown_any or bool(shown)
            if not shown <= picked:
                failures.append(f"{classification}: {query.panel} shows {sorted(shown - picked)}")
            if query.panel == OFFLINE_PANEL and (offline in picked) != (offline in shown):
                failures.append(f"{classification}: {query.panel} shows {sorted(shown)}")
        if classification == "PROD":
            assert shown_any, "no panel shows a PROD runtime"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 1.0}], indirect=True)
async def test_errored_listener_is_restarted_through_alertmanager_over_tls(
    sim_server: SimServer,
    start_tls_exporter: StartTlsExporter,
    start_prometheus: StartPrometheus,
    start_alertmanager: StartAlertmanager,
    certificates: Path,
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        sim = sim_server.sim
        # A healthy fleet, so that the only alert, and the only restart, is the one we cause.
        for listener in sim_server.account.listeners.values():
            sim.set_status(ACCOUNT, listener.listener_id, "listening")
        account = sim_server.account

        def classification_of(container_id: str) -> str:
            return account.environments[account.attachments[container_id]].classification or ""

        # The errored listener on a PROD runtime is restarted; one on a TEST runtime, errored at
        # the same time, only reaches the low-urgency receiver.
        target = next(
            listener
            for listener in account.listeners.values()
            if classification_of(listener.container_id) == "PROD"
        )
        bystander = next(
            listener
            for listener in account.listeners.values()
            if classification_of(listener.container_id) == "TEST"
        )
        token = secrets.token_urlsafe(24)
        running = await start_tls_exporter(
            config_for(
                sim_server,
                interval_seconds=1,
                remediation={
                    "enabled": True,
                    "dry_run": False,
                    "auth": {"bearer_token": token},
                    "cooldown_seconds": 0,
                    "verify_timeout_seconds": 20,
                },
            )
        )
        webhook_url = f"{running.url}/webhook/alertmanager"
        # The exporter's port speaks TLS with basic auth; only the probes and the webhook
        # (guarded by its bearer token) are open without the scrape credentials.
        trust = ssl.create_default_context(cafile=str(certificates / "ca.crt"))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as anonymous:
            async with anonymous.get(f"{running.url}/metrics") as response:
                assert response.status == 401
            async with anonymous.get(f"{running.url}/-/healthy") as response:
                assert response.status == 200
        async with running.session.post(
            webhook_url, json={}, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            if response.status in (404, 405):
                # Fail at once with the reason, rather than time out waiting for a restart.
                pytest.fail(
                    f"POST /webhook/alertmanager answered {response.status} although remediation "
                    "is enabled: the exporter does not serve the remediation webhook"
                )
        ca_file = certificates / "ca.crt"
        alertmanager = await start_alertmanager(webhook_url, token, ca_file)
        password_file = tmp_path / "prometheus-password"
        password_file.write_text((TLS_DIR / "prometheus-password").read_text(encoding="utf-8"))
        prometheus = await start_prometheus(
            address(running),
            alertmanager.url.removeprefix("http://"),
            tls_scrape_settings(ca_file, password_file),
        )

        async def explain() -> str:
            alerts = await prometheus.query("ALERTS")
            am_alerts = await alertmanager.get_json("/api/v2/alerts")
            outcomes = await remediation_outcomes(running, target.listener_id)
            return (
                f"Prometheus ALERTS: {json.dumps([a['metric'] for a in alerts])}\n"
                f"Alertmanager alerts: {json.dumps(am_alerts)}\n"
                f"remediation outcomes: {outcomes}\n"
                f"simulator change log: {sim.change_log}\n"
                f"alertmanager log:\n{alertmanager.process.log_tail()}"
            )

        listening = (
            f'boomi_listener_status{{listener_id="{target.listener_id}",status="listening"}} == 1'
        )

        async def query_nonempty(expr: str) -> list[dict[str, Any]] | None:
            return await prometheus.query(expr) or None

        await wait_until(
            lambda: query_nonempty(listening),
            timeout=30,
            what="Prometheus to see the listener listening",
            explain=lambda: _explain_prometheus(prometheus),
        )

        # Both environments are known before either listener errs (the exporter reads them at
        # start), so neither alert's `for:` starts over.
        await wait_until(
            lambda: query_nonempty(
                f'boomi_container_info{{container_id="{bystander.container_id}",'
                'environment_classification="TEST"}'
            ),
            timeout=20,
            what="the TEST runtime's environment in Prometheus",
            explain=lambda: _explain_prometheus(prometheus),
        )
        sim.set_status(ACCOUNT, target.listener_id, "errored")
        sim.set_status(ACCOUNT, bystander.listener_id, "errored")
        firing = await wait_until(
            lambda: query_nonempty(
                f'ALERTS{{alertname="BoomiListenerErrored",alertstate="firing",'
                f'listener_id="{target.listener_id}"}}'
            ),
            timeout=20,
            what="BoomiListenerErrored to fire",
            explain=explain,
        )
        labels = firing[0]["metric"]
        assert labels["account_id"] == ACCOUNT
        assert labels["container_id"] == target.container_id
        assert labels["remediate"] == "true"
        # Names are looked up in the annotations, never joined into the labels: a name that
        # arrives while the alert fires must not make it a new alert (and a second restart).
        assert "process_name" not in labels and "container_name" not in labels, labels
        assert labels["environment_classification"] == "PROD", labels

        async def routed_in_alertmanager() -> dict[str, list[str]] | None:
            receivers: dict[str, list[str]] = {}
            for alert in await alertmanager.get_json("/api/v2/alerts"):
                alert_labels = alert["labels"]
                if alert_labels.get("alertname") == "BoomiListenerErrored":
                    receivers[alert_labels["listener_id"]] = sorted(
                        receiver["name"] for receiver in alert["receivers"]
                    )
                    if alert_labels["listener_id"] == target.listener_id:
                        assert alert_labels.get("environment_classification") == "PROD"
            wanted = {target.listener_id, bystander.listener_id}
            return receivers if wanted <= set(receivers) else None

        receivers = await wait_until(
            routed_in_alertmanager,
            timeout=20,
            what="both errored alerts in Alertmanager",
            explain=explain,
        )
        assert receivers[target.listener_id] == [REMEDIATION_RECEIVER, PAGING_RECEIVER]
        assert receivers[bystander.listener_id] == [LOW_URGENCY_RECEIVER]

        async def restarted_and_listening() -> bool | None:
            log = [e for e in sim.change_log if e["listener_id"] == target.listener_id]
            status = sim_server.account.listeners[target.listener_id].status
            return True if log and status == "listening" else None

        await wait_until(
            restarted_and_listening,
            timeout=30,
            what="the exporter to restart the listener through the webhook",
            explain=explain,
        )

        async def alert_resolved() -> bool | None:
            alerts = await prometheus.query(
                f'ALERTS{{alertname="BoomiListenerErrored",listener_id="{target.listener_id}"}}'
            )
            return None if alerts else True

        await wait_until(
            alert_resolved, timeout=20, what="BoomiListenerErrored to resolve", explain=explain
        )

        # The restart was verified, and Alertmanager's resolved notification reached the webhook
        # and was ignored: after that nothing can trigger a second restart.
        async def verified_and_resolved() -> dict[str, float] | None:
            outcomes = await remediation_outcomes(running, target.listener_id)
            # Resolved alerts are counted without listener labels (they are not acted on).
            resolved = (await remediation_outcomes(running)).get("ignored_resolved", 0)
            return outcomes if outcomes.get("recovered") == 1 and resolved >= 1 else None

        outcomes = await wait_until(
            verified_and_resolved,
            timeout=20,
            what="outcomes recovered and ignored_resolved",
            explain=explain,
        )
        assert outcomes.get("queued") == 1, outcomes
        assert not {"failed", "not_recovered", "dry_run"} & set(outcomes), outcomes
        assert [(e["listener_id"], e["container_id"], e["action"]) for e in sim.change_log] == [
            (target.listener_id, target.container_id, "restart")
        ]
        assert sim_server.account.listeners[target.listener_id].status == "listening"
