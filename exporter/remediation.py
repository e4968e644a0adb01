"""Alertmanager-driven remediation: restart (pause, resume) listeners, behind guards.

`POST /webhook/alertmanager` takes a webhook payload (version 4), decides for each alert what it
becomes (`triage`, pure, then the stateful duplicate/cooldown/budget guards), queues the accepted
ones and answers at once. A background task per queued action then asks Boomi for the
listener's status (check-before-act), calls changeListenerStatus (unless dry run) and polls until
the listener is where the action should have put it (verify-after). Every outcome is counted in
`boomi_remediation_actions_total` and logged with the alert's fingerprint.

Label values in that counter come only from configured accounts and containers and from
listeners the poller has seen, so a hostile payload cannot create series.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exporter.boomi import BoomiClient, BoomiError
from exporter.boomi.shapes import REMEDIATION_ACTIONS, ListenerStatusName
from exporter.config import RemediationConfig, WebhookAuthConfig
from exporter.state import SnapshotStore
from exporter.textsafe import printable

log = logging.getLogger(__name__)

ACTION_LABEL = "boomi_action"
# What each action should leave the listener in, and the states it makes sense from.
TARGET_STATUS: dict[str, ListenerStatusName] = {
    "restart": "listening",
    "pause": "paused",
    "resume": "listening",
}
VERIFY_POLL_SECONDS = 5.0
# Alertmanager sends its small body at once; a client that trickles it only holds a connection.
BODY_READ_TIMEOUT_SECONDS = 3.0
BUDGET_WINDOW_SECONDS = 3600.0
# While the exporter stops, the webhook answers 503 with this Retry-After: nothing was decided,
# so Alertmanager should deliver again, to this exporter once it is back or to its successor.
STOPPING_RETRY_AFTER_SECONDS = 10
OFFLINE_REASON = "the runtime is OFFLINE in Boomi"

Outcome = Literal[
    "queued",
    "rejected",
    "skipped_duplicate",
    "skipped_cooldown",
    "skipped_budget",
    "skipped_not_needed",
    "dry_run",
    "failed",
    "recovered",
    "not_recovered",
    "ignored_resolved",
]


# ---------------------------------------------------------------------------------------------
# The payload: Alertmanager's webhook, version 4.


class WebhookAlert(BaseModel):
    """One alert of a webhook payload; only `status` and `labels` drive decisions."""

    # Unknown fields are ignored so a newer Alertmanager's additions do not break the webhook;
    # the fields we read are strictly typed.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # Alertmanager's field names (camelCase)
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body (https://prometheus.io/docs/alerting/latest/configuration/)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert]
    receiver: str = ""
    groupKey: str = ""
    truncatedAlerts: int = Field(default=0, ge=0)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""


class PayloadError(ValueError):
    """The webhook body is not an Alertmanager version 4 payload; the message says why."""


def parse_payload(body: bytes) -> WebhookPayload:
    """Parse and validate a webhook body; PayloadError with a short reason otherwise."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("the body is not valid JSON") from None
    try:
        return WebhookPayload.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        # The location may hold the sender's own keys: keep it short and on one line.
        where = where.encode("unicode_escape").decode("ascii")[:120]
        raise PayloadError(
            f"not an Alertmanager v4 payload: {where}: {first['msg']} "
            f"({exc.error_count()} problem(s))"
        ) from None


