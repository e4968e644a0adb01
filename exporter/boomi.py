"""Async client for the parts of the Boomi Platform API that the exporter uses.

One `BoomiClient` per Boomi account: it owns the account's `aiohttp.ClientSession`, its rate
limiter (the account's request budget, shared by the poller and remediation), retries with
backoff and jitter, the back-off after rejected credentials, and request instrumentation.
Parsing of every response shape is done by pure functions at the top of the module so it can be
tested table-driven without a network.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import heapq
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

LISTENER_STATUSES = ("listening", "paused", "errored", "unknown")
CHANGE_ACTIONS = ("restart", "restart_all", "pause", "pause_all", "resume", "resume_all")

# Operation names used in metrics and errors (the contract in design.md).
OP_QUERY = "listener_status_query"
OP_RESULT = "listener_status_result"
OP_CHANGE = "change_listener_status"
OP_ATOM = "atom_query"
OP_PROCESS = "process_query"

# 100 runtimes a page: far more than any account has, and a bound on a server that loops.
MAX_ATOM_PAGES = 1000

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
RequestObserver = Callable[[str, str, str, float], None]
"""Called once per HTTP attempt with (account_id, operation, code, seconds)."""


# ---------------------------------------------------------------------------------------------
# Errors: one class per outcome the caller handles differently.


class BoomiError(Exception):
    """Base class: a Boomi API call failed. The message is one sentence for the user."""

    def __init__(self, message: str, *, operation: str = "", container_id: str = "") -> None:
        super().__init__(message)
        self.operation = operation
        self.container_id = container_id


class AuthError(BoomiError):
    """Boomi rejected the credentials (401/403); the client backs off for the whole account."""


class RateLimited(BoomiError):
    """Boomi kept answering 503 (over the account's rate limit) after every retry."""


class TokenExpired(BoomiError):
    """An async token's result is gone (HTTP 204) or the token is invalid (HTTP 410)."""


class ResultTimeout(BoomiError):
    """An async result did not settle within the configured bound."""


class ApiError(BoomiError):
    """Boomi answered an error (4xx/5xx) or could not be reached."""

    def __init__(
        self, message: str, *, operation: str = "", container_id: str = "", code: str = ""
    ) -> None:
        super().__init__(message, operation=operation, container_id=container_id)
        self.code = code


class MalformedResponse(BoomiError):
    """Boomi answered something that is not the documented shape."""


# ---------------------------------------------------------------------------------------------
# Domain values and pure parsing.


@dataclass(frozen=True, slots=True)
class ListenerStatus:
    """One listener's status as Boomi reported it, normalised."""

    listener_id: str
    status: str  # one of LISTENER_STATUSES
    connector_type: str  # Boomi's raw value, "" when Boomi omits it
    raw_status: str  # as Boomi sent it, kept for logs when it normalises to "unknown"


@dataclass(frozen=True, slots=True)
class AsyncResult:
    """One answer of the ListenerStatus result endpoint: settled or still working."""

    settled: bool
    listeners: tuple[ListenerStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class Atom:
    """A Boomi runtime ("container"): Atom, Molecule or Cloud."""

    container_id: str
    name: str
    status: str
    type: str
    host_name: str


def normalize_status(raw: object) -> str:
    """Map Boomi's status value to one of LISTENER_STATUSES; anything unexpected is "unknown"."""
    if isinstance(raw, str):
        value = raw.strip().lower()
        if value in LISTENER_STATUSES:
            return value
    return "unknown"


def _fail(operation: str, container_id: str, what: str) -> MalformedResponse:
    where = f" for container {container_id}" if container_id else ""
    return MalformedResponse(
        f"Boomi answered {operation}{where} with {what}",
        operation=operation,
        container_id=container_id,
    )


def _as_mapping(body: object, operation: str, container_id: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise _fail(operation, container_id, f"a JSON {type(body).__name__}, not an object")
    return body


def parse_query_token(body: object, *, container_id: str = "") -> str:
    """Return the async token from a ListenerStatus query answer."""
    mapping = _as_mapping(body, OP_QUERY, container_id)
    token_obj = mapping.get("asyncToken")
    token = token_obj.get("token") if isinstance(token_obj, Mapping) else None
    if not isinstance(token, str) or not token.strip():
        raise _fail(OP_QUERY, container_id, "no asyncToken.token")
    return token


def parse_listener_status_result(body: object, *, container_id: str = "") -> AsyncResult:
    """Decide from a ListenerStatus result body whether it settled, and read its listeners.

    The body's `responseStatusCode` decides, not the HTTP status. A 202 with
    `numberOfResults: 0` is the reported settled-but-empty quirk. `AsyncOperationStatus` rows
    ("Connecting to runtime...") are progress notes, not listeners.
    """
    mapping = _as_mapping(body, OP_RESULT, container_id)
    code = mapping.get("responseStatusCode")
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) <= 3:
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int):
        raise _fail(OP_RESULT, container_id, "no numeric responseStatusCode")
    count = mapping.get("numberOfResults")
    rows = mapping.get("result", [])
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise _fail(OP_RESULT, container_id, "a 'result' that is not a list")
    if code == 202:
        if count == 0 and not isinstance(count, bool):
            return AsyncResult(settled=True)
        return AsyncResult(settled=False)
    if code != 200:
        raise ApiError(
            f"Boomi reported responseStatusCode {code} for the ListenerStatus result"
            f" of container {container_id}",
            operation=OP_RESULT,
            container_id=container_id,
            code=str(code),
        )
    listeners: list[ListenerStatus] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise _fail(OP_RESULT, container_id, f"result[{index}] that is not an object")
        if row.get("@type") == "AsyncOperationStatus":
            continue
        listener_id = row.get("listenerId")
        if not isinstance(listener_id, str) or not listener_id:
            raise _fail(OP_RESULT, container_id, f"result[{index}] without a listenerId")
        raw_status = row.get("status")
        connector_type = row.get("connectorType")
        listeners.append(
            ListenerStatus(
                listener_id=listener_id,
                status=normalize_status(raw_status),
                connector_type=connector_type if isinstance(connector_type, str) else "",
                raw_status=raw_status if isinstance(raw_status, str) else repr(raw_status),
            )
        )
    return AsyncResult(settled=True, listeners=tuple(listeners))


def parse_atom_page(body: object) -> tuple[list[Atom], str | None]:
    """Read one page of an Atom query: the runtimes and the token of the next page, if any."""
    mapping = _as_mapping(body, OP_ATOM, "")
    rows = mapping.get("result", [])
    if not isinstance(rows, list):
        raise _fail(OP_ATOM, "", "a 'result' that is not a list")
    atoms: list[Atom] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("id"), str):
            raise _fail(OP_ATOM, "", f"result[{index}] without an id")
        atoms.append(
            Atom(
                container_id=row["id"],
                name=str(row.get("name") or ""),
                status=str(row.get("status") or "UNKNOWN").upper(),
                type=str(row.get("type") or "").upper(),
                host_name=str(row.get("hostName") or ""),
            )
        )
    token = mapping.get("queryToken")
    return atoms, token if isinstance(token, str) and token else None


