"""Target 6: the Alertmanager webhook's answer time, and how soon the restart call leaves.

Phase A (restart delay): the real `Exporter` with remediation enabled (not dry run) against the
simulator in this process (10 containers x 10 listeners, rate limit 10/s, result delay 1 s,
exporter budget 10/s). After the first poll, one webhook with 1 alert, then one with 50 alerts,
each naming an errored listener. For every alert: the time from the webhook answer (received
by the client) to the simulator receiving changeListenerStatus (the simulator's change_log has
the wall-clock `time`). The bench wraps, on the client instance, `limiter.acquire` (time spent
waiting for the rate limiter) and `_sleep` (the check-before-act waiting for its ListenerStatus
result), per remediation task, to split that delay into rate-limiter wait, result wait and the
rest (the exporter's own overhead plus HTTP round trips).

Phase B (answer time): 100 containers x 10 listeners, simulator 1000/s, budget 100/s; `rounds`
webhook posts of `alerts` alerts each, naming listeners that are listening (so each queued
action ends `skipped_not_needed` after its check); between rounds the bench waits for the
actions to finish, so every round takes the same path. Latency is measured at the client
(send to body read, same process and event loop as the server) and inside `Remediator.submit`.

Phase C (restart under load): 200 containers x 10 listeners, simulator 10/s, budget 10/s; one
alert as soon as the first container has been polled, while the rest of the first cycle (about
400 requests, 40 s of budget) waits in the rate limiter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bench.common import account_config, print_table, summary, verdict
from exporter.config import Config
from exporter.daemon import Exporter
from exporter.remediation import WebhookPayload
from exporter.simulator import Simulator, serve

ACCOUNT = "bench-account"
TOKEN = "bench-webhook-token"
ANSWER_TARGET_MS = 10.0
LEAVE_TARGET_MS = 100.0


def _config(sim: Simulator, base_url: str, budget: float) -> Config:
    return Config.model_validate(
        {
            "accounts": [account_config(sim.accounts[ACCOUNT], base_url, budget)],
            "poll": {
                "interval_seconds": 60,
                "result_timeout_seconds": 60,
                "request_timeout_seconds": 10,
            },
            "remediation": {
                "enabled": True,
                "dry_run": False,
                "auth": {"bearer_token": TOKEN},
                "cooldown_seconds": 900,
                "max_actions_per_hour": 10000,
                "verify_timeout_seconds": 60,
            },
        }
    )


def _payload(alerts: list[tuple[str, str]]) -> bytes:
    document = {
        "version": "4",
        "status": "firing",
        "receiver": "boomi-remediation",
        "groupKey": '{}:{alertname="BoomiListenerErrored"}',
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": "BoomiListenerErrored"},
        "commonLabels": {"alertname": "BoomiListenerErrored", "account_id": ACCOUNT},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "BoomiListenerErrored",
                    "account_id": ACCOUNT,
                    "container_id": container_id,
                    "listener_id": listener_id,
                    "severity": "warning",
                },
                "annotations": {"summary": f"listener {listener_id} is errored"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph",
                "fingerprint": f"{index:016x}",
            }
            for index, (container_id, listener_id) in enumerate(alerts)
        ],
    }
    WebhookPayload.model_validate(document)  # the bench's own payload must be valid
    return json.dumps(document).encode()


async def _start(sim: Simulator, budget: float) -> tuple[Exporter, Any, str]:
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    exporter = Exporter(_config(sim, base_url, budget))
    port = await exporter.start("127.0.0.1", 0)
    deadline = time.monotonic() + 120
    while not (exporter.store.containers() and exporter.store.ready()):
        if time.monotonic() > deadline:
            raise RuntimeError("the exporter did not finish its first poll in 120 s")
        await asyncio.sleep(0.05)
    return exporter, runner, f"http://127.0.0.1:{port}/webhook/alertmanager"


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, float]:
    """POST the payload; (latency in ms, wall-clock time the answer was read)."""
    started = time.perf_counter()
    async with session.post(
        url,
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    ) as response:
        answer = await response.json()
        assert response.status == 200, answer
    return (time.perf_counter() - started) * 1e3, time.time()


def _instrument(exporter: Exporter) -> dict[str, dict[str, float]]:
    """Per remediation task: seconds waiting for the rate limiter and in the client's sleeps."""
    per_task: dict[str, dict[str, float]] = {}
    client = exporter.clients[ACCOUNT]

    def task_name() -> str:
        task = asyncio.current_task()
        return task.get_name() if task is not None else ""

    def account(kind: str, seconds: float) -> None:
        name = task_name()
        if name.startswith("remediate "):
            entry = per_task.setdefault(name.removeprefix("remediate "), {})
            entry[kind] = entry.get(kind, 0.0) + seconds

    acquire: Callable[..., Awaitable[float]] = client.limiter.acquire
    sleep: Callable[[float], Awaitable[None]] = client._sleep

    async def timed_acquire(*args: Any, **kwargs: Any) -> float:
        started = time.perf_counter()
        stamp = await acquire(*args, **kwargs)
        account("limiter", time.perf_counter() - started)
        return stamp

    async def timed_sleep(seconds: float) -> None:
        started = time.perf_counter()
        await sleep(seconds)
        account("sleep", time.perf_counter() - started)

    client.limiter.acquire = timed_acquire  # type: ignore[method-assign]
    client._sleep = timed_sleep
    return per_task