# ---------------------------------------------------------------------------------------------
# Decisions.


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """A validated request to act on one listener."""

    account_id: str
    container_id: str
    listener_id: str
    action: str  # one of REMEDIATION_ACTIONS
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What triage made of an alert; `request` is set when it passed the allow-list."""

    outcome: Outcome
    reason: str
    request: ActionRequest | None = None
    # Counter labels: only values from the configuration and the store.
    labels: tuple[str, str, str, str] = ("", "", "", "")


def triage(
    alert: WebhookAlert,
    *,
    allowed_actions: frozenset[str],
    containers: Mapping[str, frozenset[str]],
    known_listeners: Callable[[str, str], frozenset[str]],
) -> Verdict:
    """The allow-list: known account, container and listener, and an allowed action.

    `containers` maps each configured account to its container ids; `known_listeners` gives the
    listener ids the poller last saw on a container.
    """
    labels = alert.labels
    raw_action = labels.get(ACTION_LABEL, "restart")
    action = raw_action if raw_action in REMEDIATION_ACTIONS else ""
    if alert.status != "firing":
        return Verdict("ignored_resolved", "the alert is resolved", labels=("", "", "", action))
    container_id, listener_id = labels.get("container_id"), labels.get("listener_id")
    if not container_id or not listener_id:
        return Verdict(
            "rejected",
            "the alert has no container_id and listener_id labels",
            labels=("",) * 3 + (action,),
        )
    account_id = labels.get("account_id")
    if account_id is None:
        if len(containers) != 1:
            return Verdict(
                "rejected",
                "the alert has no account_id label and several accounts are configured",
                labels=("", "", "", action),
            )
        account_id = next(iter(containers))
    if account_id not in containers:
        return Verdict("rejected", "unknown account", labels=("", "", "", action))
    if container_id not in containers[account_id]:
        return Verdict("rejected", "unknown container", labels=(account_id, "", "", action))
    if listener_id not in known_listeners(account_id, container_id):
        return Verdict(
            "rejected",
            "listener not seen on that container by the last poll",
            labels=(account_id, container_id, "", action),
        )
    counted = (account_id, container_id, listener_id, action)
    if raw_action not in allowed_actions:
        return Verdict("rejected", f"action {raw_action[:64]!r} is not allowed", labels=counted)
    request = ActionRequest(account_id, container_id, listener_id, raw_action, alert.fingerprint)
    return Verdict("queued", "", request=request, labels=counted)


def precondition_met(action: str, status: str, restart_when: frozenset[str]) -> bool:
    """Check-before-act: does the listener's current status call for this action?"""
    if action == "restart":
        return status in restart_when
    if action == "pause":
        return status in ("listening", "errored")
    return status == "paused"  # resume


@dataclass
class Guards:
    """Duplicate, cooldown and budget bookkeeping; survives any burst of deliveries.

    Checked and updated without awaiting, so concurrent deliveries cannot both pass.
    """

    cooldown_seconds: float
    max_actions_per_hour: int
    clock: Callable[[], float] = time.monotonic
    active: set[tuple[str, str, str]] = field(default_factory=set)
    last_action: dict[tuple[str, str, str], float] = field(default_factory=dict)
    actions: deque[float] = field(default_factory=deque)

    def admit(self, request: ActionRequest) -> Outcome:
        """`queued` and the listener marked active, or the skip outcome that applies."""
        key = (request.account_id, request.container_id, request.listener_id)
        now = self.clock()
        if key in self.active:
            return "skipped_duplicate"
        last = self.last_action.get(key)
        if last is not None and now - last < self.cooldown_seconds:
            return "skipped_cooldown"
        while self.actions and self.actions[0] <= now - BUDGET_WINDOW_SECONDS:
            self.actions.popleft()
        # Queued and running actions hold a place in the budget until they end.
        if len(self.actions) + len(self.active) >= self.max_actions_per_hour:
            return "skipped_budget"
        self.active.add(key)
        return "queued"

    def acted(self, request: ActionRequest) -> None:
        """An action was taken (or dry-run): start its cooldown and spend budget."""
        now = self.clock()
        self.last_action[(request.account_id, request.container_id, request.listener_id)] = now
        self.actions.append(now)

    def finished(self, request: ActionRequest) -> None:
        """The listener is no longer queued or running."""
        self.active.discard((request.account_id, request.container_id, request.listener_id))


# ---------------------------------------------------------------------------------------------
# The worker.

CountOutcome = Callable[[tuple[str, str, str, str], str], None]


