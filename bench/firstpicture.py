"""Issue 18, targets 1 and 5: from start to the first complete picture, per account.

Each account is served by its own simulator, in a child process of its own (`python -m exporter
simulate`, so that Boomi's side shares neither the exporter's event loop nor its garbage
collector), over loopback: n containers x 10 listeners, a rate limit of R requests per second,
a result delay of 1 s. The real `Exporter` polls all of them: one account entry per simulator
(so one client and one rate limiter each), `max_requests_per_second: R`, and a long poll
interval (600 s), so that only the first cycle is seen. Measured from `Exporter.start`:
- per account, until every one of its containers has had a successful poll (the store's
  `record_success`, wrapped on the instance): the first complete picture. Failed polls are
  counted beside it;
- until `GET /-/ready` answers 200 over HTTP (asked every 0.1 s): every container has finished
  its first poll, successfully or not.
The floor of an account is ceil(2n/R) seconds: two requests per container (query and result)
at R per second, the least any poller can spend. Beside it: the requests per container that
reached each simulator, and its 503 answers. A run stops by itself: after 3x its floor, 10% of
the interval and 30 s, it is reported as not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import aiohttp

from bench.common import SimulatorProcess, print_table, simulator_process, summary
from exporter.config import Config
from exporter.daemon import Exporter

LISTENERS_PER_CONTAINER = 10
RESULT_DELAY_SECONDS = 1.0
TOLERANCE = 1.1  # target 1: at most 1.1 x the floor


def parse_fleet(text: str) -> tuple[int, int]:
    """'5x200' -> (5 accounts, 200 containers each)."""
    accounts, _, containers = text.partition("x")
    return int(accounts), int(containers)


async def _state(session: aiohttp.ClientSession, sim: SimulatorProcess) -> dict[str, Any]:
    async with session.get(f"{sim.control_url}/state") as response:
        state: dict[str, Any] = await response.json()
        return state


def _account(
    account_id: str, number: int, sim: SimulatorProcess, state: dict[str, Any], rps: float
) -> dict[str, Any]:
    containers = state["accounts"][account_id]["containers"]
    return {
        "account_id": account_id,
        "base_url": sim.base_url,
        "username": f"bench{number}@example.com",
        "password": f"bench-password-{number}",
        "max_requests_per_second": rps,
        "containers": [{"id": c["container_id"], "name": c["name"]} for c in containers],
    }


async def first_picture(
    *, accounts: int, containers: int, rps: float, interval: float, seed: int
) -> dict[str, Any]:
    """One run: start an exporter on fresh simulators and time its first complete picture."""
    ids = [f"bench-account-{number + 1}" for number in range(accounts)]
    floor = math.ceil(2 * containers / rps)
    limit = 3 * floor + 0.1 * interval + 30  # time enough for a start jitter of 10% too
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as session:
        sims = [
            await stack.enter_async_context(
                simulator_process(
                    containers=containers,
                    listeners_per_container=LISTENERS_PER_CONTAINER,
                    rate_limit_rps=rps,
                    result_delay_seconds=RESULT_DELAY_SECONDS,
                    seed=seed + number,
                    account_id=account_id,
                    username=f"bench{number + 1}@example.com",
                    password=f"bench-password-{number + 1}",
                )
            )
            for number, account_id in enumerate(ids)
        ]
        entries = [
            _account(account_id, number + 1, sim, await _state(session, sim), rps)
            for number, (account_id, sim) in enumerate(zip(ids, sims, strict=True))
        ]
        config = Config.model_validate(
            {
                "accounts": entries,
                "poll": {
                    "interval_seconds": interval,
                    "result_timeout_seconds": 120,
                    "request_timeout_seconds": 30,
                },
            }
        )
        exporter = Exporter(config)
        store = exporter.store
        succeeded: dict[tuple[str, str], float] = {}
        failures: dict[str, int] = dict.fromkeys(ids, 0)
        record_success, record_failure = store.record_success, store.record_failure

        def success(account_id: str, container_id: str, *args: Any, **kwargs: Any) -> None:
            record_success(account_id, container_id, *args, **kwargs)
            succeeded.setdefault((account_id, container_id), time.monotonic())

        def failure(account_id: str, container_id: str, *args: Any, **kwargs: Any) -> None:
            record_failure(account_id, container_id, *args, **kwargs)
            failures[account_id] += 1

        store.record_success = success  # type: ignore[method-assign]
        store.record_failure = failure  # type: ignore[method-assign]
        total = accounts * containers
        ready_at: float | None = None
        started = time.monotonic()
        port = await exporter.start("127.0.0.1", 0)
        try:
            while time.monotonic() - started < limit and (
                ready_at is None or len(succeeded) < total
            ):
                if ready_at is None:
                    async with session.get(f"http://127.0.0.1:{port}/-/ready") as response:
                        await response.read()
                        if response.status == 200:
                            ready_at = time.monotonic()
                await asyncio.sleep(0.1)
        finally:
            await exporter.stop()
        states = [await _state(session, sim) for sim in sims]
    per_account = []
    for account_id, state in zip(ids, states, strict=True):
        done = [t for (a, _), t in succeeded.items() if a == account_id]
        counts: dict[str, int] = state["request_counts"]
        status = sum(n for key, n in counts.items() if " listener_status_" in key)
        seconds = max(done) - started if len(done) == containers else None
        per_account.append(
            {
                "account_id": account_id,
                "containers": containers,
                "floor_seconds": floor,
                "seconds": seconds,
                "ratio": seconds / floor if seconds is not None else None,
                "failed_polls": failures[account_id],
                "requests_per_container": sum(counts.values()) / containers,
                "status_requests_per_container": status / containers,
                "throttled_503": state["throttled"],
                "first_success_seconds": summary([t - started for t in done]),
                "request_counts": counts,
            }
        )
    ends: list[float | None] = [a["seconds"] for a in per_account]
    complete = all(end is not None for end in ends)
    picture = max(end for end in ends if end is not None) if complete else None
    return {
        "accounts": accounts,
        "containers_per_account": containers,
        "containers": total,
        "floor_seconds": floor,
        "complete": complete,
        "first_picture_seconds": picture,
        "ratio": picture / floor if picture is not None else None,
        "ready_seconds": ready_at - started if ready_at is not None else None,
        "failed_polls": sum(failures.values()),
        "per_account": per_account,
    }


def _ratio(value: float | None) -> str:
    if value is None:
        return "incomplete"
    return f"{value:.3f} ({'met' if value <= TOLERANCE else 'MISSED'})"


async def run(
    *, fleets: list[str], rps: float, interval: float, repeat: int, seed: int
) -> dict[str, Any]:
    """Each fleet ('AxN': A accounts of N containers) `repeat` times, one after the other."""
    logging.getLogger("exporter").setLevel(logging.WARNING)
    results: list[dict[str, Any]] = []
    rows: list[list[object]] = []
    for fleet in fleets:
        accounts, containers = parse_fleet(fleet)
        runs = []
        for index in range(repeat):
            outcome = await first_picture(
                accounts=accounts, containers=containers, rps=rps, interval=interval, seed=seed
            )
            runs.append(outcome)
            ratios = ", ".join(_ratio(a["ratio"]) for a in outcome["per_account"])
            print(
                f"  {fleet} run {index + 1}/{repeat}: complete after"
                f" {outcome['first_picture_seconds'] or math.nan:.1f} s, /-/ready after"
                f" {outcome['ready_seconds'] or math.nan:.1f} s (floor"
                f" {outcome['floor_seconds']} s); per-account ratios {ratios};"
                f" failed polls {outcome['failed_polls']};"
                f" 503s {sum(a['throttled_503'] for a in outcome['per_account'])}",
                flush=True,
            )
        results.append({"fleet": fleet, "runs": runs})
        for number, outcome in enumerate(runs, 1):
            for account in outcome["per_account"]:
                rows.append(
                    [
                        fleet,
                        number,
                        account["account_id"],
                        account["containers"],
                        account["floor_seconds"],
                        account["seconds"] if account["seconds"] is not None else "-",
                        _ratio(account["ratio"]),
                        account["failed_polls"],
                        f"{account['status_requests_per_container']:.2f}",
                        f"{account['requests_per_container']:.2f}",
                        account["throttled_503"],
                    ]
                )
            if outcome["accounts"] > 1:
                rows.append(
                    [
                        fleet,
                        number,
                        "all accounts",
                        outcome["containers"],
                        outcome["floor_seconds"],
                        outcome["first_picture_seconds"] or "-",
                        _ratio(outcome["ratio"]),
                        outcome["failed_polls"],
                        "",
                        "",
                        sum(a["throttled_503"] for a in outcome["per_account"]),
                    ]
                )
    table = print_table(
        f"Start to the first complete picture: R={rps:g}/s per account, interval {interval:g} s,"
        f" result delay {RESULT_DELAY_SECONDS:g} s",
        [
            "fleet",
            "run",
            "account",
            "containers",
            "floor s = ceil(2n/R)",
            "first complete picture s",
            "ratio (vs 1.1)",
            "failed polls",
            "status req/container",
            "all req/container",
            "503s",
        ],
        rows,
    )
    return {
        "parameters": {
            "fleets": fleets,
            "max_requests_per_second": rps,
            "simulator_rate_limit_rps": rps,
            "simulator": "one child process per account (python -m exporter simulate)",
            "poll_interval_seconds": interval,
            "result_delay_seconds": RESULT_DELAY_SECONDS,
            "listeners_per_container": LISTENERS_PER_CONTAINER,
            "repeat": repeat,
            "seed": seed,
        },
        "results": results,
        "table": table,
    }
