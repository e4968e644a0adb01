"""Environments in the running exporter, against the simulator over real sockets: the labels of
boomi_container_info, a move, discovery by environment, polling while environment queries fail,
remediation limited to classifications, the landing page and `--once`."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from exporter.boomi import BoomiClient, Environment
from exporter.check_config import summarize
from exporter.cli import print_table
from exporter.config import Config, parse_config
from exporter.daemon import poll_once
from exporter.fleet import FleetRefresher
from exporter.metrics import SnapshotCollector
from exporter.simulator import Faults
from exporter.state import SnapshotStore
from tests.conftest import ACCOUNT, Running, SimServer, StartExporter, config_for
from tests.test_config import ENABLED, config_text
from tests.test_fleet import wait_until
from tests.test_remediation import REMEDIATION, errored_alert, outcomes, payload, post

ENVIRONMENT_LABELS = ("environment_id", "environment_name", "environment_classification")
ENVIRONMENT_ROUTES = [
    "environment_query",
    "environment_query_more",
    "environment_attachment_query",
    "environment_attachment_query_more",
]


def config(server: SimServer, *, discovery: dict[str, Any] | None = None, **extra: Any) -> Config:
    """The simulator's containers listed, discovery (environments) every 0.3 s unless given."""
    data = config_for(server, **extra).model_dump(mode="python")
    account = data["accounts"][0]
    account["password"] = server.account.password
    account["max_requests_per_second"] = 100
    account["discovery"] = {"interval_seconds": 0.3} | (discovery or {})
    if discovery and discovery.get("enabled"):
        account["containers"] = []
    return Config.model_validate(data)


def container_info(samples: Any) -> dict[str, dict[str, str]]:
    """{container_id: the environment labels of its boomi_container_info}."""
    return {
        dict(labels)["container_id"]: {name: dict(labels)[name] for name in ENVIRONMENT_LABELS}
        for name, labels in samples
        if name == "boomi_container_info"
    }


def labels_of(server: SimServer, container_id: str) -> dict[str, str]:
    """What the simulator's world says the labels of a container must be."""
    account = server.account
    environment_id = account.attachments.get(container_id)
    if environment_id is None:
        return dict.fromkeys(ENVIRONMENT_LABELS, "")
    environment = account.environments[environment_id]
    return {
        "environment_id": environment.environment_id,
        "environment_name": environment.name,
        "environment_classification": environment.classification or "",
    }


def expected_labels(server: SimServer) -> dict[str, dict[str, str]]:
    return {
        container_id: labels_of(server, container_id) for container_id in server.account.containers
    }


# -- the three labels ------------------------------------------------------------------------


def test_labels_are_empty_while_the_environment_is_unknown_or_unattached() -> None:
    store = SnapshotStore.for_containers([("acc", "a1", "one"), ("acc", "a2", "two")])

    def published() -> dict[str, tuple[str, ...]]:
        (family,) = [
            f for f in SnapshotCollector(store).collect() if f.name == "boomi_container_info"
        ]
        return {
            sample.labels["container_id"]: tuple(sample.labels[name] for name in ENVIRONMENT_LABELS)
            for sample in family.samples
        }

    assert published() == {"a1": ("", "", ""), "a2": ("", "", "")}  # not read yet
    store.set_environments("acc", {"a1": Environment("e1", "Production", "PROD")})
    assert published() == {"a1": ("e1", "Production", "PROD"), "a2": ("", "", "")}  # a2: none
    # A container tracked later gets the account's last known environments at once.
    store.set_containers([("acc", "a1", "one"), ("acc", "a2", "two"), ("acc", "a3", "three")])
    snapshot = store.get("acc", "a3")
    assert snapshot is not None and snapshot.environment_known and snapshot.environment is None


