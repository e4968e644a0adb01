"""The remediation ledger on real SQLite files: guards, crashes, ownership, failures, retention.

Tests run as root, where file modes stop nothing. What really fails for root, and is used here:
- an unwritable storage path: a path whose parent is a regular file (mkdir gets ENOTDIR);
- a read-only database file: `chattr +i` (the kernel refuses writes even to root; skipped where
  the file system has no immutable flag);
- a write failing while the ledger is open: RLIMIT_FSIZE set to 0 in a child process, so every
  write to a regular file fails with EFBIG as a full disk would (Python ignores SIGXFSZ).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.ledger import (
    BUDGET_WINDOW_SECONDS,
    LEDGER_FILE,
    RECENT_MAX,
    Decision,
    GuardLimits,
    Ledger,
    LedgerFile,
    LedgerLocked,
    LedgerUnavailable,
    ListenerFacts,
    guard,
)
from exporter.ledger.worker import SETTLE_SLICE

# The fields of GET /api/v1/actions in design.md.
API_FIELDS = {
    "id",
    "received_at",
    "finished_at",
    "source",
    "fingerprint",
    "account_id",
    "container_id",
    "listener_id",
    "action",
    "outcome",
    "reason",
    "dry_run",
}
LIMITS = GuardLimits(cooldown_seconds=600, max_actions_per_hour=4)
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def alert(listener_id: str = "l-1", outcome: str = "queued", **fields: object) -> Decision:
    values: dict[str, object] = {
        "source": "alertmanager",
        "fingerprint": f"fp-{listener_id}",
        "account_id": "acct",
        "container_id": "c-1",
        "listener_id": listener_id,
        "action": "restart",
        "outcome": outcome,
    }
    values.update(fields)
    return Decision(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(tmp_path: Path, clock: FakeClock) -> Iterator[LedgerFile]:
    opened = LedgerFile.open(tmp_path / "data", retention_days=30, clock=clock)
    yield opened
    opened.close()


def run_child(script: str, *args: str, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def chattr(flag: str, *paths: Path) -> bool:
    """Set or clear the immutable flag; False where the file system has none."""
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


# ---------------------------------------------------------------------------------------------
# The guard rule, pure.


@pytest.mark.parametrize(
    ("facts", "now", "expected"),
    [
        (ListenerFacts(None, None, 0), T0, "queued"),
        (ListenerFacts(7, None, 0), T0, "skipped_duplicate"),
        # A duplicate wins over a cooldown and a spent budget: the action is still under way.
        (ListenerFacts(7, T0 - 1, 99), T0, "skipped_duplicate"),
        (ListenerFacts(None, T0 - 599, 0), T0, "skipped_cooldown"),
        (ListenerFacts(None, T0 - 600, 0), T0, "queued"),
        # A clock that stepped back keeps the listener in cooldown rather than freeing it.
        (ListenerFacts(None, T0 + 50, 0), T0, "skipped_cooldown"),
        (ListenerFacts(None, T0 - 601, 3), T0, "queued"),
        (ListenerFacts(None, T0 - 601, 4), T0, "skipped_budget"),
        (ListenerFacts(None, None, 5), T0, "skipped_budget"),
    ],
)
def test_guard_applies_duplicate_then_cooldown_then_budget(
    facts: ListenerFacts, now: float, expected: str
) -> None:
    outcome, reason = guard(facts, LIMITS, now)
    assert outcome == expected
    assert (reason == "") == (expected == "queued")


def test_guard_reasons_name_the_setting_that_refused() -> None:
    assert "entry 7" in guard(ListenerFacts(7, None, 0), LIMITS, T0)[1]
    cooldown = guard(ListenerFacts(None, T0 - 120, 0), LIMITS, T0)[1]
    assert "120 s ago" in cooldown and "remediation.cooldown_seconds is 600" in cooldown
    budget = guard(ListenerFacts(None, None, 4), LIMITS, T0)[1]
    assert "remediation.max_actions_per_hour is 4" in budget


# ---------------------------------------------------------------------------------------------
# Recording and reading.


def test_a_decision_is_recorded_with_exactly_the_fields_of_the_design(
    ledger: LedgerFile, clock: FakeClock
) -> None:
    rejected, queued = ledger.record(
        [
            alert("l-x", "rejected", reason="unknown container", container_id="nope"),
            alert("l-1", dry_run=True, source="cli", fingerprint="manual"),
        ],
        LIMITS,
    )
    assert (rejected.outcome, queued.outcome) == ("rejected", "queued")
    assert queued.id > rejected.id
    newest, oldest = ledger.recent()
    assert set(newest) == API_FIELDS and set(oldest) == API_FIELDS
    assert newest == {
        "id": queued.id,
        "received_at": "2023-11-14T22:13:20.000Z",
        "finished_at": None,
        "source": "cli",
        "fingerprint": "manual",
        "account_id": "acct",
        "container_id": "c-1",
        "listener_id": "l-1",
        "action": "restart",
        "outcome": "queued",
        "reason": "",
        "dry_run": True,
    }
    # A decision that is not an action is finished when it is made.
    assert oldest["finished_at"] == oldest["received_at"]
    assert (oldest["outcome"], oldest["reason"], oldest["container_id"]) == (
        "rejected",
        "unknown container",
        "nope",
    )


def test_an_admitted_action_moves_from_queued_to_running_to_its_outcome(
    ledger: LedgerFile, clock: FakeClock
) -> None:
    (entry,) = ledger.record([alert()], LIMITS)
    clock.now += 1.5
    ledger.mark_started(entry.id)
    assert ledger.recent()[0]["outcome"] == "running"
    assert ledger.recent()[0]["finished_at"] is None
    assert ledger.last_started_at(("acct", "c-1", "l-1")) == T0 + 1.5
    clock.now += 30.25
    ledger.finish(entry.id, "recovered")
    (row,) = ledger.recent()
    assert (row["outcome"], row["finished_at"]) == ("recovered", "2023-11-14T22:13:51.750Z")
    assert ledger.unfinished_entry(("acct", "c-1", "l-1")) is None
    with pytest.raises(ValueError, match="not an unfinished action"):
        ledger.finish(entry.id, "failed")
    with pytest.raises(ValueError, match="not a queued action"):
        ledger.mark_started(entry.id)


def test_callers_cannot_record_an_unfinished_or_unknown_state(ledger: LedgerFile) -> None:
    with pytest.raises(ValueError):
        ledger.record([alert(outcome="running")], LIMITS)
    with pytest.raises(ValueError):
        ledger.record([alert(outcome="interrupted")], LIMITS)
    with pytest.raises(ValueError):
        ledger.record([alert(outcome="Robert'); DROP TABLE decisions;--")], LIMITS)
    with pytest.raises(ValueError):
        ledger.record([alert(source="webhook")], LIMITS)
    (entry,) = ledger.record([alert()], LIMITS)
    with pytest.raises(ValueError, match="not a final outcome"):
        ledger.finish(entry.id, "queued")
    # A refused batch leaves nothing behind, not even its valid first half.
    with pytest.raises(ValueError):
        ledger.record([alert("l-2"), alert("l-3", outcome="running")], LIMITS)
    assert [row["listener_id"] for row in ledger.recent()] == ["l-1"]


def test_recent_is_newest_first_100_by_default_and_at_most_1000(ledger: LedgerFile) -> None:
    decisions = [alert(f"l-{n}", "rejected", reason="unknown container") for n in range(1005)]
    recorded = ledger.record(decisions, LIMITS)
    ids = [entry.id for entry in recorded]
    assert [row["id"] for row in ledger.recent(3)] == ids[::-1][:3]
    assert [row["id"] for row in ledger.recent()] == ids[::-1][:100]
    assert len(ledger.recent(5000)) == RECENT_MAX == 1000
    with pytest.raises(ValueError):
        ledger.recent(0)


# ---------------------------------------------------------------------------------------------
# The guards, derived from the ledger.


def test_a_second_alert_for_a_queued_or_running_listener_is_a_duplicate(
    ledger: LedgerFile,
) -> None:
    # Within one delivery, the second alert sees the first one's row.
    first, second = ledger.record([alert(), alert()], LIMITS)
    assert (first.outcome, second.outcome) == ("queued", "skipped_duplicate")
    assert f"entry {first.id}" in second.reason
    ledger.mark_started(first.id)
    assert ledger.record([alert()], LIMITS)[0].outcome == "skipped_duplicate"
    # Another listener of the same container is not held up.
    assert ledger.record([alert("l-2")], LIMITS)[0].outcome == "queued"


def test_the_cooldown_runs_from_the_start_of_the_last_action(
    ledger: LedgerFile, clock: FakeClock
) -> None:
    (entry,) = ledger.record([alert()], LIMITS)
    clock.now += 10
    ledger.mark_started(entry.id)
    clock.now += 200
    ledger.finish(entry.id, "not_recovered", "still errored after 200 s")
    clock.now += 399  # 599 s after the start
    (again,) = ledger.record([alert()], LIMITS)
    assert again.outcome == "skipped_cooldown"
    clock.now += 1  # 600 s after the start
    assert ledger.record([alert()], LIMITS)[0].outcome == "queued"


def test_an_action_that_was_not_needed_starts_no_cooldown_and_spends_no_budget(
    ledger: LedgerFile, clock: FakeClock
) -> None:
    (entry,) = ledger.record([alert()], LIMITS)
    ledger.finish(entry.id, "skipped_not_needed", "the listener is listening")
    assert ledger.actions_in_window(clock()) == 0
    clock.now += 1
    assert ledger.record([alert()], LIMITS)[0].outcome == "queued"


def test_an_action_being_verified_counts_once_against_the_budget(
    ledger: LedgerFile, clock: FakeClock
) -> None:
    # The case: with max_actions_per_hour 4, two restarts being verified refused a
    # third alert, because the in-memory guards counted each of them twice.
    for listener in ("l-1", "l-2"):
        (entry,) = ledger.record([alert(listener)], LIMITS)
        ledger.mark_started(entry.id)
    assert ledger.actions_in_window(clock()) == 2
    third, fourth, fifth = ledger.record([alert("l-3"), alert("l-4"), alert("l-5")], LIMITS)
    assert (third.outcome, fourth.outcome) == ("queued", "queued")
    # Queued actions hold their place too: four are under way, a fifth waits.
    assert fifth.outcome == "skipped_budget"
    assert "remediation.max_actions_per_hour is 4" in fifth.reason


def test_the_budget_window_is_one_hour_of_action_starts(
    ledger: LedgerFile, clock: FakeClock
) -> None:
    for listener in ("l-1", "l-2", "l-3", "l-4"):
        (entry,) = ledger.record([alert(listener)], LIMITS)
        ledger.mark_started(entry.id)
        ledger.finish(entry.id, "dry_run")
        clock.now += 60
    assert ledger.record([alert("l-5")], LIMITS)[0].outcome == "skipped_budget"
    # The first start (T0) leaves the window once an hour has passed since it.
    clock.now = T0 + BUDGET_WINDOW_SECONDS
    assert ledger.actions_in_window(clock()) == 3
    assert ledger.record([alert("l-5")], LIMITS)[0].outcome == "queued"


ONE_ACTION = """
    import json, os, sys
    from exporter.ledger import Decision, GuardLimits, LedgerFile

    directory, listener, now, ending = sys.argv[1:]
    ledger = LedgerFile.open(directory, retention_days=30, clock=lambda: float(now))
    decision = Decision("alertmanager", "fp", "acct", "c-1", listener, "restart", "queued")
    (entry,) = ledger.record([decision], GuardLimits(600, 4))
    ledger.mark_started(entry.id)
    print(json.dumps([row["listener_id"] for row in ledger.interrupted]), flush=True)
    if ending == "crash":
        os._exit(0)  # no close: the action stays running, as under kill -9
    ledger.finish(entry.id, "recovered")
    ledger.close()
