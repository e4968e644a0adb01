"""Issue 19 (hardening), the daemon's side: the whole exporter against a misbehaving simulator.

Each test failed before its fix: a Retry-After of a day, surrogates in names, reloads that
dropped discovered containers, doubled the request rate or leaked a session, alerts acted on
after SIGTERM or for OFFLINE runtimes, a fingerprint forging log lines, a lower-case "bearer".
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from exporter.config import load_config
from exporter.daemon import Exporter
from exporter.simulator import Faults, LoggedRequest
from tests.conftest import ACCOUNT, INTERVAL, Running, SimServer
from tests.sim_log import requests, wait_until

TOKEN = "webhook-token-for-hardening"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REMEDIATION: dict[str, Any] = {
    "enabled": True,
    "dry_run": False,
    "auth": {"bearer_token": TOKEN},
    "cooldown_seconds": 900,
    "max_actions_per_hour": 10,
    "verify_timeout_seconds": 3,
}


def document_for(
    server: SimServer,
    *,
    account: dict[str, Any] | None = None,
    remediation: dict[str, Any] | None = None,
    names: dict[str, Any] | None = None,
    **poll: Any,
) -> dict[str, Any]:
    """A config document (what the YAML file holds) for the simulator's account."""
    sim_account = server.account
    return {
        "accounts": [
            {
                "account_id": ACCOUNT,
                "base_url": server.base_url,
                "username": sim_account.username,
                "password": sim_account.password,
                "max_requests_per_second": 40,
                "containers": [
                    {"id": c.container_id, "name": c.name} for c in sim_account.containers.values()
                ],
            }
            | (account or {})
        ],
        "poll": {"interval_seconds": INTERVAL, "result_timeout_seconds": 2}
        | {"request_timeout_seconds": 1}
        | poll,
        "names": names or {},
        "remediation": remediation or {},
    }


class Reloadable(Running):
    """A running exporter started from a config file, which the test may rewrite and reload."""

    def __init__(self, exporter: Exporter, url: str, session: aiohttp.ClientSession, path: Path):
        super().__init__(exporter, url, session)
        self.path = path

    async def reload(self, document: dict[str, Any]) -> None:
        self.path.write_text(yaml.safe_dump(document))
        ok, message = await self.exporter.reload()
        assert ok, message