class Remediator:
    """Queues admitted requests and carries them out through the accounts' Boomi clients."""

    def __init__(
        self,
        config: RemediationConfig,
        clients: Mapping[str, BoomiClient],
        store: SnapshotStore,
        count: CountOutcome,
        *,
        containers: Callable[[], Mapping[str, frozenset[str]]],
        clock: Callable[[], float] = time.monotonic,
        verify_poll_seconds: float = VERIFY_POLL_SECONDS,
    ) -> None:
        self.config = config
        self._clients = clients
        self._store = store
        self._count = count
        self._containers = containers
        self._verify_poll_max = verify_poll_seconds
        self._verify_poll = min(verify_poll_seconds, config.verify_timeout_seconds / 4)
        self.guards = Guards(config.cooldown_seconds, config.max_actions_per_hour, clock)
        self._tasks: dict[asyncio.Task[None], tuple[ActionRequest, list[str]]] = {}
        self.stopping = False  # set by begin_stop(): nothing new starts

    def configure(self, config: RemediationConfig) -> None:
        """Apply a reloaded configuration; cooldowns, budget and running actions are kept."""
        self.config = config
        self._verify_poll = min(self._verify_poll_max, config.verify_timeout_seconds / 4)
        self.guards.cooldown_seconds = config.cooldown_seconds
        self.guards.max_actions_per_hour = config.max_actions_per_hour

    def begin_stop(self) -> None:
        """The exporter is stopping: from now on no action is admitted or started."""
        self.stopping = True

    def _client_of(self, request: ActionRequest) -> BoomiClient:
        # Looked up at every step: a reload may have replaced the account's client meanwhile,
        # and the retired one is closed.
        client = self._clients.get(request.account_id)
        if client is None:
            raise BoomiError(
                f"account {request.account_id} is no longer configured",
                container_id=request.container_id,
            )
        return client

    def _offline(self, request: ActionRequest) -> bool:
        snapshot = self._store.get(request.account_id, request.container_id)
        return snapshot is not None and snapshot.online is False

    def _known_listeners(self, account_id: str, container_id: str) -> frozenset[str]:
        snapshot = self._store.get(account_id, container_id)
        if snapshot is None:
            return frozenset()
        return frozenset(listener.listener_id for listener in snapshot.listeners)

    def _record(
        self, labels: tuple[str, str, str, str], outcome: str, fingerprint: str, why: str
    ) -> None:
        self._count(labels, outcome)
        account_id, container_id, listener_id, action = labels
        level = logging.INFO if outcome in ("queued", "recovered", "dry_run") else logging.WARNING
        if outcome in ("ignored_resolved", "skipped_duplicate"):
            level = logging.DEBUG
        log.log(
            level,
            "remediation %s: %s of listener %s on container %s (account %s), alert %s%s",
            outcome,
            action or "?",
            listener_id or "?",
            container_id or "?",
            account_id or "?",
            printable(fingerprint[:64]) or "-",
            f": {why}" if why else "",
        )

    def submit(self, payload: WebhookPayload) -> list[dict[str, str]]:
        """Decide every alert of a payload, queue the admitted ones; the per-alert summary."""
        summary = []
        for alert in payload.alerts:
            verdict = triage(
                alert,
                allowed_actions=frozenset(self.config.allowed_actions),
                containers=self._containers(),
                known_listeners=self._known_listeners,
            )
            outcome: str = verdict.outcome
            why = verdict.reason
            if verdict.request is not None and self._offline(verdict.request):
                outcome, why = "rejected", OFFLINE_REASON
            elif verdict.request is not None:
                outcome = self.guards.admit(verdict.request)
                if outcome == "queued":
                    self._start(verdict.request)
            why = why if outcome in (verdict.outcome, "rejected") else ""
            self._record(verdict.labels, outcome, alert.fingerprint, why)
            summary.append({"fingerprint": alert.fingerprint, "outcome": outcome})
        return summary

    def submit_request(self, request: ActionRequest) -> tuple[str, asyncio.Task[None] | None]:
        """The manual path: the same guards (but the alert), then run. Outcome and the task."""
        containers = self._containers()
        if request.account_id not in containers or (
            request.container_id not in containers[request.account_id]
        ):
            return "rejected", None
        if request.action not in self.config.allowed_actions or self.stopping:
            return "rejected", None
        labels = (request.account_id, request.container_id, request.listener_id, request.action)
        if self._offline(request):
            self._record(labels, "rejected", request.fingerprint, OFFLINE_REASON)
            return "rejected", None
        outcome = self.guards.admit(request)
        self._record(labels, outcome, request.fingerprint, "")
        if outcome != "queued":
            return outcome, None
        return outcome, self._start(request)

    def _start(self, request: ActionRequest) -> asyncio.Task[None]:
        stage = ["queued"]
        task = asyncio.create_task(
            self._run(request, stage), name=f"remediate {request.listener_id}"
        )
        self._tasks[task] = (request, stage)
        task.add_done_callback(self._tasks.pop)
        return task

    async def _run(self, request: ActionRequest, stage: list[str]) -> None:
        labels = (request.account_id, request.container_id, request.listener_id, request.action)
        try:
            if self._offline(request):  # it went OFFLINE while the action was queued
                self._record(labels, "rejected", request.fingerprint, OFFLINE_REASON)
                return
            stage[0] = "checking the listener's status"
            status = await self._current_status(self._client_of(request), request)
            if status is None or not precondition_met(
                request.action, status, frozenset(self.config.restart_when)
            ):
                why = f"the listener is {status or 'not reported by Boomi'}"
                self._record(labels, "skipped_not_needed", request.fingerprint, why)
                return
            self.guards.acted(request)
            if self.config.dry_run:
                self._record(labels, "dry_run", request.fingerprint, f"the listener is {status}")
                return
            stage[0] = "calling changeListenerStatus"
            await self._client_of(request).change_listener_status(
                request.container_id, request.action, request.listener_id
            )
            stage[0] = "verifying the result"
            outcome, why = await self._verify(request)
            self._record(labels, outcome, request.fingerprint, why)
        except BoomiError as exc:
            self._record(labels, "failed", request.fingerprint, f"{stage[0]}: {exc}")
        except asyncio.CancelledError:
            log.warning(
                "remediation abandoned at shutdown: %s of listener %s on container %s"
                " (account %s) while %s; check it in Boomi",
                request.action,
                request.listener_id,
                request.container_id,
                request.account_id,
                stage[0],
            )
            raise
        finally:
            self.guards.finished(request)

    async def _current_status(self, client: BoomiClient, request: ActionRequest) -> str | None:
        listeners = await client.fetch_listener_statuses(
            request.container_id,
            request.listener_id,
            result_timeout_seconds=self.config.verify_timeout_seconds,
            urgent=True,  # an alert must not wait behind a whole poll cycle
        )
        for listener in listeners:
            if listener.listener_id == request.listener_id:
                return listener.status
        return None

    async def _verify(self, request: ActionRequest) -> tuple[Outcome, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.verify_timeout_seconds
        target = TARGET_STATUS[request.action]
        status: str | None = None
        while loop.time() < deadline:
            await asyncio.sleep(min(self._verify_poll, max(0.0, deadline - loop.time())))
            try:
                status = await self._current_status(self._client_of(request), request)
            except BoomiError as exc:
                log.debug("verifying %s: %s", request.listener_id, exc)
                continue
            if status == target:
                return "recovered", ""
        return "not_recovered", (
            f"still {status or 'unknown'} after {self.config.verify_timeout_seconds:g} s"
        )

    async def stop(self, grace_seconds: float = 2.0) -> None:
        """Let running actions finish for a moment, then cancel (and log) the rest."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# The webhook.


def authorized(header: str | None, auth: WebhookAuthConfig | Literal["none"] | None) -> bool:
    """Whether the Authorization header carries the configured credentials (constant time)."""
    if auth == "none":
        return True
    if auth is None or not header:
        return False
    # The scheme is case-insensitive (RFC 9110, 11.1): "bearer" and "BASIC" are fine.
    scheme, _, credentials = header.partition(" ")
    if auth.bearer_token is not None:
        expected = auth.bearer_token.get_secret_value().encode()
        token_ok = hmac.compare_digest(credentials.strip().encode(errors="replace"), expected)
        return scheme.lower() == "bearer" and token_ok
    assert auth.basic is not None
    if scheme.lower() != "basic":
        return False
    encoded = credentials
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    username, _, password = decoded.partition(b":")
    # Both compared, always, so timing does not tell which one was wrong.
    user_ok = hmac.compare_digest(username, auth.basic.username.encode())
    password_ok = hmac.compare_digest(password, auth.basic.password.get_secret_value().encode())
    return user_ok and password_ok


REMEDIATOR_KEY = web.AppKey("remediator", Remediator)


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to be longer than `limit`."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(BODY_READ_TIMEOUT_SECONDS):
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


async def webhook_handler(request: web.Request) -> web.Response:
    """`POST /webhook/alertmanager`: 200 with a per-alert summary; 400/401/413; 503 only while
    the exporter is stopping (nothing decided, so Alertmanager's retry loses nothing)."""
    remediator = request.app[REMEDIATOR_KEY]
    config = remediator.config
    if not config.enabled:
        return web.json_response({"error": "remediation is disabled"}, status=404)
    if not authorized(request.headers.get("Authorization"), config.auth):
        return web.json_response(
            {"error": "unauthorized"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="boomi-listener-exporter"'},
        )
    if remediator.stopping:
        # Nothing is read, decided or started: a retry (here once restarted, or at another
        # replica) loses nothing, whereas a 200 would drop the alert until Alertmanager's
        # repeat_interval (4 h by default).
        return web.json_response(
            {"error": "the exporter is stopping; nothing was started, deliver again"},
            status=503,
            headers={"Retry-After": str(STOPPING_RETRY_AFTER_SECONDS)},
        )
    try:
        body = await _read_at_most(request, config.max_body_bytes)
    except TimeoutError:
        return web.json_response({"error": "the body took too long to arrive"}, status=408)
    except ConnectionError:
        log.debug("webhook: the client went away while sending its body")
        return web.Response(status=400)
    if body is None:
        return web.json_response({"error": "body too large"}, status=413)
    try:
        payload = parse_payload(body)
    except PayloadError as exc:
        log.info("webhook: refused a payload: %s", exc)
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"alerts": remediator.submit(payload)})


def add_webhook(app: web.Application, remediator: Remediator) -> None:
    """Mount the webhook on the exporter's app."""
    app[REMEDIATOR_KEY] = remediator
    app.router.add_post("/webhook/alertmanager", webhook_handler)
