"""The ledger across real processes: `python -m exporter` against the simulator (in this
process, so its change log counts every changeListenerStatus call), killed with SIGKILL and
started again on the same storage path; a second owner; an unwritable path; the restart
subcommand beside a running daemon.
"""

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.ledger import Decision, GuardLimits, LedgerFile
from tests.conftest import ACCOUNT, SimServer

TOKEN = "crash-test-hook-token"
CHANGE_CALLS = "POST change_listener_status"


def write_config(tmp_path: Path, server: SimServer, storage: Path, **remediation: Any) -> Path:
    settings = {
        "enabled": True,
        "dry_run": False,
        "auth": {"bearer_token": TOKEN},
        "cooldown_seconds": 600,
        "max_actions_per_hour": 10,
        "verify_timeout_seconds": 120,
    } | remediation
    document = {
        "accounts": [
            {
                "account_id": ACCOUNT,
                "base_url": server.base_url,
                "username": server.account.username,
                "password": "${BOOMI_PASSWORD}",
                "max_requests_per_second": 20,
                "containers": [{"id": c} for c in server.account.containers],
            }
        ],
        "poll": {
            "interval_seconds": 0.5,
            "result_timeout_seconds": 3,
            "request_timeout_seconds": 1,
        },
        "web": {"listen_address": "127.0.0.1:0"},
        "storage": {"path": str(storage)},
        "remediation": settings,
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


@dataclass
class Daemon:
    """One exporter process and what it wrote to stderr so far."""

    process: asyncio.subprocess.Process
    url: str = ""
    log: list[str] = field(default_factory=list)

    async def read_until(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log:
                if match := re.search(pattern, line):
                    return match
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never logged {pattern!r}:\n{''.join(self.log)}"
            line_bytes = await asyncio.wait_for(self.process.stderr.readline(), remaining)
            assert line_bytes, f"stderr ended before {pattern!r}:\n{''.join(self.log)}"
            self.log.append(line_bytes.decode())

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)


async def spawn(config: Path, server: SimServer, *flags: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--config", str(config), *flags,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BOOMI_PASSWORD": server.account.password},
    )  # fmt: skip


@contextlib.asynccontextmanager
async def daemon(config: Path, server: SimServer) -> AsyncIterator[Daemon]:
    """An exporter process, once every container has been polled; SIGKILLed at the end."""
    running = Daemon(await spawn(config, server))
    try:
        match = await running.read_until(r"serving on http://127\.0\.0\.1:(\d+)/metrics")
        running.url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(running.url + "/-/ready") as response:
                    if response.status == 200:
                        break
                assert time.monotonic() < deadline, "never ready"
                await asyncio.sleep(0.1)
        yield running
    finally:
        if running.process.returncode is None:
            running.kill()
        await running.process.wait()


async def post_alert(url: str, container: str, listener: str) -> str:
    body = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "fingerprint": f"fp-{listener[:8]}",
                "labels": {"container_id": container, "listener_id": listener},
            }
        ],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + "/webhook/alertmanager",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        outcome: str = (await response.json())["alerts"][0]["outcome"]
        return outcome


async def actions(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url + "/api/v1/actions") as response:
        assert response.status == 200
        entries: list[dict[str, Any]] = (await response.json())["actions"]
        return entries


