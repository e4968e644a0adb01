"""The remediation ledger's cost: write latency, and the event loop's lag while it writes.

`python -m bench.ledger` (from the repository root). The ledger lives in a temporary directory
on the file system of `--dir` (default: the system's temporary directory), because fsync time
is what is measured and it belongs to that disk.

1. Write latency, synchronous (`LedgerFile`, no event loop): `rounds` times, one decision
   recorded (`record`, one transaction), its `mark_started` and its `finish`, each timed.
2. Payload latency through the asyncio facade (`Ledger`): one `record` call of 1 and of 50
   decisions (one webhook delivery's worth), awaited from the event loop, `rounds` times each;
   the admitted actions are finished between rounds, untimed.
3. Storms of `storm` deliveries of one decision each, started one per turn of the loop (as
   webhook requests arrive), `repeat` storms per scenario, while a monitor task sleeps 1 ms at
   a time and records how late it wakes (the loop's lag): duplicates of one alert (exactly one
   admitted, checked), and alerts for distinct listeners whose admitted actions then go
   through `mark_started` and `finish`. For comparison the duplicate storm with the
   synchronous `LedgerFile` called directly on the loop, which is what a design without the
   worker thread would do. Baselines: the monitor's lag with the loop idle, and during a storm
   of reads through the worker (the hand-over without fsync). "loop CPU" is the CPU time of
   the loop's own thread during the storm (time.thread_time), the monitor's share included.

The lag is wall-clock: on a shared machine other processes add to it (compare the idle
baseline, and the load averages in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    finish_run,
    machine_info,
    median,
    print_table,
    summary,
    verdict,
    write_json,
)
from exporter.ledger import Decision, GuardLimits, Ledger, LedgerFile

LAG_TARGET_MS = 5.0
LIMITS = GuardLimits(cooldown_seconds=600, max_actions_per_hour=100_000)
MONITOR_SLEEP = 0.001


def _decision(listener_id: str) -> Decision:
    return Decision(
        "alertmanager", "0123456789abcdef", "bench", "c-1", listener_id, "restart", "queued"
    )


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {key: value * 1e3 if key != "n" else value for key, value in summary(values).items()}


def sync_latency(directory: Path, rounds: int) -> dict[str, list[float]]:
    """Phase 1: record, mark_started and finish, one transaction each, timed one by one."""
    ledger = LedgerFile.open(directory, retention_days=30)
    timings: dict[str, list[float]] = {"record": [], "mark_started": [], "finish": []}
    try:
        for n in range(rounds):
            start = time.perf_counter()
            (entry,) = ledger.record([_decision(f"sync-{n}")], LIMITS)
            timings["record"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ledger.mark_started(entry.id)
            timings["mark_started"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ledger.finish(entry.id, "recovered")
            timings["finish"].append(time.perf_counter() - start)
    finally:
        ledger.close()
    return timings


async def _monitor(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(MONITOR_SLEEP)
        lags.append(loop.time() - before - MONITOR_SLEEP)


async def with_lag(work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """Run `work` while the monitor measures the loop's lag.

    Its duration, the lags, and the CPU time of the loop's thread (the monitor's share
    included): what the loop itself spent, as against waiting for the worker.
    """
    stop = asyncio.Event()
    lags: list[float] = []
    monitor = asyncio.create_task(_monitor(stop, lags))
    await asyncio.sleep(0.01)  # the monitor is running before the work starts
    start, cpu = time.perf_counter(), time.thread_time()
    await work()
    duration, cpu = time.perf_counter() - start, time.thread_time() - cpu
    stop.set()
    await monitor
    return {"duration_seconds": duration, "loop_cpu_seconds": cpu, "lag_seconds": lags}


async def launch(deliver: Callable[[int], Awaitable[None]], count: int) -> None:
    """Start `count` deliveries, one per turn of the loop (as webhook requests arrive)."""
    tasks = []
    for n in range(count):
        tasks.append(asyncio.ensure_future(deliver(n)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)


async def payload_latency(ledger: Ledger, rounds: int, size: int) -> list[float]:
    """Phase 2: one record call of `size` decisions, `rounds` times."""
    timings = []
    for n in range(rounds):
        batch = [_decision(f"payload-{size}-{n}-{k}") for k in range(size)]
        start = time.perf_counter()
        recorded = await ledger.record(batch, LIMITS)
        timings.append(time.perf_counter() - start)
        # As the webhook's checks would: the admitted actions end (untimed), so every round
        # starts from the same few unfinished rows.
        for entry in recorded:
            await ledger.finish(entry.id, "skipped_not_needed", "the listener is listening")
    return timings


async def storms(
    ledger: Ledger, inline: LedgerFile, storm: int, repeat: int
) -> dict[str, list[dict[str, Any]]]:
    """Phase 3: storms of deliveries, one per turn of the loop, `repeat` times each."""
    admitted: list[int] = []
    tag = [0]  # each storm's listeners are new: no cooldown from the storm before

    async def idle(_: int) -> None:
        await asyncio.sleep(0)

    async def read(_: int) -> None:
        await ledger.recent(1)

    async def duplicate(_: int) -> None:
        (entry,) = await ledger.record([_decision(f"storm-{tag[0]}")], LIMITS)
        if entry.outcome == "queued":
            admitted.append(entry.id)

    async def action(n: int) -> None:
        (entry,) = await ledger.record([_decision(f"storm-{tag[0]}-{n}")], LIMITS)
        await ledger.mark_started(entry.id)
        await ledger.finish(entry.id, "recovered")

    async def inline_duplicate(_: int) -> None:
        inline.record([_decision(f"inline-{tag[0]}")], LIMITS)

    scenarios: dict[str, Callable[[int], Awaitable[None]]] = {
        "idle loop, then 0.3 s of nothing (baseline)": idle,
        "reads through the worker (no fsync)": read,
        "duplicates of one alert, worker thread": duplicate,
        "distinct actions (record, start, finish), worker thread": action,
        "duplicates of one alert, synchronous on the loop": inline_duplicate,
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
    for _ in range(repeat):
        for name, deliver in scenarios.items():
            tag[0] += 1

            async def work(deliver: Callable[[int], Awaitable[None]] = deliver) -> None:
                await launch(deliver, storm)
                if deliver is idle:
                    await asyncio.sleep(0.3)

            results[name].append(await with_lag(work))
            if deliver is duplicate:
                assert len(admitted) == 1, "a duplicate storm admitted more than one action"
                await ledger.finish(admitted.pop(), "recovered")
    return results


async def run(directory: str | None, rounds: int, storm: int, repeat: int) -> dict[str, Any]:
    """All three phases; print the tables, return the document for results/ledger.json."""
    info = machine_info()
    with tempfile.TemporaryDirectory(dir=directory, prefix="bench-ledger-") as temporary:
        base = Path(temporary)
        info["ledger_dir"] = str(base)
        sync = sync_latency(base / "sync", rounds)
        ledger = Ledger.open(base / "async", retention_days=30)
        inline = LedgerFile.open(base / "inline", retention_days=30)
        try:
            payload = {size: await payload_latency(ledger, rounds, size) for size in (1, 50)}
            scenarios = await storms(ledger, inline, storm, repeat)
        finally:
            await ledger.close()
            inline.close()
    finish_run(info)

    print_table(
        f"Synchronous writes, one transaction each ({rounds} rounds, ms)",
        ["call", "median", "p99", "max"],
        [
            [name, _ms(values)["median"], _ms(values)["p99"], _ms(values)["max"]]
            for name, values in sync.items()
        ],
    )
    print_table(
        f"Ledger.record awaited on the event loop, one delivery ({rounds} rounds, ms)",
        ["decisions", "median", "p99", "max"],
        [
            [size, _ms(values)["median"], _ms(values)["p99"], _ms(values)["max"]]
            for size, values in payload.items()
        ],
    )
    rows = []
    for name, runs in scenarios.items():
        lag = _ms([value for run_ in runs for value in run_["lag_seconds"]])
        durations = [run_["duration_seconds"] for run_ in runs]
        cpu = [run_["loop_cpu_seconds"] for run_ in runs]
        rows.append(
            [
                name,
                median(durations) * 1e3,
                median(cpu) * 1e3,
                lag["n"],
                lag["median"],
                lag["p99"],
                lag["max"],
                verdict(lag["max"], LAG_TARGET_MS),
            ]
        )
    print_table(
        f"Event loop lag, {storm} deliveries one per loop turn, {repeat} storms each"
        f" (monitor sleeps {MONITOR_SLEEP * 1e3:g} ms; ms; duration and loop CPU: median storm)",
        [
            "scenario",
            "duration",
            "loop CPU",
            "wakeups",
            "lag median",
            "lag p99",
            "lag max",
            "max <= 5 ms",
        ],
        rows,
    )
    return {
        "command": f"python -m bench.ledger --rounds {rounds} --storm {storm} --repeat {repeat}",
        "machine": info,
        "parameters": {
            "rounds": rounds,
            "storm": storm,
            "repeat": repeat,
            "monitor_sleep": MONITOR_SLEEP,
        },
        "sync_seconds": sync,
        "payload_seconds": {str(size): values for size, values in payload.items()},
        "storms": scenarios,
    }


def main() -> None:
    """`python -m bench.ledger`: run, print, write bench/results/ledger.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    parser.add_argument("--dir", default=None, help="where the temporary ledgers go")
    parser.add_argument("--rounds", type=int, default=300, help="timed calls per measurement")
    parser.add_argument("--storm", type=int, default=200, help="deliveries per storm")
    parser.add_argument("--repeat", type=int, default=5, help="storms per scenario")
    args = parser.parse_args()
    document = asyncio.run(run(args.dir, args.rounds, args.storm, args.repeat))
    print(f"wrote {write_json('ledger', document)}")


if __name__ == "__main__":
    main()