async def test_the_three_labels_for_attached_and_unattached_runtimes(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    sim = sim_server.sim
    first, second, third = sim_server.container_ids()
    sim.detach(ACCOUNT, second)  # attached to no environment
    basic = sim.add_environment(ACCOUNT, "Basic support", classification=None)
    sim.attach(ACCOUNT, third, basic.environment_id)  # attached, but no classification
    running = await start_exporter(config(sim_server))
    expected = expected_labels(sim_server)
    samples = await running.wait_for(lambda s: container_info(s) == expected)
    assert container_info(samples)[first]["environment_classification"] == "PROD"
    assert container_info(samples)[second] == dict.fromkeys(ENVIRONMENT_LABELS, "")
    assert container_info(samples)[third] == {
        "environment_id": basic.environment_id,
        "environment_name": "Basic support",
        "environment_classification": "",
    }
    page = await running.text("/")
    assert "Production (PROD)" in page and "no environment" in page and "Basic support" in page


# -- a move ----------------------------------------------------------------------------------


async def test_a_move_is_seen_at_the_next_discovery_round(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    """One round per discovery interval: the round after a move publishes it."""
    store = SnapshotStore()
    refresher = FleetRefresher(
        config(sim_server).accounts[0],
        config(sim_server).names,
        make_client(),
        store,
        lambda _account, targets: store.set_containers(
            (t.account_id, t.container_id, t.name) for t in targets
        ),
    )
    assert await refresher.refresh_containers()
    moved = sim_server.container_ids()[0]
    before = store.get(ACCOUNT, moved)
    assert before is not None and before.environment is not None
    assert before.environment.classification == "PROD"
    test = next(e for e in sim_server.account.environments.values() if e.classification == "TEST")
    sim_server.sim.attach(ACCOUNT, moved, test.environment_id)
    assert store.get(ACCOUNT, moved) == before  # nothing changes between rounds
    assert await refresher.refresh_containers()
    after = store.get(ACCOUNT, moved)
    assert after is not None and after.environment == Environment(
        test.environment_id, "Test", "TEST"
    )
    sim_server.sim.detach(ACCOUNT, moved)
    assert await refresher.refresh_containers()
    detached = store.get(ACCOUNT, moved)
    assert detached is not None and detached.environment_known and detached.environment is None


async def test_a_move_reaches_metrics_through_the_control_api(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running = await start_exporter(config(sim_server))
    await running.wait_for(lambda s: container_info(s) == expected_labels(sim_server))
    moved = sim_server.container_ids()[0]
    test = next(e for e in sim_server.account.environments.values() if e.classification == "TEST")
    async with running.session.put(
        f"{sim_server.control_url}/containers/{moved}/environment",
        json={"environment_id": test.environment_id},
    ) as response:
        assert response.status == 200
    samples = await running.wait_for(
        lambda s: container_info(s).get(moved, {}).get("environment_classification") == "TEST"
    )
    assert container_info(samples)[moved]["environment_name"] == "Test"
    # The old series is gone: one boomi_container_info per container, never two.
    assert (
        sum(
            1
            for name, labels in samples
            if name == "boomi_container_info" and dict(labels)["container_id"] == moved
        )
        == 1
    )


# -- discovery -------------------------------------------------------------------------------


def tracked(running: Running) -> set[str]:
    return {snapshot.container_id for snapshot in running.exporter.store.containers()}


async def wait_tracked(running: Running, expected: set[str]) -> None:
    await wait_until(lambda: tracked(running) == expected)


async def test_discovery_by_classification_and_by_name_pattern(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    sim = sim_server.sim
    account = sim_server.account
    spare = "spare-runtime"
    sim.add_container(ACCOUNT, spare, "spare-atom-1", type="ATOM")  # attached to none
    staging = sim.add_environment(ACCOUNT, "Staging", classification="TEST")
    staged = sim_server.container_ids()[1]
    sim.attach(ACCOUNT, staged, staging.environment_id)

    def attached_to(*names: str) -> set[str]:
        return {
            cid
            for cid in account.containers
            if cid in account.attachments
            and account.environments[account.attachments[cid]].name in names
        }

    by_class = await start_exporter(
        config(sim_server, discovery={"enabled": True, "environment_classifications": ["TEST"]})
    )
    by_name = await start_exporter(
        config(sim_server, discovery={"enabled": True, "environment_name_pattern": "Prod.*"})
    )
    anything = await start_exporter(config(sim_server, discovery={"enabled": True}))
    await wait_tracked(by_class, attached_to("Test", "Staging"))
    await wait_tracked(by_name, attached_to("Production"))
    await wait_tracked(anything, set(account.containers))  # [] and .*: the unattached one too
    assert spare in tracked(anything)
    assert attached_to("Staging") == {staged} and staged not in tracked(by_name)
    # A runtime moved out of the classification stops being polled; one moved in starts.
    production = next(e for e in account.environments.values() if e.name == "Production")
    sim.attach(ACCOUNT, staged, production.environment_id)
    sim.attach(ACCOUNT, spare, staging.environment_id)
    await wait_tracked(by_class, attached_to("Test", "Staging"))
    assert spare in tracked(by_class) and staged not in tracked(by_class)


# -- failures --------------------------------------------------------------------------------


def status_of(samples: Any, listener_id: str) -> str | None:
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "boomi_listener_status" and label["listener_id"] == listener_id and value == 1:
            return str(label["status"])
    return None


async def test_polling_goes_on_while_environment_queries_fail(
    sim_server: SimServer, start_exporter: StartExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.fleet")
    running = await start_exporter(config(sim_server))
    expected = expected_labels(sim_server)
    await running.wait_for(lambda s: container_info(s) == expected)
    refresher = running.exporter.refreshers[ACCOUNT]
    sim_server.sim.set_faults(Faults(error_5xx_rate=1.0, routes=ENVIRONMENT_ROUTES))
    moved = sim_server.container_ids()[0]
    sim_server.sim.detach(ACCOUNT, moved)  # unseen while the queries fail
    await wait_until(lambda: refresher.environment_failures >= 3)
    # Status polling is not held up: a listener's new status still arrives.
    listener = next(iter(sim_server.listeners_of(moved)))
    new_status = (
        "paused" if sim_server.account.listeners[listener].status != "paused" else "errored"
    )
    sim_server.sim.set_status(ACCOUNT, listener, new_status)
    samples = await running.wait_for(lambda s: status_of(s, listener) == new_status)
    assert all(value == 1 for (name, _), value in samples.items() if name == "boomi_container_up")
    # The last known environments stay; the failures are counted...
    assert container_info(samples) == expected
    failed = sum(
        value
        for (name, labels), value in samples.items()
        if name == "boomi_api_requests_total"
        and dict(labels)["operation"] == "environment_query"
        and dict(labels)["code"] in ("500", "502")
    )
    assert failed >= 3
    # ...and logged once, however many rounds fail.
    warnings = [r for r in caplog.records if "reading environments failed" in r.getMessage()]
    assert [r.levelno for r in warnings][:1] == [logging.WARNING]
    assert sum(1 for r in warnings if r.levelno >= logging.WARNING) == 1
    assert len(warnings) >= 3
    # Once the queries work again, the detach shows, and the recovery is logged.
    sim_server.sim.set_faults(Faults())
    await running.wait_for(lambda s: container_info(s) == expected_labels(sim_server))
    assert any("reading environments works again" in r.getMessage() for r in caplog.records)


async def test_polling_works_when_environments_were_never_read(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    sim_server.sim.set_faults(Faults(error_5xx_rate=1.0, routes=ENVIRONMENT_ROUTES))
    running = await start_exporter(config(sim_server))
    samples = await running.wait_for(
        lambda s: sum(1 for (n, _), v in s.items() if n == "boomi_container_up" and v == 1) == 3
    )
    unknown = dict.fromkeys(ENVIRONMENT_LABELS, "")
    assert container_info(samples) == dict.fromkeys(sim_server.container_ids(), unknown)
    assert "environment unknown" in await running.text("/")


# -- remediation -----------------------------------------------------------------------------


async def errored_on(server: SimServer, running: Running, container_id: str) -> str:
    listener = next(iter(server.listeners_of(container_id)))
    server.sim.set_status(ACCOUNT, listener, "errored")
    await running.wait_for(lambda s: status_of(s, listener) == "errored")
    return listener


async def test_remediation_refuses_a_test_runtime_with_no_call(
    sim_server: SimServer, start_exporter: StartExporter, caplog: pytest.LogCaptureFixture
) -> None:
    account = sim_server.account
    remediation = REMEDIATION | {"environment_classifications": ["PROD"]}
    running = await start_exporter(config(sim_server, remediation=remediation))
    await running.wait_for(lambda s: container_info(s) == expected_labels(sim_server))
    classification = {
        cid: labels_of(sim_server, cid)["environment_classification"] for cid in account.containers
    }
    test_runtime = next(cid for cid, value in classification.items() if value == "TEST")
    prod_runtime = next(cid for cid, value in classification.items() if value == "PROD")
    test_listener = await errored_on(sim_server, running, test_runtime)
    prod_listener = await errored_on(sim_server, running, prod_runtime)
    sim_server.sim.reset_counters()
    caplog.set_level(logging.INFO, logger="exporter.remediation")

    status, answer = await post(running, payload(errored_alert(test_runtime, test_listener)))
    assert (status, answer["alerts"][0]["outcome"]) == (200, "rejected")
    assert any(
        "in environment 'Test' (TEST)" in r.getMessage() and "PROD" in r.getMessage()
        for r in caplog.records
    )
    # A runtime in PROD is remediated as before.
    status, answer = await post(running, payload(errored_alert(prod_runtime, prod_listener)))
    assert answer["alerts"][0]["outcome"] == "queued"
    samples = await running.wait_for(lambda s: (prod_listener, "recovered") in outcomes(s))
    assert outcomes(samples).get((test_listener, "rejected")) == 1
    assert [entry["listener_id"] for entry in sim_server.sim.change_log] == [prod_listener]
    assert account.listeners[test_listener].status == "errored"


async def test_remediation_refuses_an_unknown_environment_without_asking_boomi(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    sim_server.sim.set_faults(Faults(error_5xx_rate=1.0, routes=ENVIRONMENT_ROUTES))
    remediation = REMEDIATION | {"environment_classifications": ["PROD"]}
    running = await start_exporter(config(sim_server, remediation=remediation))
    container = sim_server.container_ids()[0]
    listener = await errored_on(sim_server, running, container)
    refresher = running.exporter.refreshers[ACCOUNT]
    await wait_until(lambda: refresher.environment_failures > 0)
    # Stop polling, so any request from now on would be remediation's.
    await running.exporter.poller.stop()
    await refresher.stop()
    sim_server.sim.reset_counters()
    status, answer = await post(running, payload(errored_alert(container, listener)))
    assert (status, answer["alerts"][0]["outcome"]) == (200, "rejected")
    # Never admitted, so no check-before-act either: nothing was, or will be, sent.
    ledger = running.exporter.ledger
    assert ledger is not None
    assert [entry["outcome"] for entry in await ledger.recent(10)] == ["rejected"]
    assert sim_server.sim.request_counts == {}


# -- --once ----------------------------------------------------------------------------------


async def test_once_shows_the_environment_beside_each_container(
    sim_server: SimServer, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, _third = sim_server.container_ids()
    sim_server.sim.detach(ACCOUNT, second)
    store = await poll_once(config(sim_server))
    print_table(store)
    lines = capsys.readouterr().out.splitlines()
    assert re.match(r"CONTAINER\s+ENVIRONMENT\s+PROCESS", lines[0])
    names = {c.container_id: c.name for c in sim_server.account.containers.values()}
    assert any(line.startswith(names[first]) and "Production (PROD)" in line for line in lines)
    assert any(line.startswith(names[second]) and "no environment" in line for line in lines)


@pytest.mark.parametrize(
    ("sim_server", "layout", "requests"),
    [
        # The default fleet: Production (2 runtimes) and Test (1).
        ({}, None, {"environment_query": 1, "environment_attachment_query": 2}),
        # 250 runtimes in one environment: 3 pages of attachments.
        ({"containers": 250, "listeners_per_container": 0}, [250],
         {"environment_query": 1, "environment_attachment_query": 3}),
        # 250 in three environments (100, 100, 50): still one request per 100 attachments.
        ({"containers": 250, "listeners_per_container": 0}, [100, 100, 50],
         {"environment_query": 1, "environment_attachment_query": 3}),
    ],
    indirect=["sim_server"],
)  # fmt: skip
async def test_a_round_costs_one_request_per_environment_and_per_100_more_rows(
    sim_server: SimServer,
    make_client: Callable[..., BoomiClient],
    layout: list[int] | None,
    requests: dict[str, int],
) -> None:
    sim, account = sim_server.sim, sim_server.account
    if layout is not None:
        for environment_id in list(account.environments):
            del account.environments[environment_id]
        account.attachments.clear()
        runtimes = iter(account.containers)
        for number, size in enumerate(layout):
            environment = sim.add_environment(ACCOUNT, f"Environment {number}")
            for _ in range(size):
                sim.attach(ACCOUNT, next(runtimes), environment.environment_id)
    store = SnapshotStore.for_containers((ACCOUNT, c, "") for c in account.containers)
    refresher = FleetRefresher(
        config(sim_server).accounts[0],
        config(sim_server).names,
        make_client(),
        store,
        lambda _account, _targets: None,
    )
    for _round in range(2):  # the same every round: nothing is cached that would go stale
        sim.reset_counters()
        assert await refresher.refresh_environments()
        sent: dict[str, int] = {}
        for key, count in sim.request_counts.items():
            route = key.split()[1].removesuffix("_more")
            sent[route] = sent.get(route, 0) + count
        assert sent == requests
    attached = {
        snapshot.container_id for snapshot in store.containers() if snapshot.environment is not None
    }
    assert attached == set(account.attachments)


def test_check_config_shows_the_environment_limits() -> None:
    limited = config_text(
        ENABLED,
        ("remediation.auth", "none"),
        ("remediation.environment_classifications", ["PROD"]),
        ("accounts.0.discovery", {"enabled": True, "environment_classifications": ["TEST"],
                                  "environment_name_pattern": "Test.*"}),
    )  # fmt: skip
    summary = summarize(parse_config(limited))
    assert "runtimes in environments: PROD" in summary
    assert "environments TEST named 'Test.*'" in summary
    everything = summarize(parse_config(config_text(ENABLED, ("remediation.auth", "none"))))
    assert "runtimes in environments: any (also none)" in everything
