"""The command line, run as a real process: check-config, once, daemon, demo, simulate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ACCOUNT, SimServer

SECRET = "s3cret-Pa55word-for-tests"


def write_config(
    tmp_path: Path,
    server: SimServer | None,
    *,
    extra: str = "",
    password: str = "${BOOMI_PASSWORD}",
) -> Path:
    base_url = server.base_url if server else "https://api.boomi.com/api/rest/v1"
    containers = (
        "\n".join(
            f"      - id: {c.container_id}\n        name: {c.name}"
            for c in server.account.containers.values()
        )
        if server
        else "      - id: c-1\n        name: prod"
    )
    username = server.account.username if server else "someone@example.com"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
accounts:
  - account_id: {ACCOUNT}
    base_url: {base_url}
    username: {username}
    password: "{password}"
    max_requests_per_second: 20
    containers:
{containers}
poll:
  interval_seconds: 0.5
  result_timeout_seconds: 3
  request_timeout_seconds: 1
{extra}"""
    )
    return path


async def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_check_config_valid_prints_summary_without_secrets(tmp_path: Path) -> None:
    path = write_config(tmp_path, None)
    code, out, err = await run_cli(
        "--check-config", "--config", str(path), env={"BOOMI_PASSWORD": SECRET}
    )
    assert code == 0, err
    assert "valid" in out and ACCOUNT in out and "c-1" in out
    assert SECRET not in out + err


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        ("  intervall_seconds: 3\n", {"BOOMI_PASSWORD": SECRET}, "poll.intervall_seconds"),
        ("", {}, "accounts[0].password: environment variable BOOMI_PASSWORD is not set"),
        ("web:\n  listen_address: nowhere\n", {"BOOMI_PASSWORD": SECRET}, "web.listen_address"),
    ],
)
async def test_check_config_invalid_exits_2_naming_the_key(
    tmp_path: Path, extra: str, env: dict[str, str], expected: str
) -> None:
    path = write_config(tmp_path, None, extra=extra)
    environment = {k: v for k, v in os.environ.items() if k != "BOOMI_PASSWORD"} | env
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--check-config", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environment,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    assert process.returncode == 2
    assert expected in stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert SECRET not in stdout.decode() + stderr.decode()


async def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    code, _, err = await run_cli("--check-config", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in err and "Traceback" not in err


async def test_bad_listen_address_flag_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, None)
    code, _, err = await run_cli(
        "--config", str(path), "--web.listen-address", "localhost", env={"BOOMI_PASSWORD": SECRET}
    )
    assert code == 2
    assert "--web.listen-address" in err


async def test_once_prints_every_listener(tmp_path: Path, sim_server: SimServer) -> None:
    path = write_config(tmp_path, sim_server)
    code, out, err = await run_cli(
        "--once", "--config", str(path), env={"BOOMI_PASSWORD": sim_server.account.password}
    )
    assert code == 0, err
    for listener in sim_server.account.listeners.values():
        pattern = rf"{listener.process_name}\s+{listener.listener_id}\s+\S+\s+{listener.status}"
        assert re.search(pattern, out), out


async def test_once_with_wrong_password_exits_1_and_says_what_to_check(
    tmp_path: Path, sim_server: SimServer
) -> None:
    path = write_config(tmp_path, sim_server)
    code, out, err = await run_cli("--once", "--config", str(path), env={"BOOMI_PASSWORD": SECRET})
    assert code == 1
    assert "POLL FAILED" in out and "rejected the credentials" in out
    assert SECRET not in out + err
    assert "Traceback" not in err


