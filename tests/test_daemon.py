"""The whole daemon against the simulator over real sockets: poller, store, metrics, web."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import subprocess
import time
from typing import Any

import pytest

from exporter.boomi import ListenerStatus
from exporter.config import Config
from exporter.simulator import Faults
from tests.conftest import (
    ACCOUNT,
    INTERVAL,
    Samples,
    SimServer,
    StartExporter,
    config_for,
)
from tests.sim_log import QUERY, requests, wait_for_cycles, wait_until


def status_series(samples: Samples) -> dict[tuple[str, str], str]:
    """{(container_id, listener_id): status whose series is 1}, checking the state-set shape."""
    per_listener: dict[tuple[str, str], dict[str, float]] = {}
    for (name, labels), value in samples.items():
        if name != "boomi_listener_status":
            continue
        label = dict(labels)
        key = (label["container_id"], label["listener_id"])
        per_listener.setdefault(key, {})[label["status"]] = value
    current = {}
    for key, values in per_listener.items():
        assert sorted(values) == ["errored", "listening", "paused", "unknown"], key
        assert sum(values.values()) == 1, key
        current[key] = next(status for status, value in values.items() if value == 1)
    return current


def simulator_truth(server: SimServer) -> dict[tuple[str, str], str]:
    return {
        (listener.container_id, listener.listener_id): listener.status.lower()
        for listener in server.account.listeners.values()
    }


async def test_metrics_match_the_simulator(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    first = sim_server.container_ids()[0]
    sim_server.sim.add_listener(ACCOUNT, first, "no-type", connector_type=None)
    wall_before, started = time.time(), time.monotonic()
    running = await start_exporter(config_for(sim_server))
    account = sim_server.account

    def info_of(container: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
        environment = account.environments[account.attachments[container.container_id]]
        labels = {
            "account_id": ACCOUNT,
            "container_id": container.container_id,
            "container_name": container.name,
            "container_type": container.type,
            "environment_id": environment.environment_id,
            "environment_name": environment.name,
            "environment_classification": environment.classification,
        }
        return ("boomi_container_info", tuple(sorted(labels.items())))

    # The environments come from a background query after the Atom query: wait for them too.
    samples = await running.wait_for(
        lambda s: (
            len(status_series(s)) == 13
            and all(info_of(c) in s for c in account.containers.values())
        )
    )
    wall_after, elapsed = time.time(), time.monotonic() - started
    assert status_series(samples) == simulator_truth(sim_server)
    for container in account.containers.values():
        ids = (("account_id", ACCOUNT), ("container_id", container.container_id))
        assert samples[("boomi_container_up", ids)] == 1
        assert samples[info_of(container)] == 1
        # Unix time of a poll made while we watched; its duration in seconds: at least the
        # simulator's result delay, at most the time we watched.
        last_success = samples[("boomi_container_last_success_timestamp_seconds", ids)]
        assert wall_before <= last_success <= wall_after
        duration = samples[("boomi_container_poll_duration_seconds", ids)]
        assert sim_server.sim.result_delay_seconds <= duration <= elapsed
    connector_types = {
        dict(labels)["connector_type"]
        for (name, labels) in samples
        if name == "boomi_listener_status"
    }
    assert {"wss", "atomqueue", ""} <= connector_types
    assert any(name == "boomi_exporter_build_info" for name, _ in samples)
    requests = {
        dict(labels)["operation"]
        for (name, labels) in samples
        if name == "boomi_api_requests_total"
    }
    assert {
        "listener_status_query",
        "listener_status_result",
        "atom_query",
        "environment_query",
        "environment_attachment_query",
    } <= requests


async def test_status_change_shows_from_the_first_cycle_after_it(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    """The first poll whose query reaches Boomi after a change publishes it, on /metrics too.

    With cycles starting every interval plus at most 10% (test_poller), a change shows within
    one interval and a cycle. Counted in cycles, not seconds.
    """
    sim = sim_server.sim
    running = await start_exporter(config_for(sim_server))
    await running.wait_for(lambda s: len(status_series(s)) == 12)
    container, listener = next(iter(simulator_truth(sim_server)))
    new_status = (
        "paused" if simulator_truth(sim_server)[(container, listener)] != "paused" else "errored"
    )
    # Each poll of the container the store records: the query it answered (its container's
    # latest; one cycle at a time) and the listener's status in it.
    published: list[tuple[int, str | None]] = []
    store = running.exporter.store
    record_success = store.record_success

    def observed(
        account_id: str, container_id: str, listeners: tuple[ListenerStatus, ...], **kw: float
    ) -> None:
        if container_id == container:
            answered = requests(sim, QUERY, container_id=container)[-1].seq
            statuses = {item.listener_id: item.status for item in listeners}
            published.append((answered, statuses.get(listener)))
        record_success(account_id, container_id, listeners, **kw)

    store.record_success = observed  # type: ignore[assignment]
    sim.set_status(ACCOUNT, listener, new_status)
    changed_after = sim.request_log.last_seq
    await wait_until(
        lambda: any(seq > changed_after for seq, _ in published), "a poll queried after the change"
    )
    assert next(status for seq, status in published if seq > changed_after) == new_status
    assert status_series(await running.samples())[(container, listener)] == new_status


async def test_removed_listener_vanishes_and_new_one_appears(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running = await start_exporter(config_for(sim_server))
    await running.wait_for(lambda s: len(status_series(s)) == 12)
    container, listener = next(iter(simulator_truth(sim_server)))
    sim_server.sim.remove_listener(ACCOUNT, listener)
    sim_server.sim.add_listener(ACCOUNT, container, "brand-new", connector_type="jms")
    samples = await running.wait_for(
        lambda s: (
            (container, listener) not in status_series(s)
            and (container, "brand-new") in status_series(s)
        )
    )
    assert not any(dict(labels).get("listener_id") == listener for _, labels in samples)


async def test_failing_container_goes_down_while_others_stay_fresh(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running = await start_exporter(config_for(sim_server))
    await running.wait_for(lambda s: len(status_series(s)) == 12)
    broken, *healthy = sim_server.container_ids()
    before = simulator_truth(sim_server)
    sim_server.sim.set_faults(Faults(error_5xx_rate=1.0, container_ids=[broken]))

    def key(name: str, container: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, (("account_id", ACCOUNT), ("container_id", container)))

    samples = await running.wait_for(lambda s: s[key("boomi_container_up", broken)] == 0)
    stale_at = samples[key("boomi_container_last_success_timestamp_seconds", broken)]
    # The broken container keeps its last listener values; the others keep being refreshed.
    later = await running.wait_for(
        lambda s: all(
            s[key("boomi_container_last_success_timestamp_seconds", c)] > stale_at + INTERVAL
            for c in healthy
        ),
        timeout=INTERVAL * 4 + 2,
    )
    assert later[key("boomi_container_last_success_timestamp_seconds", broken)] == stale_at
    assert all(later[key("boomi_container_up", c)] == 1 for c in healthy)
    assert status_series(later) == before
    assert any(
        name == "boomi_api_requests_total" and dict(labels)["code"] in ("500", "502")
        for name, labels in later
    )
    sim_server.sim.set_faults(Faults())
    await running.wait_for(lambda s: s[key("boomi_container_up", broken)] == 1)


async def test_wrong_password_for_one_account_does_not_touch_the_other(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    sim = sim_server.sim
    sim.add_account(
        "other", username="other@example.com", password="right-password", rate_limit_rps=50
    )
    sim.add_container("other", "other-container", "other-molecule")
    sim.add_listener("other", "other-container", "other-listener")
    config = config_for(sim_server)
    data = config.model_dump(mode="python")
    data["accounts"][0]["password"] = sim_server.account.password
    data["accounts"].append(
        {
            "account_id": "other",
            "base_url": sim_server.base_url,
            "username": "other@example.com",
            "password": "wrong-password-xyz",
            "auth_failure_backoff_seconds": 300,
            "containers": [{"id": "other-container"}],
        }
    )
    running = await start_exporter(Config.model_validate(data))
    up_key = ("boomi_container_up", (("account_id", "other"), ("container_id", "other-container")))
    samples = await running.wait_for(lambda s: len(status_series(s)) == 12 and s.get(up_key) == 0)
    assert ("other-container", "other-listener") not in status_series(samples)
    # Three more cycles of every container of the good account: as many of the other's.
    await wait_for_cycles(sim, sim_server.container_ids(), 3, after=sim.request_log.last_seq)
    # One rejected login in all, however many intervals pass: no retry storm.
    rejected = sum(n for k, n in sim.request_counts.items() if k.endswith(" 403"))
    assert rejected == 1
    page = await running.text("/")
    assert "Boomi rejected the credentials of account other" in page
    assert "wrong-password-xyz" not in page


async def test_health_and_readiness(sim_server: SimServer, start_exporter: StartExporter) -> None:
    sim_server.sim.set_faults(Faults(slow_rate=1.0, slow_seconds=0.5))
    running = await start_exporter(config_for(sim_server))
    async with running.session.get(running.url + "/-/ready") as response:
        assert response.status == 503
    assert "Healthy" in await running.text("/-/healthy")
    deadline = time.monotonic() + 30  # a cap only a hang reaches; ready in about 1.5 s
    while True:
        async with running.session.get(running.url + "/-/ready") as response:
            if response.status == 200:
                break
        assert time.monotonic() < deadline, "never ready"
        await asyncio.sleep(0.05)


async def test_scrape_formats(sim_server: SimServer, start_exporter: StartExporter) -> None:
    running = await start_exporter(config_for(sim_server))
    await running.wait_for(lambda s: len(status_series(s)) == 12)
    async with running.session.get(
        running.url + "/metrics",
        headers={
            "Accept": "application/openmetrics-text; version=1.0.0",
            "Accept-Encoding": "gzip",
        },
        auto_decompress=False,
    ) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.headers["Content-Encoding"] == "gzip"
        body = gzip.decompress(await response.read()).decode()
    assert body.rstrip().endswith("# EOF")
    assert "boomi_listener_status{" in body
    async with running.session.get(
        running.url + "/metrics", headers={"Accept-Encoding": "identity"}, auto_decompress=False
    ) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "Content-Encoding" not in response.headers
    # Refusals by q-value, over the wire: neither gzip nor OpenMetrics.
    async with running.session.get(
        running.url + "/metrics",
        headers={"Accept": "application/openmetrics-text;q=0", "Accept-Encoding": "gzip;q=0"},
        auto_decompress=False,
    ) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "Content-Encoding" not in response.headers
        assert "boomi_listener_status{" in (await response.read()).decode()


async def test_metrics_never_wait_on_boomi(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    sim = sim_server.sim
    running = await start_exporter(config_for(sim_server))
    await running.wait_for(lambda s: len(status_series(s)) == 12)
    sim.set_faults(Faults(slow_rate=1.0, slow_seconds=3))
    held_after = sim.request_log.last_seq
    await wait_until(
        lambda: any(not e.answered for e in requests(sim, after=held_after)),
        "a poll request held by the simulator",
    )
    before = sum(sim.request_counts.values())
    for _ in range(5):
        held = [e for e in requests(sim, after=held_after) if not e.answered]
        assert "boomi_listener_status{" in await running.text()
        # Answered while Boomi still had not answered a poll: the scrape did not wait on it.
        assert any(not e.answered for e in held)
    # Scrapes add no Boomi requests (polls in flight are stuck in the slow answers).
    assert sum(sim.request_counts.values()) == before


async def test_landing_page_lists_containers_and_listeners(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running = await start_exporter(config_for(sim_server))
    await running.wait_for(lambda s: len(status_series(s)) == 12)
    page = await running.text("/")
    for container in sim_server.account.containers.values():
        assert container.name in page
    for listener in sim_server.account.listeners.values():
        assert listener.listener_id in page
    assert 'href="/metrics"' in page


@pytest.mark.skipif(
    not shutil.which("promtool") and not os.environ.get("BLE_REQUIRE_E2E"),
    reason="promtool not installed (Debian package prometheus); CI installs it",
)
async def test_promtool_check_metrics_passes(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running = await start_exporter(config_for(sim_server))
    await running.wait_for(lambda s: len(status_series(s)) == 12)
    text = await running.text()
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
