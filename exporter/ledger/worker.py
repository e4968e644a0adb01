"""The ledger for asyncio code: one thread owns the SQLite file and commits calls in groups.

Why a thread: a commit with `synchronous=FULL` waits for fsync, and fsync time belongs to the
disk. Measured on the development machine (ext4 on virtio, single-row commits, WAL): 0.30 ms
median, 0.59 ms p99, 4.3 ms max when it was quiet; 4 ms median, 12 ms p99, 20 ms max while
other test runs loaded it (bench/ledger.py). Made on the event loop, every one of those waits
would stall scrapes and polls: 200 duplicate deliveries written synchronously on the loop
lagged it by up to 171 ms (512 ms and 1.7 s when started all at once). So one dedicated thread
owns the connection (sqlite3 releases the GIL while SQLite works); the loop only queues a call
and is woken with its result, about 0.05 ms of its own CPU per call. (On that loaded machine
the loop still lagged more during worker-thread storms, p99 7-13 ms, than when idle, p99 2 ms:
CPU and GIL contention with the worker, not waits for the disk.)

Group commit: the thread takes every call that is waiting and runs them in one transaction
(`LedgerFile.together`), in order, so a storm of deliveries costs a few fsyncs rather than one
each, and nobody is answered before the commit that holds their decision. One thread also
makes each `record` atomic against the others (its guard queries and inserts run in the same
transaction), so two deliveries for one listener cannot both be admitted.

A caller that is cancelled while waiting does not undo its call: the write is committed anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from exporter.ledger.decisions import Decision, GuardLimits, Recorded
from exporter.ledger.rows import Entry
from exporter.ledger.store import (
    RECENT_DEFAULT,
    LedgerError,
    LedgerFile,
    LedgerUnavailable,
)

T = TypeVar("T")
# At most this many calls share a transaction, so one commit's work stays short.
MAX_GROUP = 100


@dataclass(frozen=True, slots=True)
class _Call:
    run: Callable[[], object]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], ok: bool, value: object) -> None:
    if future.done():  # the caller was cancelled; its write stands
        return
    if ok:
        future.set_result(value)
    else:
        assert isinstance(value, BaseException)
        future.set_exception(value)


class Ledger:
    """The remediation ledger for the daemon: every call runs in the ledger's own thread."""

    def __init__(self, file: LedgerFile) -> None:
        self._file = file
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="ledger", daemon=True)
        self._thread.start()

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        retention_days: float,
        clock: Callable[[], float] = time.time,
    ) -> Ledger:
        """`LedgerFile.open`, synchronous: it runs once, before the exporter serves."""
        return cls(LedgerFile.open(directory, retention_days=retention_days, clock=clock))

    @property
    def path(self) -> Path:
        """The database file."""
        return self._file.path

    @property
    def interrupted(self) -> tuple[Entry, ...]:
        """The entries that `open` found unfinished and marked `interrupted`."""
        return self._file.interrupted

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = self._calls.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                if call is None:
                    stopping = True
                    break
                group.append(call)
            try:
                results = self._file.together([call.run for call in group])
            except LedgerError as exc:
                # Each caller gets its own exception object (tracebacks are per raise).
                results = [(False, type(exc)(exc.path, str(exc))) for _ in group]
            except Exception as exc:  # a bug must reach the callers, not end this thread
                results = [(False, exc) for _ in group]
            for call, (ok, value) in zip(group, results, strict=True):
                with contextlib.suppress(RuntimeError):  # that caller's loop is closed
                    call.loop.call_soon_threadsafe(_settle, call.future, ok, value)

    async def _submit(self, run: Callable[[], T]) -> T:
        if self._closed:
            raise LedgerUnavailable(self._file.directory, f"the ledger at {self.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put(_Call(run, loop, future))
        return await future

    async def record(self, decisions: Sequence[Decision], limits: GuardLimits) -> list[Recorded]:
        """`LedgerFile.record`: the outcomes once they are committed."""
        return await self._submit(functools.partial(self._file.record, tuple(decisions), limits))

    async def mark_started(self, entry_id: int) -> None:
        """`LedgerFile.mark_started`: committed before it returns, so act after it."""
        await self._submit(functools.partial(self._file.mark_started, entry_id))

    async def finish(self, entry_id: int, outcome: str, reason: str = "") -> None:
        """`LedgerFile.finish`."""
        await self._submit(functools.partial(self._file.finish, entry_id, outcome, reason))

    async def recent(self, limit: int = RECENT_DEFAULT) -> list[Entry]:
        """`LedgerFile.recent`."""
        return await self._submit(functools.partial(self._file.recent, limit))

    async def prune(self) -> int:
        """`LedgerFile.prune`."""
        return await self._submit(self._file.prune)

    async def close(self) -> tuple[Entry, ...]:
        """Finish the calls already queued, then `LedgerFile.close`; the entries it interrupted."""
        if self._closed:
            return ()
        self._closed = True
        self._calls.put(None)
        await asyncio.to_thread(self._thread.join)
        return await asyncio.to_thread(self._file.close)
