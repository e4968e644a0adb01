"""The shape of a ledger row: its SQL schema, the bounds on its values, and `Entry`, as shown."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Any, TypedDict

from exporter.ledger.decisions import UNFINISHED

SCHEMA_VERSION = 1
# Bounds on what a row may hold; Boomi ids are UUIDs, Alertmanager fingerprints 16 hex digits.
FIELD_LIMITS = {
    "fingerprint": 64,
    "account_id": 128,
    "container_id": 128,
    "listener_id": 128,
    "action": 32,
    "reason": 300,
}
_OUTCOME_RE = re.compile(r"[a-z_]{1,32}")


SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    -- AUTOINCREMENT: an id is never reused, even after retention has deleted every row.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    source TEXT NOT NULL CHECK (source IN ('alertmanager', 'cli')),
    fingerprint TEXT NOT NULL,
    account_id TEXT NOT NULL,
    container_id TEXT NOT NULL,
    listener_id TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    dry_run INTEGER NOT NULL CHECK (dry_run IN (0, 1))
);
CREATE INDEX IF NOT EXISTS decisions_by_listener
    ON decisions (account_id, container_id, listener_id, started_at);
CREATE INDEX IF NOT EXISTS decisions_by_start ON decisions (started_at);
CREATE INDEX IF NOT EXISTS decisions_by_receipt ON decisions (received_at);
CREATE INDEX IF NOT EXISTS decisions_unfinished
    ON decisions (account_id, container_id, listener_id) WHERE finished_at IS NULL;
-- One row: who opened the ledger last. Writing it at open proves the file is writable.
CREATE TABLE IF NOT EXISTS owner (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    opened_at REAL NOT NULL
);
"""
COLUMNS = (
    "id, received_at, finished_at, source, fingerprint, account_id, container_id, listener_id,"
    " action, outcome, reason, dry_run"
)


class Entry(TypedDict):
    """A ledger row as `GET /api/v1/actions` shows it (times in RFC 3339, UTC)."""

    id: int
    received_at: str
    finished_at: str | None
    source: str
    fingerprint: str
    account_id: str
    container_id: str
    listener_id: str
    action: str
    outcome: str
    reason: str
    dry_run: bool


def rfc3339(timestamp: float) -> str:
    """Unix seconds as RFC 3339 in UTC with milliseconds, the way Alertmanager writes times."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bounded(name: str, value: str) -> str:
    """A field's value cut to its bound, control characters (newlines too) replaced by `?`."""
    if not isinstance(value, str):
        raise TypeError(f"ledger field {name} must be a string")
    cut = value[: FIELD_LIMITS[name]]
    if cut.isprintable():  # the usual case, without a Python loop over the characters
        return cut
    return "".join(ch if ch.isprintable() else "?" for ch in cut)


def checked_outcome(value: str, *, final: bool) -> str:
    """An outcome a caller may record; `running` and `interrupted` are the ledger's own."""
    if not _OUTCOME_RE.fullmatch(value) or value in ("running", "interrupted"):
        raise ValueError(f"not an outcome the caller can record: {value[:40]!r}")
    if final and value in UNFINISHED:
        raise ValueError(f"{value!r} is not a final outcome")
    return value


def entry_from_row(row: Sequence[Any]) -> Entry:
    """A row selected as COLUMNS, as the API shows it."""
    (id_, received, finished, source, fingerprint, account, container, listener) = row[:8]
    action, outcome, reason, dry_run = row[8:]
    return Entry(
        id=int(id_),
        received_at=rfc3339(float(received)),
        finished_at=None if finished is None else rfc3339(float(finished)),
        source=str(source),
        fingerprint=str(fingerprint),
        account_id=str(account),
        container_id=str(container),
        listener_id=str(listener),
        action=str(action),
        outcome=str(outcome),
        reason=str(reason),
        dry_run=bool(dry_run),
    )
