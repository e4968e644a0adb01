"""A faithful fake of the Boomi Platform API, for the demo, the tests and the benchmarks.

It serves the parts of the API described in boomi-api.md under ``/api/rest/v1/{accountId}``:
the asynchronous ListenerStatus query, changeListenerStatus with delayed effects, Atom and
Process queries with paging, and Process/bulk. It behaves as written there, including the
awkward parts a client must survive: XML unless JSON is asked for, unsettled answers with
HTTP 200 or 202, the settled-empty 202 quirk, 204 for consumed or expired tokens, 410 for
unknown ones, and a per-account rate limit answering 503. Injectable faults (errors,
throttling, garbage, latency, dropped connections) come from a seeded random generator, so a
run is reproducible for a given seed and request order.

A control API under ``/__simulator/`` (JSON, no auth) lets the demo and the tests change the
world: listener and container status, faults, counters.

Time that matters to the protocol (result delay, token lifetime, restart delay, rate-limit
window) comes from an injectable clock, and delayed effects are applied lazily when state is
read, so a fake clock drives everything without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import random
import shlex
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

__all__ = [
    "BadRequest",
    "Faults",
    "SimAccount",
    "SimContainer",
    "SimListener",
    "Simulator",
    "describe",
    "parse_basic_auth",
    "parse_listener_status_filter",
    "parse_query_filter",
    "render_xml",
    "serve",
]

API_PREFIX: Final = "/api/rest/v1"
CONTROL_PREFIX: Final = "/__simulator"
PAGE_SIZE: Final = 100
BULK_LIMIT: Final = 100
RUNTIME_VERSION: Final = "25.01.1"
ACCESS_DENIED: Final = "Access denied due to insufficient permissions."

LISTENER_STATUS_PROPERTIES: Final = frozenset({"containerId", "listenerId"})
# Atom filter property -> SimContainer attribute. boomi-api.md also lists "capabilities",
# which the simulator does not model; asking for it is a 400 like any other unknown property.
ATOM_PROPERTIES: Final = {
    "id": "container_id",
    "name": "name",
    "status": "status",
    "type": "type",
    "hostname": "host_name",
}
PROCESS_PROPERTIES: Final = frozenset({"id", "name"})

ACTIONS: Final = ("restart", "restart_all", "pause", "pause_all", "resume", "resume_all")

_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
_BNS_NAMESPACE: Final = "http://api.platform.boomi.com/"
_XSI_NAMESPACE: Final = "http://www.w3.org/2001/XMLSchema-instance"
# What a proxy that cut the connection mid-body would leave: valid UTF-8, invalid JSON.
_TRUNCATED_JSON: Final = '{"@type": "AsyncOperationResult", "result": [{"@type": "ListenerSta'


# --------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------


@dataclass
class SimListener:
    """A listener process deployed on one container; its id is also its process id."""

    listener_id: str
    container_id: str
    # The raw value served: normally listening, paused or errored, but anything goes, so that
    # tests can check how clients cope with values such as "UNSUPPORTED".
    status: str
    connector_type: str | None = "wss"  # None: the key is omitted from answers
    process_name: str = ""


@dataclass
class SimContainer:
    """A runtime (Atom, Molecule or Cloud) that hosts listeners."""

    container_id: str
    name: str
    type: str = "MOLECULE"  # ATOM | MOLECULE | CLOUD
    status: str = "ONLINE"  # ONLINE | OFFLINE | WARNING | UNKNOWN
    host_name: str = ""


@dataclass
class SimAccount:
    """A Boomi account: credentials, rate limit, and the containers and listeners it owns."""

    account_id: str
    # The plain user; "BOOMI_TOKEN.<username>" with api_token as password is accepted too.
    username: str
    password: str
    api_token: str
    rate_limit_rps: float = 10.0
    containers: dict[str, SimContainer] = field(default_factory=dict)
    listeners: dict[str, SimListener] = field(default_factory=dict)  # ids unique per account

    def accepts(self, username: str, password: str) -> bool:
        """Whether these Basic credentials belong to this account."""
        if username == self.username:
            return password == self.password
        return username == f"BOOMI_TOKEN.{self.username}" and password == self.api_token


@dataclass
class Faults:
    """Faults to inject into API answers; every rate is a probability from 0 to 1.

    Draws come from the simulator's seeded generator, once per request and fault kind with a
    non-zero rate, in a fixed order, so a run is reproducible for a seed and request order.
    Dropped, throttled, 5xx and malformed answers replace the request: it is not handled.
    """

    error_5xx_rate: float = 0.0  # 500 or 502 with an Error body
    throttle_rate: float = 0.0  # 503 as if over the rate limit (counted as throttled)
    malformed_rate: float = 0.0  # 200 with a truncated, invalid JSON body
    xml_rate: float = 0.0  # XML although JSON was asked for
    slow_rate: float = 0.0  # delay the answer by slow_seconds (real time)
    slow_seconds: float = 0.0
    never_settle_rate: float = 0.0  # a new ListenerStatus token that never settles
    drop_rate: float = 0.0  # close the connection without an answer
    gone_rate: float = 0.0  # a result GET answers 204 or 410 although the result exists
    retry_after_seconds: float | None = None  # if set, every 503 carries Retry-After
    # None: every API request; otherwise only ListenerStatus query/result and
    # changeListenerStatus for these containers.
    container_ids: list[str] | None = None

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            if spec.name.endswith("_rate"):
                rate = getattr(self, spec.name)
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"{spec.name} must be between 0 and 1, not {rate!r}")
        if self.slow_seconds < 0:
            raise ValueError(f"slow_seconds must not be negative, not {self.slow_seconds!r}")
        if self.retry_after_seconds is not None and self.retry_after_seconds < 0:
            raise ValueError(
                f"retry_after_seconds must not be negative, not {self.retry_after_seconds!r}"
            )

    @classmethod
    def from_json(cls, document: object) -> Faults:
        """Build Faults from a control-API body; raise ValueError naming the bad field."""
        if not isinstance(document, dict):
            raise ValueError("the faults must be a JSON object")
        known = {spec.name for spec in dataclasses.fields(cls)}
        unknown = sorted(set(document) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        for name, value in document.items():
            if name == "container_ids":
                if value is not None and not (
                    isinstance(value, list) and all(isinstance(item, str) for item in value)
                ):
                    raise ValueError("container_ids must be a list of strings or null")
            elif name == "retry_after_seconds" and value is None:
                continue
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, not {value!r}")
        return cls(**document)


# --------------------------------------------------------------------------------------------
# Pure helpers: filters and XML
# --------------------------------------------------------------------------------------------


class BadRequest(ValueError):
    """A request body the API rejects with 400; the message is what the client is told."""


def decode_json_body(body: bytes) -> object:
    """The JSON document in a request body, or None for an empty body."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc


