"""The simulator itself: the world served over HTTP, and how to run it.

It ties the parts together: the world (world.py) with one seeded generator and one injectable
clock, the request pipeline every Boomi call goes through (rate limit, Basic auth, faults, the
handler from api.py, rendering as JSON or XML), the control API (control.py), ``serve`` and
``describe``. The protocol it speaks is written down in docs/boomi-api.md; the awkward parts a
client must survive are there on purpose: XML unless JSON is asked for, 204 for consumed or
expired tokens, 410 for unknown ones, and a per-account rate limit answering 503. By default it
answers as Boomi's published API describes; the variants a client must also survive (in-progress
answers with HTTP 200, an empty result or AsyncOperationStatus rows, a lying first GET, 410 and
504 for a runtime, the other two error-body forms) are faults (faults.py) that are off.

Time that matters to the protocol (result delay, token lifetime, restart delay, rate-limit
window) comes from the injectable clock, so a fake clock drives everything without sleeping.
Every API request is entered in the request log (requestlog.py) on arrival, stamped by that
clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import shlex
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from .api import Answer, BoomiApi, Handler, error, reshape_error
from .control import CONTROL_PREFIX, ControlApi
from .faults import NO_FAULTS, FaultDraw, Faults, draw_faults
from .requestlog import LoggedRequest, RequestLog
from .wire import BadRequest, parse_basic_auth, render_xml, wants_json
from .world import LOCKOUT_AFTER, SimAccount, World

API_PREFIX: Final = "/api/rest/v1"
ACCESS_DENIED: Final = "Access denied due to insufficient permissions."
OUTAGE: Final = "The gateway timed out waiting for the Boomi platform."
# The 503 body of Boomi's published API, word for word.
RATE_LIMITED: Final = (
    "The Boomi server is currently unavailable or your account's rate limits have been"
    " exceeded. Retry later."
)
# docs/boomi-api.md: a 504 on a container's call means Boomi cannot reach the runtime.
RUNTIME_UNREACHABLE: Final = "Gateway Timeout: the platform cannot reach the Runtime."
# What a proxy that cut the connection mid-body would leave: valid UTF-8, invalid JSON.
_TRUNCATED_JSON: Final = '{"@type": "AsyncOperationResult", "result": [{"@type": "ListenerSta'


class Simulator(World):
    """The simulated Boomi platform: accounts, their world, and the aiohttp app serving it."""

    def __init__(
        self,
        *,
        seed: int = 0,
        result_delay_seconds: float = 1.0,
        restart_delay_seconds: float = 2.0,
        token_ttl_seconds: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
        lockout_after: int = LOCKOUT_AFTER,
    ) -> None:
        rng = random.Random(seed)
        super().__init__(
            rng=rng,
            clock=clock,
            restart_delay_seconds=restart_delay_seconds,
            lockout_after=lockout_after,
        )
        self._api = BoomiApi(
            self,
            rng=rng,
            clock=clock,
            result_delay_seconds=result_delay_seconds,
            token_ttl_seconds=token_ttl_seconds,
        )
        self._faults = Faults()
        self._retry_after_left = 0
        self._arrivals: dict[str, deque[float]] = {}
        self.request_counts: dict[str, int] = {}
        self.request_log = RequestLog()
        self.throttled = 0

    @property
    def result_delay_seconds(self) -> float:
        """How long a ListenerStatus query takes to settle."""
        return self._api.result_delay_seconds

    @property
    def token_ttl_seconds(self) -> float:
        """How long a ListenerStatus token stays valid."""
        return self._api.token_ttl_seconds

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults in force; ``Faults()`` clears them."""
        self._faults = faults
        self._retry_after_left = (
            faults.long_retry_after_answers if faults.long_retry_after_status else 0
        )

    def route_names(self) -> frozenset[str]:
        """The names of the API's routes, as request_counts and denied_routes use them."""
        return frozenset(name for _, _, name, _ in self._api.routes())

    def reset_counters(self) -> None:
        """Zero request_counts and throttled, and empty the change log."""
        self.request_counts.clear()
        self.throttled = 0
        self.change_log.clear()

    @classmethod
    def with_fleet(
        cls,
        *,
        account_id: str = "demo-account",
        containers: int = 3,
        listeners_per_container: int = 4,
        unattached_containers: int = 0,
        seed: int = 0,
        rate_limit_rps: float = 10.0,
        result_delay_seconds: float = 1.0,
        restart_delay_seconds: float = 2.0,
        token_ttl_seconds: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
        username: str = "demo@example.com",
        password: str = "demo-password",
        api_token: str = "demo-api-token",
        lockout_after: int = LOCKOUT_AFTER,
    ) -> Simulator:
        """A simulator with one account and a realistic, deterministic fleet (see add_fleet)."""
        sim = cls(
            seed=seed,
            result_delay_seconds=result_delay_seconds,
            restart_delay_seconds=restart_delay_seconds,
            token_ttl_seconds=token_ttl_seconds,
            clock=clock,
            lockout_after=lockout_after,
        )
        sim.add_account(
            account_id,
            username=username,
            password=password,
            api_token=api_token,
            rate_limit_rps=rate_limit_rps,
        )
        sim.add_fleet(
            account_id,
            containers=containers,
            listeners_per_container=listeners_per_container,
            unattached_containers=unattached_containers,
        )
        return sim

    def state(self) -> dict[str, object]:
        """The whole state as JSON-ready data (what GET /__simulator/state answers)."""
        return {
            "accounts": self.accounts_json(),
            "users": {name: user.to_json() for name, user in self.users.items()},
            "change_log": [dict(entry) for entry in self.change_log],
            "request_counts": dict(self.request_counts),
            "throttled": self.throttled,
            "faults": dataclasses.asdict(self._faults),
        }

    # -- the aiohttp application -------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application: the Boomi API and the control API."""
        app = web.Application()
        api = f"{API_PREFIX}/{{accountId}}"
        for method, path, route_name, handler in self._api.routes():
            app.router.add_route(method, api + path, self._api_endpoint(route_name, handler))
        app.add_subapp(CONTROL_PREFIX, ControlApi(self).app())
        return app

    def _api_endpoint(
        self, route_name: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            logged = self.request_log.arrived(
                self._clock(), request.match_info["accountId"], request.method, route_name
            )
            answer, draw = await self._answer(request, route_name, handler, logged)
            if answer is None:
                self._count(request.method, route_name, "dropped")
                logged.outcome = "dropped"
                # A network drop: the client sees the connection close without a status line.
                # aiohttp then fails to write the response below and ignores it quietly.
                if request.transport is not None:
                    request.transport.close()
                return web.Response()
            self._count(request.method, route_name, str(answer.status))
            logged.outcome = str(answer.status)
            response = self._render(request, answer, draw)
            if draw.huge and response.content_type == "application/json":
                return await self._padded(request, response)
            return response

        return endpoint

    async def _answer(
        self, request: web.Request, route_name: str, handler: Handler, logged: LoggedRequest
    ) -> tuple[Answer | None, FaultDraw]:
        """Auth, rate limit and faults around one API handler; None means drop the connection.

        Also returns the faults drawn, for those applied when the answer is rendered.
        """
        if self._faults.outage_seconds is not None:
            # Nothing reaches Boomi: no rate limit, no sign-in, only a gateway's slow 504.
            await asyncio.sleep(self._faults.outage_seconds)
            return error(504, OUTAGE), NO_FAULTS
        account = self._accounts.get(request.match_info["accountId"])
        # The rate limit counts every request that reaches an account, authenticated or not,
        # as the account's budget is shared with everyone using it.
        if account is not None and not self._admit(account):
            return self._throttled_answer(), NO_FAULTS
        credentials = parse_basic_auth(request.headers.get("Authorization", ""))
        if credentials is None:
            return error(401, "Authentication required: send HTTP Basic credentials."), NO_FAULTS
        if account is None:
            return error(403, ACCESS_DENIED), NO_FAULTS
        user = self.sign_in(account, *credentials)
        if user is None or route_name in user.denied_routes:
            return error(403, ACCESS_DENIED), NO_FAULTS
        body = await request.read()
        logged.container_id = self._api.container_of(route_name, account, body, request)
        draw = draw_faults(self._faults, self._rng, route_name, lambda: logged.container_id)
        answer = await self._faulted(request, account, body, draw, handler)
        return (None if answer is None else reshape_error(answer, draw.error_body)), draw

    async def _faulted(
        self,
        request: web.Request,
        account: SimAccount,
        body: bytes,
        draw: FaultDraw,
        handler: Handler,
    ) -> Answer | None:
        """The drawn faults, then the handler; None means drop the connection."""
        if draw.drop:
            return None
        failure = self._failure(draw)
        if failure is not None:
            if self._faults.error_latency_seconds > 0:
                await asyncio.sleep(self._faults.error_latency_seconds)
            return failure
        if draw.malformed:
            return Answer(200, raw_json=_TRUNCATED_JSON)
        if draw.empty:
            return Answer(200)
        if draw.redirect:
            return Answer(302, location=self._faults.redirect_url)
        if draw.delay_seconds > 0:
            await asyncio.sleep(draw.delay_seconds)
        try:
            answer = handler(request, account, body, draw)
        except BadRequest as exc:
            answer = error(400, str(exc))
        return dataclasses.replace(answer, force_xml=draw.xml)

    def _failure(self, draw: FaultDraw) -> Answer | None:
        """The 5xx or 503 the faults put in place of the answer, if any."""
        if draw.targeted and self._retry_after_left > 0:
            self._retry_after_left -= 1
            status = self._faults.long_retry_after_status or 503
            answer = self._throttled_answer() if status == 503 else error(status, "Bad gateway.")
            return dataclasses.replace(answer, retry_after=self._faults.long_retry_after_seconds)
        if draw.throttle:
            return self._throttled_answer()
        if draw.error_status is not None:
            return error(draw.error_status, "Internal error; please retry later.")
        if draw.runtime_unreachable:
            return error(504, RUNTIME_UNREACHABLE)
        return None

    def _render(
        self, request: web.Request, answer: Answer, draw: FaultDraw = NO_FAULTS
    ) -> web.Response:
        headers: dict[str, str] = {}
        retry_after = answer.retry_after
        if retry_after is None and answer.status == 503:
            retry_after = self._faults.retry_after_seconds
        if retry_after is not None:
            # Fractional seconds are not HTTP, but let tests retry fast; clients parse floats.
            headers["Retry-After"] = f"{retry_after:g}"
        if answer.location is not None:
            headers["Location"] = answer.location
        if answer.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="Boomi Platform API"'
        if answer.raw_json is not None:
            return web.Response(
                status=answer.status,
                text=answer.raw_json,
                content_type="application/json",
                headers=headers,
            )
        if answer.body is None:
            return web.Response(status=answer.status, headers=headers)
        if wants_json(request.headers.get("Accept", "")) and not answer.force_xml:
            body = _with_surrogates(answer.body) if draw.surrogates else answer.body
            text = json.dumps(body)
            return web.Response(
                status=answer.status,
                text=text,
                content_type="application/json",
                headers=headers,
            )
        return web.Response(
            status=answer.status,
            text=render_xml(answer.body),
            content_type="application/xml",
            headers=headers,
        )

    async def _padded(self, request: web.Request, response: web.Response) -> web.StreamResponse:
        """The answer followed by whitespace up to huge_bytes: still valid JSON, only too big.

        Streamed with its Content-Length, so that neither side need hold it, and abandoned
        when the client stops reading.
        """
        body = response.body if isinstance(response.body, bytes) else b""
        total = max(len(body), self._faults.huge_bytes)
        stream = web.StreamResponse(status=response.status)
        stream.content_type = response.content_type
        stream.content_length = total
        try:
            # The client may be gone already (its timeout ran out during a slow fault).
            await stream.prepare(request)
            await stream.write(body)
            left = total - len(body)
            padding = b" " * min(left, 2**20)
            while left > 0:
                await stream.write(padding[:left])
                left -= len(padding)
            await stream.write_eof()
        except ConnectionError:
            pass  # the client hung up, as a bounded one does, or had already
        return stream

    def _count(self, method: str, route_name: str, outcome: str) -> None:
        key = f"{method} {route_name} {outcome}"
        self.request_counts[key] = self.request_counts.get(key, 0) + 1

    def _throttled_answer(self) -> Answer:
        self.throttled += 1
        return error(503, RATE_LIMITED)

    def _admit(self, account: SimAccount) -> bool:
        """Sliding one-second window over accepted arrivals; rejected ones do not count."""
        now = self._clock()
        arrivals = self._arrivals.setdefault(account.account_id, deque())
        while arrivals and arrivals[0] <= now - 1.0:
            arrivals.popleft()
        if len(arrivals) >= account.rate_limit_rps:
            return False
        arrivals.append(now)
        return True


def _with_surrogates(node: object) -> object:
    """A copy of an answer body whose "name" strings end in half an emoji (a lone surrogate)."""
    if isinstance(node, dict):
        return {
            key: value + "\ud83d"
            if key == "name" and isinstance(value, str)
            else _with_surrogates(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_with_surrogates(item) for item in node]
    return node


async def serve(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[web.AppRunner, str]:
    """Start the simulator on host:port (0: any free port); return the runner and API base URL.

    With ``ssl_context`` (a server context holding the certificate) it speaks HTTPS only, and the
    URL says https. The caller stops it with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound_port = runner.addresses[0][1]
    # A wildcard address is not somewhere a client can connect to; loopback is.
    url_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    scheme = "https" if ssl_context is not None else "http"
    return runner, f"{scheme}://{url_host}:{bound_port}{API_PREFIX}"


def describe(sim: Simulator, base_url: str) -> str:
    """What ``boomi-listener-exporter simulate`` prints: where it is and how to log in.

    The credentials are the simulator's demo values, not secrets, so printing them is the point.
    """
    control_url = base_url.removesuffix(API_PREFIX) + CONTROL_PREFIX
    lines = [
        "Boomi Platform API simulator",
        f"  API base URL:  {base_url}",
        f"  Control API:   {control_url}/state (no auth)",
    ]
    for account in sim.accounts.values():
        account_url = f"{base_url}/{account.account_id}"
        containers = list(account.containers.values())
        lines += [
            "",
            f"Account {account.account_id}",
            f"  URL:        {account_url}",
            f"  User:       {account.username}   password: {account.password}",
            f"  API token:  user BOOMI_TOKEN.{account.username}   token: {account.api_token}",
            f"  Fleet:      {len(containers)} containers, {len(account.listeners)} listeners",
            f"  Rate limit: {account.rate_limit_rps:g} requests per second",
        ]
        shown = 10
        for container in containers[:shown]:
            count = sum(
                1
                for lst in account.listeners.values()
                if lst.container_id == container.container_id
            )
            environment = account.environments.get(
                account.attachments.get(container.container_id, "")
            )
            lines.append(
                f"    {container.container_id}  {container.name} ({container.type}, "
                f"{container.status}, {environment.name if environment else 'no environment'}, "
                f"{count} listeners)"
            )
        if len(containers) > shown:
            lines.append(f"    ... and {len(containers) - shown} more")
        example_id = containers[0].container_id if containers else "<containerId>"
        query = json.dumps(
            {
                "QueryFilter": {
                    "expression": {
                        "argument": [example_id],
                        "operator": "EQUALS",
                        "property": "containerId",
                    }
                }
            }
        )
        lines += [
            "  Try:",
            "    curl -u "
            + shlex.quote(f"{account.username}:{account.password}")
            + " -H 'Accept: application/json' -H 'Content-Type: application/json' \\",
            f"      -d {shlex.quote(query)} \\",
            f"      {account_url}/async/ListenerStatus/query",
            f"    then GET {account_url}/async/ListenerStatus/response/<token>",
            "    until the body's responseStatusCode is 200.",
        ]
    lines += ["", "These are demo credentials of the simulator, not secrets."]
    return "\n".join(lines)
