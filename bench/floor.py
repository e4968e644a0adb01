"""Issue 18, targets 2, 3 and 5: /metrics against a static server holding the same bytes.

Each server is a `python -m bench.run scrape-server` process with the same fleet, filled as
`scrape` fills it (1,000 containers x 10 synthetic listeners by default):
- `current`: the exporter's app (`create_app` with its `ExporterMetrics`), as in `scrape`;
- `static`, the floor: an aiohttp app that rendered every format's body once, at its start,
  and answers each scrape with those bytes (`web.Response(body=...)`), the usual way to serve
  bytes with aiohttp: per scrape it does what aiohttp does and nothing else;
- `static-stream`, the floor of the exporter's own way of sending: the same bytes, rendered once,
  sent as the exporter sends a body (`exporter.web.serve_exposition`, one chunk).
All serve with the same aiohttp and the same Python, so the ratio to a floor is what the
exporter adds to serving the bytes.

Scenarios, one after the other:
- static store: the stores never change, scrapes follow each other back to back;
- polling store (when asked for): the `current` server changes its store as `scrape`'s polling
  scenario does (250 containers refreshed between two scrapes of a scraper, a status flip
  every 30 s, scrapes 0.2 s apart); the floor is measured beside it with the same pauses,
  while that churn runs in the other process.
In each of `rounds` rounds every format is scraped by two concurrent aiohttp scrapers from
each server in turn (and text by curl too), so both servers see the same machine load; the
medians are over all rounds. The RSS (VmRSS) of each `current` server is read after the fill
(before any scrape), after one scrape of every format, and after the scrape load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import REPO, print_table, process_cpu_seconds, summary
from bench.scrape import FORMATS, PROMETHEUS_ACCEPT, _curl_scraper, _scraper
from exporter.exposition import Exposition
from exporter.metrics import ExporterMetrics
from exporter.negotiation import accepts_gzip, accepts_openmetrics
from exporter.web import serve_exposition

RATIO_TARGET = 2.0  # target 2: text median at most 2x the floor's
# What the target is about: uncompressed bodies, text and OpenMetrics; the gzip formats beside.
SCRAPE_FORMATS = {
    **FORMATS,
    "openmetrics": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "identity"},
}
TARGETED = ("text", "openmetrics", "text (curl)")
RSS_TARGET_MIB = 100.0  # target 3


def static_app(metrics: ExporterMetrics, *, stream: bool = False) -> web.Application:
    """A floor: every format rendered once, now; each scrape answered with those bytes."""
    bodies = {
        (openmetrics, gzip): metrics.render(PROMETHEUS_ACCEPT if openmetrics else None, gzip=gzip)
        for openmetrics in (False, True)
        for gzip in (False, True)
    }

    async def handler(request: web.Request) -> web.StreamResponse:
        gzip = accepts_gzip(",".join(request.headers.getall("Accept-Encoding", [])))
        openmetrics = accepts_openmetrics(",".join(request.headers.getall("Accept", [])))
        body, content_type = bodies[(openmetrics, gzip)]
        if stream:
            return await serve_exposition(request, Exposition((body,), content_type, gzip=gzip))
        headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


def process_rss_bytes(pid: int) -> int:
    """Another process's VmRSS, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Server:
    """A running scrape-server process."""

    variant: str
    process: asyncio.subprocess.Process
    url: str
    rss_after_fill: int


@contextlib.asynccontextmanager
async def server_process(
    variant: str, *, containers: int, listeners: int, churn: float = 0.0, flip_every: float = 0.0
) -> AsyncIterator[Server]:
    """`python -m bench.run scrape-server` until the block ends (SIGTERM, then SIGKILL)."""
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
        f"{churn:g}",
        "--flip-every",
        f"{flip_every:g}",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 300)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"scrape server did not start: {line!r}")
        url = f"http://127.0.0.1:{int(line.split()[1])}/metrics"
        yield Server(variant, process, url, process_rss_bytes(process.pid))
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@dataclass
class Tally:
    """Latencies and server CPU of one server and format, over all rounds."""

    latencies: list[float]
    cpu_seconds: float = 0.0
    body_bytes: int = 0


