"""Never lock the Boomi user out: rejected sign-ins counted per user and secret value.

Boomi locks a user after six rejected sign-ins, until an administrator unlocks it, and that user
is often shared: by sub-accounts and partner accounts, and by the company's other integrations.
So the rules of docs/architecture.md "Credentials" live here, apart from the HTTP session:

- A *rejection* is a 401 on any call, a 403 on a ListenerStatus call, or any 403 with a secret
  not proven yet. Once a secret has worked, a 403 on any other call (Atom, Process, Environment,
  changeListenerStatus) is ambiguous: the secret was revoked, or the user lacks that privilege.
  It counts as a rejection too, and pauses that account's other calls until its next
  ListenerStatus call answers. If that succeeds, the count is reset and the operation is a
  missing privilege: not called again until a reload (`reset_privileges`), logged once. If it is
  rejected, that is the next rejection.
- Rejections count against the user: the base URL's host plus the username (an API token user
  `BOOMI_TOKEN.<user>` is the same user), across every account that shares it: one
  `CredentialGate` per user, from the daemon's `CredentialGates`. Within a gate, each secret value
  has its own count, kept by a keyed hash, never the value.
- After `max_auth_failures` rejections of one value, `auth_failure_backoff_seconds` apart, no
  request at all goes out for the accounts using it, until the value changes (a reload, or a
  `password_file` whose content changes). A new value is tried at once; a success resets its
  count.
- A value not yet proven is tried one request at a time (the probe), so a wrong one costs one
  sign-in however many callers wait. In an account that polls containers, a ListenerStatus call
  is the probe and the other calls wait for its answer, so that a missing Atom privilege at start
  cannot pass for a wrong password. Only an authentication answer may hold the others: when the
  probe ends in a 5xx or a transport error, the requests that waited for it fail with that
  outcome instead of queueing behind its retries (a Boomi outage at start must not serialize
  every request of the account).

One `AccountCredentials` per client applies these rules to its calls: `admit` before a request
(raising `AuthError` without I/O when nothing may go out), `accepted`, `rejected` and
`unanswered` after it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from exporter.boomi.errors import AuthError
from exporter.boomi.shapes import OP_QUERY, OP_RESULT

log = logging.getLogger(__name__)

# The calls whose 403 can only mean rejected credentials: the exporter's core privilege.
STATUS_OPERATIONS = frozenset({OP_QUERY, OP_RESULT})
TOKEN_PREFIX = "BOOMI_TOKEN."
DEFAULT_MAX_AUTH_FAILURES = 2

T = TypeVar("T")


class SecretSource(Protocol):
    """Where an account's password comes from: its current value and what to do when wrong."""

    @property
    def value(self) -> str:
        """The current secret (never empty)."""
        ...

    @property
    def remedy(self) -> str:
        """What the user should do when Boomi rejects it, for the log line and the page."""
        ...


@dataclass(frozen=True)
class StaticSecret:
    """A password written in the configuration: it changes only with a reload."""

    value: str = field(repr=False)
    remedy: str = "put the right password or token into the configuration and reload"


@dataclass(frozen=True, slots=True)
class UserKey:
    """Whom Boomi counts a rejected sign-in against: a host and a user."""

    host: str
    user: str

    @classmethod
    def of(cls, base_url: str, username: str) -> UserKey:
        """The user behind an account's base URL and username (token users included)."""
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return cls(host, username.removeprefix(TOKEN_PREFIX).lower())

    def __str__(self) -> str:
        return f"{self.user} at {self.host}"


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    """How a probe ended without an authentication answer: the code and a short text."""

    code: str
    message: str


class ProbeFailed(Exception):
    """A request was not sent: the probe it waited for got no authentication answer."""

    def __init__(self, failure: ProbeFailure) -> None:
        super().__init__(
            f"{failure.message}, answered to the request ahead that checks the credentials"
            " (this one was not sent)"
        )
        self.failure = failure


