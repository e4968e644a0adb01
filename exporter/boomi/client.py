"""Async client for the parts of the Boomi Platform API that the exporter uses.

One `BoomiClient` per Boomi account: it owns the account's `aiohttp.ClientSession`, its rate
limiter (the account's request budget, shared by the poller and remediation), retries with
backoff and jitter, and request instrumentation. The shapes of what it sends and reads are in
`exporter.boomi.shapes`, when to look for a result in `exporter.boomi.delays`, and whether a
request may go out at all, after rejected credentials, in `exporter.boomi.credentials`.

Over 500 lines on purpose: one class whose request engine (`_request`, `_attempt`, `_send`)
and one method per Boomi call read together; the shapes, delays, credentials, transport and
answer bounds already live in their own modules.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from exporter.boomi.answers import MAX_ANSWER_BYTES, read_bounded, shown_location
from exporter.boomi.credentials import (
    DEFAULT_MAX_AUTH_FAILURES,
    AccountCredentials,
    CredentialGates,
    ProbeFailed,
    ProbeFailure,
    SecretSource,
    StaticSecret,
    Ticket,
)
from exporter.boomi.delays import AccountResultDelays
from exporter.boomi.environments import (
    Environment,
    EnvironmentAttachment,
    attachment_query_body,
    environment_query_body,
    parse_attachment_page,
    parse_environment_page,
)
from exporter.boomi.errorbody import error_message, error_message_in
from exporter.boomi.errors import (
    ApiError,
    RateLimited,
    ResultTimeout,
    TokenExpired,
    malformed,
)
from exporter.boomi.ratelimit import (
    PRIORITY_BACKGROUND,
    PRIORITY_REMEDIATION,
    PRIORITY_RESULT,
    PRIORITY_STATUS,
    Clock,
    RateLimiter,
    Sleep,
)
from exporter.boomi.shapes import (
    OP_ATOM,
    OP_ATTACHMENT,
    OP_CHANGE,
    OP_ENVIRONMENT,
    OP_PROCESS,
    OP_QUERY,
    OP_RESULT,
    PROCESS_BULK_IDS,
    ApiCall,
    AsyncResult,
    Atom,
    ListenerStatus,
    atom_query_body,
    change_listener_status_body,
    decode_json,
    listener_status_filter,
    parse_atom_page,
    parse_listener_status_result,
    parse_process_bulk,
    parse_query_token,
    process_bulk_body,
    retry_after_seconds,
)
from exporter.boomi.transport import Route, Transport, describe_failure

log = logging.getLogger(__name__)

# 100 rows a page: far more runtimes (or environments, or attachments) than any account has,
# and a bound on a server that loops.
MAX_ATOM_PAGES = 1000

T = TypeVar("T")

RequestObserver = Callable[[str, str, str, float], None]
"""Called once per HTTP attempt with (account_id, operation, code, seconds)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request is retried."""

    attempts: int = 4  # total tries for a retryable failure
    base_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff for the given retry number (1-based)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class _Retryable(Exception):
    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


@dataclass(slots=True)
class _Answer:
    status: int
    body: object  # parsed JSON, or None for an empty body
    sent_at: float = 0.0  # clock time the request went out
    message: str | None = None  # Boomi's words in an error answer returned, not raised


@dataclass(slots=True)
class _Slot:
    """One request's place in the rate limiter's window, moved to when its headers are sent."""

    stamp: float  # the clock time the request went out, once it has


class BoomiClient:
    """The Boomi Platform API for one account: ListenerStatus, changeListenerStatus, Atom,
    Environment, EnvironmentAtomAttachment, Process.

    Use as `async with BoomiClient(...) as client:`; every method may raise the errors of
    `exporter.boomi.errors` and nothing else (transport failures become `ApiError` with code
    "error").
    """

    def __init__(
        self,
        account_id: str,
        *,
        base_url: str,
        username: str,
        password: str | SecretSource,
        max_requests_per_second: float = 5.0,
        request_timeout_seconds: float = 30.0,
        auth_failure_backoff_seconds: float = 300.0,
        max_auth_failures: int = DEFAULT_MAX_AUTH_FAILURES,
        gates: CredentialGates | None = None,
        transport: Transport | None = None,
        retry: RetryPolicy = RetryPolicy(),
        on_request: RequestObserver | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.account_id = account_id
        self._url = f"{base_url.rstrip('/')}/{account_id}"
        # `gates` is shared by the daemon's clients, so that accounts of one user share its
        # count of rejected sign-ins; a client on its own counts alone.
        self.credentials = AccountCredentials(
            account_id,
            (gates or CredentialGates()).gate(base_url, username),
            username,
            StaticSecret(password) if isinstance(password, str) else password,
            max_auth_failures=max_auth_failures,
            backoff_seconds=auth_failure_backoff_seconds,
            clock=clock,
        )
        # Proxy and TLS (exporter.boomi.transport), decided once: one client, one host.
        self.route: Route = (transport or Transport()).route(self._url)
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_seconds)
        self._retry = retry
        self._on_request = on_request
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.limiter = RateLimiter(max_requests_per_second, clock=clock, sleep=sleep)
        self._session: aiohttp.ClientSession | None = None
        self.result_delays = AccountResultDelays()
        self._closed = False  # by close(): a retired client opens no new session
        self._long_retry_after_logged = False

    async def __aenter__(self) -> BoomiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(self._on_headers_sent)
            self._session = aiohttp.ClientSession(
                connector=self.route.connector(),
                trace_configs=[trace],
                timeout=self._timeout,
                # Authorization goes with each request: the secret may change under a session,
                # and aiohttp copies a session's default headers into a proxy's CONNECT, so the
                # proxy would see the Boomi password.
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    **self.route.session_headers,
                },
                raise_for_status=False,
            )
        return self._session

    async def _on_headers_sent(
        self, session: object, context: Any, params: aiohttp.TraceRequestHeadersSentParams
    ) -> None:
        # The rate limiter counts the request from when it really went out: a pause between the
        # grant and the write (garbage collection, a busy loop) must not bunch requests.
        del session, params
        slot = context.trace_request_ctx
        if isinstance(slot, _Slot):
            slot.stamp = self.limiter.restamp(slot.stamp)

    async def close(self) -> None:
        """Close the account's HTTP session for good: later calls fail instead of reopening it."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the request engine -------------------------------------------------------------------

    def _observe(self, operation: str, code: str, started: float) -> None:
        if self._on_request is not None:
            self._on_request(self.account_id, operation, code, time.perf_counter() - started)

    @property
    def calls_stopped(self) -> bool:
        """True while no call goes out because Boomi rejected the credentials too often."""
        return self.credentials.calls_stopped

    def refusal(self, operation: str) -> str | None:
        """Why a call of `operation` would not be sent now, or None (see `credentials`)."""
        return self.credentials.refusal(operation)

    def reset_privileges(self) -> None:
        """After a reload: try again the calls that Boomi refused for a missing privilege."""
        self.credentials.reset_privileges()

    async def _request(self, call: ApiCall) -> _Answer:
        """One logical call: rate-limited attempts with retries; returns status and JSON body."""
        operation, container_id, where = call.operation, call.container_id, call.where
        last: _Retryable | None = None
        for attempt in range(1, self._retry.attempts + 1):
            if last is not None:
                delay = self._retry.delay(attempt - 1, self._rng)
                if last.retry_after is not None:
                    delay = max(delay, self._capped_retry_after(last.retry_after, call))
                if last.code == "503":
                    self.limiter.pause(delay)
                else:
                    await self._sleep(delay)
            try:
                return await self._attempt(call)
            except _Retryable as exc:
                last = exc
                if exc.code not in ("503",) and not call.retry_server_errors:
                    break
                log.debug(
                    "account %s: %s%s attempt %d failed: %s",
                    self.account_id,
                    operation,
                    where,
                    attempt,
                    exc,
                )
        assert last is not None
        if last.code == "503":
            raise RateLimited(
                f"Boomi kept answering 503 (rate limit) to {operation}{where} on account"
                f" {self.account_id}; is something else using the account's request budget?",
                operation=operation,
                container_id=container_id,
            )
        raise ApiError(
            f"{operation}{where} on account {self.account_id} failed: {last}",
            operation=operation,
            container_id=container_id,
            code=last.code,
        )

    def _capped_retry_after(self, seconds: float, call: ApiCall) -> float:
        # One "Retry-After: 86400" froze an account for a day, silently. Boomi's own limit is
        # per second, so a longer wait is not worth more than the retry policy's longest.
        if seconds <= self._retry.max_delay:
            return seconds
        if not self._long_retry_after_logged:
            self._long_retry_after_logged = True
            log.warning(
                "account %s: Boomi asked to wait %g s before retrying %s%s (Retry-After);"
                " waiting at most %g s (logged once)",
                self.account_id,
                seconds,
                call.operation,
                call.where,
                self._retry.max_delay,
            )
        return self._retry.max_delay

    async def _attempt(self, call: ApiCall) -> _Answer:
        async def send(ticket: Ticket) -> _Answer:
            stamp = await self.limiter.acquire(call.priority)
            if ticket.proven:
                # The wait may have been long: the credentials may have been rejected meanwhile.
                ticket = self.credentials.admit(call.operation, call.container_id)
            return await self._send(_Slot(stamp), call, ticket)

        try:
            return await self.credentials.send(call.operation, call.container_id, send)
        except ProbeFailed as exc:
            raise _Retryable(exc.failure.code, str(exc)) from None

    async def _send(self, slot: _Slot, call: ApiCall, ticket: Ticket) -> _Answer:
        operation, container_id, where = call.operation, call.container_id, call.where
        if self._closed:
            raise ApiError(
                f"{operation}{where} on account {self.account_id} was not sent: the account's"
                " client was replaced (configuration reloaded)",
                operation=operation,
                container_id=container_id,
                code="error",
            )
        session = self._get_session()
        started = time.perf_counter()
        kwargs: dict[str, Any] = {"headers": {"Authorization": ticket.authorization}}
        if call.text_body is not None:
            kwargs["data"] = call.text_body.encode()
            kwargs["headers"]["Content-Type"] = "text/plain"
        elif call.json_body is not None:
            kwargs["json"] = call.json_body
        try:
            async with session.request(
                call.method,
                f"{self._url}/{call.path}",
                trace_request_ctx=slot,
                **self.route.request_options,
                # A redirect would carry the account's credentials to wherever it points.
                allow_redirects=False,
                **kwargs,
            ) as response:
                raw = await read_bounded(response)
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                content_type = response.content_type
                location = response.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._observe(operation, "error", started)
            failure = describe_failure(exc, self.route)
            if failure is not None and not failure.retry:  # a certificate, say: say what to set
                self.credentials.unanswered(ticket, ProbeFailure("error", failure.message))
                raise ApiError(
                    failure.message, operation=operation, container_id=container_id, code="error"
                ) from None
            kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            reason = failure.message if failure is not None else f"transport failure ({kind})"
            self.credentials.unanswered(ticket, ProbeFailure("error", reason))
            raise _Retryable("error", reason) from exc
        self._observe(operation, str(status), started)
        if raw is None:
            self.credentials.unanswered(ticket, ProbeFailure(str(status), "a body too large"))
            raise malformed(
                operation, container_id, f"a body larger than {MAX_ANSWER_BYTES // 2**20} MiB"
            )
        if status in (401, 403):
            raise self.credentials.rejected(operation, ticket, status, container_id)
        if status >= 500:
            # A 504 is Boomi saying it cannot reach the runtime: its words are the news.
            words = error_message_in(raw)
            detail = f": {words}" if words else ""
            self.credentials.unanswered(ticket, ProbeFailure(str(status), f"HTTP {status}"))
            raise _Retryable(str(status), f"HTTP {status}{detail}", retry_after)
        if 300 <= status < 400:
            self.credentials.unanswered(ticket, ProbeFailure(str(status), f"HTTP {status}"))
            raise ApiError(
                f"{operation}{where} on account {self.account_id} failed: Boomi redirected to"
                f" {shown_location(location)} (HTTP {status}); check base_url",
                operation=operation,
                container_id=container_id,
                code=str(status),
            )
        self.credentials.accepted(operation, ticket)
        if status == 204 or status in call.answer_statuses or not raw.strip():
            words = error_message_in(raw) if status >= 400 and raw.strip() else None
            return _Answer(status, None, slot.stamp, words)
        if content_type != "application/json" and not raw.lstrip().startswith((b"{", b"[")):
            if status >= 400:
                raise ApiError(
                    f"{operation}{where} on account {self.account_id} failed: HTTP {status}",
                    operation=operation,
                    container_id=container_id,
                    code=str(status),
                )
            raise malformed(operation, container_id, f"a {content_type or 'non-JSON'} body")
        body = decode_json(raw, operation, container_id)
        if status >= 400:
            words = error_message(body)
            detail = f": {words}" if words else ""
            raise ApiError(
                f"{operation}{where} on account {self.account_id} failed: HTTP {status}{detail}",
                operation=operation,
                container_id=container_id,
                code=str(status),
            )
        return _Answer(status, body, slot.stamp)

    # -- ListenerStatus -----------------------------------------------------------------------

    async def query_listener_status(
        self,
        container_id: str,
        listener_id: str | None = None,
        *,
        priority: int = PRIORITY_STATUS,
    ) -> str:
        """Start a ListenerStatus query for a container (or one listener); return the token."""
        answer = await self._request(
            ApiCall(
                "POST",
                "async/ListenerStatus/query",
                OP_QUERY,
                container_id=container_id,
                json_body=listener_status_filter(container_id, listener_id),
                priority=priority,
            )
        )
        return parse_query_token(answer.body, container_id=container_id)

    async def listener_status_result(
        self, token: str, *, container_id: str = "", priority: int = PRIORITY_RESULT
    ) -> AsyncResult:
        """Fetch an async result once: settled with listeners, or not yet settled.

        Raises TokenExpired on HTTP 204 (result consumed or older than 30 minutes) and 410.
        """
        result, _ = await self._listener_status_result(token, container_id, priority)
        return result

    async def _listener_status_result(
        self, token: str, container_id: str, priority: int
    ) -> tuple[AsyncResult, float]:
        # Also returns when the GET went out: what the result delay is learnt from.
        answer = await self._request(
            ApiCall(
                "GET",
                # One path segment, whatever the token holds ("../", "?", "#").
                f"async/ListenerStatus/response/{quote(token, safe='')}",
                OP_RESULT,
                container_id=container_id,
                answer_statuses=(410,),
                priority=priority,
            )
        )
        if answer.status in (204, 410) or answer.body is None:
            words = f": {answer.message}" if answer.message else ""
            raise TokenExpired(
                f"the ListenerStatus result for container {container_id} is gone"
                f" (HTTP {answer.status}{words})",
                operation=OP_RESULT,
                container_id=container_id,
            )
        return parse_listener_status_result(answer.body, container_id=container_id), answer.sent_at

    async def fetch_listener_statuses(
        self,
        container_id: str,
        listener_id: str | None = None,
        *,
        result_timeout_seconds: float = 120.0,
        urgent: bool = False,
    ) -> tuple[ListenerStatus, ...]:
        """The whole cycle: query, wait, GET until settled; start over once if the token is gone.

        GETs are timed by the container's learnt result delay (`exporter.boomi.delays`), so a
        cycle usually costs the query and one GET. Raises ResultTimeout when nothing settles
        within `result_timeout_seconds` of the query's answer.
        `urgent` (remediation) puts both calls ahead of polling in the rate limiter's queue.
        """
        query_priority = PRIORITY_REMEDIATION if urgent else PRIORITY_STATUS
        result_priority = PRIORITY_REMEDIATION if urgent else PRIORITY_RESULT
        # Counted from the first query's answer: a wait for the rate limiter is not a wait for
        # Boomi, and at 1,000 containers and 10/s the last query waits 200 s for its turn.
        deadline: float | None = None
        looks = self.result_delays.looks(container_id)
        restarts_left = 1
        while True:
            token = await self.query_listener_status(
                container_id, listener_id, priority=query_priority
            )
            queried_at = self._clock()
            if deadline is None:
                deadline = queried_at + result_timeout_seconds
            looks.start()
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise ResultTimeout(
                        f"the ListenerStatus result for container {container_id} did not settle"
                        f" within {result_timeout_seconds:g} s; is the runtime online?",
                        operation=OP_RESULT,
                        container_id=container_id,
                    )
                await self._sleep(
                    min(max(0.0, queried_at + looks.next_at - self._clock()), remaining)
                )
                try:
                    result, sent_at = await self._listener_status_result(
                        token, container_id, result_priority
                    )
                except TokenExpired as exc:
                    if restarts_left == 0:
                        # Twice in a row is news about the runtime (a 410 means it is
                        # offline), shown in Boomi's words.
                        raise TokenExpired(
                            f"{exc}, and again after a new query",
                            operation=OP_RESULT,
                            container_id=container_id,
                        ) from None
                    restarts_left -= 1
                    log.debug("container %s: token %s gone, querying again", container_id, token)
                    break
                if result.settled:
                    looks.settled(sent_at - queried_at)
                    return result.listeners
                looks.unsettled(sent_at - queried_at)

    @property
    def expected_result_delay(self) -> float:
        """The mean learnt result delay over this account's containers (for reports)."""
        return self.result_delays.expected

    def forget_container(self, container_id: str) -> None:
        """Drop what was learnt about a container that is no longer polled."""
        self.result_delays.forget(container_id)

    # -- changeListenerStatus -----------------------------------------------------------------

    async def change_listener_status(
        self, container_id: str, action: str, listener_id: str | None = None
    ) -> None:
        """Ask Boomi to restart, pause or resume a listener (or all with the *_all actions).

        Success means Boomi accepted the request, not that it took effect: confirm with a new
        ListenerStatus query. Only 503 is retried: after any other failure the change may or may
        not have happened.
        """
        body = change_listener_status_body(container_id, action, listener_id)
        await self._request(
            ApiCall(
                "POST",
                "changeListenerStatus",
                OP_CHANGE,
                container_id=container_id,
                json_body=body,
                retry_server_errors=False,
                priority=PRIORITY_REMEDIATION,
            )
        )

    # -- runtimes, environments, names -------------------------------------------------------

    async def query_atoms(self, expression: Mapping[str, Any] | None = None) -> list[Atom]:
        """Every runtime the account has (optionally filtered), following queryMore pages."""
        return await self._query_all(
            "Atom", OP_ATOM, atom_query_body(expression), parse_atom_page, "runtimes"
        )

    async def query_environments(self) -> list[Environment]:
        """Every environment of the account, following queryMore pages."""
        return await self._query_all(
            "Environment",
            OP_ENVIRONMENT,
            environment_query_body(),
            parse_environment_page,
            "environments",
        )

    async def query_environment_attachments(
        self, environment_id: str
    ) -> list[EnvironmentAttachment]:
        """The runtimes attached to one environment, following queryMore pages."""
        return await self._query_all(
            "EnvironmentAtomAttachment",
            OP_ATTACHMENT,
            attachment_query_body(environment_id),
            parse_attachment_page,
            "attachments",
        )

    async def _query_all(
        self,
        object_name: str,
        operation: str,
        body: Mapping[str, Any],
        parse_page: Callable[[object], tuple[list[T], str | None]],
        what: str,
    ) -> list[T]:
        """A background query and its queryMore pages; a page counts under `operation`."""
        answer = await self._request(
            ApiCall(
                "POST",
                f"{object_name}/query",
                operation,
                json_body=body,
                priority=PRIORITY_BACKGROUND,
            )
        )
        rows, token = parse_page(answer.body)
        pages = 1
        while token is not None:
            pages += 1
            if pages > MAX_ATOM_PAGES:
                raise malformed(operation, "", f"more than {MAX_ATOM_PAGES} pages of {what}")
            answer = await self._request(
                ApiCall(
                    "POST",
                    f"{object_name}/queryMore",
                    operation,
                    text_body=token,
                    priority=PRIORITY_BACKGROUND,
                )
            )
            page, token = parse_page(answer.body)
            rows.extend(page)
        return rows

    async def process_names(self, process_ids: Sequence[str]) -> dict[str, str]:
        """Names of processes (a listener id is its process id), 100 ids per Process/bulk call."""
        names: dict[str, str] = {}
        unique = list(dict.fromkeys(process_ids))
        for start in range(0, len(unique), PROCESS_BULK_IDS):
            chunk = unique[start : start + PROCESS_BULK_IDS]
            answer = await self._request(
                ApiCall(
                    "POST",
                    "Process/bulk",
                    OP_PROCESS,
                    json_body=process_bulk_body(chunk),
                    priority=PRIORITY_BACKGROUND,
                )
            )
            names.update(parse_process_bulk(answer.body))
        return names
