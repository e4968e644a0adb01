"""Shared pieces of the benchmarks: statistics, machine facts, tables, JSON, helper processes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from exporter.simulator import SimAccount

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"

# The simulator's default demo credentials (exporter.simulator.Simulator.with_fleet).
SIM_ACCOUNT = "demo-account"
SIM_USERNAME = "demo@example.com"
SIM_PASSWORD = "demo-password"


# ---------------------------------------------------------------------------------------------
# Statistics.


def account_config(
    account: SimAccount, base_url: str, max_requests_per_second: float
) -> dict[str, Any]:
    """The config entry of a simulator account with all its containers."""
    return {
        "account_id": account.account_id,
        "base_url": base_url,
        "username": account.username,
        "password": account.password,
        "max_requests_per_second": max_requests_per_second,
        "containers": [{"id": c.container_id, "name": c.name} for c in account.containers.values()],
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction 0..1) of a non-empty sequence."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p99, min, max of a sample (NaN for an empty one)."""
    return {
        "n": float(len(values)),
        "median": median(values),
        "p99": percentile(values, 0.99),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


# ---------------------------------------------------------------------------------------------
# The machine and the run.


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def exporter_digest() -> str:
    """A short digest of exporter/*.py as measured (the tree may differ from the commit)."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "exporter").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPUs, model, Python, library versions, commit, load."""
    dirty = _git("status", "--porcelain", "--", "exporter")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "aiohttp": _version("aiohttp"),
        "prometheus_client": _version("prometheus_client"),
        "pydantic": _version("pydantic"),
        "git_head": _git("rev-parse", "--short", "HEAD"),
        "exporter_dirty": bool(dirty),
        "exporter_sha256": exporter_digest(),
        "loadavg_start": os.getloadavg()[0],
        "environment": {
            key: value
            for key, value in os.environ.items()
            if key.startswith(("MALLOC_", "PYTHONMALLOC", "PYTHONGC"))
        },
    }


def finish_run(info: dict[str, Any]) -> None:
    """Record the load at the end of a run: the noise other processes added."""
    info["loadavg_end"] = os.getloadavg()[0]


def write_json(name: str, document: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    return path


def rss_bytes() -> int:
    """This process's resident set size now (VmRSS in /proc/self/status)."""
    return _status_field("VmRSS")


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM)."""
    return _status_field("VmHWM")


def _status_field(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{name} not in /proc/self/status")


def cpu_seconds() -> float:
    """User + system CPU time of this process (not its children)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Output.


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: floats with `digits` significant digits, the rest as str."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}g}"
    return str(value)


def print_table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Print (and return) a Markdown table."""
    cells = [[fmt(cell) for cell in row] for row in rows]
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in cells),
        "",
    ]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def verdict(measured: float, target: float) -> str:
    """'met' or 'MISSED', with measured/target as a ratio (lower is better)."""
    ratio = measured / target if target else math.inf
    return f"{'met' if ratio <= 1 else 'MISSED'} ({ratio:.2f}x)"


# ---------------------------------------------------------------------------------------------
# The simulator as a separate process, so that its memory and CPU are not the exporter's.


@dataclass
class SimulatorProcess:
    """A `python -m exporter simulate` child process and its API base URL."""

    process: asyncio.subprocess.Process
    base_url: str
    port: int

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/__simulator"


@contextlib.asynccontextmanager
async def simulator_process(
    *,
    containers: int,
    listeners_per_container: int,
    rate_limit_rps: float,
    result_delay_seconds: float,
    seed: int = 0,
    account_id: str = SIM_ACCOUNT,
    username: str = SIM_USERNAME,
    password: str = SIM_PASSWORD,
) -> AsyncIterator[SimulatorProcess]:
    """Run the simulator alone in a child process on a free loopback port until the block ends."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "exporter",
        "simulate",
        "--listen",
        f"127.0.0.1:{port}",
        "--containers",
        str(containers),
        "--listeners-per-container",
        str(listeners_per_container),
        "--rate-limit-rps",
        f"{rate_limit_rps:g}",
        "--result-delay-seconds",
        f"{result_delay_seconds:g}",
        "--seed",
        str(seed),
        "--account-id",
        account_id,
        "--username",
        username,
        "--password",
        password,
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    base_url = ""
    try:
        deadline = time.monotonic() + 60
        while not base_url:
            line = await asyncio.wait_for(process.stdout.readline(), deadline - time.monotonic())
            if not line:
                raise RuntimeError(f"the simulator exited early: {' '.join(command)}")
            text = line.decode().strip()
            if text.startswith("API base URL:"):
                base_url = text.split(":", 1)[1].strip()
        # Keep draining its output so it can never block on a full pipe.
        drain = asyncio.create_task(_drain(process.stdout))
        yield SimulatorProcess(process, base_url, port)
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