StartReloadable = Callable[[dict[str, Any]], Awaitable[Reloadable]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[StartReloadable]:
    started: list[Reloadable] = []

    async def start(document: dict[str, Any]) -> Reloadable:
        path = tmp_path / "config.yaml"
        # Each test its own remediation ledger, never the working directory's data/.
        document = {"storage": {"path": str(tmp_path / "data")}} | document
        path.write_text(yaml.safe_dump(document))
        exporter = Exporter(load_config(path), config_path=path)
        port = await exporter.start("127.0.0.1", 0)
        running = Reloadable(exporter, f"http://127.0.0.1:{port}", aiohttp.ClientSession(), path)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.session.close()
        await running.exporter.stop()


def up(samples: dict[Any, float], container_id: str) -> float | None:
    key = ("boomi_container_up", (("account_id", ACCOUNT), ("container_id", container_id)))
    return samples.get(key)


def all_up(server: SimServer) -> Callable[[dict[Any, float]], bool]:
    return lambda samples: all(up(samples, c) == 1 for c in server.container_ids())


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the timeout")
        await asyncio.sleep(0.02)


# -- item 2: Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503])
async def test_a_retry_after_of_a_day_shows_the_container_down_with_the_reason(
    sim_server: SimServer, start: StartReloadable, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    running = await start(document_for(sim_server, result_timeout_seconds=1.5))
    await running.wait_for(all_up(sim_server))
    frozen, other = sim_server.container_ids()[:2]
    sim_server.sim.set_faults(
        Faults(
            long_retry_after_status=status,
            long_retry_after_seconds=86400,
            long_retry_after_answers=1000,
            container_ids=[frozen],
        )
    )
    # Before the fix the container stayed "up 1" on aging data: nothing ended the wait.
    samples = await running.wait_for(lambda s: up(s, frozen) == 0, timeout=8.0)
    snapshot = running.exporter.store.get(ACCOUNT, frozen)
    assert snapshot is not None
    assert "result_timeout_seconds (1.5 s)" in snapshot.last_error
    assert "Retry-After" in snapshot.last_error
    if status == 502:  # a 502 concerns its container only; a 503 pauses the whole account
        assert up(samples, other) == 1
    warned = [r for r in caplog.records if "(Retry-After); waiting at most" in r.getMessage()]
    assert len(warned) == 1


# -- item 3: surrogates ------------------------------------------------------------------------


async def test_lone_surrogates_in_names_keep_metrics_and_the_landing_page_up(
    sim_server: SimServer, start: StartReloadable
) -> None:
    sim_server.sim.set_faults(Faults(surrogate_rate=1.0))  # every Process and Atom name
    running = await start(document_for(sim_server))
    listeners = sim_server.account.listeners

    def named(samples: dict[Any, float]) -> bool:
        return sum(1 for name, _ in samples if name == "boomi_listener_info") == len(listeners)

    samples = await running.wait_for(lambda s: all_up(sim_server)(s) and named(s))
    names = {
        dict(labels)["listener_id"]: dict(labels)["process_name"]
        for name, labels in samples
        if name == "boomi_listener_info"
    }
    assert names == {lid: item.process_name + "\ufffd" for lid, item in listeners.items()}
    statuses = {dict(labels)["listener_id"] for name, labels in samples if name.endswith("status")}
    assert statuses == set(listeners)  # every other series is kept
    page = await running.text("/")
    assert all(name in page for name in names.values())


# -- item 5: a reload keeps discovered containers ----------------------------------------------


async def test_a_reload_keeps_discovered_containers_while_the_atom_query_fails(
    sim_server: SimServer, start: StartReloadable
) -> None:
    listed, *discovered = sim_server.container_ids()
    account = {
        "containers": [{"id": listed}],
        "discovery": {"enabled": True, "interval_seconds": 600},
    }
    running = await start(document_for(sim_server, account=account))
    everyone = frozenset(sim_server.container_ids())
    await until(lambda: running.exporter.polled_containers().get(ACCOUNT) == everyone)
    await running.wait_for(all_up(sim_server))
    sim_server.sim.set_faults(Faults(error_5xx_rate=1.0, routes=["atom_query"]))
    # A change to `names` restarts the account's fleet refresher.
    await running.reload(document_for(sim_server, account=account, names={"refresh_seconds": 60}))
    assert running.exporter.polled_containers()[ACCOUNT] == everyone
    await until(lambda: sim_server.count("POST atom_query 50") >= 1)
    await asyncio.sleep(3 * INTERVAL)
    assert running.exporter.polled_containers()[ACCOUNT] == everyone
    samples = await running.samples()
    assert all(up(samples, container) == 1 for container in discovered)


# -- item 6: a reload carries the rate-limit window over ---------------------------------------


def busiest_second(entries: list[LoggedRequest]) -> int:
    """The most requests that arrived within one second of each other (simulator clock)."""
    arrivals = [entry.at for entry in entries]
    return max(
        (bisect.bisect_right(arrivals, at + 1.0) - index for index, at in enumerate(arrivals)),
        default=0,
    )


@pytest.mark.parametrize(
    "sim_server",
    [{"rate_limit_rps": 5, "containers": 12, "result_delay_seconds": 0.0}],
    indirect=True,
)
async def test_a_reload_that_replaces_the_client_keeps_the_accounts_request_window(
    sim_server: SimServer, start: StartReloadable
) -> None:
    # Twelve containers polled every 0.1 s want far more than 5 requests/s: the budget is full,
    # and Boomi (the simulator) allows exactly 5 in any second, as the account's budget says.
    budget = {"max_requests_per_second": 5}
    document = document_for(
        sim_server, account=budget, result_timeout_seconds=5, interval_seconds=0.1
    )
    running = await start(document)
    sim = sim_server.sim
    await running.wait_for(lambda s: any(up(s, c) == 1 for c in sim_server.container_ids()))
    # Wait until the old client has spent its whole window: 5 requests within the last second.
    await wait_until(lambda: busiest_second(list(sim.request_log)[-5:]) == 5, "the budget spent")
    before = list(sim.request_log)[-1].seq - 5
    throttled_before = sim.throttled
    # New credentials (the API token of the same user) replace the account's client.
    rotated = budget | {
        "username": f"BOOMI_TOKEN.{sim_server.account.username}",
        "password": sim_server.account.api_token,
    }
    old_client = running.exporter.clients[ACCOUNT]
    await running.reload(
        document_for(sim_server, account=rotated, result_timeout_seconds=5, interval_seconds=0.1)
    )
    assert running.exporter.clients[ACCOUNT] is not old_client
    reloaded = list(sim.request_log)[-1].seq
    # The new client's first ten requests, with the old client's last five before them.
    await wait_until(lambda: len(requests(sim, after=reloaded)) >= 10, "ten new requests")
    window = requests(sim, after=before)[:15]
    # Counted on the simulator's clock, as Boomi counts them: an empty new window sent the
    # new client's first five at once, 10 within a second (and the simulator answered 503).
    assert busiest_second(window) <= 5, [round(entry.at - window[0].at, 3) for entry in window]
    assert sim.throttled == throttled_before


# -- items 7 and 8, 9: remediation -------------------------------------------------------------


async def post(running: Running, body: Any, headers: dict[str, str] | None = None) -> Any:
    async with running.session.post(
        running.url + "/webhook/alertmanager",
        data=json.dumps(body).encode(),
        headers=AUTH if headers is None else headers,
    ) as response:
        text = await response.text()
        return response.status, response.headers, json.loads(text)


def alert(container_id: str, listener_id: str, fingerprint: str = "fp") -> dict[str, Any]:
    labels = {
        "alertname": "BoomiListenerErrored",
        "account_id": ACCOUNT,
        "container_id": container_id,
        "listener_id": listener_id,
    }
    return {"status": "firing", "labels": labels, "fingerprint": fingerprint}


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "alerts": list(alerts)}


async def errored(server: SimServer, running: Running, container_id: str, count: int) -> list[str]:
    """Set `count` listeners of a container errored and wait until the exporter saw them."""
    listeners = list(server.listeners_of(container_id))[:count]
    for listener_id in listeners:
        server.sim.set_status(ACCOUNT, listener_id, "errored")

    def seen() -> bool:
        snapshot = running.exporter.store.get(ACCOUNT, container_id)
        statuses = (
            {item.listener_id: item.status for item in snapshot.listeners} if snapshot else {}
        )
        return all(statuses.get(listener_id) == "errored" for listener_id in listeners)

    await until(seen)
    return listeners


def changed(server: SimServer, listener_id: str) -> bool:
    return any(entry.get("listener_id") == listener_id for entry in server.sim.change_log)


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 1.0}], indirect=True)
async def test_after_sigterm_the_webhook_answers_503_and_starts_nothing(
    sim_server: SimServer, start: StartReloadable
) -> None:
    running = await start(document_for(sim_server, remediation=REMEDIATION))
    container = sim_server.container_ids()[0]
    first, second = await errored(sim_server, running, container, 2)
    status, _, answer = await post(running, payload(alert(container, first, "fp-1")))
    assert (status, answer["alerts"][0]["outcome"]) == (200, "queued")
    await until(lambda: changed(sim_server, first))
    # SIGTERM runs Exporter.stop(); the first restart's verification keeps it busy a while.
    stopping = asyncio.create_task(running.exporter.stop())
    await asyncio.sleep(0)
    status, headers, answer = await post(running, payload(alert(container, second, "fp-2")))
    assert status == 503 and headers["Retry-After"].isdigit()
    assert "stopping" in answer["error"]
    await stopping
    assert not changed(sim_server, second)


