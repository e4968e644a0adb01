"""Target 6, the webhook's side: answer time and the event loop's lag, with the ledger.

`python -m bench.run remediation` runs these phases beside those of bench/remediation.py; this
module also holds what both use (an exporter with remediation against the in-process
simulator, its config, payloads, posts).

Phase B (answer time, with the ledger): 100 containers x 10 listeners, simulator 1000/s, budget
100/s; `rounds` webhook posts of 1 and of `alerts` alerts each, naming listeners that are
listening (so each queued action ends `skipped_not_needed` after its check); between rounds the
bench waits for the actions to finish, so every round takes the same path. Latency is measured
at the client (send to body read, same process and event loop as the server) and inside
`Remediator.submit` (which awaits the ledger's commit). Twice, each with a fresh exporter and
simulator: the ledger on the disk (a temporary directory under `--dir`, default the system's
temporary directory) and on tmpfs (/dev/shm: the same code, but fsync costs nothing), the
in-memory baseline of the same run.

Phase D (event loop lag, with the ledger; same exporters as phase B): storms of `storm` webhook
posts sent at once by a client in a child process (so that its work is not on the exporter's
loop), while a monitor task on the exporter's loop sleeps 1 ms at a time and records how late
it wakes: unauthenticated posts (401, no ledger: the HTTP work alone), duplicates of one alert
(one admitted), and one alert each for distinct listeners (each admitted, checked and
finished; the simulator, in this process, answers the checks on the same loop). The window runs
from the first post until every admitted action has finished. The ledger's transactions are
timed in its worker thread, beside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import REPO, account_config, median, print_table, summary, verdict
from bench.ledger import MONITOR_SLEEP, launch, with_lag
from exporter.config import Config
from exporter.daemon import Exporter
from exporter.remediation import WebhookPayload, parse_payload
from exporter.simulator import Simulator, serve

ACCOUNT = "bench-account"
TOKEN = "bench-webhook-token"
ANSWER_TARGET_MS = 10.0
ANSWER_P99_TARGET_MS = 25.0
LAG_TARGET_MS = 5.0
TMPFS = Path("/dev/shm")


@contextlib.contextmanager
def storage_dir(directory: str | Path | None) -> Iterator[Path]:
    """A fresh ledger directory, deleted afterwards."""
    with tempfile.TemporaryDirectory(dir=directory, prefix="bench-remediation-") as path:
        yield Path(path)


def filesystem(path: Path) -> str:
    """The type of the file system `path` is on (from /proc/mounts), for the record."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    return kind


def exporter_config(sim: Simulator, base_url: str, budget: float, storage: Path) -> Config:
    return Config.model_validate(
        {
            "accounts": [account_config(sim.accounts[ACCOUNT], base_url, budget)],
            "storage": {"path": str(storage)},
            "poll": {
                "interval_seconds": 60,
                "result_timeout_seconds": 60,
                "request_timeout_seconds": 10,
            },
            "remediation": {
                "enabled": True,
                "dry_run": False,
                "auth": {"bearer_token": TOKEN},
                "cooldown_seconds": 900,
                "max_actions_per_hour": 10000,
                "verify_timeout_seconds": 60,
            },
        }
    )


def payload(alerts: list[tuple[str, str]]) -> bytes:
    document = {
        "version": "4",
        "status": "firing",
        "receiver": "boomi-remediation",
        "groupKey": '{}:{alertname="BoomiListenerErrored"}',
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": "BoomiListenerErrored"},
        "commonLabels": {"alertname": "BoomiListenerErrored", "account_id": ACCOUNT},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "BoomiListenerErrored",
                    "account_id": ACCOUNT,
                    "container_id": container_id,
                    "listener_id": listener_id,
                    "severity": "warning",
                },
                "annotations": {"summary": f"listener {listener_id} is errored"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph",
                "fingerprint": f"{index:016x}",
            }
            for index, (container_id, listener_id) in enumerate(alerts)
        ],
    }
    WebhookPayload.model_validate(document)  # the bench's own payload must be valid
    return json.dumps(document).encode()


async def start(sim: Simulator, budget: float, storage: Path) -> tuple[Exporter, Any, str]:
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    exporter = Exporter(exporter_config(sim, base_url, budget, storage))
    port = await exporter.start("127.0.0.1", 0)
    deadline = time.monotonic() + 120
    while not (exporter.store.containers() and exporter.store.ready()):
        if time.monotonic() > deadline:
            raise RuntimeError("the exporter did not finish its first poll in 120 s")
        await asyncio.sleep(0.05)
    return exporter, runner, f"http://127.0.0.1:{port}/webhook/alertmanager"


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, float]:
    """POST the payload; (latency in ms, wall-clock time the answer was read)."""
    started = time.perf_counter()
    async with session.post(
        url,
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    ) as response:
        answer = await response.json()
        assert response.status == 200, answer
    return (time.perf_counter() - started) * 1e3, time.time()