@dataclass
class SecretRecord:
    """What is known about one secret value of a user."""

    rejections: int = 0
    last_status: int = 0  # the HTTP status of the last rejection
    proven: bool = False  # an answer other than 401/403 came with this value
    retry_at: float = -math.inf  # no sign-in before this clock time (the back-off)
    # When an ambiguous 403 (not on ListenerStatus) made the value unproven: until a
    # ListenerStatus call settles it, no other call of any account probes with it.
    unsettled_at: float | None = None
    probing: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Bumped each time a probe ends with a 5xx or a transport error: requests that waited for
    # that probe share its outcome.
    probe_round: int = 0
    probe_failure: ProbeFailure | None = None
    accounts: dict[str, str] = field(default_factory=dict)  # account id -> its remedy
    # Set, and replaced, at each authentication answer (accepted or rejected).
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        """Wake the calls waiting for an authentication answer."""
        self.answered.set()
        self.answered = asyncio.Event()


class CredentialGate:
    """The rejected sign-ins of one Boomi user, per secret value, shared by its accounts."""

    def __init__(self, key: UserKey, *, salt: bytes) -> None:
        self.key = key
        self._salt = salt
        self._records: dict[bytes, SecretRecord] = {}

    def record(self, secret: str) -> SecretRecord:
        """The record of one secret value (created empty the first time it is seen)."""
        digest = hmac.new(self._salt, secret.encode(), hashlib.sha256).digest()
        record = self._records.get(digest)
        if record is None:
            record = self._records[digest] = SecretRecord()
        return record


class CredentialGates:
    """Every user's gate, so that accounts sharing a user share its count (one per daemon)."""

    def __init__(self) -> None:
        # Keyed hashes of secrets, with a key that never leaves the process.
        self._salt = os.urandom(32)
        self._gates: dict[UserKey, CredentialGate] = {}

    def gate(self, base_url: str, username: str) -> CredentialGate:
        """The gate of the user behind this base URL and username."""
        key = UserKey.of(base_url, username)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = CredentialGate(key, salt=self._salt)
        return gate


@dataclass(frozen=True, slots=True)
class Ticket:
    """Leave to send one request: the secret's record and the Authorization header to use."""

    record: SecretRecord
    authorization: str = field(repr=False)
    proven: bool
    probe_round: int


