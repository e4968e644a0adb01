"""Hypothesis against the live webhook: arbitrary JSON and label sets never get a 5xx, and
changeListenerStatus is only ever called for alerts the guards queued."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config
from exporter.daemon import Exporter
from exporter.simulator import Simulator, serve

ACCOUNT = "fuzz-account"
TOKEN = "fuzz-token"
OUTCOMES = {
    "queued", "rejected", "skipped_duplicate", "skipped_cooldown", "skipped_budget",
    "ignored_resolved",
}  # fmt: skip


@dataclass
class Stack:
    url: str
    sim: Simulator
    containers: list[str]
    listeners: dict[str, str]  # listener id -> container id
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Simulator and exporter on a private event loop in a thread, shared by every example."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = Simulator.with_fleet(
        account_id=ACCOUNT, containers=2, listeners_per_container=3, seed=3,
        result_delay_seconds=0.02, restart_delay_seconds=0.05, rate_limit_rps=200,
    )  # fmt: skip
    account = sim.accounts[ACCOUNT]
    for index, listener_id in enumerate(account.listeners):
        account.listeners[listener_id].status = "errored" if index % 2 == 0 else "listening"

    async def start() -> tuple[Any, Exporter, int]:
        runner, base_url = await serve(sim)
        config = Config.model_validate(
            {
                "accounts": [
                    {
                        "account_id": ACCOUNT,
                        "base_url": base_url,
                        "username": account.username,
                        "password": account.password,
                        "max_requests_per_second": 100,
                        "containers": [{"id": c} for c in account.containers],
                    }
                ],
                "poll": {"interval_seconds": 0.3, "result_timeout_seconds": 2},
                "storage": {"path": str(tmp_path_factory.mktemp("ledger"))},
                "remediation": {
                    "enabled": True,
                    "dry_run": False,
                    "auth": {"bearer_token": TOKEN},
                    "cooldown_seconds": 0,
                    "max_actions_per_hour": 100000,
                    "verify_timeout_seconds": 0.5,
                    "max_body_bytes": 65536,
                },
            }
        )
        exporter = Exporter(config)
        port = await exporter.start("127.0.0.1", 0)
        while not exporter.store.ready():  # noqa: ASYNC110 - the store has no event to wait on
            await asyncio.sleep(0.02)
        return runner, exporter, port

    runner, exporter, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield Stack(
        f"http://127.0.0.1:{port}/webhook/alertmanager",
        sim,
        list(account.containers),
        {lid: listener.container_id for lid, listener in account.listeners.items()},
        loop,
    )

    async def stop() -> None:
        await exporter.stop()
        await runner.cleanup()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def post(url: str, body: bytes, token: str | None = TOKEN) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def alerts_for(stack: Stack) -> st.SearchStrategy[dict[str, Any]]:
    ids = st.sampled_from([ACCOUNT, *stack.containers, *stack.listeners])
    label_value = ids | st.text(max_size=30)
    label_names = st.sampled_from(
        ["account_id", "container_id", "listener_id", "boomi_action", "alertname"]
    ) | st.text(max_size=10)
    actions = st.sampled_from(["restart", "pause", "resume", "restart_all"]) | st.text(max_size=8)
    # Mostly well-aimed label sets (a real listener, on its container or another), so the
    # guards' later stages are exercised, plus arbitrary ones.
    aimed = st.builds(
        lambda pair, container, action, extra: {
            "container_id": container or pair[1],
            "listener_id": pair[0],
            **extra,
            **({"boomi_action": action} if action else {}),
        },
        st.sampled_from(sorted(stack.listeners.items())),
        st.none() | st.sampled_from(stack.containers),
        st.none() | actions,
        st.dictionaries(st.sampled_from(["account_id", "alertname"]), label_value, max_size=2),
    )
    labels = aimed | st.dictionaries(label_names, label_value, max_size=6)
    return st.fixed_dictionaries(
        {
            "status": st.sampled_from(["firing", "resolved"]),
            "labels": labels,
            "fingerprint": st.text(max_size=16),
        },
        optional={"annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5))},
    )


def bodies(stack: Stack) -> st.SearchStrategy[bytes]:
    payloads = st.builds(
        lambda alerts, status: {"version": "4", "status": status, "alerts": alerts},
        st.lists(alerts_for(stack), max_size=5),
        st.sampled_from(["firing", "resolved"]),
    )
    documents = (
        payloads
        | json_values
        | st.dictionaries(
            st.sampled_from(["version", "status", "alerts", "groupKey", "truncatedAlerts"]),
            json_values,
        )
    )
    return documents.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=200)


def test_webhook_under_arbitrary_input(stack: Stack) -> None:
    queued: set[tuple[str, str]] = set()
    seen: dict[str, int] = {}

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,  # the same examples in every CI run; the assertions below need some
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies(stack), token=st.sampled_from([TOKEN, TOKEN, TOKEN, "wrong", None]))
    def one_delivery(body: bytes, token: str | None) -> None:
        status, answer = post(stack.url, body, token)
        assert status < 500
        if token != TOKEN:
            assert status == 401
            return
        assert status in (200, 400), (status, answer)
        if status != 200:
            return
        document = json.loads(body)
        results = json.loads(answer)["alerts"]
        assert len(results) == len(document["alerts"])
        for alert, result in zip(document["alerts"], results, strict=True):
            assert result["outcome"] in OUTCOMES
            seen[result["outcome"]] = seen.get(result["outcome"], 0) + 1
            if result["outcome"] != "queued":
                continue
            labels = alert["labels"]
            # Queued only what the allow-list admits: a known listener on its own container
            # of the configured account, firing, with the allowed action.
            assert alert["status"] == "firing"
            assert labels.get("account_id", ACCOUNT) == ACCOUNT
            assert stack.listeners.get(labels["listener_id"]) == labels["container_id"]
            assert labels.get("boomi_action", "restart") == "restart"
            queued.add((labels["container_id"], labels["listener_id"]))

    one_delivery()
    # Let queued actions finish, then compare what really reached Boomi.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not asyncio.run_coroutine_threadsafe(_active(stack), stack.loop).result(5):
            break
        time.sleep(0.1)
    calls = {(entry["container_id"], entry["listener_id"]) for entry in stack.sim.change_log}
    # Not vacuous: some alerts got through the allow-list and led to real restarts.
    assert seen.get("queued", 0) > 0 and stack.sim.change_log, seen
    assert calls <= queued
    assert {entry["action"] for entry in stack.sim.change_log} <= {"restart"}


async def _active(stack: Stack) -> int:
    return len([t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("remediate ")])