"""


def test_the_budget_counts_actions_across_three_processes(tmp_path: Path) -> None:
    interrupted = []
    for offset, listener, ending in (
        (0, "l-1", "finish"),
        (100, "l-2", "crash"),
        (200, "l-3", "finish"),
    ):
        child = run_child(ONE_ACTION, str(tmp_path), listener, str(T0 + offset), ending)
        stdout, stderr = child.communicate(timeout=60)
        assert child.returncode == 0, stderr
        interrupted.append(json.loads(stdout))
    assert interrupted == [[], [], ["l-2"]]
    clock = FakeClock(T0 + 300)
    last = LedgerFile.open(tmp_path, retention_days=30, clock=clock)
    try:
        assert last.actions_in_window(clock()) == 3
        assert last.record([alert("l-4")], LIMITS)[0].outcome == "queued"
        assert last.record([alert("l-5")], LIMITS)[0].outcome == "skipped_budget"
        clock.now = T0 + BUDGET_WINDOW_SECONDS  # l-1 started an hour ago
        assert last.record([alert("l-5")], LIMITS)[0].outcome == "queued"
    finally:
        last.close()


# ---------------------------------------------------------------------------------------------
# Crashes and ownership, with real processes.

HOLDER = """
    import sys
    from exporter.ledger import Decision, GuardLimits, LedgerFile

    ledger = LedgerFile.open(sys.argv[1], retention_days=30, clock=lambda: 1000.0)
    def alert(listener):
        return Decision("alertmanager", "fp-" + listener, "acct", "c-1", listener, "restart",
                        "queued")
    verifying, waiting = ledger.record([alert("l-verifying"), alert("l-waiting")],
                                       GuardLimits(600, 10))
    ledger.mark_started(verifying.id)
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_a_killed_owner_leaves_interrupted_entries_and_its_cooldown(tmp_path: Path) -> None:
    holder = run_child(HOLDER, str(tmp_path), stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready", holder.stderr
        # While the holder lives, a second owner is refused, and told who holds the path.
        with pytest.raises(LedgerLocked, match=rf"in use by another exporter \(pid {holder.pid}\)"):
            LedgerFile.open(tmp_path, retention_days=30)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    assert holder.returncode == -9
    clock = FakeClock(1000.0 + 300)
    reopened = LedgerFile.open(tmp_path, retention_days=30, clock=clock)
    try:
        by_listener = {row["listener_id"]: row for row in reopened.interrupted}
        assert set(by_listener) == {"l-verifying", "l-waiting"}
        assert all(row["outcome"] == "interrupted" for row in by_listener.values())
        assert "while the action was running" in by_listener["l-verifying"]["reason"]
        assert "before the action started" in by_listener["l-waiting"]["reason"]
        # The action that had started keeps its listener in cooldown from its start (t=1000);
        # the one that never started holds nothing back.
        limits = GuardLimits(cooldown_seconds=600, max_actions_per_hour=10)
        verifying, waiting = reopened.record([alert("l-verifying"), alert("l-waiting")], limits)
        assert (verifying.outcome, waiting.outcome) == ("skipped_cooldown", "queued")
        clock.now = 1000.0 + 600
        assert reopened.record([alert("l-verifying")], limits)[0].outcome == "queued"
    finally:
        reopened.close()


def test_a_second_owner_in_the_same_process_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    first = LedgerFile.open(tmp_path, retention_days=30)
    with pytest.raises(LedgerLocked, match=str(tmp_path)):
        LedgerFile.open(tmp_path, retention_days=30)
    first.close()
    LedgerFile.open(tmp_path, retention_days=30).close()


def test_close_marks_what_is_left_interrupted(tmp_path: Path, clock: FakeClock) -> None:
    opened = LedgerFile.open(tmp_path, retention_days=30, clock=clock)
    (entry,) = opened.record([alert()], LIMITS)
    opened.mark_started(entry.id)
    (left,) = opened.close()
    assert (left["id"], left["outcome"]) == (entry.id, "interrupted")
    assert opened.close() == ()
    with pytest.raises(LedgerUnavailable, match="is closed"):
        opened.recent()
    again = LedgerFile.open(tmp_path, retention_days=30, clock=clock)
    assert again.interrupted == ()
    again.close()


def test_a_guest_writes_beside_the_owner_and_marks_only_its_own_entries(
    tmp_path: Path, clock: FakeClock
) -> None:
    owner = LedgerFile.open(tmp_path, retention_days=30, clock=clock)
    guest = None
    try:
        (old,) = owner.record([alert("l-old", outcome="rejected")], LIMITS)
        (running,) = owner.record([alert("l-1")], LIMITS)
        owner.mark_started(running.id)
        clock.now += 40 * 86400  # the owner's entries are past retention now
        guest = LedgerFile.open(tmp_path, retention_days=30, clock=clock, guest_when_owned=True)
        assert (owner.owner, guest.owner) == (True, False)
        assert guest.interrupted == ()  # the owner's running action is the owner's
        # The guards see the owner's rows, and the owner sees the guest's.
        assert guest.record([alert("l-1")], LIMITS)[0].outcome == "skipped_duplicate"
        (mine,) = guest.record([alert("l-2")], LIMITS)
        assert mine.outcome == "queued"
        assert owner.record([alert("l-2")], LIMITS)[0].outcome == "skipped_duplicate"
        (left,) = guest.close()
        assert (left["id"], left["outcome"]) == (mine.id, "interrupted")
        by_id = {entry["id"]: entry for entry in owner.recent()}
        assert by_id[running.id]["outcome"] == "running"
        assert old.id not in by_id  # pruned by the owner's record above, never by the guest
    finally:
        if guest is not None:
            guest.close()
        owner.close()


def test_a_guest_prunes_nothing(tmp_path: Path, clock: FakeClock) -> None:
    owner = LedgerFile.open(tmp_path, retention_days=30, clock=clock)
    try:
        (old,) = owner.record([alert("l-old", outcome="rejected")], LIMITS)
        clock.now += 40 * 86400
        guest = LedgerFile.open(tmp_path, retention_days=30, clock=clock, guest_when_owned=True)
        guest.record([alert("l-new", outcome="rejected")], LIMITS)
        assert old.id in {entry["id"] for entry in guest.recent()}
        guest.close()
    finally:
        owner.close()


def test_without_guest_when_owned_an_owned_path_is_refused(tmp_path: Path) -> None:
    owner = LedgerFile.open(tmp_path, retention_days=30)
    try:
        with pytest.raises(LedgerLocked, match="in use by another exporter"):
            LedgerFile.open(tmp_path, retention_days=30)
    finally:
        owner.close()
    # With nobody owning the path, a caller that would have been a guest owns it.
    alone = LedgerFile.open(tmp_path, retention_days=30, guest_when_owned=True)
    assert alone.owner
    alone.close()


def test_a_queued_entry_counts_against_the_budget_with_a_clock_near_zero(
    tmp_path: Path,
) -> None:
    now = FakeClock(61.0)  # less than the budget window since the clock's epoch
    opened = LedgerFile.open(tmp_path, retention_days=30, clock=now)
    try:
        limits = GuardLimits(cooldown_seconds=0, max_actions_per_hour=1)
        assert opened.record([alert("l-1")], limits)[0].outcome == "queued"
        assert opened.record([alert("l-2")], limits)[0].outcome == "skipped_budget"
    finally:
        opened.close()


# ---------------------------------------------------------------------------------------------
# Paths and writes that fail.


def test_an_unwritable_storage_path_is_refused_naming_it(tmp_path: Path) -> None:
    regular_file = tmp_path / "not-a-directory"
    regular_file.write_text("")
    storage = regular_file / "data"
    with pytest.raises(LedgerUnavailable, match=f"cannot open the ledger at {storage}") as info:
        LedgerFile.open(storage, retention_days=30)
    assert info.value.path == storage
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILE).write_bytes(b"this is not an SQLite database, " * 64)
    with pytest.raises(LedgerUnavailable, match="file is not a database"):
        LedgerFile.open(tmp_path, retention_days=30)
    # The refusal let the lock go.
    (tmp_path / LEDGER_FILE).unlink()
    LedgerFile.open(tmp_path, retention_days=30).close()