async def restart_delays(count: int, offset: int) -> dict[str, Any]:
    """Phase A for one webhook with `count` alerts (a fresh exporter and simulator)."""
    sim = Simulator.with_fleet(
        account_id=ACCOUNT,
        containers=10,
        listeners_per_container=10,
        rate_limit_rps=10,
        result_delay_seconds=1.0,
        restart_delay_seconds=2.0,
        seed=3 + offset,
    )
    listeners = list(sim.accounts[ACCOUNT].listeners.values())
    chosen = listeners[:count]
    for listener in listeners:
        sim.set_status(ACCOUNT, listener.listener_id, "listening")
    for listener in chosen:
        sim.set_status(ACCOUNT, listener.listener_id, "errored")
    exporter, runner, url = await _start(sim, 10)
    per_task = _instrument(exporter)
    learnt_delay = exporter.clients[ACCOUNT].expected_result_delay
    sim.reset_counters()
    try:
        async with aiohttp.ClientSession() as session:
            body = _payload([(lst.container_id, lst.listener_id) for lst in chosen])
            latency_ms, answered_at = await _post(session, url, body)
            deadline = time.monotonic() + 120
            while len(sim.change_log) < count and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await exporter.stop()
        await runner.cleanup()
    changed = {str(entry["listener_id"]): float(str(entry["time"])) for entry in sim.change_log}
    rows = []
    for listener in chosen:
        if listener.listener_id not in changed:
            continue
        total = changed[listener.listener_id] - answered_at
        spent = per_task.get(listener.listener_id, {})
        limiter, slept = spent.get("limiter", 0.0), spent.get("sleep", 0.0)
        rows.append(
            {
                "total_ms": total * 1e3,
                "limiter_wait_ms": limiter * 1e3,
                "result_wait_ms": slept * 1e3,
                "beyond_limiter_ms": (total - limiter) * 1e3,
                "rest_ms": (total - limiter - slept) * 1e3,
            }
        )
    return {
        "alerts": count,
        "answer_ms": latency_ms,
        "restarts_seen": len(rows),
        "throttled_503": sim.throttled,
        "learnt_result_delay_at_webhook": learnt_delay,
        "per_alert": rows,
        **{
            key: summary([row[key] for row in rows])
            for key in (
                "total_ms",
                "limiter_wait_ms",
                "result_wait_ms",
                "beyond_limiter_ms",
                "rest_ms",
            )
        },
    }


async def restart_during_cycle(containers: int) -> dict[str, Any]:
    """Phase C: one alert while the first poll cycle of a big fleet fills the rate limiter."""
    sim = Simulator.with_fleet(
        account_id=ACCOUNT,
        containers=containers,
        listeners_per_container=10,
        rate_limit_rps=10,
        result_delay_seconds=1.0,
        restart_delay_seconds=2.0,
        seed=9,
    )
    account = sim.accounts[ACCOUNT]
    first_of: dict[str, str] = {}
    for listener in account.listeners.values():
        sim.set_status(ACCOUNT, listener.listener_id, "listening")
        first_of.setdefault(listener.container_id, listener.listener_id)
    for listener_id in first_of.values():
        sim.set_status(ACCOUNT, listener_id, "errored")
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    exporter = Exporter(_config(sim, base_url, 10))
    port = await exporter.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/webhook/alertmanager"
    per_task = _instrument(exporter)
    started = time.monotonic()
    try:
        polled = None
        while polled is None and time.monotonic() - started < 120:
            polled = next((s for s in exporter.store.containers() if s.up), None)
            await asyncio.sleep(0.01)
        assert polled is not None, "no container was polled in 120 s"
        listener_id = first_of[polled.container_id]
        posted_after = time.monotonic() - started
        async with aiohttp.ClientSession() as session:
            _, answered_at = await _post(
                session, url, _payload([(polled.container_id, listener_id)])
            )
        deadline = time.monotonic() + 180
        while not sim.change_log and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        cycle_done = all(s.polled for s in exporter.store.containers())
    finally:
        await exporter.stop()
        await runner.cleanup()
    entry = sim.change_log[0] if sim.change_log else None
    total = float(str(entry["time"])) - answered_at if entry else float("nan")
    spent = per_task.get(listener_id, {})
    limiter, slept = spent.get("limiter", 0.0), spent.get("sleep", 0.0)
    return {
        "containers": containers,
        "posted_after_start_seconds": posted_after,
        "cycle_finished_before_restart": cycle_done,
        "total_ms": total * 1e3,
        "limiter_wait_ms": limiter * 1e3,
        "result_wait_ms": slept * 1e3,
        "beyond_limiter_ms": (total - limiter) * 1e3,
        "rest_ms": (total - limiter - slept) * 1e3,
    }


