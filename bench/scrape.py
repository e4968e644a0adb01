"""Target 3: /metrics with 10,000 listeners (1,000 containers x 10), two concurrent scrapers.

The store is filled directly with synthetic `ListenerStatus` values through
`SnapshotStore.record_success` (no Boomi polling), with a process name for every listener
(`set_process_names`), so `boomi_listener_info` is present too. The /metrics server runs in its
own process (`python -m bench.run scrape-server`: the exporter's `create_app` with its
`ExporterMetrics`), the two scrapers in this one, so client and server do not share an event
loop. Two scenarios:
- static: the store never changes; each scraper scrapes again as soon as it has an answer.
- polling: the server changes the store as a polling exporter does, time-compressed: between
  two scrapes of one scraper, `changed_per_scrape` containers get a new snapshot (same
  listeners, new timestamp and duration; 250 is what a Prometheus scraping every 15 s finds
  with 1,000 containers polled every 60 s), and a listener status flips every `flip_every`
  seconds. Each scraper pauses `pause` seconds between scrapes, the second one starting half a
  pause later (two Prometheus servers are not in step).

Variants: `current` is the exporter as it is (`ExporterMetrics.exposition`), `static` the floor
of `bench.floor` (the same bytes rendered once). The in-process costs include the old way,
prometheus_client's `generate_latest` over `SnapshotCollector` and the exporter's registry, as
the exporter rendered before its cache.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest

from bench.common import (
    REPO,
    median,
    print_table,
    process_cpu_seconds,
    summary,
    verdict,
)
from exporter.boomi import ListenerStatus
from exporter.metrics import ExporterMetrics, SnapshotCollector
from exporter.state import SnapshotStore
from exporter.web import create_app, start_server
from exporter.websecurity import WebSecurity

ACCOUNT = "acme-AB12CD"
CONNECTOR_TYPES = ("wss", "atomqueue", "jms", "officialboomi-X4821C-kafka-prod", "")
STATUSES = ("listening", "errored", "paused")
# What Prometheus 3 sends by default (scrape_protocols), and its Accept-Encoding.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
FORMATS: dict[str, dict[str, str]] = {
    "text": {"Accept-Encoding": "identity"},
    "gzip": {"Accept-Encoding": "gzip"},
    "prometheus (OpenMetrics+gzip)": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
}
# Also scraped with curl, to tell the Python client's share of the latency from the server's.
CURL_FORMATS = ("text", "gzip")
# 1,000 containers polled every 60 s change 250 snapshots between two scrapes 15 s apart.
CHANGED_PER_SCRAPE = 250
MEDIAN_TARGET_MS = 5.0
P99_TARGET_MS = 25.0


# ---------------------------------------------------------------------------------------------
# The fleet, filled directly into a store.


@dataclass
class Fleet:
    """Synthetic containers and their listeners."""

    containers: list[tuple[str, str, str]]  # (account, container id, name)
    listeners: dict[str, list[ListenerStatus]]  # container id -> listeners
    names: dict[tuple[str, str], str]  # (account, listener id) -> process name


def make_fleet(containers: int, listeners: int, seed: int = 1) -> Fleet:
    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    fleet = Fleet([], {}, {})
    for index in range(containers):
        container_id = new_id()
        fleet.containers.append((ACCOUNT, container_id, f"prod-molecule-{index + 1}"))
        rows = []
        for number in range(listeners):
            listener_id = new_id()
            status = rng.choices(STATUSES, [85, 10, 5])[0]
            rows.append(
                ListenerStatus(
                    listener_id, status, CONNECTOR_TYPES[number % len(CONNECTOR_TYPES)], status
                )
            )
            fleet.names[(ACCOUNT, listener_id)] = (
                f"Orders Listener {number + 1} of {container_id[:8]}"
            )
        fleet.listeners[container_id] = rows
    return fleet


def fill(store: SnapshotStore, metrics: ExporterMetrics, fleet: Fleet) -> None:
    """Put the fleet into the store as if every container had been polled once."""
    store.set_containers(fleet.containers)
    store.set_process_names(ACCOUNT, {lid: name for (_, lid), name in fleet.names.items()})
    now = time.time()
    for account_id, container_id, _ in fleet.containers:
        store.set_container_status(account_id, container_id, container_type="MOLECULE", online=True)
        store.record_success(
            account_id, container_id, fleet.listeners[container_id], duration_seconds=1.5, now=now
        )
    for op, code, count in (
        ("listener_status_query", "200", 2000),
        ("listener_status_result", "200", 2000),
        ("listener_status_result", "503", 3),
        ("change_listener_status", "200", 5),
        ("process_query", "200", 100),
    ):
        for _ in range(count):
            metrics.observe_request(ACCOUNT, op, code, 0.08)
    metrics.count_remediation((ACCOUNT, fleet.containers[0][1], "x", "restart"), "recovered")


def update_one(
    store: SnapshotStore, metrics: ExporterMetrics, fleet: Fleet, index: int, *, flip: bool
) -> None:
    """One container's poll result: same listeners (or one flipped status) and a new time."""
    account_id, container_id, _ = fleet.containers[index % len(fleet.containers)]
    rows = list(fleet.listeners[container_id])
    if flip:
        old = rows[0]
        status = "errored" if old.status == "listening" else "listening"
        rows[0] = ListenerStatus(old.listener_id, status, old.connector_type, status)
        fleet.listeners[container_id] = rows
    store.record_success(account_id, container_id, rows, duration_seconds=1.4, now=time.time())
    metrics.observe_request(account_id, "listener_status_query", "200", 0.05)
    metrics.observe_request(account_id, "listener_status_result", "200", 0.05)


