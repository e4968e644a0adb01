"""Remediation through its ledger, in-process over real sockets: what is recorded and when,
reading it (GET /api/v1/actions, the landing page), failing writes, retention, secrets.

The crash and ownership cases, with real processes and SIGKILL, are in test_ledger_crash.py.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.actions import decisions_table
from exporter.config import Config, StorageConfig
from exporter.daemon import Exporter
from exporter.ledger import LEDGER_FILE, Decision, Entry, GuardLimits, LedgerFile
from exporter.simulator import Faults
from tests.conftest import ACCOUNT, Running, SimServer, StartExporter, config_for
from tests.test_remediation import (
    AUTH,
    REMEDIATION,
    alert,
    errored_alert,
    outcomes,
    payload,
    post,
    started,
)

API_FIELDS = {
    "id", "received_at", "finished_at", "source", "fingerprint", "account_id", "container_id",
    "listener_id", "action", "outcome", "reason", "dry_run",
}  # fmt: skip
FINAL = {"recovered", "not_recovered", "failed", "dry_run", "skipped_not_needed", "rejected"}


async def actions(running: Running, query: str = "") -> list[dict[str, Any]]:
    async with running.session.get(running.url + "/api/v1/actions" + query) as response:
        assert response.status == 200, await response.text()
        document = await response.json()
    assert set(document) == {"actions"}
    entries: list[dict[str, Any]] = document["actions"]
    return entries


async def wait_for_entry(
    running: Running, predicate: Any, timeout: float = 10.0, query: str = "?limit=1000"
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        entries = await actions(running, query)
        if any(predicate(entry) for entry in entries):
            return entries
        assert time.monotonic() < deadline, f"no such ledger entry within the timeout: {entries}"
        await asyncio.sleep(0.05)


def ledger_dir(running: Running) -> Path:
    ledger = running.exporter.ledger
    assert ledger is not None
    return ledger.path.parent


def chattr(flag: str, *paths: Path) -> bool:
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths a test made immutable (chattr +i); made writable again at the end."""
    paths: list[Path] = []
    yield paths
    if paths:
        chattr("-i", *paths)


# -- what is recorded, and when ----------------------------------------------------------------


