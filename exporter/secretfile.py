"""Secret files that are re-read when they change, so a rotated secret needs no restart.

A :class:`SecretFile` holds the last good value of one file. :meth:`SecretFile.refresh` costs one
``stat`` while nothing changed; only a new (mtime, ctime, size, inode, device) stamp makes it read
the file again. The inode and device are part of the stamp because Kubernetes updates a mounted
secret by writing a new directory and swapping the ``..data`` symlink: the path then resolves to
another file whose mtime and size may well equal the old one's. The ctime is there because a
``chmod`` that makes the file unreadable changes nothing else.

A file that disappears, becomes unreadable or empty keeps its last good value in use: it is never
a crash, and never an empty password. The problem is kept in :attr:`SecretFile.problem` for the
landing page and logged once as a WARNING each time it changes; the value itself never appears in
a log line or a problem text.

:class:`SecretWatcher` refreshes a set of such files (or anything with the same ``refresh``, such
as the web server's TLS certificate) at most every ``interval_seconds`` and calls back on change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = [
    "DEFAULT_INTERVAL_SECONDS",
    "MAX_INTERVAL_SECONDS",
    "FileStamp",
    "Refreshable",
    "SecretFile",
    "SecretWatcher",
    "file_stamp",
    "strip_one_newline",
]

_log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 10.0
# The credentials contract: a rotated secret is picked up within 30 s.
MAX_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class FileStamp:
    """What ``stat`` says about a file; a different stamp means the file may have changed."""

    mtime_ns: int
    ctime_ns: int
    size: int
    inode: int
    device: int


def file_stamp(path: Path) -> FileStamp:
    """Stat ``path``, following symlinks (the ``..data`` swap changes the target); OSError."""
    result = os.stat(path)
    return FileStamp(
        result.st_mtime_ns, result.st_ctime_ns, result.st_size, result.st_ino, result.st_dev
    )


def strip_one_newline(text: str) -> str:
    """Drop one trailing newline (``\\r\\n`` or ``\\n``), as the config's ``*_file`` keys do."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _read_bytes(path: Path) -> bytes:
    return path.read_bytes()


class SecretFile:
    """One secret file and its last good value, re-read only when its stat stamp changes.

    ``label`` names the file in log lines and problems (e.g. ``accounts[0].password_file``).
    ``clock`` stamps :attr:`loaded_at` and :attr:`problem_since`; ``read`` reads the file's bytes.
    The constructor reads the file once; when that fails, :attr:`value` is None and
    :attr:`problem` says why, and the caller decides (at start that is a configuration error).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        label: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[Path], bytes] = _read_bytes,
    ) -> None:
        self.path = Path(path)
        self.label = label or str(self.path)
        self._clock = clock
        self._read = read
        self._value: str | None = None
        self._stamp: FileStamp | None = None
        self._problem: str | None = None
        self.loaded_at: float | None = None
        self.problem_since: float | None = None
        self.refresh()

    @property
    def value(self) -> str | None:
        """The last good value: the file's text minus one trailing newline; None before any."""
        return self._value

    @property
    def problem(self) -> str | None:
        """Why the file's current content is not in use (one sentence, no value), or None."""
        return self._problem

    def refresh(self) -> bool:
        """Stat the file and re-read it when its stamp changed; True when the value changed."""
        try:
            stamp = file_stamp(self.path)
        except OSError as exc:
            self._set_problem(f"cannot read {self.path}: {exc.strerror or 'stat failed'}")
            return False
        except ValueError:  # a NUL character in the path
            self._set_problem(f"{self.label} is not a valid file name")
            return False
        if stamp == self._stamp and self._problem is None:
            return False
        # The stamp is taken before the read: a write racing the read gives a newer stamp on the
        # next refresh, so it is never missed.
        try:
            raw = self._read(self.path)
        except OSError as exc:
            self._set_problem(f"cannot read {self.path}: {exc.strerror or 'read error'}")
            return False
        try:
            text = strip_one_newline(raw.decode("utf-8"))
        except UnicodeDecodeError:
            self._set_problem(f"cannot read {self.path}: not UTF-8 text")
            return False
        if not text:
            self._set_problem(f"{self.path} is empty")
            return False
        self._stamp = stamp
        changed = text != self._value
        had_value = self._value is not None
        self._value = text
        if changed:
            self.loaded_at = self._clock()
        if self._problem is not None:
            _log.info(
                "%s is readable again; %s",
                self.label,
                "its new value is in use" if changed else "its value is unchanged",
            )
            self._problem = None
            self.problem_since = None
        elif changed and had_value:
            _log.info("%s changed; its new value is in use", self.label)
        return changed

    def _set_problem(self, problem: str) -> None:
        if self._value is not None:
            problem += "; the last good value stays in use"
        if problem == self._problem:
            return
        self._problem = problem
        self.problem_since = self._clock()
        _log.warning("%s: %s", self.label, problem)


class Refreshable(Protocol):
    """Anything the watcher can refresh: a SecretFile, the web server's TLS certificate, ..."""

    label: str

    def refresh(self) -> bool:
        """Check the source cheaply; True when a new value is now in use."""
        ...


class SecretWatcher:
    """Refreshes a set of secret files at most every ``interval_seconds``; calls back on change.

    Idle cost: one ``stat`` per file per interval. ``on_change`` runs in the event loop with the
    file whose value changed; an exception from it is logged and the watcher keeps going.
    """

    def __init__(
        self,
        files: Iterable[Refreshable] = (),
        *,
        on_change: Callable[[Refreshable], None] | None = None,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < interval_seconds <= MAX_INTERVAL_SECONDS:
            raise ValueError(
                f"interval_seconds must be more than 0 and at most {MAX_INTERVAL_SECONDS:g}"
            )
        self._files: list[Refreshable] = list(files)
        self._on_change = on_change
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._sleep = sleep
        self._checked_at: float | None = None

    @property
    def files(self) -> tuple[Refreshable, ...]:
        """The watched files, in the order they were added."""
        return tuple(self._files)

    def add(self, file: Refreshable) -> None:
        """Watch one more file (e.g. after a reload configured a new ``*_file``)."""
        self._files.append(file)

    def replace(self, files: Iterable[Refreshable]) -> None:
        """Watch exactly these files from now on (a reload may add or drop some)."""
        self._files = list(files)

    def check(self) -> list[Refreshable]:
        """Refresh every file unless the last refresh was less than one interval ago.

        For callers that want a fresh value now (say, before a login) without adding stats.
        Returns the files whose value changed, after calling ``on_change`` for each.
        """
        if (
            self._checked_at is not None
            and self._clock() - self._checked_at < self.interval_seconds
        ):
            return []
        return self.refresh_all()

    def refresh_all(self) -> list[Refreshable]:
        """Refresh every file now; returns those whose value changed, after ``on_change``."""
        self._checked_at = self._clock()
        changed: list[Refreshable] = []
        for file in self._files:
            try:
                if file.refresh():
                    changed.append(file)
            except Exception:
                # A bug behind one file must not stop the rotation of every other secret.
                _log.exception("checking %s failed", file.label)
        for file in changed:
            if self._on_change is None:
                continue
            try:
                self._on_change(file)
            except Exception:
                _log.exception("handling the new value of %s failed", file.label)
        return changed

    async def run(self) -> None:
        """Refresh every interval until cancelled."""
        while True:
            await self._sleep(self.interval_seconds)
            # Not check(): a sleep that ends a hair early by the clock must not skip a round.
            self.refresh_all()
