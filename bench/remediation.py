"""Target 6: the Alertmanager webhook's answer time, and how soon the restart call leaves.

`python -m bench.run remediation`. Phases B (the webhook's answer time with the ledger, on disk
and on tmpfs) and D (the event loop's lag during storms of posts) are in bench/webhook.py;
this module runs them and these:

Phase A (restart delay): the real `Exporter` with remediation enabled (not dry run) against the
simulator in this process (10 containers x 10 listeners, rate limit 10/s, result delay 1 s,
exporter budget 10/s). After the first poll, one webhook with 1 alert, then one with 50 alerts,
each naming an errored listener. For every alert: the time from the webhook answer (received
by the client) to the simulator receiving changeListenerStatus (the simulator's change_log has
the wall-clock `time`). The bench wraps, on the client instance, `limiter.acquire` (time spent
waiting for the rate limiter) and `_sleep` (the check-before-act waiting for its ListenerStatus
result), per remediation task, to split that delay into rate-limiter wait, result wait and the
rest (the exporter's own overhead plus HTTP round trips).

Phase C (restart under load): 200 containers x 10 listeners, simulator 10/s, budget 10/s; one
alert as soon as the first container has been polled, while the rest of the first cycle (about
400 requests, 40 s of budget) waits in the rate limiter.

Every exporter keeps its ledger in a temporary directory of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import print_table, summary, verdict
from bench.webhook import (
    ACCOUNT,
    TMPFS,
    exporter_config,
    ledger_phase,
    ledger_tables,
    payload,
    post,
    start,
    storage_dir,
)
from exporter.daemon import Exporter
from exporter.simulator import Simulator, serve

LEAVE_TARGET_MS = 100.0


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


async def restart_delays(count: int, offset: int, storage: Path) -> dict[str, Any]:
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
    exporter, runner, url = await start(sim, 10, storage)
    per_task = _instrument(exporter)
    learnt_delay = exporter.clients[ACCOUNT].expected_result_delay
    sim.reset_counters()
    try:
        async with aiohttp.ClientSession() as session:
            body = payload([(lst.container_id, lst.listener_id) for lst in chosen])
            latency_ms, answered_at = await post(session, url, body)
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


async def restart_during_cycle(containers: int, storage: Path) -> dict[str, Any]:
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
    exporter = Exporter(exporter_config(sim, base_url, 10, storage))
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
            _, answered_at = await post(session, url, payload([(polled.container_id, listener_id)]))
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


async def run(
    *,
    rounds: int,
    alerts: int,
    storm_size: int = 200,
    repeat: int = 3,
    directory: str | None = None,
) -> dict[str, Any]:
    logging.getLogger("exporter").setLevel(logging.ERROR)
    phases: dict[str, dict[str, Any]] = {}
    kinds: list[tuple[str, str | Path | None]] = [("disk", directory)]
    if await asyncio.to_thread(TMPFS.is_dir):
        kinds.append(("tmpfs", TMPFS))
    for kind, where in kinds:
        with storage_dir(where) as storage:
            phases[kind] = await ledger_phase(storage, rounds, alerts, storm_size, repeat)
        answers = phases[kind]["answer_times"][str(alerts)]["client_latency_ms"]
        print(f"  ledger on {kind}: {alerts} alerts, median {answers['median']:.2f} ms", flush=True)
    with storage_dir(directory) as storage:
        single = await restart_delays(1, 0, storage / "single")
        print(
            f"  1 alert: {single['total_ms']['median']:.0f} ms to changeListenerStatus", flush=True
        )
        burst = await restart_delays(alerts, 1, storage / "burst")
        print(
            f"  {alerts} alerts: median {burst['total_ms']['median']:.0f} ms to"
            " changeListenerStatus",
            flush=True,
        )
        busy = await restart_during_cycle(200, storage / "busy")
        print(f"  1 alert during a 200-container cycle: {busy['total_ms']:.0f} ms", flush=True)
    rows: list[list[object]] = []
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
    table = ledger_tables(phases, rounds, storm_size, repeat)
    table += print_table(
        "Remediation: from the answer to the call",
        ["measure", "median ms", "p99/max ms", "target"],
        rows,
    )
    return {
        "parameters": {"rounds": rounds, "alerts": alerts, "storm": storm_size, "repeat": repeat},
        "ledger": phases,
        "restart_single": single,
        "restart_burst": burst,
        "restart_during_cycle": busy,
        "table": table,
    }
