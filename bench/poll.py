"""Targets 1 and 2: one full poll cycle of N containers, and a naive sequential loop beside it.

The exporter (the real `Exporter` daemon, built from a `Config`) polls a fleet of N containers
served by the simulator in this process, over loopback. The cycle is measured from
`Exporter.start` until every container has a `last_success_time` in the snapshot store. The
bound is 2N/R + result delay: two requests per container at R requests per second, plus the
wait for the last result.

The naive loop is what a shell script would do, with plain aiohttp: query, sleep 2 s, GET,
(sleep 2 s, GET)* until the body says responseStatusCode 200, then the next container. It runs
on a sample of the same fleet and is extrapolated linearly to N.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bench.common import account_config, print_table, summary, verdict
from exporter.config import Config
from exporter.daemon import Exporter
from exporter.simulator import Faults, Simulator, serve

ACCOUNT = "bench-account"
LISTENERS_PER_CONTAINER = 10
NAIVE_SLEEP_SECONDS = 2.0
TOLERANCE = 1.15  # target: cycle time <= 1.15 x bound
REQUESTS_PER_CONTAINER_TARGET = 2.5
QUIET_SECONDS = 2.0  # the simulator's rate window is 1 s


def _config(base_url: str, sim: Simulator, rps: float, interval: float) -> Config:
    return Config.model_validate(
        {
            "accounts": [account_config(sim.accounts[ACCOUNT], base_url, rps)],
            "poll": {
                "interval_seconds": interval,
                "result_timeout_seconds": 120,
                "request_timeout_seconds": 30,
            },
        }
    )


def _count(sim: Simulator, route: str) -> int:
    return sum(n for key, n in sim.request_counts.items() if f" {route} " in key)


def _status_counts(counts: dict[str, int]) -> tuple[int, int, int]:
    """(queries, results, all requests) in a copy of sim.request_counts."""
    queries = sum(n for key, n in counts.items() if " listener_status_query " in key)
    results = sum(n for key, n in counts.items() if " listener_status_result " in key)
    return queries, results, sum(counts.values())


def _minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: n - before.get(key, 0) for key, n in after.items() if n - before.get(key, 0)}


async def exporter_cycles(
    sim: Simulator,
    base_url: str,
    *,
    rps: float,
    interval: float,
    cycles: int,
    limit_seconds: float,
) -> dict[str, Any]:
    """Run the daemon for `cycles` full cycles over the simulator's fleet.

    Cycle 1 runs from `Exporter.start` until every container has succeeded once. Cycle k > 1
    runs from the first container's k-th call of `fetch_listener_statuses` until every
    container has finished k polls. Requests of cycle k are the simulator's counts between the
    ends of cycles k-1 and k.
    """
    await asyncio.sleep(QUIET_SECONDS)  # let the previous run's requests leave the sim's window
    sim.reset_counters()
    exporter = Exporter(_config(base_url, sim, rps, interval))
    n = len(sim.accounts[ACCOUNT].containers)
    store = exporter.store
    client = exporter.clients[ACCOUNT]
    polls: dict[str, int] = {}
    failed = [0]
    calls: dict[str, list[float]] = {}

    def counting(method: Callable[..., None], failure: bool) -> Callable[..., None]:
        def wrapper(account_id: str, container_id: str, *args: Any, **kwargs: Any) -> None:
            method(account_id, container_id, *args, **kwargs)
            polls[container_id] = polls.get(container_id, 0) + 1
            failed[0] += failure

        return wrapper

    store.record_success = counting(store.record_success, False)  # type: ignore[method-assign]
    store.record_failure = counting(store.record_failure, True)  # type: ignore[method-assign]
    fetch = client.fetch_listener_statuses

    async def timed_fetch(container_id: str, *args: Any, **kwargs: Any) -> Any:
        calls.setdefault(container_id, []).append(time.monotonic())
        return await fetch(container_id, *args, **kwargs)

    client.fetch_listener_statuses = timed_fetch  # type: ignore[method-assign]
    # Arrival times at the simulator's rate limiter (its clock is time.monotonic), to see how
    # much of the limiter's 25 ms margin the trip from limiter to simulator uses up.
    arrivals: list[float] = []
    admit = sim._admit

    def timed_admit(account: Any) -> bool:
        arrivals.append(time.monotonic())
        return admit(account)

    sim._admit = timed_admit  # type: ignore[method-assign]
    # Garbage-collector pauses stall the event loop between a rate-limiter grant and the
    # request reaching the simulator (same process here): record them.
    pauses: list[tuple[float, int, float]] = []  # (start, generation, seconds)
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.monotonic()
        else:
            pauses.append((gc_started[0], info["generation"], time.monotonic() - gc_started[0]))

    gc.callbacks.append(on_gc)
    started = time.monotonic()
    await exporter.start("127.0.0.1", 0)
    results: list[dict[str, Any]] = []
    previous_counts: dict[str, int] = {}
    previous_throttled = 0
    try:
        for cycle in range(1, cycles + 1):
            done_at = None
            while time.monotonic() - started < limit_seconds * cycle:
                if len(polls) == n and min(polls.values()) >= cycle:
                    done_at = time.monotonic()
                    break
                await asyncio.sleep(0.02)
            counts = dict(sim.request_counts)
            throttled = sim.throttled
            learnt = client.expected_result_delay
            snapshots = store.containers()
            if cycle == 1:
                began = started
            else:
                began = min(times[cycle - 1] for times in calls.values() if len(times) >= cycle)
            spent = _minus(counts, previous_counts)
            queries, answers, total = _status_counts(spent)
            durations = [
                s.poll_duration_seconds for s in snapshots if s.poll_duration_seconds is not None
            ]
            results.append(
                {
                    "cycle": cycle,
                    "seconds": (done_at - began) if done_at is not None else None,
                    "completed": done_at is not None,
                    "queries": queries,
                    "results": answers,
                    "status_requests_per_container": (queries + answers) / n,
                    "all_requests_per_container": total / n,
                    "throttled_503": throttled - previous_throttled,
                    "request_counts": spent,
                    "poll_duration_seconds": summary(durations),
                    "learnt_result_delay_mean": learnt,
                }
            )
            previous_counts, previous_throttled = counts, throttled
            if done_at is None:
                break
    finally:
        await exporter.stop()
        del sim._admit  # back to the class's method
        gc.callbacks.remove(on_gc)
    capacity = int(sim.accounts[ACCOUNT].rate_limit_rps)
    spans = sorted(b - a for a, b in zip(arrivals, arrivals[capacity:], strict=False))
    return {
        "containers": n,
        "failed_polls": failed[0],
        "cycles": results,
        # The simulator answers 503 when a request arrives less than 1 s after the request
        # `capacity` places before it; the exporter's limiter spaces them >= 1.025 s at grant.
        "min_span_of_rate_limit_arrivals_seconds": spans[0] if spans else None,
        "p001_span_of_rate_limit_arrivals_seconds": spans[len(spans) // 1000] if spans else None,
        "gc_collections": len(pauses),
        "gc_longest_pause_seconds": max((p[2] for p in pauses), default=0.0),
        "gc_longest_pause_generation": max(pauses, key=lambda p: p[2])[1] if pauses else None,
        "gc_longest_pause_at_seconds": (
            max(pauses, key=lambda p: p[2])[0] - started if pauses else None
        ),
        "gc_pauses_over_20ms": sum(1 for p in pauses if p[2] > 0.02),
    }


async def naive_cycle(sim: Simulator, base_url: str, container_ids: list[str]) -> dict[str, Any]:
    """The naive sequential loop over some containers, with plain aiohttp."""
    sim.reset_counters()
    account = sim.accounts[ACCOUNT]
    url = f"{base_url}/{ACCOUNT}"
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    auth = aiohttp.BasicAuth(account.username, account.password)
    per_container: list[float] = []
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers, auth=auth) as session:
        for container_id in container_ids:
            begun = time.monotonic()
            query = {
                "QueryFilter": {
                    "expression": {
                        "argument": [container_id],
                        "operator": "EQUALS",
                        "property": "containerId",
                    }
                }
            }
            while True:
                async with session.post(f"{url}/async/ListenerStatus/query", json=query) as resp:
                    if resp.status == 200:
                        token = (await resp.json())["asyncToken"]["token"]
                        break
                await asyncio.sleep(NAIVE_SLEEP_SECONDS)
            while True:
                await asyncio.sleep(NAIVE_SLEEP_SECONDS)
                async with session.get(f"{url}/async/ListenerStatus/response/{token}") as resp:
                    body = await resp.json() if resp.status in (200, 202) else {}
                if body.get("responseStatusCode") == 200:
                    break
            per_container.append(time.monotonic() - begun)
    seconds = time.monotonic() - started
    sample = len(container_ids)
    return {
        "sample": sample,
        "seconds": seconds,
        "seconds_per_container": seconds / sample,
        "status_requests_per_container": (
            _count(sim, "listener_status_query") + _count(sim, "listener_status_result")
        )
        / sample,
        "throttled_503": sim.throttled,
        "per_container_seconds": summary(per_container),
    }


async def run(
    *,
    containers: int,
    rate_limit: float,
    budget: float,
    delays: list[float],
    repeat: int,
    cycles: int,
    naive_sample: int,
    interval: float,
    seed: int,
    faults: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Every delay: `repeat` exporter runs of `cycles` cycles, then the naive loop on a sample.

    `faults`: simulator faults in force throughout (fields of `Faults`), none by default.
    """
    logging.getLogger("exporter").setLevel(logging.WARNING)
    runs: list[dict[str, Any]] = []
    rows: list[list[object]] = []
    for delay in delays:
        sim = Simulator.with_fleet(
            account_id=ACCOUNT,
            containers=containers,
            listeners_per_container=LISTENERS_PER_CONTAINER,
            rate_limit_rps=rate_limit,
            result_delay_seconds=delay,
            seed=seed,
        )
        sim.set_faults(Faults.from_json(dict(faults or {})))
        runner, base_url = await serve(sim, "127.0.0.1", 0)
        bound = 2 * containers / budget + delay
        try:
            repeats = []
            for index in range(repeat):
                outcome = await exporter_cycles(
                    sim,
                    base_url,
                    rps=budget,
                    interval=interval,
                    cycles=cycles,
                    limit_seconds=max(interval, 3 * bound),
                )
                repeats.append(outcome)
                for cycle in outcome["cycles"]:
                    print(
                        f"  delay {delay:g} s, run {index + 1}/{repeat}, cycle {cycle['cycle']}: "
                        f"{cycle['seconds'] or float('nan'):.2f} s, "
                        f"{cycle['status_requests_per_container']:.2f} req/container, "
                        f"503s {cycle['throttled_503']}",
                        flush=True,
                    )
                span = outcome["min_span_of_rate_limit_arrivals_seconds"]
                print(
                    f"    shortest span of {rate_limit:g} arrivals: {span:.4f} s; longest GC pause"
                    f" {outcome['gc_longest_pause_seconds'] * 1e3:.0f} ms"
                    f" (generation {outcome['gc_longest_pause_generation']})",
                    flush=True,
                )
            naive = None
            if naive_sample:
                await asyncio.sleep(QUIET_SECONDS)
                sample_ids = list(sim.accounts[ACCOUNT].containers)[:naive_sample]
                naive = await naive_cycle(sim, base_url, sample_ids)
        finally:
            await runner.cleanup()
        naive_total = naive["seconds_per_container"] * containers if naive else float("nan")
        per_cycle = []
        for number in range(1, cycles + 1):
            found = [
                c for r in repeats for c in r["cycles"] if c["cycle"] == number and c["completed"]
            ]
            seconds = [c["seconds"] for c in found]
            med = summary(seconds)["median"] if len(found) == repeat else float("nan")
            req = summary([c["status_requests_per_container"] for c in found])["median"]
            every = summary([c["all_requests_per_container"] for c in found])["median"]
            throttled = sum(c["throttled_503"] for c in found)
            per_cycle.append(
                {
                    "cycle": number,
                    "median_seconds": med,
                    "ratio_to_bound": med / bound,
                    "status_requests_per_container_median": req,
                    "all_requests_per_container_median": every,
                    "throttled_503_total": throttled,
                    "speedup_vs_naive": naive_total / med,
                }
            )
            rows.append(
                [
                    f"{delay:g}",
                    "1 (cold)" if number == 1 else f"{number}",
                    f"{bound:g}",
                    med,
                    " / ".join(f"{x:.1f}" for x in seconds),
                    f"{med / bound:.3f} ({'met' if med <= TOLERANCE * bound else 'MISSED'})",
                    f"{req:.2f} ({verdict(req, REQUESTS_PER_CONTAINER_TARGET)})",
                    f"{every:.2f}",
                    throttled,
                    naive_total,
                    f"{naive_total / med:.1f}x",
                ]
            )
        runs.append(
            {
                "result_delay_seconds": delay,
                "bound_seconds": bound,
                "repeats": repeats,
                "per_cycle": per_cycle,
                "naive": naive,
                "naive_extrapolated_seconds": naive_total,
            }
        )
    table = print_table(
        f"Poll throughput: N={containers}, simulator {rate_limit:g}/s, budget {budget:g}/s,"
        f" interval {interval:g} s, {repeat} runs",
        [
            "result delay s",
            "cycle",
            "bound s",
            "median s",
            "runs s",
            "ratio to bound (vs 1.15)",
            "status req/container",
            "all req/container",
            "503s (all runs)",
            f"naive s (x{containers}/{naive_sample})",
            "speed-up",
        ],
        rows,
    )
    return {
        "parameters": {
            "containers": containers,
            "listeners_per_container": LISTENERS_PER_CONTAINER,
            "simulator_rate_limit_rps": rate_limit,
            "exporter_max_requests_per_second": budget,
            "poll_interval_seconds": interval,
            "repeat": repeat,
            "cycles": cycles,
            "naive_sample": naive_sample,
            "naive_sleep_seconds": NAIVE_SLEEP_SECONDS,
            "seed": seed,
            "faults": faults or {},
        },
        "runs": runs,
        "table": table,
    }
