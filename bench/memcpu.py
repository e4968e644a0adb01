"""Targets 4 and 5: resident memory over 10 poll cycles of 10,000 listeners, CPU per cycle.

The simulator runs alone in a child process (`python -m exporter simulate`, 1,000 containers x
10 listeners, rate limit 1,000/s, result delay 0.05 s) so that its memory and CPU are not
counted. This process runs the real `Exporter` daemon (its scheduler, fleet refresher, names
resolver and web server), with `max_requests_per_second` at the configuration's maximum (100)
and a poll interval just above the rate-limited cycle (2N/R x 1.25). `curl` (a child process,
not counted) scrapes /metrics every 15 s with Prometheus's headers, as a Prometheus would.

A cycle k is complete when every container has finished k polls (wrapping the store's
`record_success`/`record_failure` on the instance to count them). At each cycle mark the
benchmark records VmRSS and this process's CPU time (getrusage: user + system). The CPU spent
inside `ExporterMetrics.exposition` (scrapes) is measured separately and subtracted to give the
CPU of polling alone.
"""

from __future__ import annotations

import asyncio
import cProfile
import itertools
import logging
import pstats
import subprocess
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    SIM_ACCOUNT,
    SIM_PASSWORD,
    SIM_USERNAME,
    cpu_seconds,
    peak_rss_bytes,
    print_table,
    rss_bytes,
    simulator_process,
    verdict,
)
from bench.scrape import PROMETHEUS_ACCEPT
from exporter.config import Config
from exporter.daemon import Exporter
from exporter.exposition import Exposition

RSS_TARGET_MB = 100.0
GROWTH_TARGET = 0.02
CPU_TARGET_SECONDS = 3.0
SCRAPE_EVERY_SECONDS = 15.0


async def _container_ids(control_url: str) -> list[tuple[str, str]]:
    import aiohttp  # noqa: PLC0415 - only needed here

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{control_url}/state") as response,
    ):
        state = await response.json()
    containers = state["accounts"][SIM_ACCOUNT]["containers"]
    return [(c["container_id"], c["name"]) for c in containers]


def _curl(url: str) -> None:
    subprocess.run(
        [
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "-H",
            f"Accept: {PROMETHEUS_ACCEPT}",
            "-H",
            "Accept-Encoding: gzip",
            url,
        ],
        check=False,
        timeout=60,
    )