# ---------------------------------------------------------------------------------------------
# The server process.


async def _serve(args: argparse.Namespace) -> None:
    fleet = make_fleet(args.containers, args.listeners)
    store = SnapshotStore()
    metrics = ExporterMetrics(store)
    fill(store, metrics, fleet)
    if args.variant.startswith("static"):
        from bench.floor import static_app  # noqa: PLC0415 - floor imports this module

        app = static_app(metrics, stream=args.variant == "static-stream")
    else:
        app = create_app(store, metrics)
    # As the daemon serves: with --web-config TLS and basic auth (bench/scrape_tls.py).
    security = WebSecurity(args.web_config)
    security.install(app)
    runner, port = await start_server(app, "127.0.0.1", 0, ssl_context=security.ssl_context)
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def churn() -> None:
        index = 0
        owed = 0.0
        next_flip = loop.time() + args.flip_every
        while True:
            await asyncio.sleep(0.02)
            owed += args.churn * 0.02
            while owed >= 1:
                owed -= 1
                flip = args.flip_every > 0 and loop.time() >= next_flip
                if flip:
                    next_flip += args.flip_every
                update_one(store, metrics, fleet, index, flip=flip)
                index += 1

    task = asyncio.create_task(churn()) if args.churn > 0 else None
    await stop.wait()
    if task is not None:
        task.cancel()
    await runner.cleanup()
    if security.auth is not None:
        # How often bcrypt ran, however many scrapes came: the cache at work.
        print(f"VERIFICATIONS {security.auth.verifications}", flush=True)


def serve_forever(args: argparse.Namespace) -> None:
    """`python -m bench.run scrape-server ...`: serve /metrics until SIGTERM."""
    asyncio.run(_serve(args))


# ---------------------------------------------------------------------------------------------
# In-process costs: what rendering costs without HTTP.


def _time(function: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def _ms(function: Callable[[], object], repeat: int) -> dict[str, float]:
    return summary([t * 1e3 for t in _time(function, repeat)])


def _after(
    prepare: Callable[[], None], function: Callable[[], object], repeat: int
) -> dict[str, float]:
    """Cost of `function` right after `prepare` (not timed), `repeat` times."""
    times = []
    for _ in range(repeat):
        prepare()
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1e3)
    return summary(times)