async def _settled(exporter: Exporter, within_seconds: float = 60) -> None:
    """Wait until no ledger entry is queued or running (every admitted action ended)."""
    ledger = exporter.ledger
    assert ledger is not None
    deadline = time.monotonic() + within_seconds
    while any(entry["finished_at"] is None for entry in await ledger.recent(1000)):
        if time.monotonic() > deadline:
            raise RuntimeError("admitted actions did not finish in time")
        await asyncio.sleep(0.01)


async def answer_times(
    exporter: Exporter, url: str, listeners: Sequence[Any], rounds: int, alerts: int
) -> dict[str, Any]:
    """Phase B: webhook answer time with `alerts` alerts per payload, `rounds` times."""
    remediator = exporter.remediator
    submit_ms: list[float] = []
    original_submit = remediator.submit

    async def timed_submit(payload: WebhookPayload) -> list[dict[str, str]]:
        started = time.perf_counter()
        try:
            return await original_submit(payload)
        finally:
            submit_ms.append((time.perf_counter() - started) * 1e3)

    remediator.submit = timed_submit  # type: ignore[method-assign]
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for index in range(rounds + 1):  # round 0 warms up
                start = (index * alerts) % len(listeners)
                chosen = (list(listeners) * 2)[start : start + alerts]
                body = payload([(lst.container_id, lst.listener_id) for lst in chosen])
                latency_ms, _ = await post(session, url, body)
                if index:
                    latencies.append(latency_ms)
                await _settled(exporter)
    finally:
        remediator.submit = original_submit  # type: ignore[method-assign]
    return {
        "rounds": rounds,
        "alerts_per_payload": alerts,
        "client_latency_ms": summary(latencies),
        "submit_ms": summary(submit_ms[1:]),
        "warmup_ms": submit_ms[0] if submit_ms else None,
    }


# The storm's client, in a child process: it reads the bodies, says "ready", waits for "go",
# sends every post at once and prints [status, latency ms] for each.
STORM_CLIENT = """
import asyncio, json, sys, time
import aiohttp

async def main():
    url, authorization, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bodies = [body.encode() for body in json.loads(sys.stdin.readline())]
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def one(n):
            started = time.perf_counter()
            async with session.post(url, data=bodies[n % len(bodies)], headers=headers) as r:
                await r.read()
                return [r.status, (time.perf_counter() - started) * 1e3]

        print(json.dumps(await asyncio.gather(*(one(n) for n in range(count)))), flush=True)

asyncio.run(main())
"""


async def storm(
    exporter: Exporter, url: str, bodies: Sequence[bytes], count: int, *, authorized: bool = True
) -> dict[str, Any]:
    """Phase D, one storm: `count` posts at once from a child process, the loop's lag meanwhile."""
    authorization = f"Bearer {TOKEN}" if authorized else "Bearer wrong-token"
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STORM_CLIENT, url, authorization, str(count),
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(json.dumps([body.decode() for body in bodies]).encode() + b"\n")
    await client.stdin.drain()
    assert (await client.stdout.readline()).strip() == b"ready"
    answers: list[list[float]] = []

    async def work() -> None:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        answers.extend(json.loads(await client.stdout.readline()))
        await _settled(exporter)

    measured = await with_lag(work)
    await client.wait()
    statuses = sorted({int(status) for status, _ in answers})
    return measured | {
        "statuses": statuses,
        "latency_ms": summary([latency for _, latency in answers]),
    }


def _time_transactions(exporter: Exporter) -> list[float]:
    """Seconds of each ledger transaction, measured in the ledger's worker thread."""
    ledger = exporter.ledger
    assert ledger is not None
    file = ledger._file
    together = file.together
    durations: list[float] = []

    def timed(calls: Sequence[Callable[[], object]]) -> list[tuple[bool, object]]:
        started = time.perf_counter()
        try:
            return together(calls)
        finally:
            durations.append(time.perf_counter() - started)

    file.together = timed  # type: ignore[method-assign]
    return durations


async def direct_storm(
    exporter: Exporter, body: bytes, count: int, *, with_ledger: bool = True
) -> dict[str, Any]:
    """Phase D without HTTP: `count` calls of `Remediator.submit`, one per loop turn (as
    requests arrive), on a parsed payload; without the ledger every alert is rejected."""
    remediator, document = exporter.remediator, parse_payload(body)
    kept = remediator.ledger
    quiet = logging.getLogger("exporter.remediation")
    level = quiet.level
    if not with_ledger:
        remediator.ledger = None
        quiet.setLevel(logging.CRITICAL)  # one "no ledger" error per call otherwise

    async def deliver(_: int) -> None:
        await remediator.submit(document)

    async def work() -> None:
        await launch(deliver, count)
        await _settled(exporter)

    try:
        return await with_lag(work)
    finally:
        remediator.ledger = kept
        quiet.setLevel(level)


