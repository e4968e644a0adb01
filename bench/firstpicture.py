"""Issue 18, targets 1 and 5: from start to the first complete picture, per account.

The simulator runs in this process, over loopback, with A accounts of n containers x 10
listeners, each account with its own rate limit of R requests per second and a result delay of
1 s. The real `Exporter` polls all of them: one account entry per simulator account (so one
client and one rate limiter each), `max_requests_per_second: R`, and a long poll interval
(600 s), so that only the first cycle is seen. Measured from `Exporter.start`:
- per account, until every one of its containers has finished its first poll (the store's
  `record_success` / `record_failure`, wrapped on the instance);
- until `GET /-/ready` answers 200 over HTTP (asked every 0.1 s), which is when the first
  complete /metrics is there.
The floor of an account is ceil(2n/R) seconds: two requests per container (query and result)
at R per second, the least any poller can spend. Beside it: the requests per container that
reached the simulator, its 503 answers, and when the account's first and last queries arrived.
A run stops by itself: after 3x its floor, 10% of the interval and 30 s, it is reported as not
complete.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import aiohttp

from bench.common import account_config, print_table, summary
from exporter.config import Config
from exporter.daemon import Exporter
from exporter.simulator import SimAccount, Simulator, serve

LISTENERS_PER_CONTAINER = 10
RESULT_DELAY_SECONDS = 1.0
TOLERANCE = 1.1  # target 1: at most 1.1 x the floor
QUIET_SECONDS = 2.0  # the simulator's rate window is 1 s


def parse_fleet(text: str) -> tuple[int, int]:
    """'5x200' -> (5 accounts, 200 containers each)."""
    accounts, _, containers = text.partition("x")
    return int(accounts), int(containers)


def _config(base_url: str, accounts: list[SimAccount], rps: float, interval: float) -> Config:
    return Config.model_validate(
        {
            "accounts": [account_config(account, base_url, rps) for account in accounts],
            "poll": {
                "interval_seconds": interval,
                "result_timeout_seconds": 120,
                "request_timeout_seconds": 30,
            },
        }
    )


async def first_picture(
    *, accounts: int, containers: int, rps: float, interval: float, seed: int
) -> dict[str, Any]:
    """One run: start an exporter on a fresh simulator and time its first complete picture."""
    sim = Simulator(seed=seed, result_delay_seconds=RESULT_DELAY_SECONDS)
    ids = [f"bench-account-{number + 1}" for number in range(accounts)]
    for number, account_id in enumerate(ids):
        sim.add_account(
            account_id,
            username=f"bench{number + 1}@example.com",
            password=f"bench-password-{number + 1}",
            rate_limit_rps=rps,
        )
        sim.add_fleet(
            account_id, containers=containers, listeners_per_container=LISTENERS_PER_CONTAINER
        )
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    floor = math.ceil(2 * containers / rps)
    limit = 3 * floor + 0.1 * interval + 30  # time enough for a start jitter of 10% too
    arrivals: dict[str, list[float]] = {account_id: [] for account_id in ids}
    rejected: dict[str, int] = dict.fromkeys(ids, 0)
    admit = sim._admit

    def counted_admit(account: SimAccount) -> bool:
        arrivals[account.account_id].append(time.monotonic())
        admitted = admit(account)
        rejected[account.account_id] += not admitted
        return admitted

    sim._admit = counted_admit  # type: ignore[method-assign]
    exporter = Exporter(_config(base_url, [sim.accounts[a] for a in ids], rps, interval))
    store = exporter.store
    finished: dict[tuple[str, str], float] = {}
    failed = [0]

    def recording(method: Any, failure: bool) -> Any:
        def wrapper(account_id: str, container_id: str, *args: Any, **kwargs: Any) -> None:
            method(account_id, container_id, *args, **kwargs)
            finished.setdefault((account_id, container_id), time.monotonic())
            failed[0] += failure

        return wrapper

    store.record_success = recording(store.record_success, False)  # type: ignore[method-assign]
    store.record_failure = recording(store.record_failure, True)  # type: ignore[method-assign]
    total = accounts * containers
    ready_at: float | None = None
    try:
        await asyncio.sleep(QUIET_SECONDS)
        started = time.monotonic()
        port = await exporter.start("127.0.0.1", 0)
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < limit:
                async with session.get(f"http://127.0.0.1:{port}/-/ready") as response:
                    await response.read()
                    if response.status == 200:
                        ready_at = time.monotonic()
                        break
                await asyncio.sleep(0.1)
        complete = len(finished) == total
    finally:
        await exporter.stop()
        await runner.cleanup()
    per_account = []
    for account_id in ids:
        done = [t for (a, _), t in finished.items() if a == account_id]
        seen = arrivals[account_id]
        seconds = max(done) - started if len(done) == containers else None
        per_account.append(
            {
                "account_id": account_id,
                "containers": containers,
                "floor_seconds": floor,
                "seconds": seconds,
                "ratio": seconds / floor if seconds is not None else None,
                "requests_per_container": len(arrivals[account_id]) / containers,
                "throttled_503": rejected[account_id],
                "first_arrival_seconds": seen[0] - started if seen else None,
                "last_arrival_seconds": seen[-1] - started if seen else None,
                "first_poll_finished_seconds": summary([t - started for t in done]),
            }
        )
    status = sum(n for key, n in sim.request_counts.items() if " listener_status_" in key)
    return {
        "accounts": accounts,
        "containers_per_account": containers,
        "containers": total,
        "floor_seconds": floor,
        "complete": complete,
        "failed_polls": failed[0],
        "ready_seconds": ready_at - started if ready_at is not None else None,
        "ready_ratio": (ready_at - started) / floor if ready_at is not None else None,
        "status_requests_per_container": status / total,
        "per_account": per_account,
        "request_counts": dict(sim.request_counts),
    }


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
            ratios = ", ".join(
                f"{a['ratio']:.3f}" if a["ratio"] is not None else "incomplete"
                for a in outcome["per_account"]
            )
            print(
                f"  {fleet} run {index + 1}/{repeat}: ready after"
                f" {outcome['ready_seconds'] or math.nan:.1f} s (floor"
                f" {outcome['floor_seconds']} s); per-account ratios {ratios};"
                f" 503s {sum(a['throttled_503'] for a in outcome['per_account'])}",
                flush=True,
            )
        results.append({"fleet": fleet, "runs": runs})
        for number, outcome in enumerate(runs, 1):
            for account in outcome["per_account"]:
                ratio = account["ratio"]
                rows.append(
                    [
                        fleet,
                        number,
                        account["account_id"],
                        account["containers"],
                        account["floor_seconds"],
                        account["seconds"] if account["seconds"] is not None else "-",
                        f"{ratio:.3f} ({'met' if ratio <= TOLERANCE else 'MISSED'})"
                        if ratio is not None
                        else "incomplete",
                        f"{account['requests_per_container']:.2f}",
                        account["throttled_503"],
                        f"{account['last_arrival_seconds']:.1f}",
                    ]
                )
            rows.append(
                [
                    fleet,
                    number,
                    "/-/ready 200 (all accounts)",
                    outcome["containers"],
                    outcome["floor_seconds"],
                    outcome["ready_seconds"] if outcome["ready_seconds"] is not None else "-",
                    f"{outcome['ready_ratio']:.3f}"
                    f" ({'met' if outcome['ready_ratio'] <= TOLERANCE else 'MISSED'})"
                    if outcome["ready_ratio"] is not None
                    else "incomplete",
                    f"{outcome['status_requests_per_container']:.2f} (status only)",
                    sum(a["throttled_503"] for a in outcome["per_account"]),
                    "",
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
            "first picture s",
            "ratio (vs 1.1)",
            "requests/container",
            "503s",
            "last request at s",
        ],
        rows,
    )
    return {
        "parameters": {
            "fleets": fleets,
            "max_requests_per_second": rps,
            "simulator_rate_limit_rps": rps,
            "poll_interval_seconds": interval,
            "result_delay_seconds": RESULT_DELAY_SECONDS,
            "listeners_per_container": LISTENERS_PER_CONTAINER,
            "repeat": repeat,
            "seed": seed,
        },
        "results": results,
        "table": table,
    }