def _exporter_costs(fleet: Fleet) -> tuple[dict[str, Any], SnapshotStore, ExporterMetrics]:
    store = SnapshotStore()
    metrics = ExporterMetrics(store)
    fill(store, metrics, fleet)
    counter = iter(range(10**9))

    def refresh() -> None:
        update_one(store, metrics, fleet, next(counter), flip=False)

    def refresh_interval() -> None:
        # What a scrape every 15 s finds with 1,000 containers polled every 60 s.
        for _ in range(CHANGED_PER_SCRAPE):
            update_one(store, metrics, fleet, next(counter), flip=False)

    def flip() -> None:
        update_one(store, metrics, fleet, next(counter), flip=True)

    # What /metrics asks for: the body's chunks (`render` would join them).
    def text() -> object:
        return metrics.exposition(None)

    def gzipped() -> object:
        return metrics.exposition(None, gzip=True)

    def prometheus() -> object:
        return metrics.exposition(PROMETHEUS_ACCEPT, gzip=True)

    costs = {
        "first_gzip_ms": _ms(gzipped, 1)["median"],
        "unchanged_text_ms": _ms(text, 30),
        "unchanged_gzip_ms": _ms(gzipped, 30),
        "unchanged_prometheus_ms": _ms(prometheus, 30),
        "after_one_refresh_text_ms": _after(refresh, text, 20),
        "after_one_refresh_gzip_ms": _after(refresh, gzipped, 20),
        "after_one_refresh_prometheus_ms": _after(refresh, prometheus, 20),
        "after_status_change_gzip_ms": _after(flip, gzipped, 10),
        "after_15s_of_polls_gzip_ms": _after(refresh_interval, gzipped, 20),
        "after_15s_of_polls_prometheus_ms": _after(refresh_interval, prometheus, 20),
        "after_15s_of_polls_text_ms": _after(refresh_interval, text, 10),
        "gzip_bytes": len(metrics.render(None, gzip=True)[0]),
    }
    return costs, store, metrics


def render_costs(fleet: Fleet) -> dict[str, Any]:
    """In-process cost of rendering: prometheus_client and the exporter's renderer."""
    current, store, metrics = _exporter_costs(fleet)
    body, _ = metrics.render(None)
    # The old way: prometheus_client's encoder over SnapshotCollector and the own registry.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(store))
    for collector in list(metrics.registry._collector_to_names):
        registry.register(collector)
    old = generate_latest(registry)
    return {
        "lines": body.count(b"\n"),
        "text_bytes": len(body),
        "gzip_bytes": len(metrics.render(None, gzip=True)[0]),
        "generate_latest_text_ms": _ms(lambda: generate_latest(registry), 3),
        "generate_latest_bytes": len(old),
        "gzip_level1_of_that_ms": _ms(lambda: gzip.compress(old, compresslevel=1), 3),
        "current": current,
        "_text": body,
    }