async def wait_for_outcome(url: str, listener: str, outcome: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        entries = await actions(url)
        if any(e["listener_id"] == listener and e["outcome"] == outcome for e in entries):
            return
        assert time.monotonic() < deadline, f"no {outcome} entry for {listener}: {entries}"
        await asyncio.sleep(0.05)


async def wait_for_calls(server: SimServer, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while server.count(CHANGE_CALLS) < count:
        assert time.monotonic() < deadline, f"{server.count(CHANGE_CALLS)} calls, not {count}"
        await asyncio.sleep(0.02)


def errored(server: SimServer, count: int) -> list[tuple[str, str]]:
    """(container, listener) of `count` listeners, made errored in the simulator."""
    chosen = list(server.account.listeners.values())[:count]
    for listener in chosen:
        server.sim.set_status(ACCOUNT, listener.listener_id, "errored")
    return [(listener.container_id, listener.listener_id) for listener in chosen]


async def no_more_calls(server: SimServer, count: int) -> None:
    """Give a wrongly queued action the time to reach the simulator, then count the calls."""
    await asyncio.sleep(1.0)
    assert server.count(CHANGE_CALLS) == count


# -- kill -9 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 0.1}], indirect=True)
async def test_a_cooldown_survives_kill_9_and_a_restart(
    tmp_path: Path, sim_server: SimServer
) -> None:
    ((container, listener),) = errored(sim_server, 1)
    config = write_config(tmp_path, sim_server, tmp_path / "data")
    async with daemon(config, sim_server) as first:
        assert await post_alert(first.url, container, listener) == "queued"
        await wait_for_outcome(first.url, listener, "recovered")
        first.kill()
    assert sim_server.count(CHANGE_CALLS) == 1
    sim_server.sim.set_status(ACCOUNT, listener, "errored")  # errored again, the same alert
    async with daemon(config, sim_server) as second:
        assert await post_alert(second.url, container, listener) == "skipped_cooldown"
        await no_more_calls(sim_server, 1)


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 60}], indirect=True)
async def test_an_action_killed_while_verifying_is_interrupted_and_not_repeated(
    tmp_path: Path, sim_server: SimServer
) -> None:
    ((container, listener),) = errored(sim_server, 1)
    config = write_config(tmp_path, sim_server, tmp_path / "data")
    async with daemon(config, sim_server) as first:
        assert await post_alert(first.url, container, listener) == "queued"
        await wait_for_calls(sim_server, 1)  # the restart went out; now it is being verified
        await wait_for_outcome(first.url, listener, "running")
        first.kill()
    async with daemon(config, sim_server) as second:
        # The log names it, and the ledger lists it.
        await second.read_until(rf"remediation interrupted: restart of listener {listener}")
        (entry,) = await actions(second.url)
        assert entry["outcome"] == "interrupted"
        assert "while the action was running" in entry["reason"]
        assert entry["finished_at"] is not None
        # Still errored (the simulator's restart takes 60 s): the alert fires again.
        assert await post_alert(second.url, container, listener) == "skipped_cooldown"
        await no_more_calls(sim_server, 1)


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 60}], indirect=True)
async def test_sigterm_while_verifying_marks_the_entry_interrupted_before_exiting(
    tmp_path: Path, sim_server: SimServer
) -> None:
    ((container, listener),) = errored(sim_server, 1)
    config = write_config(tmp_path, sim_server, tmp_path / "data")
    async with daemon(config, sim_server) as first:
        assert await post_alert(first.url, container, listener) == "queued"
        await wait_for_calls(sim_server, 1)
        await wait_for_outcome(first.url, listener, "running")
        first.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.process.wait(), 10) == 0
    async with daemon(config, sim_server) as second:
        (entry,) = await actions(second.url)
        assert entry["outcome"] == "interrupted"
        assert entry["reason"].startswith("the exporter stopped while the action was running")
        assert await post_alert(second.url, container, listener) == "skipped_cooldown"
        await no_more_calls(sim_server, 1)


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 0.1}], indirect=True)
async def test_the_budget_counts_actions_across_three_processes_and_a_verified_one_once(
    tmp_path: Path, sim_server: SimServer
) -> None:
    listeners = errored(sim_server, 5)
    config = write_config(tmp_path, sim_server, tmp_path / "data", max_actions_per_hour=4)
    for (container, listener), calls in zip(listeners[:2], (1, 2), strict=True):
        async with daemon(config, sim_server) as process:
            assert await post_alert(process.url, container, listener) == "queued"
            await wait_for_outcome(process.url, listener, "recovered")
            process.kill()
        assert sim_server.count(CHANGE_CALLS) == calls
    sim_server.sim.restart_delay_seconds = 60  # from now on, restarts stay being verified
    async with daemon(config, sim_server) as third:
        (c3, l3), (c4, l4), (c5, l5) = listeners[2:]
        assert await post_alert(third.url, c3, l3) == "queued"
        await wait_for_calls(sim_server, 3)
        await wait_for_outcome(third.url, l3, "running")
        # Two actions of earlier processes and one being verified: 3 of 4, counted once each.
        assert await post_alert(third.url, c4, l4) == "queued"
        await wait_for_calls(sim_server, 4)
        assert await post_alert(third.url, c5, l5) == "skipped_budget"
        await no_more_calls(sim_server, 4)
        budget = next(e for e in await actions(third.url) if e["listener_id"] == l5)
        assert budget["reason"].startswith("4 action(s) started in the last hour")


async def test_retention_deletes_old_entries_at_start(
    tmp_path: Path, sim_server: SimServer
) -> None:
    storage = tmp_path / "data"
    now = time.time()
    when = [now - 40 * 86400]
    written = LedgerFile.open(storage, retention_days=30, clock=lambda: when[0])
    limits = GuardLimits(cooldown_seconds=0, max_actions_per_hour=100)
    for fingerprint, days_ago in (("forty-days", 40), ("thirty-one-days", 31), ("ten-days", 10)):
        when[0] = now - days_ago * 86400
        decision = Decision("alertmanager", fingerprint, ACCOUNT, "c", "l", "restart", "rejected")
        written.record([decision], limits)
    written.close()
    config = write_config(tmp_path, sim_server, storage)
    async with daemon(config, sim_server) as running:
        assert [entry["fingerprint"] for entry in await actions(running.url)] == ["ten-days"]


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 0.1}], indirect=True)
async def test_the_ledger_files_of_a_killed_exporter_hold_no_secret(
    tmp_path: Path, sim_server: SimServer
) -> None:
    ((container, listener),) = errored(sim_server, 1)
    secrets = ["label-secret-Qm42", "annotation-secret-Rt17", "action-secret-Wz09"]
    config = write_config(tmp_path, sim_server, tmp_path / "data")
    body = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "fingerprint": "with-secrets",
                "labels": {"container_id": container, "listener_id": listener,
                           "api_key": secrets[0]},
                "annotations": {"description": secrets[1]},
            },
            {
                "status": "firing",
                "fingerprint": "bad-action",
                "labels": {"container_id": container, "listener_id": listener,
                           "boomi_action": secrets[2]},
            },
        ],
    }  # fmt: skip
    async with daemon(config, sim_server) as running:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                running.url + "/webhook/alertmanager",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response,
        ):
            assert response.status == 200
        await wait_for_outcome(running.url, listener, "recovered")
        running.kill()  # no checkpoint: the recent writes are still in the WAL
    files = list((tmp_path / "data").iterdir())
    assert any(path.name.endswith("-wal") for path in files)
    stored = b"".join(path.read_bytes() for path in files)
    assert b"with-secrets" in stored  # the check can see what the exporter wrote
    for secret in [*secrets, TOKEN, sim_server.account.password]:
        assert secret.encode() not in stored, secret


