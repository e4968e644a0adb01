"""The ledger's SQLite file: opening it, the owner lock, the guards' queries, writes, retention.

`LedgerFile` is synchronous and used by one thread at a time. `Ledger` (worker.py) gives it a
thread of its own for asyncio code; the restart subcommand can also use it directly.

Durability: WAL with `synchronous=FULL` for every write, not only the first: a lost `running`
update would let an interrupted action come back without `started_at`, and so without its
cooldown. `secure_delete` zeroes rows that retention deletes, so they leave no trace.

Ownership: one process owns a storage path. It holds `ledger.lock` with `flock(LOCK_EX |
LOCK_NB)` for as long as the ledger is open (the kernel lets go when the process dies, even by
`kill -9`); a second process gets `LedgerLocked`, naming the holder's pid. Marking rows
`interrupted` at open is only safe because nobody else is using them.

Guests: the `restart` subcommand must record its action in the ledger of the daemon that is
running beside it, so it may open the file as a guest (`guest_when_owned`) when the owner lock
is taken. A guest holds no lock, marks nothing `interrupted` at open and leaves retention to
the owner; at close it marks only its own unfinished entries. Its writes still take SQLite's
write lock (`BEGIN IMMEDIATE`), so its guard queries and inserts stay one atomic step against
the owner's.

Nothing secret goes in: only the fields of `Decision`, each cut to a bound and stripped of
control characters.

A few lines over 500: the owner lock, the schema checks and every query the guards need are
one transaction-aware unit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from exporter.ledger.decisions import (
    BUDGET_WINDOW_SECONDS,
    CANDIDATE,
    SOURCES,
    UNFINISHED,
    Decision,
    GuardLimits,
    ListenerFacts,
    ListenerKey,
    Recorded,
    guard,
)
from exporter.ledger.rows import (
    COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    Entry,
    bounded,
    checked_outcome,
    entry_from_row,
)

LEDGER_FILE = "ledger.db"
LOCK_FILE = "ledger.lock"
# Retention runs at open and then at most this often, inside a `record` transaction.
PRUNE_INTERVAL_SECONDS = 3600.0
RECENT_DEFAULT, RECENT_MAX = 100, 1000
# How long a write waits for a lock someone else holds (an operator's sqlite3 shell) before it
# counts as "ledger unavailable"; it waits in the worker thread, never on the event loop.
BUSY_TIMEOUT_SECONDS = 1.0


class LedgerError(Exception):
    """The ledger cannot be used; the message names the path and says why."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


class LedgerLocked(LedgerError):
    """Another process owns this storage path (refuse to start)."""


class LedgerUnavailable(LedgerError):
    """The ledger cannot be opened, read or written: at start, refuse; later, reject."""


def _acquire_lock(directory: Path) -> int:
    """The owner lock's file descriptor, held until closed; LedgerLocked if someone has it."""
    lock_path = directory / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise LedgerUnavailable(
            directory, f"cannot open the ledger at {directory}: {exc.strerror or exc}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise LedgerLocked(
            directory,
            f"the ledger at {directory} is in use by another exporter"
            f"{f' (pid {holder})' if holder.isdigit() else ''}; one process owns a storage path",
        ) from None
    except OSError as exc:
        os.close(fd)
        raise LedgerUnavailable(
            directory, f"cannot lock the ledger at {directory}: {exc.strerror or exc}"
        ) from exc
    try:
        # Only the owner writes here, after it holds the lock: the pid for the refusal above.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise LedgerUnavailable(
            directory, f"cannot write to the ledger at {directory}: {exc.strerror or exc}"
        ) from exc
    return fd