def test_a_ledger_from_a_newer_exporter_is_refused(tmp_path: Path) -> None:
    LedgerFile.open(tmp_path, retention_days=30).close()
    with sqlite3.connect(tmp_path / LEDGER_FILE) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(LedgerUnavailable, match=r"newer exporter \(schema 99\)"):
        LedgerFile.open(tmp_path, retention_days=30)


def test_a_read_only_database_file_is_refused_at_open(tmp_path: Path) -> None:
    LedgerFile.open(tmp_path, retention_days=30).close()
    database = tmp_path / LEDGER_FILE
    if not chattr("+i", database):
        pytest.skip("no immutable flag on this file system (chattr +i failed)")
    try:
        with pytest.raises(LedgerUnavailable, match=str(database)):
            LedgerFile.open(tmp_path, retention_days=30)
    finally:
        chattr("-i", database)


def test_a_database_made_read_only_while_open_makes_writes_unavailable(
    tmp_path: Path,
) -> None:
    opened = LedgerFile.open(tmp_path, retention_days=30)
    try:
        opened.record([alert("l-1")], LIMITS)
        files = [tmp_path / LEDGER_FILE, tmp_path / f"{LEDGER_FILE}-wal"]
        if not chattr("+i", *files):
            pytest.skip("no immutable flag on this file system (chattr +i failed)")
        try:
            with pytest.raises(LedgerUnavailable, match="cannot write to the ledger"):
                opened.record([alert("l-2")], LIMITS)
        finally:
            chattr("-i", *files)
        # The disk is back: writes work again on the same connection.
        assert opened.record([alert("l-3")], LIMITS)[0].outcome == "queued"
        assert [row["listener_id"] for row in opened.recent()] == ["l-3", "l-1"]
    finally:
        opened.close()