async def _round(
    session: aiohttp.ClientSession,
    server: Server,
    name: str,
    tally: Tally,
    *,
    requests: int,
    pause: float,
    curl: bool,
) -> None:
    cpu_before = process_cpu_seconds(server.process.pid)
    headers = SCRAPE_FORMATS["text" if curl else name]
    if curl:
        runs = await asyncio.gather(
            *(
                _curl_scraper(
                    server.url, headers, requests=requests, pause=pause, start_after=i * pause / 2
                )
                for i in range(2)
            )
        )
        latencies = [value for run in runs for value in run]
    else:
        outcomes = await asyncio.gather(
            *(
                _scraper(
                    session,
                    server.url,
                    headers,
                    requests=requests,
                    deadline=time.monotonic() + 120,
                    pause=pause,
                    start_after=i * pause / 2,
                )
                for i in range(2)
            )
        )
        latencies = [value for lat, _ in outcomes for value in lat]
        tally.body_bytes = outcomes[0][1]
    tally.cpu_seconds += process_cpu_seconds(server.process.pid) - cpu_before
    tally.latencies.extend(latencies)


async def compare(
    servers: list[Server], *, rounds: int, requests: int, pause: float, curl_text: bool = True
) -> dict[str, Any]:
    """Scrape every server in turn, format by format, `rounds` times; RSS of each server."""
    names = [*SCRAPE_FORMATS, *(["text (curl)"] if curl_text else [])]
    tallies = {(s.variant, name): Tally([]) for s in servers for name in names}
    rss: dict[str, dict[str, int]] = {s.variant: {"after_fill": s.rss_after_fill} for s in servers}
    connector = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(auto_decompress=False, connector=connector) as session:
        for server in servers:  # one scrape of every format: the first renders fill the caches
            for headers in SCRAPE_FORMATS.values():
                await _scraper(
                    session, server.url, headers, requests=1, deadline=time.monotonic() + 120,
                    pause=0,
                )  # fmt: skip
            rss[server.variant]["after_first_scrapes"] = process_rss_bytes(server.process.pid)
        for number in range(rounds):
            for name in names:
                for server in servers:
                    await _round(
                        session,
                        server,
                        name,
                        tallies[(server.variant, name)],
                        requests=requests,
                        pause=pause,
                        curl=name.endswith("(curl)"),
                    )
            print(f"    round {number + 1}/{rounds} done", flush=True)
    for server in servers:
        rss[server.variant]["after_load"] = process_rss_bytes(server.process.pid)
    results: dict[str, Any] = {}
    for (variant, name), tally in tallies.items():
        results.setdefault(variant, {})[name] = {
            "latency_ms": summary(tally.latencies),
            "body_bytes": tally.body_bytes,
            "server_cpu_ms_per_scrape": tally.cpu_seconds * 1e3 / max(1, len(tally.latencies)),
        }
    return {"formats": results, "rss_bytes": rss}


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f}"


FLOORS = ("static", "static-stream")


def rows_of(scenario: str, listeners: int, outcome: dict[str, Any]) -> list[list[object]]:
    """Table rows: each format of the current server against both floors of the same run."""
    formats = outcome["formats"]
    rows: list[list[object]] = []
    for name, result in formats["current"].items():
        latency = result["latency_ms"]
        bases = [formats[floor][name]["latency_ms"]["median"] for floor in FLOORS]
        ratios = [latency["median"] / base for base in bases]
        verdict = ""
        if name in TARGETED:
            verdict = f" ({'met' if max(ratios) <= RATIO_TARGET else 'MISSED'})"
        rows.append(
            [
                scenario,
                f"{listeners:,}",
                name,
                int(latency["n"]),
                f"{result['body_bytes'] / 1e6:.2f}" if result["body_bytes"] else "",
                f"{latency['median']:.2f}",
                f"{latency['p99']:.2f}",
                f"{bases[0]:.2f}",
                f"{bases[1]:.2f}",
                f"{ratios[0]:.2f} / {ratios[1]:.2f}{verdict}",
                f"{result['server_cpu_ms_per_scrape']:.1f}",
                " / ".join(
                    f"{formats[floor][name]['server_cpu_ms_per_scrape']:.1f}" for floor in FLOORS
                ),
            ]
        )
    return rows