class LedgerFile:
    """The ledger itself, synchronous; one thread at a time (`Ledger` gives it a thread).

    `open` creates the directory and the database, takes the owner lock, marks what a previous
    process left unfinished as `interrupted` (in `interrupted`, for the caller to log) and
    applies retention. Every later failure of SQLite or the disk is `LedgerUnavailable`.
    """

    def __init__(
        self,
        directory: Path,
        connection: sqlite3.Connection,
        lock_fd: int | None,
        *,
        retention_days: float,
        clock: Callable[[], float],
    ) -> None:
        self.directory = directory
        self.path = directory / LEDGER_FILE
        self._connection: sqlite3.Connection | None = connection
        self._lock_fd = lock_fd
        self._retention_seconds = retention_days * 86400.0
        self._clock = clock
        # A guest leaves retention to the owner.
        self._pruned_at = -float("inf") if lock_fd is not None else float("inf")
        self._in_batch = False
        # Unfinished entries this handle recorded: what a guest marks `interrupted` at close.
        self._mine: set[int] = set()
        self.interrupted: tuple[Entry, ...] = ()

    @property
    def owner(self) -> bool:
        """Whether this handle owns the storage path (False: a guest of the running owner)."""
        return self._lock_fd is not None

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        retention_days: float,
        clock: Callable[[], float] = time.time,
        guest_when_owned: bool = False,
    ) -> LedgerFile:
        """Open (or create) `<directory>/ledger.db` and own it until `close`.

        With `guest_when_owned`, a path another process owns is opened as its guest instead of
        refused (see the module's docstring); `owner` tells which it became.
        """
        if not retention_days > 0:
            raise ValueError("retention_days must be positive")
        path = Path(directory)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerUnavailable(
                path, f"cannot open the ledger at {path}: {exc.strerror or exc}"
            ) from exc
        lock_fd: int | None
        try:
            lock_fd = _acquire_lock(path)
        except LedgerLocked:
            if not guest_when_owned:
                raise
            lock_fd = None
        connection = None
        try:
            # Created 0600 before SQLite sees it: SQLite gives -wal and -shm the same mode.
            os.close(os.open(path / LEDGER_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            connection = sqlite3.connect(
                path / LEDGER_FILE,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
                check_same_thread=False,  # opened here, then used by one worker thread
            )
            ledger = cls(path, connection, lock_fd, retention_days=retention_days, clock=clock)
            ledger._prepare()
        except BaseException as exc:
            if connection is not None:
                connection.close()
            if lock_fd is not None:
                os.close(lock_fd)
            if not isinstance(exc, OSError | sqlite3.Error):
                raise
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise LedgerUnavailable(
                path, f"cannot open the ledger at {path / LEDGER_FILE}: {message}"
            ) from exc
        return ledger

    def _prepare(self) -> None:
        connection = self._conn()
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA secure_delete = ON")
        connection.execute("PRAGMA journal_size_limit = 4194304")  # the WAL shrinks back to 4 MiB
        # Never a temporary file beside the database or in /tmp: the root file system may be
        # read-only (docker run --read-only, Kubernetes) with only the storage path writable.
        connection.execute("PRAGMA temp_store = MEMORY")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise LedgerUnavailable(
                self.directory,
                f"the ledger at {self.path} was written by a newer exporter (schema {version})",
            )
        now = self._clock()
        with self._transaction() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if not self.owner:
                return  # the owner's rows are the owner's business
            conn.execute(
                "INSERT OR REPLACE INTO owner (id, pid, opened_at) VALUES (1, ?, ?)",
                (os.getpid(), now),
            )
            self.interrupted = self._interrupt(conn, now, "the exporter stopped or was killed")
            self._prune(conn, now)

    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise LedgerUnavailable(self.directory, f"the ledger at {self.path} is closed")
        return self._connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a failure of SQLite or the disk becomes LedgerUnavailable.

        Inside `together` it is a savepoint of the shared transaction instead: a caller's
        mistake (ValueError, TypeError) undoes only its own writes.
        """
        connection = self._conn()
        if self._in_batch:
            connection.execute("SAVEPOINT call")
            try:
                yield connection
            except (ValueError, TypeError):
                connection.execute("ROLLBACK TO call")
                connection.execute("RELEASE call")
                raise
            # Anything else ends the whole transaction, in `together`.
            connection.execute("RELEASE call")
            return
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._rollback(connection)
            raise LedgerUnavailable(
                self.directory, f"cannot write to the ledger at {self.path}: {exc}"
            ) from exc
        except BaseException:
            self._rollback(connection)
            raise

    def together(self, calls: Sequence[Callable[[], object]]) -> list[tuple[bool, object]]:
        """Run calls of this ledger in one transaction, so one fsync commits them all.

        Per call (True, its result) or (False, the ValueError or TypeError it raised; its
        writes are undone). Anything else (LedgerUnavailable) fails them all: nothing is
        committed. This is the worker's group commit.
        """
        results: list[tuple[bool, object]] = []
        with self._transaction():
            self._in_batch = True
            try:
                for call in calls:
                    try:
                        results.append((True, call()))
                    except (ValueError, TypeError) as exc:
                        results.append((False, exc))
            finally:
                self._in_batch = False
        return results

    @staticmethod
    def _rollback(connection: sqlite3.Connection) -> None:
        # After some errors SQLite has already rolled back; a failing rollback changes nothing.
        with contextlib.suppress(sqlite3.Error):
            if connection.in_transaction:
                connection.execute("ROLLBACK")

    def _read(self, sql: str, parameters: tuple[object, ...] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise LedgerUnavailable(
                self.directory, f"cannot read the ledger at {self.path}: {exc}"
            ) from exc

    # The guards' queries -------------------------------------------------------------------

    def unfinished_entry(self, listener: ListenerKey) -> int | None:
        """The id of a queued or running entry for the listener, if there is one."""
        rows = self._read(
            "SELECT id FROM decisions WHERE finished_at IS NULL"
            " AND account_id = ? AND container_id = ? AND listener_id = ? LIMIT 1",
            listener,
        )
        return int(rows[0][0]) if rows else None

    def last_started_at(self, listener: ListenerKey) -> float | None:
        """When the listener's last action (of any outcome since) was started."""
        rows = self._read(
            "SELECT max(started_at) FROM decisions"
            " WHERE account_id = ? AND container_id = ? AND listener_id = ?",
            listener,
        )
        value = rows[0][0]
        return None if value is None else float(value)

    def actions_in_window(self, now: float) -> int:
        """Actions started in the last hour, or queued or running: each row counted once."""
        # Two indexed counts rather than one `OR`, which SQLite answers with a table scan
        # (measured: 20 ms per decision at 15,000 rows). The second counts only the unfinished
        # rows the first did not (a queued row has no start: it counts even when the clock
        # reads less than an hour); `coalesce` keeps it on the small partial index of unfinished
        # rows instead of the index of starts, where every decision without one sits at NULL.
        rows = self._read(
            "SELECT (SELECT count(*) FROM decisions WHERE started_at > ?1)"
            " + (SELECT count(*) FROM decisions WHERE finished_at IS NULL"
            " AND coalesce(started_at, -1e300) <= ?1)",
            (now - BUDGET_WINDOW_SECONDS,),
        )
        return int(rows[0][0])

    def facts(self, listener: ListenerKey, now: float) -> ListenerFacts:
        """Everything `guard` looks at, for one listener."""
        return ListenerFacts(
            self.unfinished_entry(listener),
            self.last_started_at(listener),
            self.actions_in_window(now),
        )

    # Writes ---------------------------------------------------------------------------------

    def record(self, decisions: Sequence[Decision], limits: GuardLimits) -> list[Recorded]:
        """Record decisions in one transaction; each `queued` one goes through the guards first.

        Decisions later in the sequence see the earlier ones (a second alert for a listener
        admitted a moment ago is a duplicate). Any other outcome is final as given.
        """
        now = self._clock()
        recorded = []
        with self._transaction() as conn:
            # Counted once: within this transaction only the admissions below add to it.
            in_window: int | None = None
            for decision in decisions:
                if decision.source not in SOURCES:
                    raise ValueError(f"unknown decision source {decision.source!r}")
                outcome = checked_outcome(decision.outcome, final=False)
                reason = decision.reason
                if outcome == CANDIDATE:
                    if in_window is None:
                        in_window = self.actions_in_window(now)
                    listener = decision.listener
                    facts = ListenerFacts(
                        self.unfinished_entry(listener), self.last_started_at(listener), in_window
                    )
                    outcome, reason = guard(facts, limits, now)
                    if outcome == CANDIDATE:
                        in_window += 1
                reason = bounded("reason", reason)
                cursor = conn.execute(
                    "INSERT INTO decisions (received_at, finished_at, source, fingerprint,"
                    " account_id, container_id, listener_id, action, outcome, reason, dry_run)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        now,
                        None if outcome in UNFINISHED else now,
                        decision.source,
                        bounded("fingerprint", decision.fingerprint),
                        bounded("account_id", decision.account_id),
                        bounded("container_id", decision.container_id),
                        bounded("listener_id", decision.listener_id),
                        bounded("action", decision.action),
                        outcome,
                        reason,
                        int(decision.dry_run),
                    ),
                )
                assert cursor.lastrowid is not None
                recorded.append(Recorded(cursor.lastrowid, outcome, reason))
                if outcome in UNFINISHED:
                    self._mine.add(cursor.lastrowid)
            if now - self._pruned_at >= PRUNE_INTERVAL_SECONDS:
                self._prune(conn, now)
        return recorded

    def mark_started(self, entry_id: int) -> None:
        """A queued action is about to act (or dry-run): its cooldown starts now."""
        now = self._clock()
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE decisions SET outcome = 'running', started_at = ?"
                " WHERE id = ? AND outcome = 'queued' AND finished_at IS NULL",
                (now, entry_id),
            )
            if cursor.rowcount != 1:
                raise ValueError(f"ledger entry {entry_id} is not a queued action")

    def finish(self, entry_id: int, outcome: str, reason: str = "") -> None:
        """A queued or running action ended with `outcome`."""
        final = checked_outcome(outcome, final=True)
        now = self._clock()
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE decisions SET outcome = ?, reason = ?, finished_at = ?"
                " WHERE id = ? AND finished_at IS NULL",
                (final, bounded("reason", reason), now, entry_id),
            )
            if cursor.rowcount != 1:
                raise ValueError(f"ledger entry {entry_id} is not an unfinished action")
        self._mine.discard(entry_id)

    def prune(self) -> int:
        """Delete finished entries received more than retention_days ago; how many went."""
        now = self._clock()
        with self._transaction() as conn:
            return self._prune(conn, now)

    def _prune(self, conn: sqlite3.Connection, now: float) -> int:
        self._pruned_at = now
        cursor = conn.execute(
            "DELETE FROM decisions WHERE received_at < ? AND finished_at IS NOT NULL",
            (now - self._retention_seconds,),
        )
        return cursor.rowcount

    def _interrupt(self, conn: sqlite3.Connection, now: float, why: str) -> tuple[Entry, ...]:
        """Mark unfinished entries `interrupted`: all of them, or a guest's own."""
        rows = conn.execute(
            "SELECT id, outcome FROM decisions WHERE finished_at IS NULL ORDER BY id"
        ).fetchall()
        if not self.owner:
            rows = [row for row in rows if row[0] in self._mine]
        for entry_id, stage in rows:
            reason = (
                f"{why} while the action was running; check the listener in Boomi"
                if stage == "running"
                else f"{why} before the action started"
            )
            conn.execute(
                "UPDATE decisions SET outcome = 'interrupted', reason = ?, finished_at = ?"
                " WHERE id = ?",
                (reason, now, entry_id),
            )
        ids = [entry_id for entry_id, _ in rows]
        placeholders = ",".join("?" * len(ids))
        found = conn.execute(
            f"SELECT {COLUMNS} FROM decisions WHERE id IN ({placeholders}) ORDER BY id", ids
        ).fetchall()
        return tuple(entry_from_row(row) for row in found)

    # Reading and closing -------------------------------------------------------------------

    def recent(self, limit: int = RECENT_DEFAULT) -> list[Entry]:
        """The newest entries first, at most `limit` (capped at RECENT_MAX)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = self._read(
            f"SELECT {COLUMNS} FROM decisions ORDER BY id DESC LIMIT ?",
            (min(limit, RECENT_MAX),),
        )
        return [entry_from_row(row) for row in rows]

    def close(self) -> tuple[Entry, ...]:
        """Mark what is still unfinished `interrupted`, close, let the lock go; those entries.

        A guest marks only the entries it recorded itself.
        """
        if self._connection is None:
            return ()
        try:
            with self._transaction() as conn:
                left = self._interrupt(conn, self._clock(), "the exporter stopped")
        finally:
            self._connection.close()
            self._connection = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
        self._mine.clear()
        return left