def parse_process_bulk(body: object) -> dict[str, str]:
    """Read a Process/bulk GET answer into {process id: name}; failed entries are left out."""
    mapping = _as_mapping(body, OP_PROCESS, "")
    rows = mapping.get("response", [])
    if not isinstance(rows, list):
        raise _fail(OP_PROCESS, "", "a 'response' that is not a list")
    names: dict[str, str] = {}
    for row in rows:
        if not isinstance(row, Mapping) or row.get("statusCode") != 200:
            continue
        result = row.get("Result")
        if isinstance(result, Mapping):
            process_id, name = result.get("id"), result.get("name")
            if isinstance(process_id, str) and isinstance(name, str):
                names[process_id] = name
    return names


def listener_status_filter(container_id: str, listener_id: str | None = None) -> dict[str, Any]:
    """The QueryFilter body for a ListenerStatus query of one container (or one listener)."""
    container = {"argument": [container_id], "operator": "EQUALS", "property": "containerId"}
    if listener_id is None:
        return {"QueryFilter": {"expression": container}}
    listener = {"argument": [listener_id], "operator": "EQUALS", "property": "listenerId"}
    return {
        "QueryFilter": {
            "expression": {"operator": "and", "nestedExpression": [container, listener]}
        }
    }


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header given in seconds; HTTP dates are ignored (not seen from Boomi)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# ---------------------------------------------------------------------------------------------
# Rate limiting.


# Lower goes first. A restart in progress outranks polling, so an alert does not wait behind a
# whole cycle; a poll's result GET outranks new queries, so a result is fetched when it is ready
# rather than after every other container's query (throughput is the same, freshness better);
# discovery and process names only use budget the status cycle leaves.
PRIORITY_REMEDIATION = 0
PRIORITY_RESULT = 1
PRIORITY_STATUS = 2
PRIORITY_BACKGROUND = 3


