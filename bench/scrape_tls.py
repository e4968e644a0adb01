"""Target 3 over TLS with basic auth: gzip /metrics at 10,000 listeners, against plain HTTP in
the same run. Target: the TLS + basic auth median at most 1.5x the plain median.

The server is the scrape benchmark's (`python -m bench.run scrape-server`, bench/scrape.py:
1,000 containers x 10 listeners, the store changing as under polling), served as the daemon
serves it, once without a web config file and once with one: TLS 1.2/1.3 with a trustme ECDSA
P-256 certificate, and one `basic_auth_users` entry hashed with bcrypt at cost 10 (the
toolkit's advice, about 50 ms a check). Two scrapers send Prometheus's gzip Accept-Encoding.

Two connection patterns, each for both servers:
- kept alive: each scraper reuses its connection (a handshake only at the start);
- a new connection per scrape: what Prometheus does at its usual 15-60 s interval, since the
  exporter closes idle connections after 4 s; every scrape pays a TLS handshake.

Each pattern is scraped by aiohttp (Python's TLS on both ends) and by curl (OpenSSL in C, as
fast a client as Prometheus's Go TLS), so the server's share of the cost shows. Plain and TLS
alternate over `rounds` rounds, so a change in the machine's load hits both. The TLS server
reports how many bcrypt checks it ran: the cache keeps that at 1 (one user, one password),
however many scrapes and connections there were.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import trustme

from bench.common import REPO, median, print_table, process_cpu_seconds, summary, verdict
from bench.scrape import CHANGED_PER_SCRAPE, FORMATS, _scraper

RATIO_TARGET = 1.5
USER, PASSWORD = "prometheus", "bench-scrape-password"
BCRYPT_COST = 10
PATTERNS = {"kept alive": False, "new connection per scrape": True}


@dataclass(frozen=True)
class Secure:
    """The TLS server's web config file and what a scraper needs to get in."""

    web_config: Path
    client: ssl.SSLContext
    authorization: str
    ca_file: Path