async def test_every_decision_is_recorded_before_the_answer_and_moves_on(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    body = payload(
        errored_alert(container, listener),
        alert(fingerprint="unknown-container", container_id="nope", listener_id=listener),
        errored_alert(container, listener) | {"status": "resolved", "fingerprint": "resolved"},
    )
    status, answer = await post(running, body)
    assert status == 200
    assert [a["outcome"] for a in answer["alerts"]] == ["queued", "rejected", "ignored_resolved"]
    # The answer came after the write: both decisions are there at once, newest first. A
    # resolved alert decides nothing about an action and is not recorded.
    rejected, admitted = await actions(running)
    assert set(admitted) == set(rejected) == API_FIELDS
    recorded = {key: admitted[key] for key in API_FIELDS - {"id", "received_at", "finished_at"}}
    assert recorded == {
        "source": "alertmanager",
        "fingerprint": f"fp-{listener[:8]}",
        "account_id": ACCOUNT,
        "container_id": container,
        "listener_id": listener,
        "action": "restart",
        # The worker does not wait for the answer: queued, running or done by now.
        "outcome": admitted["outcome"],
        "reason": "",
        "dry_run": False,
    }
    assert admitted["outcome"] in ("queued", "running", "recovered")
    assert (rejected["outcome"], rejected["reason"]) == ("rejected", "unknown container")
    assert (rejected["account_id"], rejected["container_id"]) == (ACCOUNT, "")  # never raw
    assert rejected["finished_at"] == rejected["received_at"]
    # The admitted entry moves on to its final outcome.
    entries = await wait_for_entry(
        running, lambda e: e["id"] == admitted["id"] and e["outcome"] == "recovered"
    )
    final = next(e for e in entries if e["id"] == admitted["id"])
    assert final["finished_at"] is not None and final["finished_at"] >= final["received_at"]
    # The counter is unchanged: one per outcome, as before the ledger.
    counted = outcomes(await running.samples())
    assert counted[(listener, "queued")] == counted[(listener, "recovered")] == 1
    assert counted[("", "ignored_resolved")] == 1


async def test_a_dry_run_is_recorded_as_one(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter, dry_run=True)
    await post(running, payload(errored_alert(container, listener)))
    entries = await wait_for_entry(running, lambda e: e["outcome"] == "dry_run")
    assert entries[0]["dry_run"] is True
    assert sim_server.sim.change_log == []


async def test_the_storm_of_200_duplicates_leaves_one_action_in_the_ledger(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    body = payload(errored_alert(container, listener))
    answers = await asyncio.gather(*(post(running, body) for _ in range(200)))
    assert {status for status, _ in answers} == {200}
    await wait_for_entry(running, lambda e: e["outcome"] == "recovered")
    everything = await actions(running, "?limit=1000")
    assert len(everything) == 200
    by_outcome = [entry["outcome"] for entry in everything]
    assert by_outcome.count("recovered") == 1
    assert set(by_outcome) <= {"recovered", "skipped_duplicate", "skipped_cooldown"}
    assert len(sim_server.sim.change_log) == 1


# -- reading it ------------------------------------------------------------------------------


async def test_actions_are_newest_first_100_by_default_at_most_1000(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, _, _ = await started(sim_server, start_exporter)
    many = [
        alert(fingerprint=f"{n:016x}", container_id="nope", listener_id="x") for n in range(1005)
    ]
    status, answer = await post(running, payload(*many))
    assert status == 200 and len(answer["alerts"]) == 1005
    default = await actions(running)
    assert len(default) == 100
    assert [entry["fingerprint"] for entry in default[:2]] == [f"{1004:016x}", f"{1003:016x}"]
    assert [e["id"] for e in default] == sorted((e["id"] for e in default), reverse=True)
    assert len(await actions(running, "?limit=7")) == 7
    assert len(await actions(running, "?limit=1000")) == 1000
    assert len(await actions(running, "?limit=5000")) == 1000


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "", "1.5", "1e3", " 5", "9" * 30])
async def test_a_bad_limit_is_400_naming_it(
    sim_server: SimServer, start_exporter: StartExporter, limit: str
) -> None:
    running, _, _ = await started(sim_server, start_exporter)
    async with running.session.get(
        running.url + "/api/v1/actions", params={"limit": limit}
    ) as response:
        assert response.status == 400
        assert "limit" in (await response.json())["error"]


async def test_without_remediation_there_is_no_ledger_and_no_file(
    sim_server: SimServer, start_exporter: StartExporter, tmp_path: Path
) -> None:
    config = config_for(sim_server)
    storage = tmp_path / "never"
    config = config.model_copy(
        update={"storage": config.storage.model_copy(update={"path": str(storage)})}
    )
    running = await start_exporter(config)
    assert running.exporter.ledger is None
    async with running.session.get(running.url + "/api/v1/actions") as response:
        assert response.status == 404
    assert "Last 20 remediation decisions" not in await running.text("/")
    assert not storage.exists()


async def test_the_landing_page_shows_the_last_20_decisions_with_process_names(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    process_name = sim_server.account.listeners[listener].process_name
    await running.wait_for(
        lambda s: any(name == "boomi_listener_info" and ("listener_id", listener) in labels
                      for name, labels in s)
    )  # fmt: skip
    await post(running, payload(errored_alert(container, listener)))
    await wait_for_entry(running, lambda e: e["outcome"] == "recovered")
    page = await running.text("/")
    section = page[page.index("Last 20 remediation decisions") :]
    (row,) = [r for r in section.split("<tr>") if "recovered" in r]
    assert process_name in row and listener in row and "restart" in row
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row)
    # 25 more decisions: the newest 20 are shown.
    rejected = [alert(fingerprint=str(n), container_id="nope", listener_id="x") for n in range(25)]
    await post(running, payload(*rejected))
    page = await running.text("/")
    section = page[page.index("Last 20 remediation decisions") :]
    assert section.count("<tr><td>") == 20
    assert section.count("unknown container") == 20
    assert "recovered" not in section


def test_the_decisions_table_escapes_every_value() -> None:
    hostile = "<script>alert(1)</script>"
    entry: Entry = {
        "id": 1, "received_at": hostile, "finished_at": None, "source": "cli",
        "fingerprint": hostile, "account_id": "a", "container_id": hostile,
        "listener_id": hostile, "action": hostile, "outcome": hostile, "reason": hostile,
        "dry_run": True,
    }  # fmt: skip
    table = decisions_table([entry], {("a", hostile): hostile})
    assert "<script>" not in table
    # time, name, id, action, reason, and the outcome twice (its text and its CSS class)
    assert table.count("&lt;script&gt;") == 7
    assert "(dry run)" in table and "(restart command)" in table


# -- failures --------------------------------------------------------------------------------


async def test_a_failing_write_is_rejected_with_no_call_and_no_5xx(
    sim_server: SimServer, start_exporter: StartExporter, immutable: list[Path]
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    directory = ledger_dir(running)
    files = [directory / LEDGER_FILE, directory / f"{LEDGER_FILE}-wal"]
    if not chattr("+i", *files):
        pytest.skip("no immutable flag on this file system (chattr +i failed)")
    immutable.extend(files)
    status, answer = await post(running, payload(errored_alert(container, listener)))
    assert (status, answer["alerts"][0]["outcome"]) == (200, "rejected")
    await asyncio.sleep(0.5)  # what a queued action would need to reach the simulator
    assert sim_server.count("POST change_listener_status") == 0
    assert outcomes(await running.samples()) == {(listener, "rejected"): 1}
    # The disk is back: the next delivery is recorded and acted on.
    chattr("-i", *files)
    status, answer = await post(running, payload(errored_alert(container, listener)))
    assert (status, answer["alerts"][0]["outcome"]) == (200, "queued")
    await running.wait_for(lambda s: (listener, "recovered") in outcomes(s))
    assert len(sim_server.sim.change_log) == 1


async def test_an_admitted_action_whose_start_cannot_be_recorded_is_not_carried_out(
    sim_server: SimServer, start_exporter: StartExporter, immutable: list[Path]
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    directory = ledger_dir(running)
    files = [directory / LEDGER_FILE, directory / f"{LEDGER_FILE}-wal"]
    # The check-before-act now takes over a second (two answers, each 0.6 s late, within the
    # 1 s request timeout): long enough to take the disk away before the action starts.
    sim_server.sim.set_faults(Faults(slow_rate=1.0, slow_seconds=0.6))
    status, answer = await post(running, payload(errored_alert(container, listener)))
    assert (status, answer["alerts"][0]["outcome"]) == (200, "queued")
    if not chattr("+i", *files):
        pytest.skip("no immutable flag on this file system (chattr +i failed)")
    immutable.extend(files)
    await running.wait_for(lambda s: (listener, "rejected") in outcomes(s), timeout=10)
    assert sim_server.count("POST change_listener_status") == 0
    chattr("-i", *files)
    sim_server.sim.set_faults(Faults())
    # Its entry could not be finished either: it stays queued, so the listener stays busy
    # (the safe side) until the next start marks it interrupted.
    (entry,) = await actions(running)
    assert entry["outcome"] == "queued" and entry["finished_at"] is None
    _, answer = await post(running, payload(errored_alert(container, listener)))
    assert answer["alerts"][0]["outcome"] == "skipped_duplicate"


async def test_reload_that_enables_remediation_opens_the_ledger(
    sim_server: SimServer, tmp_path: Path
) -> None:
    base = config_for(sim_server).model_dump(mode="json")
    base["accounts"][0]["password"] = sim_server.account.password
    base["storage"] = {"path": str(tmp_path / "data")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base))
    exporter = Exporter(Config.model_validate(base), config_path=path)
    await exporter.start("127.0.0.1", 0)
    try:
        assert exporter.ledger is None
        # Enabled, but where nothing can be written: the reload is refused, naming the path.
        (tmp_path / "file").write_text("")
        base["storage"] = {"path": str(tmp_path / "file" / "data")}
        base["remediation"] = REMEDIATION
        path.write_text(yaml.safe_dump(base))
        ok, message = await exporter.reload()
        assert not ok and str(tmp_path / "file" / "data") in message
        assert exporter.ledger is None and not exporter.config.remediation.enabled
        base["storage"] = {"path": str(tmp_path / "data")}
        path.write_text(yaml.safe_dump(base))
        ok, message = await exporter.reload()
        assert ok, message
        assert exporter.ledger is not None and exporter.remediator.ledger is exporter.ledger
        assert exporter.ledger.path == tmp_path / "data" / LEDGER_FILE
    finally:
        await exporter.stop()


# -- retention and secrets -------------------------------------------------------------------


async def test_retention_deletes_old_entries_when_the_exporter_opens_the_ledger(
    sim_server: SimServer, start_exporter: StartExporter, tmp_path: Path
) -> None:
    directory = tmp_path / "data"
    now = time.time()
    when = [now - 40 * 86400]
    written = LedgerFile.open(directory, retention_days=30, clock=lambda: when[0])
    limits = GuardLimits(cooldown_seconds=0, max_actions_per_hour=100)
    old = Decision("alertmanager", "old", ACCOUNT, "c", "l-old", "restart", "rejected", "x")
    kept = Decision("alertmanager", "kept", ACCOUNT, "c", "l-kept", "restart", "rejected", "x")
    written.record([old], limits)
    when[0] = now - 20 * 86400
    written.record([kept], limits)
    written.close()
    config = config_for(sim_server, remediation=REMEDIATION)
    storage = StorageConfig(path=str(directory), retention_days=30)
    running = await start_exporter(config.model_copy(update={"storage": storage}))
    assert [entry["fingerprint"] for entry in await actions(running)] == ["kept"]


async def test_the_ledger_files_hold_no_secret(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    secrets = {
        "webhook token": REMEDIATION["auth"]["bearer_token"],
        "Boomi password": sim_server.account.password,
        "label": "label-secret-Zq81",
        "annotation": "annotation-secret-Pw55",
        "action label": "action-secret-Xy77",
        "generator": "generator-secret-Uv31",
    }
    firing = errored_alert(container, listener, api_key=secrets["label"])
    firing["annotations"] = {"description": secrets["annotation"]}
    firing["generatorURL"] = f"http://prometheus/graph?g0.expr={secrets['generator']}"
    disallowed = errored_alert(container, listener, boomi_action=secrets["action label"])
    disallowed["fingerprint"] = "second"
    await post(running, payload(firing, disallowed))
    await wait_for_entry(running, lambda e: e["outcome"] == "recovered")
    shown = str(await actions(running)) + await running.text("/")
    await running.exporter.stop()  # everything written and the WAL checkpointed
    stored = b"".join(path.read_bytes() for path in ledger_dir(running).iterdir())
    assert stored, "the ledger wrote nothing"
    for what, secret in secrets.items():
        assert secret.encode() not in stored, f"the {what} is in the ledger files"
        assert secret not in shown, f"the {what} is shown"
    assert sim_server.account.username.encode() not in stored
    assert AUTH["Authorization"].encode() not in stored