class RateLimiter:
    """At most `rate` requests in any window of one second, shared by every caller of an account.

    A sliding log of send times rather than a token bucket: a bucket lets a full burst follow a
    full second, which Boomi's window counts as too many. Waiters are served by priority, then
    in arrival order, so background work only ever uses budget that status polling leaves.
    `pause(seconds)` holds every caller back after Boomi said 503, so a shared account recovers.
    """

    # Requests are stamped when their headers are written, but Boomi counts them on arrival,
    # which network jitter (or a pause of either side) can bunch; the margin absorbs that.
    WINDOW_MARGIN_SECONDS = 0.05

    def __init__(self, rate: float, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        if rate >= 1:
            self.capacity, self.window = int(rate), 1.0
        else:
            self.capacity, self.window = 1, 1.0 / rate
        self.window += self.WINDOW_MARGIN_SECONDS
        self._sent: list[float] = []  # send times in the window, sorted
        self._paused_until = 0.0
        self._waiting: list[tuple[int, int, asyncio.Future[float]]] = []
        self._arrivals = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self._clock = clock
        self._sleep = sleep

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` from now (extends, never shortens, a pause in force)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _delay(self, now: float) -> float:
        expired = bisect.bisect_right(self._sent, now - self.window)
        del self._sent[:expired]
        delay = self._paused_until - now
        if len(self._sent) >= self.capacity:
            delay = max(delay, self._sent[0] + self.window - now)
        return delay

    async def acquire(self, priority: int = PRIORITY_STATUS) -> float:
        """Wait until one more request fits in the window; record it as sent and return the stamp.

        Pass the stamp to `restamp` when the request really leaves, if that can be later.
        """
        granted: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), granted))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="rate limiter")
        # A busy event loop can resume this caller well after the grant; the request leaves
        # later still, so that is the time the window must count.
        return self.restamp(await granted)

    def restamp(self, stamp: float) -> float:
        """Move a request's recorded send time from `stamp` to now (never earlier); return it."""
        now = self._clock()
        if now <= stamp:
            return stamp
        index = bisect.bisect_left(self._sent, stamp)
        if index < len(self._sent) and self._sent[index] == stamp:
            del self._sent[index]
        bisect.insort(self._sent, now)
        return now

    async def _dispatch(self) -> None:
        # One dispatcher hands out slots; it sleeps until the next slot, then serves whoever
        # is first in line at that moment, so a late high-priority caller overtakes.
        while self._waiting:
            delay = self._delay(self._clock())
            if delay > 0:
                await self._sleep(delay)
                continue
            _, _, granted = heapq.heappop(self._waiting)
            if granted.done():  # its caller was cancelled while waiting
                continue
            now = self._clock()
            bisect.insort(self._sent, now)
            granted.set_result(now)


# ---------------------------------------------------------------------------------------------
# The client.


@dataclass
class ResultDelay:
    """When to look for one container's ListenerStatus result, learnt from earlier cycles.

    A container new to the client starts from what the account's other containers took (they
    talk to the same Boomi), or, when nothing is known yet, probes: 0.1 s, then doubling. A
    result found at the first look may have been ready earlier, so the estimate creeps down 1% a
    cycle; a first look that came too early sets the estimate to the time the result really
    took. A look too early costs a request, which the account's budget pays for in cycle time; a
    look too late costs a fraction of a second of freshness in a poll interval of a minute; so
    the creep is slow: about one cycle in twenty costs a second GET.
    """

    CREEP = 0.99
    PROBE_SECONDS = 0.1
    MAX_WAIT_SECONDS = 5.0

    seconds: float | None = None

    def first_wait(self, typical: float | None = None) -> float:
        """How long after the query to look first; `typical`: the account's usual delay."""
        if self.seconds is None:
            self.seconds = typical
        return self.PROBE_SECONDS if self.seconds is None else self.seconds

    def next_wait(self, previous: float, *, first_miss: bool) -> float:
        """How long to wait after a look that found the result unsettled."""
        if first_miss and self.seconds is not None:
            return max(self.PROBE_SECONDS, self.seconds / 4)  # just missed: look again soon
        return min(previous * 2, self.MAX_WAIT_SECONDS)  # slow or offline: back off

    def settled(
        self, observed: float, *, first_look: bool, unsettled_at: float | None = None
    ) -> float:
        """Learn from a settled result that took `observed` seconds after the query.

        `unsettled_at`: when the last look that found it unsettled went out. While probing,
        the looks double apart, so the result was ready somewhere between the two: start from
        the middle rather than from the late end, which would take many cycles to creep down.
        """
        if first_look and self.seconds is not None:
            self.seconds = max(0.02, self.seconds * self.CREEP)
        elif self.seconds is None and unsettled_at is not None:
            self.seconds = min(30.0, (unsettled_at + observed) / 2)
        else:
            self.seconds = min(30.0, observed)
        return self.seconds


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

    Use as `async with BoomiClient(...) as client:`; every method may raise the typed errors above
    and nothing else (transport failures become `ApiError` with code "error").
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
        # Per container: when its results tend to be ready, so the first GET comes then rather
        # than on a blind timer.
        self._result_delays: dict[str, ResultDelay] = {}
        self._typical_result_delay: float | None = None  # a moving average over containers

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
        """Close the account's HTTP session."""
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

    async def _request(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        container_id: str = "",
        json_body: object = None,
        text_body: str | None = None,
        retry_server_errors: bool = True,
        answer_statuses: tuple[int, ...] = (),
        priority: int = PRIORITY_STATUS,
    ) -> _Answer:
        """One logical call: rate-limited attempts with retries; returns status and JSON body.

        Error statuses in `answer_statuses` are returned (without a body) instead of raised.
        """
        self._check_auth_backoff(operation, container_id)
        where = f" for container {container_id}" if container_id else ""
        last: _Retryable | None = None
        for attempt in range(1, self._retry.attempts + 1):
            if last is not None:
                delay = self._retry.delay(attempt - 1, self._rng)
                if last.retry_after is not None:
                    delay = max(delay, last.retry_after)
                if last.code == "503":
                    self.limiter.pause(delay)
                else:
                    await self._sleep(delay)
            try:
                return await self._attempt(
                    method=method,
                    path=path,
                    operation=operation,
                    container_id=container_id,
                    json_body=json_body,
                    text_body=text_body,
                    where=where,
                    answer_statuses=answer_statuses,
                    priority=priority,
                )
            except _Retryable as exc:
                last = exc
                if exc.code not in ("503",) and not retry_server_errors:
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

    async def _attempt(self, **call: Any) -> _Answer:
        operation, container_id = call["operation"], call["container_id"]
        if not self._credentials_ok:
            # Credentials not proven yet (at start, after a back-off): one request at a time,
            # so a wrong password costs one login however many callers are waiting.
            async with self._probing:
                self._check_auth_backoff(operation, container_id)
                if not self._credentials_ok:
                    stamp = await self.limiter.acquire(call["priority"])
                    return await self._send(_Slot(stamp), **call)
        stamp = await self.limiter.acquire(call["priority"])
        self._check_auth_backoff(operation, container_id)
        return await self._send(_Slot(stamp), **call)

    async def _send(
        self,
        slot: _Slot,
        *,
        method: str,
        path: str,
        operation: str,
        container_id: str,
        json_body: object,
        text_body: str | None,
        where: str,
        answer_statuses: tuple[int, ...],
        priority: int,
    ) -> _Answer:
        del priority  # used by _attempt
        session = self._get_session()
        started = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if text_body is not None:
            kwargs["data"] = text_body.encode()
            kwargs["headers"] = {"Content-Type": "text/plain"}
        elif json_body is not None:
            kwargs["json"] = json_body
        try:
            async with session.request(
                method, f"{self._url}/{path}", trace_request_ctx=slot, **kwargs
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                content_type = response.content_type
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._observe(operation, "error", started)
            kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise _Retryable("error", f"transport failure ({kind})") from exc
        self._observe(operation, str(status), started)
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
        # A good answer clears an old credentials failure (the password was fixed).
        self._auth_error = None
        self._credentials_ok = True
        if status == 204 or status in answer_statuses or not raw.strip():
            return _Answer(status, None, slot.stamp)
        if content_type != "application/json" and not raw.lstrip().startswith((b"{", b"[")):
            if status >= 400:
                raise ApiError(
                    f"{operation}{where} on account {self.account_id} failed: HTTP {status}",
                    operation=operation,
                    container_id=container_id,
                    code=str(status),
                )
            raise _fail(operation, container_id, f"a {content_type or 'non-JSON'} body")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise _fail(operation, container_id, "a body that is not valid JSON") from None
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
            "POST",
            "async/ListenerStatus/query",
            OP_QUERY,
            container_id=container_id,
            json_body=listener_status_filter(container_id, listener_id),
            priority=priority,
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
            "GET",
            f"async/ListenerStatus/response/{token}",
            OP_RESULT,
            container_id=container_id,
            answer_statuses=(410,),
            priority=priority,
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

        GETs are timed by the container's `ResultDelay`, so a cycle usually costs the query and
        one GET. Raises ResultTimeout when nothing settles within `result_timeout_seconds`.
        `urgent` (remediation) puts both calls ahead of polling in the rate limiter's queue.
        """
        query_priority = PRIORITY_REMEDIATION if urgent else PRIORITY_STATUS
        result_priority = PRIORITY_REMEDIATION if urgent else PRIORITY_RESULT
        deadline = self._clock() + result_timeout_seconds
        estimate = self._result_delays.setdefault(container_id, ResultDelay())
        restarts_left = 1
        while True:
            token = await self.query_listener_status(
                container_id, listener_id, priority=query_priority
            )
            queried_at = self._clock()
            wait = estimate.first_wait(self._typical_result_delay)
            looks = 0
            unsettled_at: float | None = None
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise ResultTimeout(
                        f"the ListenerStatus result for container {container_id} did not settle"
                        f" within {result_timeout_seconds:g} s; is the runtime online?",
                        operation=OP_RESULT,
                        container_id=container_id,
                    )
                await self._sleep(min(wait, remaining))
                looks += 1
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
                    # From when the GET went out: time in the limiter's queue is not Boomi's.
                    learnt = estimate.settled(
                        sent_at - queried_at, first_look=looks == 1, unsettled_at=unsettled_at
                    )
                    if looks > 1:
                        # A measurement (a look found it unsettled, the next settled). A result
                        # found at the first look only says "at most this long"; averaging those
                        # in would drag the typical delay down with every container's creep.
                        typical = self._typical_result_delay
                        self._typical_result_delay = (
                            learnt if typical is None else 0.8 * typical + 0.2 * learnt
                        )
                    return result.listeners
                unsettled_at = sent_at - queried_at
                wait = estimate.next_wait(wait, first_miss=looks == 1)

    @property
    def expected_result_delay(self) -> float:
        """The mean learnt result delay over this account's containers (for reports)."""
        learnt = [e.seconds for e in self._result_delays.values() if e.seconds is not None]
        return sum(learnt) / len(learnt) if learnt else ResultDelay.PROBE_SECONDS

    def forget_container(self, container_id: str) -> None:
        """Drop what was learnt about a container that is no longer polled."""
        self._result_delays.pop(container_id, None)

    # -- changeListenerStatus -----------------------------------------------------------------

    async def change_listener_status(
        self, container_id: str, action: str, listener_id: str | None = None
    ) -> None:
        """Ask Boomi to restart, pause or resume a listener (or all with the *_all actions).

        Success means Boomi accepted the request, not that it took effect: confirm with a new
        ListenerStatus query. Only 503 is retried: after any other failure the change may or may
        not have happened.
        """
        if action not in CHANGE_ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if action.endswith("_all") != (listener_id is None):
            raise ValueError(
                f"action {action!r} {'must not name' if listener_id else 'needs'} a listener"
            )
        body: dict[str, str] = {"containerId": container_id, "action": action}
        if listener_id is not None:
            body["listenerId"] = listener_id
        await self._request(
            "POST",
            "changeListenerStatus",
            OP_CHANGE,
            container_id=container_id,
            json_body=body,
            retry_server_errors=False,
            priority=PRIORITY_REMEDIATION,
        )

    # -- names --------------------------------------------------------------------------------

    async def query_atoms(self, expression: Mapping[str, Any] | None = None) -> list[Atom]:
        """Every runtime the account has (optionally filtered), following queryMore pages."""
        query: dict[str, Any] = {"QueryFilter": {"expression": expression}} if expression else {}
        answer = await self._request(
            "POST", "Atom/query", OP_ATOM, json_body=query, priority=PRIORITY_BACKGROUND
        )
        atoms, token = parse_atom_page(answer.body)
        pages = 1
        while token is not None:
            pages += 1
            if pages > MAX_ATOM_PAGES:
                raise _fail(OP_ATOM, "", f"more than {MAX_ATOM_PAGES} pages of runtimes")
            answer = await self._request(
                "POST", "Atom/queryMore", OP_ATOM, text_body=token, priority=PRIORITY_BACKGROUND
            )
            page, token = parse_atom_page(answer.body)
            atoms.extend(page)
        return atoms

    async def process_names(self, process_ids: Sequence[str]) -> dict[str, str]:
        """Names of processes (a listener id is its process id), 100 ids per Process/bulk call."""
        names: dict[str, str] = {}
        unique = list(dict.fromkeys(process_ids))
        for start in range(0, len(unique), 100):
            chunk = unique[start : start + 100]
            answer = await self._request(
                "POST",
                "Process/bulk",
                OP_PROCESS,
                json_body={"type": "GET", "request": [{"id": pid} for pid in chunk]},
                priority=PRIORITY_BACKGROUND,
            )
            names.update(parse_process_bulk(answer.body))
        return names