async def ledger_phase(
    storage: Path, rounds: int, alerts: int, storm_size: int, repeat: int
) -> dict[str, Any]:
    """Phases B and D with the ledger under `storage`, on a fresh simulator and exporter."""
    sim = Simulator.with_fleet(
        account_id=ACCOUNT,
        containers=100,
        listeners_per_container=10,
        rate_limit_rps=1000,
        result_delay_seconds=0.05,
        restart_delay_seconds=2.0,
        seed=5,
    )
    listeners = list(sim.accounts[ACCOUNT].listeners.values())
    for listener in listeners:
        sim.set_status(ACCOUNT, listener.listener_id, "listening")
    exporter, runner, url = await start(sim, 100, storage)
    try:
        answers = {
            size: await answer_times(exporter, url, listeners, rounds, size) for size in (1, alerts)
        }
        transactions = _time_transactions(exporter)
        one = payload([(listeners[0].container_id, listeners[0].listener_id)])
        distinct = [payload([(lst.container_id, lst.listener_id)]) for lst in listeners]
        scenarios: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "idle (the exporter polling, 0.3 s)": lambda: with_lag(lambda: asyncio.sleep(0.3)),
            "HTTP: 401s, the HTTP work alone": lambda: storm(
                exporter, url, [one], storm_size, authorized=False
            ),
            "HTTP: duplicates of one alert (1 admitted)": lambda: storm(
                exporter, url, [one], storm_size
            ),
            "HTTP: distinct listeners (each admitted, checked, finished)": lambda: storm(
                exporter, url, distinct[:storm_size], storm_size
            ),
            "submit: duplicates, no ledger (all rejected)": lambda: direct_storm(
                exporter, one, storm_size, with_ledger=False
            ),
            "submit: duplicates of one alert (1 admitted)": lambda: direct_storm(
                exporter, one, storm_size
            ),
        }
        storms: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
        for _ in range(repeat):
            for name, scenario in scenarios.items():
                transactions.clear()
                result = await scenario()
                storms[name].append(result | {"transaction_seconds": list(transactions)})
    finally:
        await exporter.stop()
        await runner.cleanup()
    return {
        "storage": str(storage),
        "filesystem": filesystem(storage),
        "answer_times": {str(size): value for size, value in answers.items()},
        "storms": storms,
    }


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {key: value * 1e3 if key != "n" else value for key, value in summary(values).items()}


def ledger_tables(
    phases: dict[str, dict[str, Any]], rounds: int, storm_size: int, repeat: int
) -> str:
    rows: list[list[object]] = []
    for kind, phase in phases.items():
        for size, answers in phase["answer_times"].items():
            client, submit = answers["client_latency_ms"], answers["submit_ms"]
            rows.append(
                [
                    f"{size} alert(s), ledger on {kind} ({phase['filesystem']})",
                    f"{client['median']:.2f}",
                    f"{client['p99']:.2f}",
                    f"{submit['median']:.2f} / {submit['p99']:.2f}",
                    f"{verdict(client['median'], ANSWER_TARGET_MS)},"
                    f" p99 {verdict(client['p99'], ANSWER_P99_TARGET_MS)}",
                ]
            )
    text = print_table(
        f"Webhook answer with the ledger, client side, {rounds} posts each (ms)",
        ["payload", "median", "p99", "of which submit (median / p99)", "target"],
        rows,
    )
    rows = []
    for kind, phase in phases.items():
        for name, runs in phase["storms"].items():
            lag = _ms([value for run in runs for value in run["lag_seconds"]])
            writes = _ms([value for run in runs for value in run["transaction_seconds"]])
            window = median([run["duration_seconds"] for run in runs])
            statuses = sorted({code for run in runs for code in run.get("statuses", [])})
            rows.append(
                [
                    f"{name}, ledger on {kind}",
                    f"{window * 1e3:.0f}",
                    f"{lag['median']:.2f}",
                    f"{lag['p99']:.2f}",
                    f"{lag['max']:.2f}",
                    int(writes["n"]),
                    "-" if not writes["n"] else f"{writes['median']:.2f} / {writes['max']:.2f}",
                    ",".join(str(code) for code in statuses) or "-",
                    verdict(lag["max"], LAG_TARGET_MS),
                ]
            )
    text += print_table(
        f"Event loop lag during storms of {storm_size} deliveries, {repeat} storms each"
        f" (monitor sleeps {MONITOR_SLEEP * 1e3:g} ms; ms; window: median storm)",
        [
            "storm",
            "window",
            "lag median",
            "lag p99",
            "lag max",
            "ledger transactions",
            "transaction median / max",
            "HTTP status",
            "lag max vs 5 ms",
        ],
        rows,
    )
    return text