FULL_DISK = """
    import asyncio, json, resource, sys
    from exporter.ledger import Decision, GuardLimits, Ledger, LedgerUnavailable

    def alert(listener):
        return Decision("alertmanager", "fp", "acct", "c-1", listener, "restart", "queued")

    async def main():
        ledger = Ledger.open(sys.argv[1], retention_days=30)
        limits = GuardLimits(600, 10)
        out = {"before": (await ledger.record([alert("l-1")], limits))[0].outcome}
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # every file write: EFBIG
        for name, call in (("record", ledger.record([alert("l-2")], limits)),
                           ("mark_started", ledger.mark_started(1))):
            try:
                await call
                out[name] = "written"
            except LedgerUnavailable as exc:
                out[name] = str(exc)
        # Calls that share one commit all learn that it failed.
        grouped = await asyncio.gather(
            *(ledger.record([alert(f"g-{n}")], limits) for n in range(5)),
            return_exceptions=True,
        )
        out["grouped"] = [type(result).__name__ for result in grouped]
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        out["after"] = (await ledger.record([alert("l-3")], limits))[0].outcome
        out["listeners"] = [row["listener_id"] for row in await ledger.recent()]
        out["outcomes"] = [row["outcome"] for row in await ledger.recent()]
        await ledger.close()
        print(json.dumps(out))

    asyncio.run(main())
"""


