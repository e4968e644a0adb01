"""The remediation ledger: every decision on disk, and the guards derived from it.

One SQLite database, `<storage.path>/ledger.db` (the standard library's sqlite3), holds one row
per remediation decision: when it was received, where it came from (`alertmanager` or `cli`),
the alert's fingerprint, the account, container, listener and action, its outcome and reason,
and whether it was a dry run. An admitted action's row moves on from `queued` to `running`
(`started_at`, set just before the Boomi call) to its final outcome (`finished_at`). The
duplicate, cooldown and budget guards are answered from these rows in the transaction that
records the decision, so they survive a restart, a crash and `kill -9`: rows a previous process
left `queued` or `running` become `interrupted` at the next open, and a started one keeps its
listener in cooldown from the time it started.

- decisions.py: what is recorded (`Decision`) and the guard rule (`guard`, pure).
- rows.py: a row's schema, the bounds on its values, and `Entry` (the API's shape).
- store.py: the SQLite file (`LedgerFile`): schema, owner lock, queries, writes, retention.
- worker.py: `Ledger`, the same for asyncio code, on a thread of its own with group commit.
"""

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
    Source,
    guard,
)
from exporter.ledger.rows import FIELD_LIMITS, Entry, rfc3339
from exporter.ledger.store import (
    LEDGER_FILE,
    LOCK_FILE,
    RECENT_DEFAULT,
    RECENT_MAX,
    LedgerError,
    LedgerFile,
    LedgerLocked,
    LedgerUnavailable,
)
from exporter.ledger.worker import Ledger

__all__ = [
    "BUDGET_WINDOW_SECONDS",
    "CANDIDATE",
    "FIELD_LIMITS",
    "LEDGER_FILE",
    "LOCK_FILE",
    "RECENT_DEFAULT",
    "RECENT_MAX",
    "SOURCES",
    "UNFINISHED",
    "Decision",
    "Entry",
    "GuardLimits",
    "Ledger",
    "LedgerError",
    "LedgerFile",
    "LedgerLocked",
    "LedgerUnavailable",
    "ListenerFacts",
    "ListenerKey",
    "Recorded",
    "Source",
    "guard",
    "rfc3339",
]
