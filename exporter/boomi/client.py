"""Async client for the parts of the Boomi Platform API that the exporter uses.

One `BoomiClient` per Boomi account: it owns the account's `aiohttp.ClientSession`, its rate
limiter (the account's request budget, shared by the poller and remediation), retries with
backoff and jitter, the back-off after rejected credentials, and request instrumentation. The
shapes of what it sends and reads are in `exporter.boomi.shapes`, and when to look for a result in
`exporter.boomi.delays`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from exporter.boomi.answers import MAX_ANSWER_BYTES, read_bounded, shown_location
from exporter.boomi.delays import AccountResultDelays
from exporter.boomi.errors import (
    ApiError,
    AuthError,
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
    OP_CHANGE,
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

log = logging.getLogger(__name__)

# 100 runtimes a page: far more than any account has, and a bound on a server that loops.
MAX_ATOM_PAGES = 1000

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


@dataclass(slots=True)
class _Slot:
    """One request's place in the rate limiter's window, moved to when its headers are sent."""

    stamp: float  # the clock time the request went out, once it has


class BoomiClient:
    """The Boomi Platform API for one account: ListenerStatus, changeListenerStatus, Atom, Process.

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
        password: str,
        max_requests_per_second: float = 5.0,
        request_timeout_seconds: float = 30.0,
        auth_failure_backoff_seconds: float = 300.0,
        retry: RetryPolicy = RetryPolicy(),
        on_request: RequestObserver | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.account_id = account_id
        self._url = f"{base_url.rstrip('/')}/{account_id}"
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._authorization = f"Basic {credentials}"
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_seconds)
        self._auth_backoff = auth_failure_backoff_seconds
        self._retry = retry
        self._on_request = on_request
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.limiter = RateLimiter(max_requests_per_second, clock=clock, sleep=sleep)
        self._session: aiohttp.ClientSession | None = None
        self._auth_blocked_until = 0.0
        self._auth_error: AuthError | None = None
        self._credentials_ok = False  # some call has been answered without 401/403
        self._probing = asyncio.Lock()
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
                trace_configs=[trace],
                timeout=self._timeout,
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    "Authorization": self._authorization,
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

    def _check_auth_backoff(self, operation: str, container_id: str) -> None:
        if self._auth_error is not None and self._clock() < self._auth_blocked_until:
            raise AuthError(
                f"{self._auth_error} (no calls for this account during a back-off of"
                f" {self._auth_backoff:g} s, so the user is not locked out)",
                operation=operation,
                container_id=container_id,
            )

    async def _request(self, call: ApiCall) -> _Answer:
        """One logical call: rate-limited attempts with retries; returns status and JSON body."""
        operation, container_id, where = call.operation, call.container_id, call.where
        self._check_auth_backoff(operation, container_id)
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
        if not self._credentials_ok:
            # Credentials not proven yet (at start, after a back-off): one request at a time,
            # so a wrong password costs one login however many callers are waiting.
            async with self._probing:
                self._check_auth_backoff(call.operation, call.container_id)
                if not self._credentials_ok:
                    stamp = await self.limiter.acquire(call.priority)
                    return await self._send(_Slot(stamp), call)
        stamp = await self.limiter.acquire(call.priority)
        self._check_auth_backoff(call.operation, call.container_id)
        return await self._send(_Slot(stamp), call)

    async def _send(self, slot: _Slot, call: ApiCall) -> _Answer:
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
        kwargs: dict[str, Any] = {}
        if call.text_body is not None:
            kwargs["data"] = call.text_body.encode()
            kwargs["headers"] = {"Content-Type": "text/plain"}
        elif call.json_body is not None:
            kwargs["json"] = call.json_body
        try:
            async with session.request(
                call.method,
                f"{self._url}/{call.path}",
                trace_request_ctx=slot,
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
            kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise _Retryable("error", f"transport failure ({kind})") from exc
        self._observe(operation, str(status), started)
        if raw is None:
            raise malformed(
                operation, container_id, f"a body larger than {MAX_ANSWER_BYTES // 2**20} MiB"
            )
        if status in (401, 403):
            if status == 403 and self._credentials_ok and operation not in (OP_QUERY, OP_RESULT):
                # With credentials that work for ListenerStatus, a 403 on another call means
                # the user lacks the privilege for it; that must not stop status polling.
                raise AuthError(
                    f"Boomi refused {operation}{where} on account {self.account_id} (HTTP 403):"
                    " wrong credentials, or the user lacks the privilege for this call",
                    operation=operation,
                    container_id=container_id,
                )
            self._auth_error = AuthError(
                f"Boomi rejected the credentials of account {self.account_id} (HTTP {status});"
                " check the username (API tokens use BOOMI_TOKEN.<user>), the password or"
                " token, and the API and Atom Management privileges",
                operation=operation,
                container_id=container_id,
            )
            self._auth_blocked_until = self._clock() + self._auth_backoff
            self._credentials_ok = False
            raise self._auth_error
        if status == 503:
            raise _Retryable("503", "HTTP 503", retry_after)
        if status >= 500:
            raise _Retryable(str(status), f"HTTP {status}", retry_after)
        if 300 <= status < 400:
            raise ApiError(
                f"{operation}{where} on account {self.account_id} failed: Boomi redirected to"
                f" {shown_location(location)} (HTTP {status}); check base_url",
                operation=operation,
                container_id=container_id,
                code=str(status),
            )
        # A good answer clears an old credentials failure (the password was fixed).
        self._auth_error = None
        self._credentials_ok = True
        if status == 204 or status in call.answer_statuses or not raw.strip():
            return _Answer(status, None, slot.stamp)
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
            message = body.get("message") if isinstance(body, Mapping) else None
            detail = f": {message}" if isinstance(message, str) else ""
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
            raise TokenExpired(
                f"the ListenerStatus result for container {container_id} is gone"
                f" (HTTP {answer.status})",
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
        within `result_timeout_seconds`.
        `urgent` (remediation) puts both calls ahead of polling in the rate limiter's queue.
        """
        query_priority = PRIORITY_REMEDIATION if urgent else PRIORITY_STATUS
        result_priority = PRIORITY_REMEDIATION if urgent else PRIORITY_RESULT
        deadline = self._clock() + result_timeout_seconds
        looks = self.result_delays.looks(container_id)
        restarts_left = 1
        while True:
            token = await self.query_listener_status(
                container_id, listener_id, priority=query_priority
            )
            queried_at = self._clock()
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
                await self._sleep(min(looks.wait, remaining))
                try:
                    result, sent_at = await self._listener_status_result(
                        token, container_id, result_priority
                    )
                except TokenExpired:
                    if restarts_left == 0:
                        raise
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

    # -- names --------------------------------------------------------------------------------

    async def query_atoms(self, expression: Mapping[str, Any] | None = None) -> list[Atom]:
        """Every runtime the account has (optionally filtered), following queryMore pages."""
        answer = await self._request(
            ApiCall(
                "POST",
                "Atom/query",
                OP_ATOM,
                json_body=atom_query_body(expression),
                priority=PRIORITY_BACKGROUND,
            )
        )
        atoms, token = parse_atom_page(answer.body)
        pages = 1
        while token is not None:
            pages += 1
            if pages > MAX_ATOM_PAGES:
                raise malformed(OP_ATOM, "", f"more than {MAX_ATOM_PAGES} pages of runtimes")
            answer = await self._request(
                ApiCall(
                    "POST", "Atom/queryMore", OP_ATOM, text_body=token, priority=PRIORITY_BACKGROUND
                )
            )
            page, token = parse_atom_page(answer.body)
            atoms.extend(page)
        return atoms

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
