"""Issue 18, targets 2, 3 and 5: /metrics against a static server holding the same bytes.

Each server is a `python -m bench.run scrape-server` process with the same fleet, filled as
`scrape` fills it (1,000 containers x 10 synthetic listeners by default):
- `current`: the exporter's app (`create_app` with its `ExporterMetrics`), as in `scrape`;
- `static`, the floor: an aiohttp app that rendered every format's body once, at its start,
  and answers each scrape with those bytes (`web.Response(body=...)`), so per scrape it does
  what aiohttp does and nothing else.
Both serve with the same aiohttp and the same Python, so the ratio between them is what the
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
from exporter.metrics import ExporterMetrics
from exporter.negotiation import accepts_gzip, accepts_openmetrics

RATIO_TARGET = 2.0  # target 2: text median at most 2x the floor's
# What the target is about: uncompressed bodies, text and OpenMetrics; the gzip formats beside.
SCRAPE_FORMATS = {
    **FORMATS,
    "openmetrics": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "identity"},
}
TARGETED = ("text", "openmetrics", "text (curl)")
RSS_TARGET_MIB = 100.0  # target 3


def static_app(metrics: ExporterMetrics) -> web.Application:
    """The floor: every format rendered once, now; each scrape answered with those bytes."""
    bodies = {
        (openmetrics, gzip): metrics.render(PROMETHEUS_ACCEPT if openmetrics else None, gzip=gzip)
        for openmetrics in (False, True)
        for gzip in (False, True)
    }

    async def handler(request: web.Request) -> web.Response:
        gzip = accepts_gzip(",".join(request.headers.getall("Accept-Encoding", [])))
        openmetrics = accepts_openmetrics(",".join(request.headers.getall("Accept", [])))
        body, content_type = bodies[(openmetrics, gzip)]
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


def rows_of(scenario: str, listeners: int, outcome: dict[str, Any]) -> list[list[object]]:
    """Table rows: each format of the current server against the floor of the same run."""
    floor = outcome["floor"]
    rows: list[list[object]] = []
    for name, result in outcome["current"]["formats"]["current"].items():
        base = floor["formats"]["static"][name]["latency_ms"]
        latency = result["latency_ms"]
        ratio = latency["median"] / base["median"]
        verdict = ""
        if name in TARGETED:
            verdict = f" ({'met' if ratio <= RATIO_TARGET else 'MISSED'})"
        rows.append(
            [
                scenario,
                f"{listeners:,}",
                name,
                int(latency["n"]),
                f"{result['body_bytes'] / 1e6:.2f}" if result["body_bytes"] else "",
                f"{latency['median']:.2f}",
                f"{latency['p99']:.2f}",
                f"{base['median']:.2f}",
                f"{base['p99']:.2f}",
                f"{ratio:.2f}{verdict}",
                f"{result['server_cpu_ms_per_scrape']:.1f}",
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
    "floor median ms",
    "floor p99 ms",
    "median / floor (vs 2)",
    "server CPU ms/scrape",
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
    """The static-store scenario (and the polling one if asked), current against the floor."""
    outcomes: dict[str, Any] = {}
    async with (
        server_process("current", containers=containers, listeners=listeners) as current,
        server_process("static", containers=containers, listeners=listeners) as floor,
    ):
        print(f"  {containers * listeners:,} listeners, static store", flush=True)
        both = await compare([current, floor], rounds=rounds, requests=requests, pause=0.0)
    outcomes["static store"] = {
        "current": {"formats": {"current": both["formats"]["current"]}},
        "floor": {"formats": {"static": both["formats"]["static"]}},
        "rss_bytes": both["rss_bytes"],
    }
    if polling:
        churn = changed_per_scrape / pause
        async with (
            server_process(
                "current",
                containers=containers,
                listeners=listeners,
                churn=churn,
                flip_every=flip_every,
            ) as current,
            server_process("static", containers=containers, listeners=listeners) as floor,
        ):
            print(f"  {containers * listeners:,} listeners, polling store", flush=True)
            both = await compare(
                [current, floor], rounds=rounds, requests=max(1, requests // 4), pause=pause
            )
        outcomes["polling store"] = {
            "current": {"formats": {"current": both["formats"]["current"]}},
            "floor": {"formats": {"static": both["formats"]["static"]}},
            "rss_bytes": both["rss_bytes"],
            "churn_per_second": churn,
        }
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
        "/metrics against the static floor (same bytes, same aiohttp), two concurrent scrapers,"
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
