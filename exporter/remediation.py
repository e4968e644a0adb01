"""Alertmanager-driven remediation: restart (pause, resume) listeners, behind guards.

`POST /webhook/alertmanager` takes a webhook payload (version 4), decides for each alert what it
becomes (`triage`, pure, then the duplicate/cooldown/budget guards, which the ledger answers
from its rows in the transaction that records the decision), queues the admitted ones and
answers once the decisions are on disk. A background task per queued action then asks Boomi
for the listener's status (check-before-act), marks the entry started, calls
changeListenerStatus (unless dry run) and polls until the listener is where the action should
have put it (verify-after); the entry gets its final outcome. No ledger, no action: a decision
the ledger cannot record is `rejected` ("ledger unavailable"). Every outcome is counted in
`boomi_remediation_actions_total` and logged with the alert's fingerprint.

A little over 500 lines: the pure triage and the worker it feeds are kept side by side; the
payload models (webhook_payload.py) and the ledger (ledger/) are already out.

Label values in that counter come only from configured accounts and containers and from
listeners the poller has seen, so a hostile payload cannot create series.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from exporter.boomi import BoomiClient, BoomiError
from exporter.boomi.shapes import OP_CHANGE, OP_QUERY, REMEDIATION_ACTIONS, ListenerStatusName
from exporter.config import RemediationConfig, WebhookAuthConfig
from exporter.environments import remediation_refusal
from exporter.ledger import Decision, GuardLimits, Ledger, LedgerError, Recorded, Source
from exporter.state import SnapshotStore
from exporter.textsafe import printable
from exporter.webhook_payload import PayloadError, WebhookAlert, WebhookPayload, parse_payload

log = logging.getLogger(__name__)

# The payload's names, for the callers that know them from here.
__all__ = ["PayloadError", "WebhookAlert", "WebhookPayload", "parse_payload"]

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
LEDGER_UNAVAILABLE = "ledger unavailable"
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
        # Only a known action is named: the reason goes into the ledger, a label value not.
        why = f"action {action!r} is not allowed" if action else f"unknown {ACTION_LABEL} label"
        return Verdict("rejected", why, labels=counted)
    request = ActionRequest(account_id, container_id, listener_id, raw_action, alert.fingerprint)
    return Verdict("queued", "", request=request, labels=counted)


def precondition_met(action: str, status: str, restart_when: frozenset[str]) -> bool:
    """Check-before-act: does the listener's current status call for this action?"""
    if action == "restart":
        return status in restart_when
    if action == "pause":
        return status in ("listening", "errored")
    return status == "paused"  # resume


# ---------------------------------------------------------------------------------------------
# The worker.

CountOutcome = Callable[[tuple[str, str, str, str], str], None]