class AccountCredentials:
    """One account's side of its user's gate: the current secret, pauses, missing privileges."""

    def __init__(
        self,
        account_id: str,
        gate: CredentialGate,
        username: str,
        secret: SecretSource,
        *,
        max_auth_failures: int = DEFAULT_MAX_AUTH_FAILURES,
        backoff_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account_id = account_id
        self.gate = gate
        self._username = username  # as sent; the gate's key is normalised
        self._secret = secret
        self.max_auth_failures = max_auth_failures
        self.backoff_seconds = backoff_seconds
        self._clock = clock
        self._authorization: tuple[str, str] | None = None  # (secret, its header), cached
        self._suspects: set[str] = set()  # operations whose 403 is not settled yet
        self._paused_at: float | None = None  # other calls paused since then (an ambiguous 403)
        self.missing_privileges: set[str] = set()
        # True when the account polls listed containers: then a secret not proven yet is probed
        # by a ListenerStatus call, whose 403 is unambiguous, and other calls wait for its answer
        # (at most one back-off), so that a missing Atom privilege cannot hold up polling.
        self.status_probes = False

    @property
    def user(self) -> str:
        """The user, as Boomi counts it, for messages."""
        return str(self.gate.key)

    def _current(self) -> tuple[SecretRecord, str]:
        secret = self._secret.value
        if self._authorization is None or self._authorization[0] != secret:
            login = base64.b64encode(f"{self._username}:{secret}".encode()).decode("ascii")
            self._authorization = (secret, f"Basic {login}")
        record = self.gate.record(secret)
        record.accounts[self.account_id] = self._secret.remedy
        return record, self._authorization[1]

    # -- before a request ---------------------------------------------------------------------

    def refusal(self, operation: str) -> str | None:
        """Why a call of `operation` would not be sent now (one sentence), or None."""
        refused = self._refusal(operation)
        return None if refused is None else refused[1]

    def _refusal(self, operation: str) -> tuple[bool, str] | None:
        """(whether a ListenerStatus answer may lift it, the sentence), or None."""
        record, _ = self._current()
        if record.rejections >= self.max_auth_failures:
            return False, self._stopped_message(record)
        if operation in self.missing_privileges:
            return False, (
                f"the Boomi user of account {self.account_id} lacks the privilege for"
                f" {operation} (HTTP 403): not called again until a reload"
            )
        now = self._clock()
        if operation not in STATUS_OPERATIONS:
            # An account without containers makes no ListenerStatus call: after the back-off,
            # its other calls try again themselves.
            if self._paused_at is not None and now < self._paused_at + self.backoff_seconds:
                return True, (
                    f"{operation} on account {self.account_id} waits: Boomi refused"
                    f" {', '.join(sorted(self._suspects))} (HTTP 403), and the next"
                    " ListenerStatus call tells whether the credentials or a privilege are missing"
                )
            if (
                not record.proven
                and record.unsettled_at is not None
                and now < record.unsettled_at + self.backoff_seconds
            ):
                return True, (
                    f"{operation} on account {self.account_id} waits: Boomi refused a call of"
                    f" user {self.user} (HTTP 403), and the next ListenerStatus call tells"
                    " whether the credentials or a privilege are missing"
                )
        if not record.proven and now < record.retry_at:
            return False, (
                f"Boomi rejected the credentials of account {self.account_id} (HTTP"
                f" {record.last_status}); no calls for this account during a back-off of"
                f" {self.backoff_seconds:g} s, so the user is not locked out"
            )
        return None

    def admit(self, operation: str, container_id: str = "") -> Ticket:
        """Leave to send a call of `operation`; AuthError, without I/O, when none may go out."""
        refused = self._refusal(operation)
        if refused is not None:
            raise AuthError(refused[1], operation=operation, container_id=container_id)
        record, authorization = self._current()
        return Ticket(record, authorization, record.proven, record.probe_round)

    async def send(
        self, operation: str, container_id: str, send: Callable[[Ticket], Awaitable[T]]
    ) -> T:
        """Call `send` with leave for one request: at once for a proven secret, else as the
        probe, one at a time. AuthError or ProbeFailed, without I/O, instead.

        With `status_probes`, a call other than ListenerStatus that would probe, or that waits
        for a ListenerStatus answer to settle a 403, waits for that answer (at most one
        back-off) rather than fail.
        """
        loop = asyncio.get_running_loop()
        wait_until = loop.time() + self.backoff_seconds
        while True:
            refused = self._refusal(operation)
            record, _ = self._current()
            waits = (
                self.status_probes
                and operation not in STATUS_OPERATIONS
                and (refused[0] if refused is not None else not record.proven)
            )
            # Past wait_until no ListenerStatus call came (every container OFFLINE, say): the
            # call goes on as if there were none.
            if waits and loop.time() < wait_until:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(wait_until):
                        await record.answered.wait()
                continue
            ticket = self.admit(operation, container_id)
            if ticket.proven:
                return await send(ticket)
            async with record.probing:
                if record.probe_round != ticket.probe_round and record.probe_failure is not None:
                    raise ProbeFailed(record.probe_failure)
                ticket = self.admit(operation, container_id)
                if ticket.record is not record:
                    continue  # the secret changed meanwhile: its own probe, then
                if not ticket.proven:
                    return await send(ticket)
            # Proven while this request waited: no need to hold the others.

    @property
    def calls_stopped(self) -> bool:
        """True while no call at all goes out: the current secret was rejected too often."""
        record, _ = self._current()
        return record.rejections >= self.max_auth_failures

    # -- after a request ----------------------------------------------------------------------

    def unanswered(self, ticket: Ticket, failure: ProbeFailure) -> None:
        """The request ended in a 5xx or a transport error: it says nothing of the secret."""
        if not ticket.proven:
            ticket.record.probe_round += 1
            ticket.record.probe_failure = failure

    def accepted(self, operation: str, ticket: Ticket) -> None:
        """Boomi answered without 401/403: the secret works."""
        record = ticket.record
        if record.rejections:
            log.info(
                "Boomi accepts the credentials of user %s again (account %s)",
                self.user,
                self.account_id,
            )
        record.proven = True
        record.rejections = 0
        record.retry_at = -math.inf
        record.unsettled_at = None
        record.probe_failure = None
        record.settle()
        if operation in STATUS_OPERATIONS and self._suspects:
            # The credentials work, so those 403s meant missing privileges.
            for suspect in sorted(self._suspects - self.missing_privileges):
                log.warning(
                    "account %s: the Boomi user %s lacks the privilege for %s (HTTP 403 while"
                    " ListenerStatus works); it is not called again until a reload, status"
                    " polling goes on",
                    self.account_id,
                    self.user,
                    suspect,
                )
            self.missing_privileges |= self._suspects
            self._suspects.clear()
            self._paused_at = None
        elif operation in self._suspects:
            self._suspects.discard(operation)
            if not self._suspects:
                self._paused_at = None

    def rejected(
        self, operation: str, ticket: Ticket, status: int, container_id: str = ""
    ) -> AuthError:
        """Boomi answered 401 or 403: count the rejection; the error for the caller."""
        record = ticket.record
        now = self._clock()
        # Only with a secret that worked can a 403 mean a missing privilege.
        ambiguous = status == 403 and operation not in STATUS_OPERATIONS and ticket.proven
        record.rejections += 1
        record.last_status = status
        record.proven = False
        record.settle()
        if ambiguous:
            self._suspects.add(operation)
            self._paused_at = now
            record.unsettled_at = now
        else:
            record.retry_at = now + self.backoff_seconds
            record.unsettled_at = None
        if record.rejections >= self.max_auth_failures:
            message = self._stopped_message(record)
            if record.rejections == self.max_auth_failures:
                log.error("%s", message)
            return AuthError(message, operation=operation, container_id=container_id)
        if ambiguous:
            message = (
                f"Boomi refused {operation} on account {self.account_id} (HTTP 403): the"
                f" credentials of user {self.user} are no longer accepted, or the user lacks"
                " that privilege; the next ListenerStatus call tells"
            )
        else:
            message = (
                f"Boomi rejected the credentials of account {self.account_id} (HTTP {status});"
                " check the username (API tokens use BOOMI_TOKEN.<user>), the password or"
                " token, and the API and Atom Management privileges"
            )
        log.warning(
            "%s (rejection %d of %d for user %s; then calls stop until the secret changes%s)",
            message,
            record.rejections,
            self.max_auth_failures,
            self.user,
            "" if ambiguous else f"; the next try in {self.backoff_seconds:g} s",
        )
        return AuthError(message, operation=operation, container_id=container_id)

    def reset_privileges(self) -> None:
        """A reload: operations found to lack a privilege are tried again."""
        self.missing_privileges.clear()
        self._suspects.clear()
        self._paused_at = None

    def _stopped_message(self, record: SecretRecord) -> str:
        accounts = ", ".join(sorted(record.accounts))
        remedies = "; ".join(dict.fromkeys(record.accounts[a] for a in sorted(record.accounts)))
        return (
            f"calls to Boomi stopped for account{'s' if len(record.accounts) > 1 else ''}"
            f" {accounts}: Boomi rejected the credentials of user {self.user}"
            f" {record.rejections} times (last HTTP {record.last_status}), and Boomi locks a"
            f" user after six; nothing is sent until the secret changes: {remedies}"
        )