def parse_query_filter(document: object, properties: Collection[str]) -> list[tuple[str, str]]:
    """The EQUALS conditions of a ``{"QueryFilter": {"expression": ...}}`` body.

    Every returned (property, value) pair must hold. Supports EQUALS and "and" with
    ``nestedExpression``, nested to any depth, which is all this project's client sends.
    No body, no QueryFilter or no expression means no condition. Unknown keys are ignored
    (the official SDK sends "@type"); an unknown property or operator raises BadRequest.
    """
    if document is None:
        return []
    if not isinstance(document, dict):
        raise BadRequest("The request body must be a JSON object.")
    query_filter = document.get("QueryFilter")
    if query_filter is None:
        return []
    if not isinstance(query_filter, dict):
        raise BadRequest("QueryFilter must be an object.")
    expression = query_filter.get("expression")
    if expression is None:
        return []
    return _equals_conditions(expression, properties)


def _equals_conditions(expression: object, properties: Collection[str]) -> list[tuple[str, str]]:
    if not isinstance(expression, dict):
        raise BadRequest("A filter expression must be an object.")
    operator = expression.get("operator")
    if not isinstance(operator, str):
        raise BadRequest("A filter expression needs an operator.")
    if operator.lower() == "and":
        nested = expression.get("nestedExpression")
        # A lone nested expression sometimes arrives as an object rather than a list when
        # clients convert from XML; both mean the same.
        if isinstance(nested, dict):
            nested = [nested]
        if not isinstance(nested, list) or not nested:
            raise BadRequest("An 'and' expression needs a non-empty nestedExpression list.")
        return [condition for item in nested for condition in _equals_conditions(item, properties)]
    if operator.upper() != "EQUALS":
        raise BadRequest(f"Operator {operator!r} is not supported here; use EQUALS or and.")
    name = expression.get("property")
    if not isinstance(name, str) or name not in properties:
        expected = ", ".join(sorted(properties))
        raise BadRequest(f"Unknown filter property {name!r}; expected one of: {expected}.")
    argument = expression.get("argument")
    if not (isinstance(argument, list) and len(argument) == 1 and isinstance(argument[0], str)):
        raise BadRequest(f"EQUALS on {name} takes exactly one string argument.")
    return [(name, argument[0])]


def parse_listener_status_filter(document: object) -> tuple[str, str | None]:
    """The (containerId, listenerId or None) a ListenerStatus query asks for."""
    conditions = parse_query_filter(document, LISTENER_STATUS_PROPERTIES)
    container_ids = [value for name, value in conditions if name == "containerId"]
    listener_ids = [value for name, value in conditions if name == "listenerId"]
    if len(container_ids) != 1:
        raise BadRequest("A ListenerStatus query needs exactly one containerId EQUALS condition.")
    if len(listener_ids) > 1:
        raise BadRequest("A ListenerStatus query takes at most one listenerId condition.")
    return container_ids[0], listener_ids[0] if listener_ids else None