def make_secure(directory: Path) -> Secure:
    """A CA, the server's certificate and key, and a web config with one bcrypt user."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    web_config = directory / "web-config.yml"
    web_config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {cert_file}\n"
        f"  key_file: {key_file}\n"
        "basic_auth_users:\n"
        f"  {USER}: {hashed}\n",
        encoding="utf-8",
    )
    client = ssl.create_default_context()
    ca.configure_trust(client)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Secure(web_config, client, f"Basic {token}", ca_file)


async def _start(arguments: list[str]) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.run",
        "scrape-server",
        *arguments,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 120)
    if not line.startswith(b"PORT "):
        process.kill()
        raise RuntimeError(f"scrape server did not start: {line!r}")
    return process, int(line.split()[1])


async def _stop(process: asyncio.subprocess.Process) -> int | None:
    """SIGTERM; the bcrypt checks the server reports on its way out (None: no basic auth)."""
    assert process.stdout is not None
    process.terminate()
    rest = await process.stdout.read()
    await process.wait()
    for line in rest.decode().splitlines():
        if line.startswith("VERIFICATIONS "):
            return int(line.split()[1])
    return None


async def _measure(
    url: str,
    *,
    client: ssl.SSLContext | None,
    authorization: str | None,
    new_connections: bool,
    requests: int,
    pause: float,
    pid: int,
) -> dict[str, Any]:
    headers = dict(FORMATS["gzip"])
    if authorization is not None:
        headers["Authorization"] = authorization
    connector = aiohttp.TCPConnector(
        limit=4, force_close=new_connections, ssl=client if client is not None else True
    )
    async with aiohttp.ClientSession(auto_decompress=False, connector=connector) as session:
        await _scraper(  # warm-up: the first render and, with TLS, the first bcrypt check
            session, url, headers, requests=2, deadline=time.monotonic() + 60, pause=0
        )
        cpu_before = process_cpu_seconds(pid)
        outcomes = await asyncio.gather(
            *(
                _scraper(
                    session,
                    url,
                    headers,
                    requests=requests,
                    deadline=time.monotonic() + 120,
                    pause=pause,
                    start_after=index * pause / 2,
                )
                for index in range(2)
            )
        )
        cpu = process_cpu_seconds(pid) - cpu_before
    latencies = [value for lat, _ in outcomes for value in lat]
    return {
        "latencies_ms": latencies,
        "body_bytes": outcomes[0][1],
        "server_cpu_ms_per_scrape": cpu * 1e3 / max(1, len(latencies)),
    }


async def _curl(
    url: str,
    *,
    ca_file: Path | None,
    authorization: str | None,
    new_connections: bool,
    requests: int,
    pause: float,
    start_after: float,
) -> list[float]:
    """The same scrapes with one curl process: time_total of each, in ms."""
    command = ["curl", "-s", "-w", "%{time_total}\\n", "-H", "Accept-Encoding: gzip"]
    if pause:
        command += ["--rate", f"{round(1 / pause)}/s"]
    if ca_file is not None:
        command += ["--cacert", str(ca_file)]
    if authorization is not None:
        command += ["-H", f"Authorization: {authorization}"]
    if new_connections:
        command += ["-H", "Connection: close"]  # the server closes; curl connects again
    for _ in range(requests):
        command += ["-o", "/dev/null", url]
    await asyncio.sleep(start_after)
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return [float(line) * 1e3 for line in out.decode().split()]


async def run(
    *,
    containers: int,
    listeners: int,
    requests: int,
    rounds: int,
    changed_per_scrape: int = CHANGED_PER_SCRAPE,
    flip_every: float = 30.0,
    pause: float = 0.2,
) -> dict[str, Any]:
    churn = changed_per_scrape / pause
    server_args = [
        "--containers", str(containers), "--listeners", str(listeners),
        "--churn", f"{churn:g}", "--flip-every", f"{flip_every:g}",
    ]  # fmt: skip
    clients = ("aiohttp", "curl")
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {f"{pattern}, {client}": [] for pattern in PATTERNS for client in clients}
        for mode in ("plain", "tls+basic")
    }
    verifications: list[int | None] = []
    scrapes_with_auth = 0
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as directory:
        secure = make_secure(Path(directory))
        for round_number in range(rounds):
            for mode in ("plain", "tls+basic"):
                tls = mode == "tls+basic"
                extra = ["--web-config", str(secure.web_config)] if tls else []
                process, port = await _start(server_args + extra)
                url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/metrics"
                try:
                    for pattern, new_connections in PATTERNS.items():
                        result = await _measure(
                            url,
                            client=secure.client if tls else None,
                            authorization=secure.authorization if tls else None,
                            new_connections=new_connections,
                            requests=requests,
                            pause=pause,
                            pid=process.pid,
                        )
                        cpu_before = process_cpu_seconds(process.pid)
                        curl_runs = await asyncio.gather(
                            *(
                                _curl(
                                    url,
                                    ca_file=secure.ca_file if tls else None,
                                    authorization=secure.authorization if tls else None,
                                    new_connections=new_connections,
                                    requests=requests,
                                    pause=pause,
                                    start_after=index * pause / 2,
                                )
                                for index in range(2)
                            )
                        )
                        curl_latencies = [value for run in curl_runs for value in run]
                        curl_cpu = process_cpu_seconds(process.pid) - cpu_before
                        curl_result = {
                            "latencies_ms": curl_latencies,
                            "body_bytes": result["body_bytes"],
                            "server_cpu_ms_per_scrape": curl_cpu
                            * 1e3
                            / max(1, len(curl_latencies)),
                        }
                        for client, outcome in (("aiohttp", result), ("curl", curl_result)):
                            measured[mode][f"{pattern}, {client}"].append(outcome)
                            if tls:
                                scrapes_with_auth += len(outcome["latencies_ms"])
                            print(
                                f"  round {round_number + 1}, {mode}, {pattern}, {client}:"
                                f" median {median(outcome['latencies_ms']):.2f} ms over"
                                f" {len(outcome['latencies_ms'])} scrapes",
                                flush=True,
                            )
                        if tls:
                            scrapes_with_auth += 2  # the warm-up
                finally:
                    reported = await _stop(process)
                if tls:
                    verifications.append(reported)
    rows: list[list[object]] = []
    comparison: dict[str, Any] = {}
    for pattern in measured["plain"]:
        stats = {}
        for mode in ("plain", "tls+basic"):
            runs = measured[mode][pattern]
            latencies = [value for result in runs for value in result["latencies_ms"]]
            cpu = sum(r["server_cpu_ms_per_scrape"] for r in runs) / len(runs)
            stats[mode] = {
                "latency_ms": summary(latencies),
                "server_cpu_ms_per_scrape": cpu,
                "body_bytes": runs[-1]["body_bytes"],
            }
        ratio = stats["tls+basic"]["latency_ms"]["median"] / stats["plain"]["latency_ms"]["median"]
        comparison[pattern] = stats | {"median_ratio": ratio}
        for mode in ("plain", "tls+basic"):
            latency = stats[mode]["latency_ms"]
            rows.append(
                [
                    pattern,
                    mode,
                    int(latency["n"]),
                    f"{latency['median']:.2f}",
                    f"{latency['p99']:.2f}",
                    f"{stats[mode]['server_cpu_ms_per_scrape']:.1f}",
                    "" if mode == "plain" else f"{ratio:.2f} ({verdict(ratio, RATIO_TARGET)})",
                ]
            )
    table = print_table(
        f"gzip /metrics with {containers * listeners:,} listeners, "
        + (
            f"{changed_per_scrape} containers refreshed between scrapes"
            if changed_per_scrape
            else "store unchanged"
        )
        + f", {pause:g} s apart: plain HTTP against TLS + basic auth (bcrypt cost"
        f" {BCRYPT_COST}), {rounds} alternating rounds",
        ["connections", "server", "scrapes", "median ms", "p99 ms", "server CPU ms/scrape",
         "TLS/plain median"],
        rows,
    )  # fmt: skip
    print(
        f"bcrypt checks per TLS server run: {verifications}, for {scrapes_with_auth}"
        " authenticated scrapes in all",
        flush=True,
    )
    return {
        "parameters": {
            "containers": containers,
            "listeners_per_container": listeners,
            "requests_per_scraper": requests,
            "rounds": rounds,
            "changed_per_scrape": changed_per_scrape,
            "pause_seconds": pause,
            "flip_every_seconds": flip_every,
            "bcrypt_cost": BCRYPT_COST,
            "target_median_ratio": RATIO_TARGET,
        },
        "comparison": comparison,
        "bcrypt_verifications_per_server_run": verifications,
        "authenticated_scrapes": scrapes_with_auth,
        "raw": measured,
        "table": table,
    }