# -- ownership and unwritable paths ------------------------------------------------------------


async def test_a_second_owner_of_the_path_gets_exit_2_naming_it(
    tmp_path: Path, sim_server: SimServer
) -> None:
    storage = tmp_path / "data"
    config = write_config(tmp_path, sim_server, storage)
    async with daemon(config, sim_server) as first:
        second = await spawn(config, sim_server)
        _, stderr = await asyncio.wait_for(second.communicate(), 20)
        assert second.returncode == 2
        message = stderr.decode()
        assert str(storage) in message and "in use by another exporter" in message
        assert f"pid {first.process.pid}" in message
        assert "Traceback" not in message
        assert first.process.returncode is None  # the owner goes on
        assert await actions(first.url) == []


@pytest.mark.parametrize("how", ["config", "flag"])
async def test_an_unwritable_storage_path_gets_exit_2_naming_it(
    tmp_path: Path, sim_server: SimServer, how: str
) -> None:
    # Root writes anywhere; a path below a regular file cannot be created even by root.
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "data"
    if how == "config":
        config = write_config(tmp_path, sim_server, unwritable)
        process = await spawn(config, sim_server)
    else:
        config = write_config(tmp_path, sim_server, tmp_path / "fine")
        process = await spawn(config, sim_server, "--storage.path", str(unwritable))
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    message = stderr.decode()
    assert str(unwritable) in message and "Traceback" not in message
    assert sim_server.count("POST") == 0  # refused before anything else started
    assert not (tmp_path / "fine").exists()


async def test_without_remediation_the_storage_path_is_not_touched(
    tmp_path: Path, sim_server: SimServer
) -> None:
    (tmp_path / "a-file").write_text("")
    config = write_config(tmp_path, sim_server, tmp_path / "a-file" / "data", enabled=False)
    async with daemon(config, sim_server) as running:
        assert running.process.returncode is None
        async with (
            aiohttp.ClientSession() as session,
            session.get(running.url + "/api/v1/actions") as response,
        ):
            assert response.status == 404
    assert not (tmp_path / "a-file").is_dir()


# -- the restart subcommand beside a daemon ----------------------------------------------------


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 0.1}], indirect=True)
async def test_the_restart_command_goes_through_the_running_daemons_ledger(
    tmp_path: Path, sim_server: SimServer
) -> None:
    (first_container, first), (second_container, second) = errored(sim_server, 2)
    config = write_config(tmp_path, sim_server, tmp_path / "data", verify_timeout_seconds=10)

    async def restart(container: str, listener: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "restart", "--config", str(config),
            "--container", container, "--listener", listener, "--yes",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "BOOMI_PASSWORD": sim_server.account.password},
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, output.decode()

    async with daemon(config, sim_server) as running:
        assert await post_alert(running.url, first_container, first) == "queued"
        await wait_for_outcome(running.url, first, "recovered")
        sim_server.sim.set_status(ACCOUNT, first, "errored")
        # The daemon's cooldown holds for the operator too.
        code, output = await restart(first_container, first)
        assert code == 1 and "Outcome: skipped_cooldown" in output, output
        assert sim_server.count(CHANGE_CALLS) == 1
        # Another listener: done, and on record in the daemon's ledger, as source cli.
        code, output = await restart(second_container, second)
        assert code == 0 and "Outcome: recovered" in output, output
        assert sim_server.count(CHANGE_CALLS) == 2
        by_listener = {(e["listener_id"], e["outcome"]): e for e in await actions(running.url)}
        assert by_listener[(first, "skipped_cooldown")]["source"] == "cli"
        assert by_listener[(second, "recovered")]["source"] == "cli"
        # And the daemon sees the operator's action: its alert is in cooldown now.
        assert await post_alert(running.url, second_container, second) == "skipped_cooldown"
        # The guest marked nothing of the daemon's interrupted.
        assert not [e for e in await actions(running.url) if e["outcome"] == "interrupted"]
