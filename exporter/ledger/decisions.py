"""What the ledger records (a `Decision`) and the guard rule it answers from its rows (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BUDGET_WINDOW_SECONDS = 3600.0
SOURCES = ("alertmanager", "cli")
UNFINISHED = ("queued", "running")
# The outcome of a candidate action: `LedgerFile.record` applies the guards to it.
CANDIDATE = "queued"

Source = Literal["alertmanager", "cli"]
ListenerKey = tuple[str, str, str]  # account_id, container_id, listener_id


@dataclass(frozen=True, slots=True)
class Decision:
    """One remediation decision as it is recorded; outcome `queued` asks for the guards.

    These fields are all that is stored: the caller passes the ids triage resolved and the
    alert's fingerprint, never a label set, an annotation or the payload.
    """

    source: Source
    fingerprint: str
    account_id: str
    container_id: str
    listener_id: str
    action: str
    outcome: str
    reason: str = ""
    dry_run: bool = False

    @property
    def listener(self) -> ListenerKey:
        """The listener the decision is about."""
        return (self.account_id, self.container_id, self.listener_id)


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The guards' settings (remediation.cooldown_seconds, remediation.max_actions_per_hour)."""

    cooldown_seconds: float
    max_actions_per_hour: int


@dataclass(frozen=True, slots=True)
class ListenerFacts:
    """What the guards look at, read from the ledger when the decision is made."""

    unfinished_id: int | None  # a queued or running entry for the listener
    last_started_at: float | None  # the start of the listener's last action
    actions_in_window: int  # actions started in the last hour, or queued or running


@dataclass(frozen=True, slots=True)
class Recorded:
    """What became of a recorded decision: its entry id and its outcome (maybe `queued`)."""

    id: int
    outcome: str
    reason: str


def guard(facts: ListenerFacts, limits: GuardLimits, now: float) -> tuple[str, str]:
    """Duplicate, then cooldown, then budget: the skip outcome and why, or (`queued`, "")."""
    if facts.unfinished_id is not None:
        return "skipped_duplicate", (
            f"entry {facts.unfinished_id} for this listener is still queued or running"
        )
    if facts.last_started_at is not None:
        # A clock stepped back makes `since` negative: still in cooldown, the safe side.
        since = now - facts.last_started_at
        if since < limits.cooldown_seconds:
            return "skipped_cooldown", (
                f"the last action on this listener started {since:.0f} s ago;"
                f" remediation.cooldown_seconds is {limits.cooldown_seconds:g}"
            )
    if facts.actions_in_window >= limits.max_actions_per_hour:
        return "skipped_budget", (
            f"{facts.actions_in_window} action(s) started in the last hour or still pending;"
            f" remediation.max_actions_per_hour is {limits.max_actions_per_hour}"
        )
    return CANDIDATE, ""