def promtool_check(text: bytes) -> dict[str, Any]:
    """`promtool check metrics` on the current exposition."""
    with tempfile.NamedTemporaryFile(suffix=".prom") as handle:
        handle.write(text)
        handle.flush()
        try:
            with open(handle.name, "rb") as stdin:
                done = subprocess.run(
                    ["promtool", "check", "metrics"],
                    stdin=stdin,
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
        except FileNotFoundError:
            return {"available": False}
    output = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()
    return {"available": True, "returncode": done.returncode, "output": output[:20]}


# ---------------------------------------------------------------------------------------------
# Scrapers.


async def _scraper(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    *,
    requests: int,
    deadline: float,
    pause: float,
    start_after: float = 0.0,
) -> tuple[list[float], int]:
    latencies: list[float] = []
    size = 0
    if start_after:
        await asyncio.sleep(start_after)
    while len(latencies) < requests and time.monotonic() < deadline:
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            body = await response.read()
            assert response.status == 200, response.status
        latencies.append((time.perf_counter() - started) * 1e3)
        size = len(body)
        if pause:
            await asyncio.sleep(pause)
    return latencies, size


async def _curl_scraper(
    url: str, headers: dict[str, str], *, requests: int, pause: float, start_after: float
) -> list[float]:
    """The same scrapes with curl (C, one process, one kept-alive connection): time_total."""
    command = ["curl", "-s", "-w", "%{time_total}\\n"]
    if pause:
        command += ["--rate", f"{round(1 / pause)}/s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    for _ in range(requests):
        command += ["-o", "/dev/null", url]
    await asyncio.sleep(start_after)
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return [float(line) * 1e3 for line in out.decode().split()]


@dataclass(frozen=True)
class Scenario:
    """How the store changes on the server and how the scrapers pace themselves."""

    name: str
    churn: float  # container updates per second
    flip_every: float  # seconds between listener status changes; 0: never
    pause: float  # seconds each scraper waits between scrapes


async def scrape_server(
    *,
    variant: str,
    scenario: Scenario,
    containers: int,
    listeners: int,
    requests: int,
    max_seconds: float,
) -> dict[str, Any]:
    """Start a server process and time two concurrent scrapers per format."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.run",
        "scrape-server",
        "--variant",
        variant,
        "--containers",
        str(containers),
        "--listeners",
        str(listeners),
        "--churn",
        f"{scenario.churn:g}",
        "--flip-every",
        f"{scenario.flip_every:g}",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 120)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"scrape server did not start: {line!r}")
        url = f"http://127.0.0.1:{int(line.split()[1])}/metrics"
        results: dict[str, Any] = {}
        connector = aiohttp.TCPConnector(limit=4)
        async with aiohttp.ClientSession(auto_decompress=False, connector=connector) as session:
            await _scraper(  # warm-up
                session, url, FORMATS["gzip"], requests=2, deadline=time.monotonic() + 60, pause=0
            )
            for name, headers in FORMATS.items():
                cpu_before = process_cpu_seconds(process.pid)
                deadline = time.monotonic() + max_seconds
                outcomes = await asyncio.gather(
                    *(
                        _scraper(
                            session,
                            url,
                            headers,
                            requests=requests,
                            deadline=deadline,
                            pause=scenario.pause,
                            # Two independent Prometheus servers are not in step.
                            start_after=index * scenario.pause / 2,
                        )
                        for index in range(2)
                    )
                )
                cpu = process_cpu_seconds(process.pid) - cpu_before
                latencies = [value for lat, _ in outcomes for value in lat]
                results[name] = {
                    "latency_ms": summary(latencies),
                    "body_bytes": outcomes[0][1],
                    "server_cpu_ms_per_scrape": cpu * 1e3 / max(1, len(latencies)),
                }
                print(
                    f"  {variant}, {scenario.name}, {name}: median {median(latencies):.2f} ms,"
                    f" p99 {summary(latencies)['p99']:.2f} ms over {len(latencies)} scrapes",
                    flush=True,
                )
        for name in CURL_FORMATS:
            cpu_before = process_cpu_seconds(process.pid)
            runs = await asyncio.gather(
                *(
                    _curl_scraper(
                        url,
                        FORMATS[name],
                        requests=min(requests, round(max_seconds / max(scenario.pause, 0.05))),
                        pause=scenario.pause,
                        start_after=index * scenario.pause / 2,
                    )
                    for index in range(2)
                )
            )
            cpu = process_cpu_seconds(process.pid) - cpu_before
            latencies = [value for run in runs for value in run]
            results[f"{name} (curl)"] = {
                "latency_ms": summary(latencies),
                "body_bytes": results[name]["body_bytes"],
                "server_cpu_ms_per_scrape": cpu * 1e3 / max(1, len(latencies)),
            }
            print(
                f"  {variant}, {scenario.name}, {name} (curl): median {median(latencies):.2f} ms,"
                f" p99 {summary(latencies)['p99']:.2f} ms over {len(latencies)} scrapes",
                flush=True,
            )
        return results
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


def _cost_rows(costs: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = [
        [
            "prometheus_client generate_latest (SnapshotCollector + own registry)",
            costs["generate_latest_text_ms"]["median"],
        ],
        ["  + gzip level 1 of that body", costs["gzip_level1_of_that_ms"]["median"]],
    ]
    for key, what in (
        ("first_gzip_ms", "first render, gzip (cold caches)"),
        ("unchanged_text_ms", "store unchanged since last scrape, text"),
        ("unchanged_gzip_ms", "store unchanged since last scrape, gzip"),
        ("unchanged_prometheus_ms", "store unchanged since last scrape, OpenMetrics+gzip"),
        ("after_one_refresh_text_ms", "after one container refresh, text"),
        ("after_one_refresh_gzip_ms", "after one container refresh, gzip"),
        ("after_one_refresh_prometheus_ms", "after one container refresh, OpenMetrics+gzip"),
        ("after_status_change_gzip_ms", "after one listener status change, gzip"),
        ("after_15s_of_polls_text_ms", f"after {CHANGED_PER_SCRAPE} container refreshes, text"),
        ("after_15s_of_polls_gzip_ms", f"after {CHANGED_PER_SCRAPE} container refreshes, gzip"),
        (
            "after_15s_of_polls_prometheus_ms",
            f"after {CHANGED_PER_SCRAPE} container refreshes, OpenMetrics+gzip",
        ),
        ("gzip_bytes", "gzip body, bytes"),
    ):
        value = costs["current"][key]
        rows.append([what, value["median"] if isinstance(value, dict) else value])
    return rows


async def run(
    *,
    containers: int,
    listeners: int,
    requests: int,
    max_seconds: float,
    variants: list[str],
    changed_per_scrape: int,
    flip_every: float,
    pause: float,
) -> dict[str, Any]:
    fleet = make_fleet(containers, listeners)
    churn = changed_per_scrape / pause
    costs = render_costs(fleet)
    text = costs.pop("_text")
    promtool = promtool_check(text)
    del fleet, text
    scenarios = [
        Scenario("static store, back-to-back scrapes", 0.0, 0.0, 0.0),
        Scenario(
            f"polling store: {changed_per_scrape} containers refreshed between scrapes"
            f" ({churn:.0f}/s, {pause:g} s apart), a status flip every {flip_every:g} s",
            churn,
            flip_every,
            pause,
        ),
    ]
    http: list[dict[str, Any]] = []
    rows: list[list[object]] = []
    for scenario in scenarios:
        for variant in variants:
            results = await scrape_server(
                variant=variant,
                scenario=scenario,
                containers=containers,
                listeners=listeners,
                requests=requests,
                max_seconds=max_seconds,
            )
            http.append({"variant": variant, "scenario": scenario.__dict__, "formats": results})
            for name, result in results.items():
                latency = result["latency_ms"]
                rows.append(
                    [
                        variant,
                        scenario.name,
                        name,
                        int(latency["n"]),
                        f"{result['body_bytes'] / 1e6:.2f}",
                        f"{latency['median']:.2f} ({verdict(latency['median'], MEDIAN_TARGET_MS)})",
                        f"{latency['p99']:.2f} ({verdict(latency['p99'], P99_TARGET_MS)})",
                        f"{latency['max']:.1f}",
                        f"{result['server_cpu_ms_per_scrape']:.1f}",
                    ]
                )
    table = print_table(
        f"/metrics with {containers * listeners:,} listeners, two concurrent scrapers",
        [
            "variant",
            "scenario",
            "format",
            "scrapes",
            "body MB",
            "median ms",
            "p99 ms",
            "max ms",
            "server CPU ms/scrape",
        ],
        rows,
    )
    cost_table = print_table(
        f"Render cost in-process, ms ({costs['lines']:,} lines, {costs['text_bytes'] / 1e6:.1f} MB"
        f" text, {costs['gzip_bytes'] / 1e6:.2f} MB gzip)",
        ["what", "current (exporter)"],
        _cost_rows(costs),
    )
    print(f"promtool check metrics (text): rc={promtool.get('returncode')}")
    return {
        "parameters": {
            "containers": containers,
            "listeners_per_container": listeners,
            "requests_per_scraper": requests,
            "max_seconds_per_format": max_seconds,
            "fill": "SnapshotStore.record_success with synthetic ListenerStatus values",
            "changed_per_scrape": changed_per_scrape,
            "pause_seconds": pause,
            "flip_every_seconds": flip_every,
        },
        "render_costs": costs,
        "promtool_text": promtool,
        "http": http,
        "table": table,
        "cost_table": cost_table,
    }