def test_a_failing_write_raises_ledger_unavailable_records_nothing_and_recovers(
    tmp_path: Path,
) -> None:
    child = run_child(FULL_DISK, str(tmp_path))
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    out = json.loads(stdout)
    database = tmp_path / LEDGER_FILE
    assert out["before"] == "queued"
    assert out["record"].startswith(f"cannot write to the ledger at {database}: ")
    assert out["mark_started"].startswith(f"cannot write to the ledger at {database}: ")
    assert out["grouped"] == ["LedgerUnavailable"] * 5
    assert out["after"] == "queued"
    assert out["listeners"] == ["l-3", "l-1"]
    assert out["outcomes"] == ["queued", "queued"]
    reopened = LedgerFile.open(tmp_path, retention_days=30)
    # Both were still queued when the child closed the ledger.
    assert [row["outcome"] for row in reopened.recent()] == ["interrupted", "interrupted"]
    reopened.close()


# ---------------------------------------------------------------------------------------------
# Retention.


def test_retention_deletes_finished_entries_older_than_retention_days(
    tmp_path: Path, clock: FakeClock
) -> None:
    opened = LedgerFile.open(tmp_path, retention_days=30, clock=clock)
    try:
        _, old_action = opened.record(
            [alert("l-1", "rejected", reason="unknown container"), alert("l-2")], LIMITS
        )
        clock.now += 10 * 86400
        (kept,) = opened.record([alert("l-3", "rejected", reason="unknown container")], LIMITS)
        clock.now = T0 + 30 * 86400 + 1
        # The next decision prunes (retention runs at most hourly, from record).
        (new,) = opened.record([alert("l-4", "rejected", reason="unknown container")], LIMITS)
        ids = [row["id"] for row in opened.recent()]
        # An action still under way is not deleted, however old.
        assert ids == [new.id, kept.id, old_action.id]
        opened.finish(old_action.id, "not_recovered")
        clock.now += 5 * 86400
        assert opened.prune() == 1  # the action, received 35 days ago; kept is 25 days old
        assert [row["id"] for row in opened.recent()] == [new.id, kept.id]
    finally:
        opened.close()
    # And at open, with a longer clock jump.
    clock.now += 365 * 86400
    reopened = LedgerFile.open(tmp_path, retention_days=30, clock=clock)
    assert reopened.recent() == []
    reopened.close()