HEADER = [
    "scenario",
    "listeners",
    "format",
    "scrapes",
    "body MB",
    "median ms",
    "p99 ms",
    "floor median ms (Response)",
    "floor median ms (stream)",
    "median / floors (vs 2)",
    "server CPU ms/scrape",
    "floors' CPU ms/scrape",
]


def rss_rows(scenario: str, listeners: int, rss: dict[str, int]) -> list[object]:
    worst = max(rss["after_fill"], rss["after_load"]) / 2**20
    return [
        scenario,
        f"{listeners:,}",
        _mib(rss["after_fill"]),
        _mib(rss["after_first_scrapes"]),
        _mib(rss["after_load"]),
        f"{worst / RSS_TARGET_MIB:.2f} ({'met' if worst <= RSS_TARGET_MIB else 'MISSED'})",
    ]


async def measure(
    *,
    containers: int,
    listeners: int,
    rounds: int,
    requests: int,
    polling: bool,
    changed_per_scrape: int = 250,
    flip_every: float = 30.0,
    pause: float = 0.2,
) -> dict[str, Any]:
    """The static-store scenario (and the polling one if asked), current against the floors."""
    size = {"containers": containers, "listeners": listeners}
    scenarios = [("static store", 0.0, 0.0, 0.0, requests)]
    if polling:
        churn = changed_per_scrape / pause
        scenarios.append(("polling store", churn, flip_every, pause, max(1, requests // 4)))
    outcomes: dict[str, Any] = {}
    for scenario, churn, flips, gap, count in scenarios:
        async with (
            server_process("current", **size, churn=churn, flip_every=flips) as current,
            server_process("static", **size) as floor,
            server_process("static-stream", **size) as stream,
        ):
            print(f"  {containers * listeners:,} listeners, {scenario}", flush=True)
            outcome = await compare(
                [current, floor, stream], rounds=rounds, requests=count, pause=gap
            )
        outcome["churn_per_second"] = churn
        outcomes[scenario] = outcome
    return outcomes


async def run(
    *, containers: list[int], listeners: int, rounds: int, requests: int, polling: bool
) -> dict[str, Any]:
    """Every fleet size: the scenarios, then one table of latencies and one of RSS."""
    sizes: dict[str, Any] = {}
    rows: list[list[object]] = []
    memory: list[list[object]] = []
    for count in containers:
        outcomes = await measure(
            containers=count,
            listeners=listeners,
            rounds=rounds,
            requests=requests,
            polling=polling,
        )
        sizes[str(count * listeners)] = outcomes
        for scenario, outcome in outcomes.items():
            rows.extend(rows_of(scenario, count * listeners, outcome))
            memory.append(rss_rows(scenario, count * listeners, outcome["rss_bytes"]["current"]))
    table = print_table(
        "/metrics against the static floors (same bytes, same aiohttp), two concurrent scrapers,"
        f" {rounds} interleaved rounds",
        HEADER,
        rows,
    )
    rss_table = print_table(
        "RSS of the exporter's /metrics server process (MiB)",
        ["scenario", "listeners", "after fill", "after first scrapes", "after load", "vs 100 MiB"],
        memory,
    )
    return {
        "parameters": {
            "containers": containers,
            "listeners_per_container": listeners,
            "rounds": rounds,
            "requests_per_scraper_per_round": requests,
            "polling_scenario": polling,
            "fill": "bench.scrape.fill (SnapshotStore.record_success with synthetic listeners)",
        },
        "sizes": sizes,
        "table": table,
        "rss_table": rss_table,
    }
