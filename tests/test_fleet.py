"""Fleet features: discovery (paged, filtered), OFFLINE runtimes, process names, reload."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from exporter.boomi import Atom, BoomiClient
from exporter.config import AccountConfig, DiscoveryConfig
from exporter.daemon import Exporter
from exporter.fleet import merge_targets, select_discovered
from exporter.ledger import Decision
from exporter.poller import Poller, Target
from exporter.state import OFFLINE_ERROR, SnapshotStore
from tests.conftest import ACCOUNT, Running, SimServer, StartExporter, config_for
from tests.sim_log import queries, wait_for_cycles

# -- pure parts ------------------------------------------------------------------------------

ATOMS = [
    Atom("a1", "prod-molecule-1", "ONLINE", "MOLECULE", ""),
    Atom("a2", "prod-atom-1", "ONLINE", "ATOM", ""),
    Atom("a3", "test-molecule-1", "ONLINE", "MOLECULE", ""),
    Atom("a4", "prod-molecule-2", "OFFLINE", "MOLECULE", ""),
    Atom("a5", "prod-cloud-1", "WARNING", "CLOUD", ""),
]


@pytest.mark.parametrize(
    ("discovery", "expected"),
    [
        ({}, ["a1", "a2", "a3"]),
        ({"types": ["MOLECULE"]}, ["a1", "a3"]),
        ({"statuses": ["ONLINE", "OFFLINE"]}, ["a1", "a2", "a3", "a4"]),
        ({"statuses": ["WARNING"]}, ["a5"]),
        ({"name_pattern": "prod-.*"}, ["a1", "a2"]),
        ({"name_pattern": "prod"}, []),  # anchored: the whole name must match
        ({"name_pattern": "prod-molecule-[0-9]+", "statuses": ["ONLINE", "OFFLINE"]}, ["a1", "a4"]),
    ],
)
def test_select_discovered(discovery: dict[str, Any], expected: list[str]) -> None:
    selected = select_discovered(ATOMS, DiscoveryConfig(enabled=True, **discovery))
    assert [atom.container_id for atom in selected] == expected


def account(containers: list[dict[str, str]], **discovery: Any) -> AccountConfig:
    return AccountConfig.model_validate(
        {"account_id": "acc", "username": "u", "password": "p", "containers": containers,
         "discovery": discovery},
    )  # fmt: skip


def test_merge_targets_listed_entries_win_and_come_first() -> None:
    config = account([{"id": "a3", "name": "my test box"}, {"id": "zz"}], enabled=True)
    assert merge_targets(config, ATOMS) == [
        Target("acc", "a3", "my test box"),  # the configured name wins
        Target("acc", "zz", ""),  # listed, unknown to Boomi: still polled
        Target("acc", "a1", "prod-molecule-1"),
        Target("acc", "a2", "prod-atom-1"),
    ]
    # Before any Atom query has answered: only the listed ones.
    assert merge_targets(config, None) == [
        Target("acc", "a3", "my test box"),
        Target("acc", "zz", ""),
    ]


def test_a_tracked_runtime_that_goes_offline_stays() -> None:
    discovery = DiscoveryConfig(enabled=True)
    assert [a.container_id for a in select_discovered(ATOMS, discovery, {"a4"})] == [
        "a1",
        "a2",
        "a3",
        "a4",
    ]
    config = account([], enabled=True)
    assert Target("acc", "a4", "prod-molecule-2") in merge_targets(config, ATOMS, {"a4"})
    assert Target("acc", "a4", "prod-molecule-2") not in merge_targets(config, ATOMS)


def test_merge_targets_without_discovery_names_listed_containers_from_boomi() -> None:
    config = account([{"id": "a1"}])
    assert merge_targets(config, ATOMS) == [Target("acc", "a1", "prod-molecule-1")]


# -- against the simulator -------------------------------------------------------------------


def discovery_config(server: SimServer, containers: list[str], **discovery: Any) -> Any:
    config = config_for(server)
    data = config.model_dump(mode="python")
    data["accounts"][0]["password"] = server.account.password
    data["accounts"][0]["containers"] = [{"id": c} for c in containers]
    data["accounts"][0]["max_requests_per_second"] = 100
    data["accounts"][0]["discovery"] = {"interval_seconds": 0.5} | discovery
    return type(config).model_validate(data)


def tracked(running: Running) -> set[str]:
    return {snapshot.container_id for snapshot in running.exporter.store.containers()}


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    # A cap that only a hang reaches, never a measurement.
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "sim_server",
    [{"containers": 130, "listeners_per_container": 1, "rate_limit_rps": 1000}],
    indirect=True,
)
async def test_discovery_pages_through_more_than_100_runtimes(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running = await start_exporter(
        discovery_config(sim_server, [], enabled=True, interval_seconds=60)
    )
    await wait_until(lambda: len(tracked(running)) == 130)
    assert sim_server.count("POST atom_query 200") == 1
    assert sim_server.count("POST atom_query_more 200") == 1  # 100 + 30
    await running.wait_for(
        lambda s: sum(1 for name, _ in s if name == "boomi_container_up") == 130, timeout=60
    )


async def test_discovery_filters_and_follows_runtimes_coming_and_going(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    sim = sim_server.sim
    sim.add_container(ACCOUNT, "new-prod", "prod-molecule-9", type="MOLECULE")
    sim.add_container(ACCOUNT, "offline-prod", "prod-molecule-8", status="OFFLINE")
    sim.add_container(ACCOUNT, "an-atom", "prod-atom-7", type="ATOM")
    listed = "listed-one"
    sim.add_container(ACCOUNT, listed, "some name")
    running = await start_exporter(
        discovery_config(
            sim_server, [listed], enabled=True, types=["MOLECULE"], name_pattern="prod-.*"
        )
    )
    molecules = {
        c.container_id
        for c in sim_server.account.containers.values()
        if c.type == "MOLECULE" and c.name.startswith("prod-") and c.status == "ONLINE"
    }
    await wait_until(lambda: tracked(running) == molecules | {listed})
    assert "offline-prod" not in tracked(running) and "an-atom" not in tracked(running)
    # The listed container carries Boomi's name since it has none in the config.
    assert running.exporter.store.get(ACCOUNT, listed).container_name == "some name"  # type: ignore[union-attr]
    # A runtime that appears is polled; one that goes away leaves /metrics.
    sim.add_container(ACCOUNT, "late-prod", "prod-molecule-10")
    sim.add_listener(ACCOUNT, "late-prod", "late-listener")
    await running.wait_for(
        lambda s: any(dict(lab).get("listener_id") == "late-listener" for _, lab in s)
    )
    # One that goes OFFLINE stays, shown offline and not polled; one that goes away leaves.
    sim_server.account.containers["late-prod"].status = "OFFLINE"
    await running.wait_for(
        lambda s: (
            s.get(
                ("boomi_container_online", (("account_id", ACCOUNT), ("container_id", "late-prod")))
            )
            == 0
        )
    )
    del sim_server.account.containers["new-prod"]
    samples = await running.wait_for(
        lambda s: not any(dict(lab).get("container_id") == "new-prod" for _, lab in s)
    )
    assert any(dict(labels).get("container_id") == "late-prod" for _, labels in samples)


async def test_offline_runtime_is_shown_and_not_polled(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    offline, online = sim_server.container_ids()[:2]
    sim_server.account.containers[offline].status = "OFFLINE"
    running = await start_exporter(discovery_config(sim_server, [offline, online]))

    def key(name: str, container: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, (("account_id", ACCOUNT), ("container_id", container)))

    samples = await running.wait_for(
        lambda s: (
            s.get(key("boomi_container_online", offline)) == 0
            and s.get(key("boomi_container_up", online)) == 1
        )
    )
    assert samples[key("boomi_container_online", online)] == 1
    info = [dict(lab) for n, lab in samples if n == "boomi_container_info"]
    assert {i["container_type"] for i in info} == {
        sim_server.account.containers[c].type for c in (offline, online)
    }
    # Ten cycles of the online one: the offline runtime was never asked for its listeners,
    # except by a first poll that may have started before Boomi said OFFLINE. A poll of it
    # ends when its result times out (2 s), and the next would query again.
    sim = sim_server.sim
    await wait_for_cycles(sim, [online], 10, after=0)
    assert queries(sim, offline) <= 1
    snapshot = running.exporter.store.get(ACCOUNT, offline)
    assert snapshot is not None and not snapshot.up and "OFFLINE" in snapshot.last_error
    assert running.exporter.store.ready()
    page = await running.text("/")
    assert "runtime OFFLINE, not polled" in page


async def test_runtime_going_offline_during_a_poll_is_shown_offline_at_once(
    sim_server: SimServer, make_client: Any
) -> None:
    """The Atom query says OFFLINE while a poll waits on a result that will never settle."""
    container = sim_server.container_ids()[0]
    sim_server.account.containers[container].status = "OFFLINE"  # its results never settle
    store = SnapshotStore.for_containers([(ACCOUNT, container, "c")])
    client: BoomiClient = make_client()
    poller = Poller({ACCOUNT: client}, store, interval_seconds=60, result_timeout_seconds=1.5)
    poll = asyncio.create_task(poller.poll(Target(ACCOUNT, container, "c")))
    await wait_until(lambda: sim_server.count("POST listener_status_query") == 1)
    store.set_container_status(ACCOUNT, container, container_type="ATOM", online=False)
    snapshot = store.get(ACCOUNT, container)
    assert snapshot is not None and snapshot.polled and not snapshot.up
    assert snapshot.last_error == OFFLINE_ERROR
    assert await poll is False  # the result timed out...
    snapshot = store.get(ACCOUNT, container)
    assert snapshot is not None and snapshot.last_error == OFFLINE_ERROR  # ...but OFFLINE stays
    # The next cycle spends nothing on it.
    assert await poller.poll(Target(ACCOUNT, container, "c")) is False
    assert sim_server.count("POST listener_status_query") == 1
    # Back ONLINE: polled again.
    sim_server.account.containers[container].status = "ONLINE"
    store.set_container_status(ACCOUNT, container, container_type="ATOM", online=True)
    assert await poller.poll(Target(ACCOUNT, container, "c")) is True


@pytest.mark.parametrize(
    "sim_server", [{"containers": 3, "listeners_per_container": 50}], indirect=True
)
async def test_process_names_are_resolved_in_bulk_and_cached(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running = await start_exporter(discovery_config(sim_server, sim_server.container_ids()))
    expected = {
        lid: listener.process_name for lid, listener in sim_server.account.listeners.items()
    }

    def names(samples: Any) -> dict[str, str]:
        return {
            dict(labels)["listener_id"]: dict(labels)["process_name"]
            for name, labels in samples
            if name == "boomi_listener_info"
        }

    samples = await running.wait_for(lambda s: len(names(s)) == 150, timeout=60)
    assert names(samples) == expected
    assert sim_server.count("POST process_bulk 200") == 2  # 150 ids, 100 a call
    # More polls of every container, and no more name lookups.
    sim = sim_server.sim
    await wait_for_cycles(sim, sim_server.container_ids(), 3, after=sim.request_log.last_seq)
    assert sim_server.count("POST process_bulk") == 2
    page = await running.text("/")
    assert "Orders WSS Listener" in page


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data))


async def test_reload_adds_and_removes_containers_and_refuses_a_bad_config(
    sim_server: SimServer, tmp_path: Path
) -> None:
    first, second, third = sim_server.container_ids()
    base = config_for(sim_server).model_dump(mode="json")
    base["accounts"][0]["password"] = sim_server.account.password
    base["remediation"] = {
        "enabled": True, "dry_run": True, "auth": {"bearer_token": "t"}, "cooldown_seconds": 900
    }  # fmt: skip
    base["accounts"][0]["containers"] = [{"id": first}, {"id": second}]
    base["storage"] = {"path": str(tmp_path / "data")}
    base["web"]["enable_lifecycle"] = True  # POST /-/reload, as Prometheus, only when enabled
    path = tmp_path / "config.yaml"
    write(path, base)
    exporter = Exporter(config_for(sim_server).model_validate(base), config_path=path)
    port = await exporter.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    action = Decision("alertmanager", "fp", ACCOUNT, first, "some-listener", "restart", "queued")
    try:
        await wait_until(lambda: all(s.up for s in exporter.store.containers()))
        kept = exporter.store.get(ACCOUNT, first)
        ledger = exporter.ledger
        assert ledger is not None
        (entry,) = await ledger.record([action], exporter.remediator.limits)
        await ledger.mark_started(entry.id)
        await ledger.finish(entry.id, "recovered")
        async with aiohttp.ClientSession() as session:
            # Add the third container and remove the second.
            base["accounts"][0]["containers"] = [{"id": first}, {"id": third}]
            write(path, base)
            async with session.post(url + "/-/reload") as response:
                assert response.status == 200, await response.text()
            assert {s.container_id for s in exporter.store.containers()} == {first, third}
            # The unchanged container kept its state; remediation kept its cooldowns.
            current = exporter.store.get(ACCOUNT, first)
            assert current is not None and kept is not None
            assert current.last_success_time is not None
            assert current.last_success_time >= (kept.last_success_time or 0)
            assert exporter.ledger is ledger and exporter.remediator.ledger is ledger
            (again,) = await ledger.record([action], exporter.remediator.limits)
            assert again.outcome == "skipped_cooldown"
            await wait_until(lambda: bool((s := exporter.store.get(ACCOUNT, third)) and s.up))
            # An invalid config is refused with its reason; the running one stays.
            write(path, base | {"poll": {"intervall_seconds": 5}})
            async with session.post(url + "/-/reload") as response:
                assert response.status == 400
                assert "poll.intervall_seconds" in await response.text()
            async with session.get(url + "/metrics") as response:
                metrics = await response.text()
            assert "boomi_exporter_config_last_reload_successful 0.0" in metrics
            assert {s.container_id for s in exporter.store.containers()} == {first, third}
            before = exporter.store.get(ACCOUNT, third)
            await wait_until(
                lambda: (
                    (s := exporter.store.get(ACCOUNT, third)) is not None
                    and before is not None
                    and (s.last_success_time or 0) > (before.last_success_time or 0)
                )
            )
            # Fixed again: reload succeeds and the gauge says so.
            write(path, base)
            async with session.post(url + "/-/reload") as response:
                assert response.status == 200
            async with session.get(url + "/metrics") as response:
                assert "boomi_exporter_config_last_reload_successful 1.0" in await response.text()
    finally:
        await exporter.stop()


async def test_reload_with_a_new_password_replaces_the_client(
    sim_server: SimServer, tmp_path: Path
) -> None:
    base = config_for(sim_server).model_dump(mode="json")
    base["accounts"][0]["password"] = "wrong-at-first"
    path = tmp_path / "config.yaml"
    write(path, base)
    exporter = Exporter(config_for(sim_server).model_validate(base), config_path=path)
    await exporter.start("127.0.0.1", 0)
    try:
        await wait_until(exporter.store.ready)
        assert not any(s.up for s in exporter.store.containers())
        base["accounts"][0]["password"] = sim_server.account.password
        write(path, base)
        ok, message = await exporter.reload()
        assert ok, message
        # The new client is not bound by the old one's back-off after the rejected login.
        await wait_until(lambda: all(s.up for s in exporter.store.containers()))
    finally:
        await exporter.stop()