def parse_basic_auth(header: str) -> tuple[str, str] | None:
    """The (username, password) of an HTTP Basic Authorization header, or None if it is not one."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def _matches(conditions: Iterable[tuple[str, str]], fields: Mapping[str, str]) -> bool:
    return all(fields[name] == value for name, value in conditions)


def render_xml(document: Mapping[str, object]) -> str:
    """Render an API object the way Boomi's XML answers look.

    The root element is ``bns:<@type>``; scalar fields become attributes, objects and list
    items become child elements named after their key, typed with ``xsi:type``.
    """
    root_type = document.get("@type")
    tag = f"bns:{root_type if isinstance(root_type, str) else 'Result'}"
    namespaces = f' xmlns:bns="{_BNS_NAMESPACE}" xmlns:xsi="{_XSI_NAMESPACE}"'
    return _XML_DECLARATION + _xml_element(tag, document, namespaces)


def _xml_element(tag: str, document: Mapping[str, object], extra_attributes: str = "") -> str:
    attributes = [extra_attributes] if extra_attributes else []
    children: list[str] = []
    for key, value in document.items():
        if key == "@type" or value is None:
            continue
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list | dict):
            children.extend(_xml_child(key, item) for item in items)
        else:
            attributes.append(f" {key}={quoteattr(_xml_scalar(value))}")
    opening = f"<{tag}{''.join(attributes)}"
    if not children:
        return opening + "/>"
    return f"{opening}>{''.join(children)}</{tag}>"


def _xml_child(key: str, value: object) -> str:
    tag = f"bns:{key}"
    if isinstance(value, dict):
        typed = value.get("@type")
        type_attribute = f' xsi:type="bns:{escape(typed)}"' if isinstance(typed, str) else ""
        return _xml_element(tag, value, type_attribute)
    return f"<{tag}>{escape(_xml_scalar(value))}</{tag}>"


def _xml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --------------------------------------------------------------------------------------------
# Internal records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """An API answer before rendering; body None means an empty body."""

    status: int
    body: Mapping[str, object] | None = None
    raw_json: str | None = None  # served verbatim as application/json (malformed fault)
    force_xml: bool = False


@dataclass(frozen=True)
class _FaultDraw:
    """What the fault generator decided for one request."""

    drop: bool = False
    throttle: bool = False
    error_status: int | None = None
    malformed: bool = False
    delay_seconds: float = 0.0
    xml: bool = False
    never_settle: bool = False
    gone_status: int | None = None


_NO_FAULTS: Final = _FaultDraw()


@dataclass
class _ListenerStatusToken:
    account_id: str
    container_id: str
    listener_id: str | None
    issued_at: float
    never_settles: bool
    consumed: bool = False


@dataclass(frozen=True)
class _QueryPage:
    """A page of a paged query, reachable by its queryToken; reusable until pruned."""

    kind: str  # "Atom" or "Process": a token only works on its own queryMore route
    account_id: str
    items: list[dict[str, object]]
    total: int
    next_token: str | None
    issued_at: float


@dataclass(frozen=True)
class _PendingEffect:
    due: float
    account_id: str
    container_id: str
    listener_id: str | None  # None: every listener of the container (the *_all actions)
    action: str


_Handler = Callable[[web.Request, SimAccount, bytes, _FaultDraw], _Answer]


def _error(status: int, message: str) -> _Answer:
    return _Answer(status, {"@type": "Error", "message": message})


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "").lower()


def _listener_json(listener: SimListener) -> dict[str, object]:
    return dataclasses.asdict(listener)


def _container_json(container: SimContainer) -> dict[str, object]:
    return dataclasses.asdict(container)


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class Simulator:
    """The simulated Boomi platform: accounts, their world, and the aiohttp app serving it."""

    def __init__(
        self,
        *,
        seed: int = 0,
        result_delay_seconds: float = 1.0,
        restart_delay_seconds: float = 2.0,
        token_ttl_seconds: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.result_delay_seconds = result_delay_seconds
        self.restart_delay_seconds = restart_delay_seconds
        self.token_ttl_seconds = token_ttl_seconds
        self._clock = clock
        self._rng = random.Random(seed)
        self._accounts: dict[str, SimAccount] = {}
        self._faults = Faults()
        self._arrivals: dict[str, deque[float]] = {}
        self._tokens: dict[str, _ListenerStatusToken] = {}
        self._query_pages: dict[str, _QueryPage] = {}
        self._pending: list[_PendingEffect] = []
        self._next_prune = clock() + token_ttl_seconds
        self.change_log: list[dict[str, object]] = []
        self.request_counts: dict[str, int] = {}
        self.throttled = 0

    # -- building the world ------------------------------------------------------------------

    @property
    def accounts(self) -> dict[str, SimAccount]:
        """Every account by id, with delayed listener effects that are due applied."""
        self._apply_due_effects()
        return self._accounts

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def add_account(
        self,
        account_id: str,
        *,
        username: str = "demo@example.com",
        password: str = "demo-password",
        api_token: str = "demo-api-token",
        rate_limit_rps: float = 10.0,
    ) -> SimAccount:
        """Add an empty account; raise ValueError if the id is taken or the rate is not positive."""
        if account_id in self._accounts:
            raise ValueError(f"account {account_id} already exists")
        if rate_limit_rps <= 0:
            raise ValueError(f"rate_limit_rps must be positive, not {rate_limit_rps!r}")
        account = SimAccount(account_id, username, password, api_token, rate_limit_rps)
        self._accounts[account_id] = account
        self._arrivals[account_id] = deque()
        return account

    def add_container(
        self,
        account_id: str,
        container_id: str,
        name: str,
        *,
        type: str = "MOLECULE",
        status: str = "ONLINE",
        host_name: str = "",
    ) -> SimContainer:
        """Add a container to an account; KeyError for an unknown account."""
        account = self._account(account_id)
        if container_id in account.containers:
            raise ValueError(f"container {container_id} already exists in account {account_id}")
        container = SimContainer(container_id, name, type, status, host_name)
        account.containers[container_id] = container
        return container

    def add_listener(
        self,
        account_id: str,
        container_id: str,
        listener_id: str,
        *,
        status: str = "listening",
        connector_type: str | None = "wss",
        process_name: str = "",
    ) -> SimListener:
        """Deploy a listener on a container; listener ids are unique per account."""
        account = self._account(account_id)
        if container_id not in account.containers:
            raise KeyError(f"container {container_id} is not in account {account_id}")
        if listener_id in account.listeners:
            raise ValueError(f"listener {listener_id} already exists in account {account_id}")
        listener = SimListener(listener_id, container_id, status, connector_type, process_name)
        account.listeners[listener_id] = listener
        return listener

    def remove_listener(self, account_id: str, listener_id: str) -> None:
        """Undeploy a listener; it vanishes from the next results."""
        account = self._account(account_id)
        if listener_id not in account.listeners:
            raise KeyError(f"listener {listener_id} is not in account {account_id}")
        del account.listeners[listener_id]

    def set_status(self, account_id: str, listener_id: str, status: str) -> None:
        """Set a listener's status now (effects already due are applied first)."""
        self._apply_due_effects()
        account = self._account(account_id)
        if listener_id not in account.listeners:
            raise KeyError(f"listener {listener_id} is not in account {account_id}")
        account.listeners[listener_id].status = status

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults in force; ``Faults()`` clears them."""
        self._faults = faults

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
        seed: int = 0,
        rate_limit_rps: float = 10.0,
        result_delay_seconds: float = 1.0,
        restart_delay_seconds: float = 2.0,
        token_ttl_seconds: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
        username: str = "demo@example.com",
        password: str = "demo-password",
        api_token: str = "demo-api-token",
    ) -> Simulator:
        """A simulator with one account and a realistic, deterministic fleet.

        Ids are UUIDs from the seeded generator; containers are named like "prod-molecule-1";
        listeners cycle through WSS, Atom Queue, JMS, a connector with a long generated id and
        one without a connector type, and are mostly listening.
        """
        sim = cls(
            seed=seed,
            result_delay_seconds=result_delay_seconds,
            restart_delay_seconds=restart_delay_seconds,
            token_ttl_seconds=token_ttl_seconds,
            clock=clock,
        )
        sim.add_account(
            account_id,
            username=username,
            password=password,
            api_token=api_token,
            rate_limit_rps=rate_limit_rps,
        )
        # A generated connector id like the ones newer Boomi connectors carry.
        generated_connector = f"officialboomi-X{sim._rng.randrange(1000, 9999)}C-kafka-prod"
        flavours: list[tuple[str | None, str]] = [
            ("wss", "Orders WSS Listener"),
            ("atomqueue", "Invoice Queue Listener"),
            ("jms", "Shipment JMS Listener"),
            (generated_connector, "Customer Events Kafka Listener"),
            (None, "Legacy EDI Listener"),
        ]
        runtimes = [
            ("prod", "molecule", "MOLECULE"),
            ("prod", "atom", "ATOM"),
            ("test", "molecule", "MOLECULE"),
            ("prod", "cloud", "CLOUD"),
        ]
        numbers: dict[str, int] = {}
        for index in range(containers):
            environment, kind, runtime_type = runtimes[index % len(runtimes)]
            prefix = f"{environment}-{kind}"
            numbers[prefix] = numbers.get(prefix, 0) + 1
            name = f"{prefix}-{numbers[prefix]}"
            container = sim.add_container(
                account_id,
                sim._uuid(),
                name,
                type=runtime_type,
                host_name=f"{name}.boomi.example.internal",
            )
            for number in range(listeners_per_container):
                connector_type, process_name = flavours[number % len(flavours)]
                if number >= len(flavours):
                    process_name = f"{process_name} {number // len(flavours) + 1}"
                status = sim._rng.choices(["listening", "errored", "paused"], [85, 10, 5])[0]
                sim.add_listener(
                    account_id,
                    container.container_id,
                    sim._uuid(),
                    status=status,
                    connector_type=connector_type,
                    process_name=process_name,
                )
        return sim

    # -- reading the world -------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """The whole state as JSON-ready data (what GET /__simulator/state answers)."""
        self._apply_due_effects()
        return {
            "accounts": {
                account.account_id: {
                    "rate_limit_rps": account.rate_limit_rps,
                    "containers": [_container_json(c) for c in account.containers.values()],
                    "listeners": [_listener_json(lst) for lst in account.listeners.values()],
                }
                for account in self._accounts.values()
            },
            "change_log": [dict(entry) for entry in self.change_log],
            "request_counts": dict(self.request_counts),
            "throttled": self.throttled,
            "faults": dataclasses.asdict(self._faults),
        }

    # -- background behaviour for the demo ---------------------------------------------------

    async def flap(self, *, interval_seconds: float, probability: float) -> None:
        """Make the fleet misbehave now and then, until cancelled.

        Every interval, each listening listener fails with ``probability`` (errored, or more
        rarely paused); errored ones recover by themselves with the same probability, and
        paused ones with half of it (someone resumed them), so the demo always has work.
        """
        while True:
            await asyncio.sleep(interval_seconds)
            self._apply_due_effects()
            for account in self._accounts.values():
                for listener in account.listeners.values():
                    draw = self._rng.random()
                    if listener.status == "listening":
                        if draw < probability:
                            listener.status = "errored" if self._rng.random() < 0.8 else "paused"
                    elif listener.status in ("errored", "paused"):
                        recovery = probability if listener.status == "errored" else probability / 2
                        if draw < recovery:
                            listener.status = "listening"

    # -- the aiohttp application -------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application: the Boomi API and the control API."""
        app = web.Application()
        api = f"{API_PREFIX}/{{accountId}}"
        routes: list[tuple[str, str, str, _Handler]] = [
            ("POST", "/async/ListenerStatus/query", "listener_status_query", self._status_query),
            ("POST", "/ListenerStatus/query/async", "listener_status_query", self._status_query),
            (
                "GET",
                "/async/ListenerStatus/response/{token}",
                "listener_status_result",
                self._status_result,
            ),
            ("POST", "/changeListenerStatus", "change_listener_status", self._change_status),
            ("POST", "/Atom/query", "atom_query", self._atom_query),
            ("POST", "/Atom/queryMore", "atom_query_more", self._atom_query_more),
            ("POST", "/Process/query", "process_query", self._process_query),
            ("POST", "/Process/queryMore", "process_query_more", self._process_query_more),
            ("POST", "/Process/bulk", "process_bulk", self._process_bulk),
            # Anything else under an account answers 404 after the same rate limit and auth
            # as every call, so a client calling a wrong path still spends its budget.
            ("*", "/{tail:.*}", "unknown", self._unknown_route),
        ]
        for method, path, route_name, handler in routes:
            app.router.add_route(method, api + path, self._api_endpoint(route_name, handler))
        control = CONTROL_PREFIX
        app.router.add_get(f"{control}/state", self._control_state)
        app.router.add_put(f"{control}/listeners/{{listenerId}}", self._control_put_listener)
        app.router.add_post(f"{control}/listeners", self._control_add_listener)
        app.router.add_delete(f"{control}/listeners/{{listenerId}}", self._control_delete_listener)
        app.router.add_put(f"{control}/containers/{{containerId}}", self._control_put_container)
        app.router.add_post(f"{control}/faults", self._control_set_faults)
        app.router.add_delete(f"{control}/faults", self._control_clear_faults)
        app.router.add_post(f"{control}/reset-counters", self._control_reset_counters)
        return app

    def _api_endpoint(
        self, route_name: str, handler: _Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            answer = await self._answer(request, route_name, handler)
            if answer is None:
                self._count(request.method, route_name, "dropped")
                # A network drop: the client sees the connection close without a status line.
                # aiohttp then fails to write the response below and ignores it quietly.
                if request.transport is not None:
                    request.transport.close()
                return web.Response()
            self._count(request.method, route_name, str(answer.status))
            return self._render(request, answer)

        return endpoint

    async def _answer(
        self, request: web.Request, route_name: str, handler: _Handler
    ) -> _Answer | None:
        """Auth, rate limit and faults around one API handler; None means drop the connection."""
        account = self._accounts.get(request.match_info["accountId"])
        # The rate limit counts every request that reaches an account, authenticated or not,
        # as the account's budget is shared with everyone using it.
        if account is not None and not self._admit(account):
            return self._throttled_answer()
        credentials = parse_basic_auth(request.headers.get("Authorization", ""))
        if credentials is None:
            return _error(401, "Authentication required: send HTTP Basic credentials.")
        if account is None or not account.accepts(*credentials):
            return _error(403, ACCESS_DENIED)
        body = await request.read()
        draw = self._draw_faults(route_name, account, body, request)
        if draw.drop:
            return None
        if draw.throttle:
            return self._throttled_answer()
        if draw.error_status is not None:
            return _error(draw.error_status, "Internal error; please retry later.")
        if draw.malformed:
            return _Answer(200, raw_json=_TRUNCATED_JSON)
        if draw.delay_seconds > 0:
            await asyncio.sleep(draw.delay_seconds)
        try:
            answer = handler(request, account, body, draw)
        except BadRequest as exc:
            answer = _error(400, str(exc))
        return dataclasses.replace(answer, force_xml=draw.xml)

    def _render(self, request: web.Request, answer: _Answer) -> web.Response:
        headers: dict[str, str] = {}
        if answer.status == 503 and self._faults.retry_after_seconds is not None:
            # Fractional seconds are not HTTP, but let tests retry fast; clients parse floats.
            headers["Retry-After"] = f"{self._faults.retry_after_seconds:g}"
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
        if _wants_json(request) and not answer.force_xml:
            return web.Response(
                status=answer.status,
                text=json.dumps(answer.body),
                content_type="application/json",
                headers=headers,
            )
        return web.Response(
            status=answer.status,
            text=render_xml(answer.body),
            content_type="application/xml",
            headers=headers,
        )

    def _count(self, method: str, route_name: str, outcome: str) -> None:
        key = f"{method} {route_name} {outcome}"
        self.request_counts[key] = self.request_counts.get(key, 0) + 1

    def _throttled_answer(self) -> _Answer:
        self.throttled += 1
        return _error(503, "Rate limit exceeded: too many requests for this account.")

    def _admit(self, account: SimAccount) -> bool:
        """Sliding one-second window over accepted arrivals; rejected ones do not count."""
        now = self._clock()
        arrivals = self._arrivals[account.account_id]
        while arrivals and arrivals[0] <= now - 1.0:
            arrivals.popleft()
        if len(arrivals) >= account.rate_limit_rps:
            return False
        arrivals.append(now)
        return True

    def _draw_faults(
        self, route_name: str, account: SimAccount, body: bytes, request: web.Request
    ) -> _FaultDraw:
        faults = self._faults
        if faults.container_ids is not None:
            container_id = self._fault_container(route_name, account, body, request)
            if container_id is None or container_id not in faults.container_ids:
                return _NO_FAULTS
        rng = self._rng

        def happens(rate: float) -> bool:
            # No draw at all for a zero rate, so that configuring no faults leaves the
            # sequence of tokens and ids exactly as without fault support.
            return rate > 0 and rng.random() < rate

        drop = happens(faults.drop_rate)
        throttle = happens(faults.throttle_rate)
        error_status = None
        if happens(faults.error_5xx_rate):
            error_status = 500 if rng.random() < 0.5 else 502
        malformed = happens(faults.malformed_rate)
        delay_seconds = faults.slow_seconds if happens(faults.slow_rate) else 0.0
        xml = happens(faults.xml_rate)
        never_settle = route_name == "listener_status_query" and happens(faults.never_settle_rate)
        gone_status = None
        if route_name == "listener_status_result" and happens(faults.gone_rate):
            gone_status = 204 if rng.random() < 0.5 else 410
        return _FaultDraw(
            drop=drop,
            throttle=throttle,
            error_status=error_status,
            malformed=malformed,
            delay_seconds=delay_seconds,
            xml=xml,
            never_settle=never_settle,
            gone_status=gone_status,
        )

    def _fault_container(
        self, route_name: str, account: SimAccount, body: bytes, request: web.Request
    ) -> str | None:
        """The container a request is about, for faults limited to some containers."""
        try:
            if route_name == "listener_status_query":
                return parse_listener_status_filter(decode_json_body(body))[0]
            if route_name == "change_listener_status":
                document = decode_json_body(body)
                if isinstance(document, dict) and isinstance(document.get("containerId"), str):
                    return str(document["containerId"])
            if route_name == "listener_status_result":
                record = self._tokens.get(request.match_info["token"])
                if record is not None and record.account_id == account.account_id:
                    return record.container_id
        except BadRequest:
            pass  # a bad body is answered 400 by the handler, without faults
        return None

    # -- API handlers (synchronous: no interleaving while the world is read or changed) ------

    def _status_query(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        container_id, listener_id = parse_listener_status_filter(decode_json_body(body))
        # boomi-api.md leaves a query for a container the account does not have undefined:
        # an error, a settled empty result and one that never settles are all plausible. The
        # simulator answers with a token that settles empty after the usual delay, so clients
        # meet the settled-empty quirk here too and must not mistake it for a failure.
        now = self._clock()
        self._prune(now)
        token = f"ListenerStatus-{self._uuid()}"
        self._tokens[token] = _ListenerStatusToken(
            account.account_id, container_id, listener_id, now, draw.never_settle
        )
        return _Answer(
            200,
            {
                "@type": "AsyncOperationTokenResult",
                "asyncToken": {"@type": "AsyncToken", "token": token},
                "responseStatusCode": 202,
            },
        )

    def _status_result(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        record = self._tokens.get(request.match_info["token"])
        if record is None or record.account_id != account.account_id:
            return _error(410, "The async token is unknown or no longer valid.")
        if draw.gone_status == 204:
            return _Answer(204)
        if draw.gone_status == 410:
            return _error(410, "The async token is no longer valid.")
        now = self._clock()
        if record.consumed or now - record.issued_at >= self.token_ttl_seconds:
            return _Answer(204)
        container = account.containers.get(record.container_id)
        settled = (
            not record.never_settles
            and now - record.issued_at >= self.result_delay_seconds
            # A runtime that is offline never answers the platform's question.
            and (container is None or container.status != "OFFLINE")
        )
        if not settled:
            # Both HTTP statuses occur for an unsettled answer; clients must read the body.
            return _Answer(
                200 if self._rng.random() < 0.5 else 202,
                {
                    "@type": "AsyncOperationResult",
                    "result": [
                        {"@type": "AsyncOperationStatus", "message": "Connecting to runtime..."}
                    ],
                    "responseStatusCode": 202,
                },
            )
        self._apply_due_effects()
        record.consumed = True
        rows: list[dict[str, object]] = []
        for listener in account.listeners.values():
            if listener.container_id != record.container_id:
                continue
            if record.listener_id is not None and listener.listener_id != record.listener_id:
                continue
            row: dict[str, object] = {
                "@type": "ListenerStatus",
                "listenerId": listener.listener_id,
                "status": listener.status,
            }
            if listener.connector_type is not None:
                row["connectorType"] = listener.connector_type
            rows.append(row)
        if not rows:
            # The documented quirk: settled but empty comes back as 202 without rows.
            return _Answer(
                202,
                {"@type": "AsyncOperationResult", "numberOfResults": 0, "responseStatusCode": 202},
            )
        return _Answer(
            200,
            {
                "@type": "AsyncOperationResult",
                "result": rows,
                "numberOfResults": len(rows),
                "responseStatusCode": 200,
            },
        )

    def _change_status(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        document = decode_json_body(body)
        if not isinstance(document, dict):
            raise BadRequest("The request body must be a JSON object.")
        action = document.get("action")
        container_id = document.get("containerId")
        listener_id = document.get("listenerId")
        if not isinstance(action, str) or action not in ACTIONS:
            raise BadRequest(f"Unknown action {action!r}; expected one of {', '.join(ACTIONS)}.")
        if not isinstance(container_id, str) or not container_id:
            raise BadRequest("containerId is required.")
        if container_id not in account.containers:
            raise BadRequest(
                f"Container {container_id} does not exist in account {account.account_id}."
            )
        if action.endswith("_all"):
            if listener_id is not None:
                raise BadRequest(
                    f"The {action} action applies to every listener of the container; "
                    "omit listenerId."
                )
        else:
            if not isinstance(listener_id, str) or not listener_id:
                raise BadRequest(f"listenerId is required for the {action} action.")
            listener = account.listeners.get(listener_id)
            if listener is None:
                raise BadRequest(
                    f"Listener {listener_id} does not exist in account {account.account_id}."
                )
            if listener.container_id != container_id:
                raise BadRequest(
                    f"Listener {listener_id} is not deployed on container {container_id}."
                )
        self.change_log.append(
            {
                "time": time.time(),
                "account_id": account.account_id,
                "container_id": container_id,
                "listener_id": listener_id,
                "action": action,
            }
        )
        self._pending.append(
            _PendingEffect(
                self._clock() + self.restart_delay_seconds,
                account.account_id,
                container_id,
                listener_id,
                action.removesuffix("_all"),
            )
        )
        return _Answer(200)

    def _atom_query(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        conditions = parse_query_filter(decode_json_body(body), ATOM_PROPERTIES)
        atoms: list[dict[str, object]] = [
            {
                "@type": "Atom",
                "id": container.container_id,
                "name": container.name,
                "status": container.status,
                "type": container.type,
                "hostName": container.host_name,
                "currentVersion": RUNTIME_VERSION,
            }
            for container in account.containers.values()
            if _matches(
                conditions,
                {prop: getattr(container, attr) for prop, attr in ATOM_PROPERTIES.items()},
            )
        ]
        return self._first_page("Atom", account, atoms)

    def _atom_query_more(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        return self._next_page("Atom", account, body)

    def _process_query(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        conditions = parse_query_filter(decode_json_body(body), PROCESS_PROPERTIES)
        processes = [
            self._process_json(listener)
            for listener in account.listeners.values()
            if _matches(conditions, {"id": listener.listener_id, "name": listener.process_name})
        ]
        return self._first_page("Process", account, processes)

    def _process_query_more(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        return self._next_page("Process", account, body)

    def _process_bulk(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        document = decode_json_body(body)
        if not isinstance(document, dict):
            raise BadRequest("The request body must be a JSON object.")
        if document.get("type") != "GET":
            raise BadRequest('A bulk request needs "type": "GET".')
        requested = document.get("request")
        if not isinstance(requested, list):
            raise BadRequest('A bulk request needs a request list of {"id": ...} objects.')
        if len(requested) > BULK_LIMIT:
            raise BadRequest(
                f"A bulk request takes at most {BULK_LIMIT} ids, not {len(requested)}."
            )
        responses: list[dict[str, object]] = []
        for index, item in enumerate(requested):
            process_id = item.get("id") if isinstance(item, dict) else None
            entry: dict[str, object] = {"@type": "BulkResponse", "index": index, "id": process_id}
            listener = account.listeners.get(process_id) if isinstance(process_id, str) else None
            if listener is None:
                entry["statusCode"] = 400
                entry["ErrorMessage"] = f"Process {process_id} does not exist."
            else:
                entry["statusCode"] = 200
                entry["Result"] = self._process_json(listener)
            responses.append(entry)
        return _Answer(200, {"@type": "BulkResult", "response": responses})

    def _unknown_route(
        self, request: web.Request, account: SimAccount, body: bytes, draw: _FaultDraw
    ) -> _Answer:
        return _error(404, f"No such API object or operation: {request.method} {request.path}.")

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _process_json(listener: SimListener) -> dict[str, object]:
        return {"@type": "Process", "id": listener.listener_id, "name": listener.process_name}

    def _first_page(
        self, kind: str, account: SimAccount, items: list[dict[str, object]]
    ) -> _Answer:
        now = self._clock()
        self._prune(now)
        pages = [items[start : start + PAGE_SIZE] for start in range(0, len(items), PAGE_SIZE)]
        next_token: str | None = None
        # Later pages are registered back to front so each knows the token of the one after.
        for page in reversed(pages[1:]):
            token = self._uuid().replace("-", "")
            self._query_pages[token] = _QueryPage(
                kind, account.account_id, page, len(items), next_token, now
            )
            next_token = token
        return _Answer(200, self._query_result(pages[0] if pages else [], len(items), next_token))

    def _next_page(self, kind: str, account: SimAccount, body: bytes) -> _Answer:
        token = body.decode("utf-8", errors="replace").strip()
        page = self._query_pages.get(token)
        if page is None or page.kind != kind or page.account_id != account.account_id:
            raise BadRequest(f"Unknown or expired queryToken for {kind}/queryMore.")
        return _Answer(200, self._query_result(page.items, page.total, page.next_token))

    @staticmethod
    def _query_result(
        items: list[dict[str, object]], total: int, next_token: str | None
    ) -> dict[str, object]:
        result: dict[str, object] = {
            "@type": "QueryResult",
            "result": items,
            "numberOfResults": total,
        }
        if next_token is not None:
            result["queryToken"] = next_token
        return result

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _account(self, account_id: str) -> SimAccount:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise KeyError(f"account {account_id} does not exist") from None

    def _prune(self, now: float) -> None:
        """Forget tokens long past their lifetime, so a long demo run does not grow forever.

        Once forgotten, a ListenerStatus token answers 410 like one never issued, which
        boomi-api.md allows for; until then an expired one answers 204.
        """
        if now < self._next_prune:
            return
        self._next_prune = now + self.token_ttl_seconds
        horizon = now - 2 * self.token_ttl_seconds
        self._tokens = {t: r for t, r in self._tokens.items() if r.issued_at >= horizon}
        self._query_pages = {t: p for t, p in self._query_pages.items() if p.issued_at >= horizon}

    def _apply_due_effects(self) -> None:
        """Apply the accepted changeListenerStatus calls whose delay has passed, in order."""
        if not self._pending:
            return
        now = self._clock()
        due = sorted((e for e in self._pending if e.due <= now), key=lambda e: e.due)
        if not due:
            return
        self._pending = [e for e in self._pending if e.due > now]
        for effect in due:
            account = self._accounts.get(effect.account_id)
            if account is None:
                continue
            for listener in account.listeners.values():
                if listener.container_id != effect.container_id:
                    continue
                if effect.listener_id is not None and listener.listener_id != effect.listener_id:
                    continue
                listener.status = _effect_of(effect.action, listener.status)

    def _find_listener(self, listener_id: str, account_id: object) -> SimListener:
        """A listener by id for the control API; raise _ControlError if not exactly one."""
        if account_id is not None:
            account = self._accounts.get(str(account_id))
            if account is None or listener_id not in account.listeners:
                raise _ControlError(404, f"listener {listener_id} not found in {account_id}")
            return account.listeners[listener_id]
        found = [
            a.listeners[listener_id] for a in self._accounts.values() if listener_id in a.listeners
        ]
        if not found:
            raise _ControlError(404, f"listener {listener_id} not found")
        if len(found) > 1:
            raise _ControlError(
                400, f"listener {listener_id} is in several accounts: give account_id"
            )
        return found[0]

    def _find_container(self, container_id: str, account_id: object) -> SimContainer:
        candidates = [
            a.containers[container_id]
            for a in self._accounts.values()
            if container_id in a.containers and (account_id is None or a.account_id == account_id)
        ]
        if not candidates:
            raise _ControlError(404, f"container {container_id} not found")
        if len(candidates) > 1:
            raise _ControlError(
                400, f"container {container_id} is in several accounts: give account_id"
            )
        return candidates[0]

    # -- control API -------------------------------------------------------------------------

    async def _control_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _control_put_listener(self, request: web.Request) -> web.Response:
        try:
            document = await _control_body(request, required={"status"}, optional={"account_id"})
            self._apply_due_effects()
            listener = self._find_listener(
                request.match_info["listenerId"], document.get("account_id")
            )
        except _ControlError as exc:
            return exc.response()
        listener.status = str(document["status"])
        return web.json_response(_listener_json(listener))

    async def _control_add_listener(self, request: web.Request) -> web.Response:
        try:
            document = await _control_body(
                request,
                required={"account_id", "container_id", "listener_id"},
                optional={"status", "connector_type", "process_name"},
            )
        except _ControlError as exc:
            return exc.response()
        connector_type = document.get("connector_type", "wss")
        try:
            listener = self.add_listener(
                str(document["account_id"]),
                str(document["container_id"]),
                str(document["listener_id"]),
                status=str(document.get("status", "listening")),
                connector_type=None if connector_type is None else str(connector_type),
                process_name=str(document.get("process_name", "")),
            )
        except KeyError as exc:
            return _ControlError(404, str(exc.args[0])).response()
        except ValueError as exc:
            return _ControlError(409, str(exc)).response()
        return web.json_response(_listener_json(listener), status=201)

    async def _control_delete_listener(self, request: web.Request) -> web.Response:
        try:
            listener = self._find_listener(
                request.match_info["listenerId"], request.query.get("account_id")
            )
        except _ControlError as exc:
            return exc.response()
        for account in self._accounts.values():
            if account.listeners.get(listener.listener_id) is listener:
                del account.listeners[listener.listener_id]
        return web.Response(status=204)

    async def _control_put_container(self, request: web.Request) -> web.Response:
        try:
            document = await _control_body(
                request, required=set(), optional={"status", "name", "account_id"}
            )
            container = self._find_container(
                request.match_info["containerId"], document.get("account_id")
            )
        except _ControlError as exc:
            return exc.response()
        if "status" in document:
            container.status = str(document["status"])
        if "name" in document:
            container.name = str(document["name"])
        return web.json_response(_container_json(container))

    async def _control_set_faults(self, request: web.Request) -> web.Response:
        try:
            self.set_faults(Faults.from_json(await _json_or_error(request)))
        except _ControlError as exc:
            return exc.response()
        except (TypeError, ValueError) as exc:
            return _ControlError(400, str(exc)).response()
        return web.json_response(dataclasses.asdict(self._faults))

    async def _control_clear_faults(self, request: web.Request) -> web.Response:
        self.set_faults(Faults())
        return web.json_response(dataclasses.asdict(self._faults))

    async def _control_reset_counters(self, request: web.Request) -> web.Response:
        self.reset_counters()
        return web.Response(status=204)


def _effect_of(action: str, status: str) -> str:
    """A listener's status once a restart, pause or resume has taken effect."""
    if action == "pause":
        return "paused"
    if action == "resume":
        return "listening" if status == "paused" else status
    # Restarting a paused listener leaves it paused (Boomi's Listeners panel documents this).
    return status if status == "paused" else "listening"


class _ControlError(Exception):
    """A control-API request the simulator refuses, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        return web.json_response({"error": self.message}, status=self.status)


async def _json_or_error(request: web.Request) -> object:
    try:
        return decode_json_body(await request.read())
    except BadRequest as exc:
        raise _ControlError(400, str(exc)) from exc


async def _control_body(
    request: web.Request, *, required: set[str], optional: set[str]
) -> dict[str, object]:
    """A control-API JSON object with exactly the allowed keys; typos are errors, not no-ops."""
    document = await _json_or_error(request)
    if not isinstance(document, dict):
        raise _ControlError(400, "the body must be a JSON object")
    missing = sorted(required - set(document))
    if missing:
        raise _ControlError(400, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(document) - required - optional)
    if unknown:
        raise _ControlError(400, f"unknown field(s): {', '.join(unknown)}")
    return document


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------


async def serve(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start the simulator on host:port (0: any free port); return the runner and API base URL.

    The caller stops it with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    # A wildcard address is not somewhere a client can connect to; loopback is.
    url_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    return runner, f"http://{url_host}:{bound_port}{API_PREFIX}"


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
            lines.append(
                f"    {container.container_id}  {container.name} ({container.type}, "
                f"{container.status}, {count} listeners)"
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