async def run(
    *, containers: int, listeners: int, cycles: int, budget: float, profile: str | None
) -> dict[str, Any]:
    logging.getLogger("exporter").setLevel(logging.WARNING)
    baseline_rss = rss_bytes()
    cycle_seconds = 2 * containers / budget
    interval = round(cycle_seconds * 1.25, 1)
    async with simulator_process(
        containers=containers,
        listeners_per_container=listeners,
        rate_limit_rps=1000,
        result_delay_seconds=0.05,
    ) as sim:
        ids = await _container_ids(sim.control_url)
        config = Config.model_validate(
            {
                "accounts": [
                    {
                        "account_id": SIM_ACCOUNT,
                        "base_url": sim.base_url,
                        "username": SIM_USERNAME,
                        "password": SIM_PASSWORD,
                        "max_requests_per_second": budget,
                        "containers": [{"id": cid, "name": name} for cid, name in ids],
                    }
                ],
                "poll": {
                    "interval_seconds": interval,
                    "result_timeout_seconds": 120,
                    "request_timeout_seconds": 30,
                },
            }
        )
        exporter = Exporter(config)
        store = exporter.store
        finished: dict[tuple[str, str], int] = {}
        failures = [0]

        def counting(
            method: Callable[..., None], failed: bool
        ) -> Callable[..., None]:  # wraps the instance's method
            def wrapper(account_id: str, container_id: str, *args: Any, **kwargs: Any) -> None:
                method(account_id, container_id, *args, **kwargs)
                key = (account_id, container_id)
                finished[key] = finished.get(key, 0) + 1
                failures[0] += failed

            return wrapper

        store.record_success = counting(store.record_success, False)  # type: ignore[method-assign]
        store.record_failure = counting(store.record_failure, True)  # type: ignore[method-assign]
        render_cpu = [0.0]
        render_calls = [0]
        original_render = exporter.metrics.exposition

        def timed_render(accept_header: str | None, *, gzip: bool = False) -> Exposition:
            started = time.process_time()
            try:
                return original_render(accept_header, gzip=gzip)
            finally:
                render_cpu[0] += time.process_time() - started
                render_calls[0] += 1

        exporter.metrics.exposition = timed_render  # type: ignore[method-assign]
        port = await exporter.start("127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/metrics"
        start_rss = rss_bytes()
        started = time.monotonic()
        start_cpu = cpu_seconds()

        async def scraper() -> None:
            while True:
                await asyncio.sleep(SCRAPE_EVERY_SECONDS)
                await asyncio.to_thread(_curl, url)

        scraping = asyncio.create_task(scraper())
        profiler = cProfile.Profile() if profile else None
        marks: list[dict[str, float]] = []
        try:
            for cycle in range(1, cycles + 1):
                deadline = time.monotonic() + 10 * interval
                while len(finished) < len(ids) or min(finished.values()) < cycle:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cycle {cycle} did not finish in {10 * interval} s")
                    await asyncio.sleep(0.05)
                marks.append(
                    {
                        "cycle": cycle,
                        "seconds": time.monotonic() - started,
                        "rss_bytes": rss_bytes(),
                        "cpu_seconds": cpu_seconds() - start_cpu,
                        "render_cpu_seconds": render_cpu[0],
                        "scrapes": render_calls[0],
                        "listeners": sum(len(s.listeners) for s in store.containers()),
                    }
                )
                print(
                    f"  cycle {cycle}: {marks[-1]['seconds']:.1f} s, RSS "
                    f"{marks[-1]['rss_bytes'] / 2**20:.1f} MiB, CPU {marks[-1]['cpu_seconds']:.2f}"
                    f" s ({render_calls[0]} scrapes)",
                    flush=True,
                )
                if profiler is not None and cycle == 1:
                    profiler.enable()
        finally:
            if profiler is not None:
                profiler.disable()
            scraping.cancel()
            await exporter.stop()
        peak = peak_rss_bytes()
    profile_top: list[str] = []
    if profiler is not None and profile:
        profiler.dump_stats(profile)
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative")
        profile_top = [f"see {profile} (pstats), e.g. python -m pstats {profile}"]
    per_cycle: list[dict[str, float]] = []
    for previous, mark in itertools.pairwise(marks):
        cpu = mark["cpu_seconds"] - previous["cpu_seconds"]
        render = mark["render_cpu_seconds"] - previous["render_cpu_seconds"]
        per_cycle.append(
            {
                "cycle": mark["cycle"],
                "cpu_seconds": cpu,
                "render_cpu_seconds": render,
                "poll_cpu_seconds": cpu - render,
                "scrapes": mark["scrapes"] - previous["scrapes"],
            }
        )
    mid = min(5, cycles)
    rss_mid = marks[mid - 1]["rss_bytes"]
    rss_end = marks[-1]["rss_bytes"]
    growth = (rss_end - rss_mid) / rss_mid
    later = per_cycle[-(cycles - mid) :] if cycles > mid else per_cycle
    span = marks[-1]["cpu_seconds"] - marks[mid - 1]["cpu_seconds"]
    span_render = marks[-1]["render_cpu_seconds"] - marks[mid - 1]["render_cpu_seconds"]
    n_later = max(1, cycles - mid)
    cpu_per_cycle = span / n_later
    poll_cpu_per_cycle = (span - span_render) / n_later
    first_cpu = marks[0]["cpu_seconds"] - marks[0]["render_cpu_seconds"]
    rows = [
        [
            f"RSS after cycle {cycles}",
            f"{rss_end / 2**20:.1f} MiB ({rss_end / 1e6:.1f} MB)",
            verdict(rss_end / 1e6, RSS_TARGET_MB),
        ],
        [
            f"RSS growth cycle {mid} -> {cycles}",
            f"{growth * 100:+.2f} %",
            verdict(max(growth, 0.0), GROWTH_TARGET),
        ],
        ["peak RSS (VmHWM)", f"{peak / 2**20:.1f} MiB", ""],
        ["RSS before the exporter (imports, simulator client)", f"{baseline_rss / 2**20:.1f}", ""],
        [
            f"CPU per cycle, cycles {mid + 1}-{cycles}, polling only",
            f"{poll_cpu_per_cycle:.2f} s",
            verdict(poll_cpu_per_cycle, CPU_TARGET_SECONDS),
        ],
        [
            "CPU per cycle incl. scrapes (every 15 s)",
            f"{cpu_per_cycle:.2f} s",
            verdict(cpu_per_cycle, CPU_TARGET_SECONDS),
        ],
        ["CPU of cycle 1 (start-up, names), polling only", f"{first_cpu:.2f} s", ""],
        [
            "render CPU per scrape",
            f"{span_render / max(1, marks[-1]['scrapes'] - marks[mid - 1]['scrapes']):.2f} s",
            "",
        ],
    ]
    table = print_table(
        f"Memory and CPU: {containers} containers x {listeners} listeners, budget {budget:g}/s,"
        f" interval {interval:g} s",
        ["measure", "value", "target"],
        rows,
    )
    return {
        "parameters": {
            "containers": containers,
            "listeners_per_container": listeners,
            "cycles": cycles,
            "exporter_max_requests_per_second": budget,
            "poll_interval_seconds": interval,
            "scrape_every_seconds": SCRAPE_EVERY_SECONDS,
            "simulator": "child process, rate limit 1000/s, result delay 0.05 s",
        },
        "baseline_rss_bytes": baseline_rss,
        "rss_after_start_bytes": start_rss,
        "peak_rss_bytes": peak,
        "marks": marks,
        "per_cycle": per_cycle,
        "later_cycles": later,
        "rss_growth_mid_to_end": growth,
        "cpu_per_cycle_seconds": cpu_per_cycle,
        "poll_cpu_per_cycle_seconds": poll_cpu_per_cycle,
        "failures": failures[0],
        "profile": profile_top,
        "table": table,
    }