async def test_a_restart_is_rejected_without_a_call_for_a_runtime_boomi_reports_offline(
    sim_server: SimServer, start: StartReloadable, caplog: pytest.LogCaptureFixture
) -> None:
    container = sim_server.container_ids()[0]
    # Only this container, and its Atom status looked up every 0.2 s.
    account = {"containers": [{"id": container}], "discovery": {"interval_seconds": 0.2}}
    running = await start(document_for(sim_server, account=account, remediation=REMEDIATION))
    (listener,) = await errored(sim_server, running, container, 1)
    sim_server.account.containers[container].status = "OFFLINE"
    online = ("boomi_container_online", (("account_id", ACCOUNT), ("container_id", container)))
    await running.wait_for(lambda s: s.get(online) == 0)
    sim_server.sim.reset_counters()
    status, _, answer = await post(running, payload(alert(container, listener)))
    assert (status, answer["alerts"][0]["outcome"]) == (200, "rejected")
    assert any("OFFLINE" in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    await asyncio.sleep(0.5)
    assert sim_server.count("POST listener_status_query") == 0
    assert sim_server.count("POST change_listener_status") == 0


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 0.5}], indirect=True)
async def test_a_reload_during_a_remediation_leaves_no_session_open(
    sim_server: SimServer, start: StartReloadable
) -> None:
    # aiohttp reports a session collected unclosed to the loop's exception handler.
    reported: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    running = await start(document_for(sim_server, remediation=REMEDIATION))
    container = sim_server.container_ids()[0]
    (listener,) = await errored(sim_server, running, container, 1)
    _, _, answer = await post(running, payload(alert(container, listener)))
    assert answer["alerts"][0]["outcome"] == "queued"
    await until(lambda: changed(sim_server, listener))
    rotated = {
        "username": f"BOOMI_TOKEN.{sim_server.account.username}",
        "password": sim_server.account.api_token,
    }
    await running.reload(document_for(sim_server, account=rotated, remediation=REMEDIATION))
    recovered = (
        "boomi_remediation_actions_total",
        (
            ("account_id", ACCOUNT),
            ("action", "restart"),
            ("container_id", container),
            ("listener_id", listener),
            ("outcome", "recovered"),
        ),
    )
    await running.wait_for(lambda s: s.get(recovered) == 1)
    await running.session.close()
    await running.exporter.stop()
    del running
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert not [message for message in reported if "Unclosed" in message]