async def answer_times(rounds: int, alerts: int) -> dict[str, Any]:
    """Phase B: webhook answer time with `alerts` alerts per payload, `rounds` times."""
    sim = Simulator.with_fleet(
        account_id=ACCOUNT,
        containers=100,
        listeners_per_container=10,
        rate_limit_rps=1000,
        result_delay_seconds=0.05,
        restart_delay_seconds=2.0,
        seed=5,
    )
    listeners = list(sim.accounts[ACCOUNT].listeners.values())
    for listener in listeners:
        sim.set_status(ACCOUNT, listener.listener_id, "listening")
    exporter, runner, url = await _start(sim, 100)
    remediator = exporter.remediator
    assert remediator is not None
    submit_ms: list[float] = []
    original_submit = remediator.submit

    def timed_submit(payload: WebhookPayload) -> list[dict[str, str]]:
        started = time.perf_counter()
        try:
            return original_submit(payload)
        finally:
            submit_ms.append((time.perf_counter() - started) * 1e3)

    remediator.submit = timed_submit  # type: ignore[method-assign]
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for index in range(rounds + 1):  # round 0 warms up
                start = (index * alerts) % len(listeners)
                chosen = (listeners + listeners)[start : start + alerts]
                body = _payload([(lst.container_id, lst.listener_id) for lst in chosen])
                latency_ms, _ = await _post(session, url, body)
                if index:
                    latencies.append(latency_ms)
                deadline = time.monotonic() + 30
                while remediator.guards.active and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
    finally:
        await exporter.stop()
        await runner.cleanup()
    return {
        "rounds": rounds,
        "alerts_per_payload": alerts,
        "client_latency_ms": summary(latencies),
        "submit_ms": summary(submit_ms[1:]),
        "warmup_ms": submit_ms[0] if submit_ms else None,
    }


async def run(*, rounds: int, alerts: int) -> dict[str, Any]:
    logging.getLogger("exporter").setLevel(logging.ERROR)
    answers = await answer_times(rounds, alerts)
    print(
        f"  answer time over {rounds} posts: median {answers['client_latency_ms']['median']:.2f}"
        " ms",
        flush=True,
    )
    single = await restart_delays(1, 0)
    print(f"  1 alert: {single['total_ms']['median']:.0f} ms to changeListenerStatus", flush=True)
    burst = await restart_delays(alerts, 1)
    print(
        f"  {alerts} alerts: median {burst['total_ms']['median']:.0f} ms to changeListenerStatus",
        flush=True,
    )
    busy = await restart_during_cycle(200)
    print(f"  1 alert during a 200-container cycle: {busy['total_ms']:.0f} ms", flush=True)
    client = answers["client_latency_ms"]
    rows: list[list[object]] = [
        [
            f"webhook answer, {alerts} alerts (client-side, {rounds} posts)",
            f"{client['median']:.2f}",
            f"{client['p99']:.2f}",
            f"median {verdict(client['median'], ANSWER_TARGET_MS)}",
        ],
        [
            "  of which Remediator.submit",
            f"{answers['submit_ms']['median']:.2f}",
            f"{answers['submit_ms']['p99']:.2f}",
            "",
        ],
    ]
    for label, phase in (("1 alert", single), (f"{alerts} alerts", burst)):
        for key, what in (
            ("total_ms", "answer -> changeListenerStatus at simulator"),
            ("limiter_wait_ms", "  rate-limiter wait"),
            ("result_wait_ms", "  check-before-act: waiting for the status result"),
            ("beyond_limiter_ms", "  total minus limiter wait"),
            ("rest_ms", "  total minus limiter and result wait"),
        ):
            stats = phase[key]
            target = ""
            if key in ("beyond_limiter_ms", "rest_ms"):
                target = f"max {verdict(stats['max'], LEAVE_TARGET_MS)}"
            rows.append(
                [f"{label}: {what}", f"{stats['median']:.0f}", f"{stats['max']:.0f}", target]
            )
    for key, what in (
        ("total_ms", "answer -> changeListenerStatus at simulator"),
        ("limiter_wait_ms", "  rate-limiter wait"),
        ("result_wait_ms", "  check-before-act: waiting for the status result"),
        ("rest_ms", "  total minus limiter and result wait"),
    ):
        rows.append(
            [f"1 alert during a 200-container poll cycle: {what}", f"{busy[key]:.0f}", "", ""]
        )
    table = print_table(
        "Remediation",
        ["measure", "median ms", "p99/max ms", "target"],
        rows,
    )
    return {
        "parameters": {"rounds": rounds, "alerts": alerts},
        "answer_times": answers,
        "restart_single": single,
        "restart_burst": burst,
        "restart_during_cycle": busy,
        "table": table,
    }