async def wait_http(url: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return await response.text()
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"{url} never answered 200"
            await asyncio.sleep(0.1)


async def read_until(
    stream: asyncio.StreamReader, pattern: str, timeout: float = 15
) -> re.Match[str]:
    seen = ""
    deadline = time.monotonic() + timeout
    while True:
        line = await asyncio.wait_for(stream.readline(), max(0.1, deadline - time.monotonic()))
        assert line, f"stream ended before {pattern!r}: {seen}"
        seen += line.decode()
        match = re.search(pattern, seen)
        if match:
            return match


@contextlib.asynccontextmanager
async def daemon(
    path: Path, password: str, *flags: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """The exporter as a real process on the config at `path`; (process, URL) once ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--config", str(path), *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BOOMI_PASSWORD": password},
    )  # fmt: skip
    assert process.stderr is not None
    try:
        match = await read_until(process.stderr, r"serving on http://127\.0\.0\.1:(\d+)/metrics")
        url = f"http://127.0.0.1:{match.group(1)}"
        await wait_http(url + "/-/ready")
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_daemon_serves_and_stops_cleanly_on_signal(
    tmp_path: Path, sim_server: SimServer, signum: signal.Signals
) -> None:
    path = write_config(tmp_path, sim_server, extra="web:\n  listen_address: 127.0.0.1:0\n")
    async with daemon(path, sim_server.account.password, "--log-format", "json") as (process, url):
        metrics = await wait_http(url + "/metrics")
        assert "boomi_listener_status{" in metrics
        process.send_signal(signum)
        started = time.monotonic()
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
        # A process-level bound ("stops within a few seconds", README), generous on purpose:
        # it stops in 0.3-0.7 s on a busy two-core machine, so only a hang fails it.
        assert time.monotonic() - started < 10
        assert process.returncode == 0
        assert b"Traceback" not in stderr


async def test_demo_runs_shows_listeners_and_remediates(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--demo", "--web.listen-address", "127.0.0.1:0",
        "--storage.path", str(tmp_path / "data"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        match = await read_until(process.stdout, r"metrics:\s+http://localhost:(\d+)/metrics")
        url = f"http://127.0.0.1:{match.group(1)}"
        control = (await read_until(process.stdout, r"simulator state:\s+(\S+)/state")).group(1)
        deadline = time.monotonic() + 20
        while True:
            metrics = await wait_http(url + "/metrics")
            if metrics.count("boomi_listener_status{") >= 48:  # 12 listeners x 4 statuses
                break
            assert time.monotonic() < deadline, metrics
            await asyncio.sleep(0.2)
        page = await wait_http(url + "/")
        assert "prod-molecule-1" in page
        # The demo's remediation: make a listener errored, post the alert, see it restarted.
        # The demo fleet also heals itself now and then; if it beat the restart to it, the
        # outcome is skipped_not_needed with no call, and the attempt is made again.
        state = json.loads(await wait_http(control + "/state"))
        listener = state["accounts"]["demo-account"]["listeners"][0]
        for _attempt in range(3):
            outcome = await demo_remediation(url, control, listener)
            if outcome == "recovered":
                break
        assert outcome == "recovered"
        state = json.loads(await wait_http(control + "/state"))
        assert [entry["listener_id"] for entry in state["change_log"]] == [listener["listener_id"]]
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 10)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def demo_remediation(url: str, control: str, listener: dict[str, str]) -> str:
    """Make a demo listener errored, wait until it shows, post its alert; the final outcome."""
    listener_id = listener["listener_id"]
    async with aiohttp.ClientSession() as session:
        async with session.put(
            f"{control}/listeners/{listener_id}", json={"status": "errored"}
        ) as response:
            assert response.status == 200
        deadline = time.monotonic() + 25  # the demo polls every 10 s
        errored = re.compile(rf'listener_id="{listener_id}",[^}}]*status="errored"}} 1\.0')
        while not errored.search(await wait_http(url + "/metrics")):
            if time.monotonic() > deadline:
                state = json.loads(await wait_http(control + "/state"))
                current = {
                    item["listener_id"]: item["status"]
                    for item in state["accounts"]["demo-account"]["listeners"]
                }
                assert current[listener_id] != "errored", "errored, but never shown as such"
                return "healed before it was polled"
            await asyncio.sleep(0.2)
        before = remediation_lines(await wait_http(url + "/metrics"))
        body = {"version": "4", "status": "firing", "alerts": [{"status": "firing",
                "fingerprint": "demo", "labels": {"container_id": listener["container_id"],
                                                  "listener_id": listener_id}}]}  # fmt: skip
        async with session.post(
            url + "/webhook/alertmanager", json=body,
            headers={"Authorization": "Bearer demo-webhook-token"},
        ) as response:  # fmt: skip
            assert (await response.json())["alerts"][0]["outcome"] == "queued"
    deadline = time.monotonic() + 20
    while True:
        new = remediation_lines(await wait_http(url + "/metrics")) - before
        for outcome in ("recovered", "skipped_not_needed", "not_recovered", "failed"):
            if any(f'outcome="{outcome}"' in line for line in new):
                return outcome
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)


def remediation_lines(metrics: str) -> set[str]:
    return {
        line for line in metrics.splitlines() if line.startswith("boomi_remediation_actions_total")
    }


async def test_simulate_prints_credentials_and_serves() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "simulate", "--listen", "127.0.0.1:0",
        "--containers", "2", "--listeners-per-container", "3", "--username", "u@example.com",
        "--password", "pw",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        match = await read_until(process.stdout, r"API base URL:\s+(\S+)")
        await read_until(process.stdout, r"password: pw")
        base_url = match.group(1)
        state = await wait_http(base_url.removesuffix("/api/rest/v1") + "/__simulator/state")
        assert state.count('"listener_id"') == 6
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


REMEDIATION_YAML = """remediation:
  enabled: true
  dry_run: {dry_run}
  auth:
    bearer_token: hook-token
  verify_timeout_seconds: {verify}
web:
  listen_address: 127.0.0.1:0
storage:
  path: {storage}
"""


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 60}], indirect=True)
async def test_sigterm_during_a_restart_logs_it_as_abandoned(
    tmp_path: Path, sim_server: SimServer
) -> None:
    container = sim_server.container_ids()[0]
    listener = next(iter(sim_server.listeners_of(container)))
    sim_server.sim.set_status(ACCOUNT, listener, "errored")
    path = write_config(
        tmp_path,
        sim_server,
        extra=REMEDIATION_YAML.format(dry_run="false", verify=120, storage=tmp_path / "data"),
    )
    async with daemon(path, sim_server.account.password) as (process, url):
        body = {
            "version": "4", "status": "firing",
            "alerts": [{"status": "firing", "fingerprint": "abc",
                        "labels": {"container_id": container, "listener_id": listener}}],
        }  # fmt: skip
        async with aiohttp.ClientSession() as session, session.post(
            url + "/webhook/alertmanager", json=body,
            headers={"Authorization": "Bearer hook-token"},
        ) as response:  # fmt: skip
            assert (await response.json())["alerts"][0]["outcome"] == "queued"
        deadline = time.monotonic() + 10
        while not sim_server.sim.change_log:  # the restart call went out; now verifying
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        # A process-level bound, generous on purpose: the restart gets its 2 s grace, and the
        # process is gone in 2.2-3.1 s on a busy two-core machine. Waiting for the verification
        # instead would take the restart delay (60 s), and the log would not say "abandoned".
        assert time.monotonic() - started < 15
        assert process.returncode == 0
        log = stderr.decode()
        assert re.search(rf"remediation abandoned at shutdown: restart of listener {listener}", log)
        assert "while verifying the result" in log
        assert "hook-token" not in log


@pytest.mark.parametrize(
    ("dry_run", "set_status", "args", "code", "expected", "calls"),
    [
        ("false", "errored", ["--yes"], 0, "Outcome: recovered", 1),
        ("true", "errored", ["--yes"], 0, "Outcome: dry_run", 0),
        ("false", "listening", ["--yes"], 1, "is listening: a restart is not needed", 0),
        ("false", "errored", [], 1, "pass --yes", 0),  # no terminal to ask
        (
            "false",
            "errored",
            ["--yes", "--action", "pause"],
            2,
            "not in remediation.allowed_actions",
            0,
        ),
    ],
)
async def test_manual_restart(
    tmp_path: Path,
    sim_server: SimServer,
    dry_run: str,
    set_status: str,
    args: list[str],
    code: int,
    expected: str,
    calls: int,
) -> None:
    container = sim_server.container_ids()[0]
    listener = next(iter(sim_server.listeners_of(container)))
    sim_server.sim.set_status(ACCOUNT, listener, set_status)
    path = write_config(
        tmp_path,
        sim_server,
        extra=REMEDIATION_YAML.format(dry_run=dry_run, verify=5, storage=tmp_path / "data"),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "restart", "--config", str(path),
        "--container", container, "--listener", listener, *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BOOMI_PASSWORD": sim_server.account.password},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    output = stdout.decode() + stderr.decode()
    assert process.returncode == code, output
    assert expected in output
    assert len(sim_server.sim.change_log) == calls
    if calls:
        assert sim_server.account.listeners[listener].status == "listening"


async def test_manual_restart_of_an_unconfigured_container(
    tmp_path: Path, sim_server: SimServer
) -> None:
    path = write_config(tmp_path, sim_server)
    code, _, err = await run_cli(
        "restart", "--config", str(path), "--container", "nope", "--listener", "x", "--yes",
        env={"BOOMI_PASSWORD": sim_server.account.password},
    )  # fmt: skip
    assert code == 2
    assert "container nope is not in the configuration" in err


async def test_sighup_reloads_the_config(tmp_path: Path, sim_server: SimServer) -> None:
    first, second, _ = sim_server.container_ids()
    path = write_config(tmp_path, sim_server, extra="web:\n  listen_address: 127.0.0.1:0\n")
    text = path.read_text()
    only_first = re.sub(rf"      - id: {second}\n        name: \S+\n", "", text)
    path.write_text(only_first)
    async with daemon(path, sim_server.account.password) as (process, url):
        assert process.stderr is not None
        assert f'container_id="{second}"' not in await wait_http(url + "/metrics")
        path.write_text(text)
        process.send_signal(signal.SIGHUP)
        await read_until(process.stderr, r"configuration reloaded")
        deadline = time.monotonic() + 10
        while f'boomi_container_up{{account_id="{ACCOUNT}",container_id="{second}"}} 1.0' not in (
            await wait_http(url + "/metrics")
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert f'container_id="{first}"' in await wait_http(url + "/metrics")
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0