class Remediator:
    """Decides alerts through the ledger, and carries out the admitted ones through the
    accounts' Boomi clients, recording each step.

    `ledger` is set by whoever owns it (the daemon opens it at start); without one, every
    decision is rejected as "ledger unavailable".
    """

    def __init__(
        self,
        config: RemediationConfig,
        clients: Mapping[str, BoomiClient],
        store: SnapshotStore,
        count: CountOutcome,
        *,
        containers: Callable[[], Mapping[str, frozenset[str]]],
        ledger: Ledger | None = None,
        verify_poll_seconds: float = VERIFY_POLL_SECONDS,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self._clients = clients
        self._store = store
        self._count = count
        self._containers = containers
        self._verify_poll_max = verify_poll_seconds
        self._verify_poll = min(verify_poll_seconds, config.verify_timeout_seconds / 4)
        self.limits = GuardLimits(config.cooldown_seconds, config.max_actions_per_hour)
        self._tasks: dict[asyncio.Task[None], tuple[ActionRequest, list[str]]] = {}
        self.stopping = False  # set by begin_stop(): nothing new starts
        # The webhook's auth with the current values of its secret files (set by the daemon);
        # by default the configured values.
        self.auth_source: Callable[[], WebhookAuthConfig | Literal["none"] | None] | None = None

    def webhook_auth(self) -> WebhookAuthConfig | Literal["none"] | None:
        """The credentials the webhook expects now."""
        return self.config.auth if self.auth_source is None else self.auth_source()

    def _refusal(self, request: ActionRequest) -> str:
        """Why the account's client would send none of the action's calls now, or ""."""
        client = self._clients.get(request.account_id)
        if client is None:
            return ""
        refusal = client.refusal(OP_QUERY)
        if refusal is None and not self.config.dry_run:
            refusal = client.refusal(OP_CHANGE)
        return refusal or ""

    def configure(self, config: RemediationConfig) -> None:
        """Apply a reloaded configuration; cooldowns, budget and running actions are kept
        (they live in the ledger)."""
        self.config = config
        self._verify_poll = min(self._verify_poll_max, config.verify_timeout_seconds / 4)
        self.limits = GuardLimits(config.cooldown_seconds, config.max_actions_per_hour)

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

    async def _decide(
        self, verdicts: Sequence[tuple[Verdict, str]], source: Source
    ) -> list[tuple[str, str, int | None]]:
        """Record the verdicts in one ledger call, the admitted ones through its guards; per
        verdict (outcome, reason, entry id if queued). A resolved alert decides nothing about an
        action and is not recorded; if the ledger cannot write, all the others are rejected."""
        decisions = [
            Decision(
                source,
                fingerprint,
                *verdict.labels,
                outcome=verdict.outcome,
                reason=verdict.reason,
                dry_run=self.config.dry_run,
            )
            for verdict, fingerprint in verdicts
            if verdict.outcome != "ignored_resolved"
        ]
        written = await self._write(decisions) if decisions else []
        recorded = None if written is None else iter(written)
        results: list[tuple[str, str, int | None]] = []
        for verdict, _ in verdicts:
            if verdict.outcome == "ignored_resolved":
                results.append((verdict.outcome, verdict.reason, None))
            elif recorded is None:
                results.append(("rejected", LEDGER_UNAVAILABLE, None))
            else:
                entry = next(recorded)
                queued = entry.outcome == "queued"
                results.append((entry.outcome, entry.reason, entry.id if queued else None))
        return results

    async def _write(self, decisions: Sequence[Decision]) -> list[Recorded] | None:
        """`Ledger.record`, or None (logged) when there is no ledger or it cannot write."""
        if self.ledger is None:
            log.error("remediation: no ledger is open; %d decision(s) rejected", len(decisions))
            return None
        try:
            return await self.ledger.record(decisions, self.limits)
        except LedgerError as exc:
            log.error("remediation: %s; %d decision(s) rejected", exc, len(decisions))
            return None

    async def submit(self, payload: WebhookPayload) -> list[dict[str, str]]:
        """Decide every alert of a payload, record the decisions, queue the admitted ones;
        the per-alert summary, once the decisions are on disk."""
        containers = self._containers()
        verdicts = [
            (
                triage(
                    alert,
                    allowed_actions=frozenset(self.config.allowed_actions),
                    containers=containers,
                    known_listeners=self._known_listeners,
                ),
                alert.fingerprint,
            )
            for alert in payload.alerts
        ]
        verdicts = [(self._screen(verdict), fingerprint) for verdict, fingerprint in verdicts]
        summary = []
        decided = await self._decide(verdicts, "alertmanager")
        for (verdict, fingerprint), (outcome, why, entry_id) in zip(verdicts, decided, strict=True):
            self._record(verdict.labels, outcome, fingerprint, why)
            if entry_id is not None and verdict.request is not None:
                self._start(verdict.request, entry_id)
            entry = {"fingerprint": fingerprint, "outcome": outcome}
            if why:
                entry["reason"] = why
            summary.append(entry)
        return summary

    def _screen(self, verdict: Verdict) -> Verdict:
        """The checks after triage that need the exporter's state, before the ledger's guards:
        `rejected` for a runtime outside `environment_classifications` (when set), `failed`
        while the account's calls to Boomi are stopped (rejected credentials: nothing is sent)."""
        request = verdict.request
        if request is None:
            return verdict
        snapshot = self._store.get(request.account_id, request.container_id)
        reason = remediation_refusal(
            snapshot.environment if snapshot is not None else None,
            snapshot is not None and snapshot.environment_known,
            self.config.environment_classifications,
        )
        if reason:
            return Verdict("rejected", reason, labels=verdict.labels)
        if self._offline(request):
            return Verdict("rejected", OFFLINE_REASON, labels=verdict.labels)
        why = self._refusal(request)
        if why:
            return Verdict("failed", why, labels=verdict.labels)
        return verdict

    async def submit_request(
        self, request: ActionRequest
    ) -> tuple[str, str, asyncio.Task[None] | None]:
        """The manual path: the same guards and ledger (but the alert), then run.

        The outcome, its reason, and the task carrying the action out if it was queued.
        """
        containers = self._containers()
        labels = (request.account_id, request.container_id, request.listener_id, request.action)
        verdict = Verdict("queued", "", request=request, labels=labels)
        if request.account_id not in containers or (
            request.container_id not in containers[request.account_id]
        ):
            verdict = Verdict("rejected", "unknown container", labels=labels)
        elif request.action not in self.config.allowed_actions:
            verdict = Verdict(
                "rejected", f"action {request.action!r} is not allowed", labels=labels
            )
        if self.stopping:
            verdict = Verdict("rejected", "the exporter is stopping", labels=labels)
        verdict = self._screen(verdict)
        ((outcome, why, entry_id),) = await self._decide([(verdict, request.fingerprint)], "cli")
        self._record(labels, outcome, request.fingerprint, why)
        if entry_id is None:
            return outcome, why, None
        return outcome, why, self._start(request, entry_id)

    def _start(self, request: ActionRequest, entry_id: int) -> asyncio.Task[None]:
        stage = ["queued"]
        task = asyncio.create_task(
            self._run(request, entry_id, stage), name=f"remediate {request.listener_id}"
        )
        self._tasks[task] = (request, stage)
        task.add_done_callback(self._tasks.pop)
        return task

    async def _finish(
        self, request: ActionRequest, entry_id: int, outcome: str, why: str = ""
    ) -> None:
        """Give the entry its final outcome, then count and log it (counted even if the write
        fails: the entry then stays unfinished, the listener busy, until the next start)."""
        assert self.ledger is not None
        try:
            await self.ledger.finish(entry_id, outcome, why)
        except (LedgerError, ValueError) as exc:
            log.error("remediation: ledger entry %d could not be finished: %s", entry_id, exc)
        labels = (request.account_id, request.container_id, request.listener_id, request.action)
        self._record(labels, outcome, request.fingerprint, why)

    async def _run(self, request: ActionRequest, entry_id: int, stage: list[str]) -> None:
        ledger = self.ledger
        assert ledger is not None  # an entry id comes from it
        try:
            if self._offline(request):  # it went OFFLINE while the action was queued
                await self._finish(request, entry_id, "rejected", OFFLINE_REASON)
                return
            stage[0] = "checking the listener's status"
            status = await self._current_status(self._client_of(request), request)
            if status is None or not precondition_met(
                request.action, status, frozenset(self.config.restart_when)
            ):
                why = f"the listener is {status or 'not reported by Boomi'}"
                await self._finish(request, entry_id, "skipped_not_needed", why)
                return
            try:
                # On disk before the call: a crash after this point keeps the cooldown.
                await ledger.mark_started(entry_id)
            except (LedgerError, ValueError) as exc:
                log.error("remediation: ledger entry %d could not be started: %s", entry_id, exc)
                await self._finish(request, entry_id, "rejected", LEDGER_UNAVAILABLE)
                return
            if self.config.dry_run:
                await self._finish(request, entry_id, "dry_run", f"the listener is {status}")
                return
            stage[0] = "calling changeListenerStatus"
            await self._client_of(request).change_listener_status(
                request.container_id, request.action, request.listener_id
            )
            stage[0] = "verifying the result"
            outcome, why = await self._verify(request)
            await self._finish(request, entry_id, outcome, why)
        except BoomiError as exc:
            await self._finish(request, entry_id, "failed", f"{stage[0]}: {exc}")
        except asyncio.CancelledError:
            # The entry stays unfinished; closing the ledger marks it `interrupted`.
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
    if not authorized(request.headers.get("Authorization"), remediator.webhook_auth()):
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
    # Shielded: once the decisions are being recorded they are carried out, even if the
    # client goes away before the answer.
    return web.json_response({"alerts": await asyncio.shield(remediator.submit(payload))})


def add_webhook(app: web.Application, remediator: Remediator) -> None:
    """Mount the webhook on the exporter's app."""
    app[REMEDIATOR_KEY] = remediator
    app.router.add_post("/webhook/alertmanager", webhook_handler)