# ---------------------------------------------------------------------------------------------
# Nothing secret, values bounded.


def ledger_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.glob(f"{LEDGER_FILE}*")))


def test_values_are_bounded_and_a_secret_past_the_bound_never_reaches_the_file(
    tmp_path: Path,
) -> None:
    secret = f"s3cret-{secrets.token_hex(8)}"
    opened = LedgerFile.open(tmp_path, retention_days=30)
    opened.record(
        [
            alert(
                "l-" + "x" * 200 + secret,
                "rejected",
                fingerprint="f" * 64 + secret,
                reason="line one\nline two\x1b[31m " + "r" * 300 + secret,
            )
        ],
        LIMITS,
    )
    (row,) = opened.recent()
    assert len(row["listener_id"]) == 128 and len(row["fingerprint"]) == 64
    assert row["reason"].startswith("line one?line two?[31m ")
    assert len(row["reason"]) == 300
    # Checked while open (database, WAL and shared memory) and after close (checkpointed).
    assert secret.encode() not in ledger_bytes(tmp_path)
    opened.close()
    assert secret.encode() not in ledger_bytes(tmp_path)
    with pytest.raises(TypeError):
        alert(labels={"password": secret})


def test_retention_leaves_no_trace_of_deleted_entries_in_the_file(
    tmp_path: Path, clock: FakeClock
) -> None:
    marker = f"marker-{secrets.token_hex(8)}"
    opened = LedgerFile.open(tmp_path, retention_days=1, clock=clock)
    opened.record([alert("l-1", "rejected", reason=marker)], LIMITS)
    opened.close()
    assert marker.encode() in ledger_bytes(tmp_path)  # the check below can see it
    clock.now += 2 * 86400
    reopened = LedgerFile.open(tmp_path, retention_days=1, clock=clock)
    assert reopened.recent() == []
    reopened.close()
    # secure_delete zeroed the row; the checkpoint at close overwrote the page in the file.
    assert marker.encode() not in ledger_bytes(tmp_path)