async def test_a_fingerprint_with_a_newline_cannot_forge_log_lines(
    sim_server: SimServer, start: StartReloadable, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start(document_for(sim_server, remediation=REMEDIATION | {"dry_run": True}))
    container = sim_server.container_ids()[0]
    (listener,) = await errored(sim_server, running, container, 1)
    forged = "fp\n2026-12-01 00:00:00,000 ERROR exporter: \u202eforged"
    caplog.set_level(logging.INFO, logger="exporter.remediation")
    _, _, answer = await post(
        running, payload(alert(container, listener, forged), alert("nope", listener, forged))
    )
    assert [a["outcome"] for a in answer["alerts"]] == ["queued", "rejected"]
    await until(lambda: any("dry_run" in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records if r.name == "exporter.remediation"]
    assert sum("fp\\n2026" in line for line in lines) >= 3  # queued, rejected, dry_run
    assert not any("\n" in line or "\u202e" in line for line in lines)


async def test_the_bearer_scheme_is_accepted_in_any_case(
    sim_server: SimServer, start: StartReloadable
) -> None:
    running = await start(document_for(sim_server, remediation=REMEDIATION))
    for scheme in ("bearer", "BEARER", "Bearer"):
        status, _, answer = await post(
            running, payload(), headers={"Authorization": f"{scheme} {TOKEN}"}
        )
        assert (status, answer) == (200, {"alerts": []})
    status, _, _ = await post(running, payload(), headers={"Authorization": f"bearer {TOKEN}x"})
    assert status == 401