def test_the_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    opened = LedgerFile.open(tmp_path / "data", retention_days=30)
    opened.record([alert()], LIMITS)
    try:
        for path in (tmp_path / "data").iterdir():
            assert path.stat().st_mode & 0o077 == 0, path
        assert (tmp_path / "data").stat().st_mode & 0o077 == 0
    finally:
        opened.close()


# ---------------------------------------------------------------------------------------------
# The asyncio facade.


async def test_a_storm_of_200_concurrent_deliveries_admits_one_action(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, retention_days=30)
    try:
        results = await asyncio.gather(*(ledger.record([alert()], LIMITS) for _ in range(200)))
        outcomes = [recorded.outcome for (recorded,) in results]
        assert outcomes.count("queued") == 1
        assert outcomes.count("skipped_duplicate") == 199
        assert len(await ledger.recent(1000)) == 200
    finally:
        await ledger.close()


async def test_callers_of_one_group_resume_a_few_per_turn_of_the_loop_in_order(
    tmp_path: Path,
) -> None:
    ledger = Ledger.open(tmp_path, retention_days=30)
    gate = threading.Event()
    turn = [0]

    async def count_turns() -> None:
        while True:
            turn[0] += 1
            await asyncio.sleep(0)

    resumed: list[tuple[int, int]] = []  # (caller, turn of the loop it resumed in)

    async def deliver(n: int) -> None:
        await ledger.record([alert(f"l-{n}")], LIMITS)
        resumed.append((n, turn[0]))

    counter = asyncio.create_task(count_turns())
    try:
        # The worker is held up, so the 50 calls wait together and end in one group.
        blocked = asyncio.ensure_future(ledger._submit(gate.wait))
        calls = []
        for n in range(50):
            calls.append(asyncio.ensure_future(deliver(n)))
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(blocked, *calls)
    finally:
        counter.cancel()
        await ledger.close()
    assert [n for n, _ in resumed] == list(range(50))
    per_turn = Counter(at for _, at in resumed)
    # On a busy machine the worker may commit the 50 in two groups, whose slices can then share
    # a turn of the loop (11 were seen once): a few per turn, never all at once.
    assert max(per_turn.values()) <= 2 * SETTLE_SLICE
    assert len(per_turn) >= 50 // SETTLE_SLICE


async def test_a_mistaken_call_undoes_only_its_own_writes(tmp_path: Path) -> None:
    # Whether the three share a commit depends on the worker's timing; the outcome may not.
    ledger = Ledger.open(tmp_path, retention_days=30)
    try:
        first, mistaken, last = await asyncio.gather(
            ledger.record([alert("l-1")], LIMITS),
            ledger.record([alert("l-2"), alert("l-3", outcome="running")], LIMITS),
            ledger.record([alert("l-4")], LIMITS),
            return_exceptions=True,
        )
        assert isinstance(mistaken, ValueError)
        assert [entry.outcome for entry in (*first, *last)] == ["queued", "queued"]  # type: ignore[misc]
        assert [row["listener_id"] for row in await ledger.recent()] == ["l-4", "l-1"]
    finally:
        await ledger.close()


def test_together_commits_the_calls_that_succeed(ledger: LedgerFile) -> None:
    results = ledger.together(
        [
            lambda: ledger.record([alert("l-1")], LIMITS),
            lambda: ledger.mark_started(999),
            lambda: ledger.record([alert("l-1")], LIMITS),
        ]
    )
    (ok1, first), (ok2, error), (ok3, second) = results
    assert (ok1, ok2, ok3) == (True, False, True)
    assert isinstance(error, ValueError)
    assert [entry.outcome for entry in (*first, *second)] == ["queued", "skipped_duplicate"]  # type: ignore[misc]
    assert len(ledger.recent()) == 2


async def test_the_facade_runs_the_whole_life_of_an_action(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = Ledger.open(tmp_path, retention_days=30, clock=clock)
    assert ledger.path == tmp_path / LEDGER_FILE and ledger.interrupted == ()
    (entry,) = await ledger.record([alert()], LIMITS)
    await ledger.mark_started(entry.id)
    clock.now += 5
    await ledger.finish(entry.id, "recovered")
    assert [row["outcome"] for row in await ledger.recent()] == ["recovered"]
    clock.now += 31 * 86400
    assert await ledger.prune() == 1
    assert await ledger.close() == ()
    with pytest.raises(LedgerUnavailable, match="is closed"):
        await ledger.recent()
    assert await ledger.close() == ()


def test_an_action_running_for_over_an_hour_still_counts_once(
    ledger: LedgerFile, clock: FakeClock
) -> None:
    (entry,) = ledger.record([alert()], LIMITS)
    ledger.mark_started(entry.id)
    ledger.record([alert("l-2", "rejected", reason="unknown container")], LIMITS)
    assert ledger.actions_in_window(clock()) == 1
    clock.now += BUDGET_WINDOW_SECONDS + 1
    assert ledger.actions_in_window(clock()) == 1  # unfinished: it still holds its place
    ledger.finish(entry.id, "not_recovered")
    assert ledger.actions_in_window(clock()) == 0
