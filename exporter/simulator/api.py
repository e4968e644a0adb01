"""The Boomi API handlers of the simulator, with their route table.

Each handler answers one call described in docs/boomi-api.md under
``/api/rest/v1/{accountId}``: the asynchronous ListenerStatus query and its result,
changeListenerStatus, Atom, Process, Environment and EnvironmentAtomAttachment queries with
paging, and Process/bulk. Handlers are
synchronous, so nothing interleaves while the world is read or changed; auth, the rate limit
and faults are applied around them by the server.

A little over 500 lines: one handler per Boomi call, next to the route table that lists them.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from .faults import FaultDraw
from .wire import (
    BadRequest,
    decode_json_body,
    parse_filter_predicate,
    parse_listener_status_filter,
)
from .world import ACTIONS, SimAccount, SimListener, World, attachment_id

PAGE_SIZE: Final = 100
BULK_LIMIT: Final = 100
RUNTIME_VERSION: Final = "25.01.1"
# Boomi's documented meaning of a 410 on a container's ListenerStatus calls (API errors page).
RUNTIME_OFFLINE: Final = "The API is retired or the specified Runtime is currently offline."

# Atom filter property -> SimContainer attribute. docs/boomi-api.md also lists "capabilities",
# which the simulator does not model; asking for it is a 400 like any other unknown property.
ATOM_PROPERTIES: Final = {
    "id": "container_id",
    "name": "name",
    "status": "status",
    "type": "type",
    "hostname": "host_name",
}
PROCESS_PROPERTIES: Final = frozenset({"id", "name"})
ENVIRONMENT_PROPERTIES: Final = frozenset({"id", "name", "classification"})
ATTACHMENT_PROPERTIES: Final = frozenset({"atomId", "environmentId"})


@dataclass(frozen=True)
class Answer:
    """An API answer before rendering; body None means an empty body."""

    status: int
    body: Mapping[str, object] | None = None
    raw_json: str | None = None  # served verbatim as application/json (malformed fault)
    force_xml: bool = False
    retry_after: float | None = None  # a Retry-After header (the one-shot fault)
    location: str | None = None  # a Location header (the redirect fault)


def error(status: int, message: str) -> Answer:
    """An answer with Boomi's Error body."""
    return Answer(status, {"@type": "Error", "message": message})


def reshape_error(answer: Answer, form: str) -> Answer:
    """An Error answer in another of Boomi's body forms: "message" gives `{"message": ...}`,
    "error.message" `{"error": {"message": ...}}` (docs/boomi-api.md); others are unchanged."""
    body = answer.body
    if body is None or body.get("@type") != "Error" or form not in ("message", "error.message"):
        return answer
    message = body.get("message")
    reshaped = {"message": message} if form == "message" else {"error": {"message": message}}
    return dataclasses.replace(answer, body=reshaped)


Handler = Callable[[web.Request, SimAccount, bytes, FaultDraw], Answer]


@dataclass
class _ListenerStatusToken:
    account_id: str
    container_id: str
    listener_id: str | None
    issued_at: float
    never_settles: bool
    first_get_in_progress: bool = False  # the fault: the first GET says "in progress" anyway
    consumed: bool = False


@dataclass(frozen=True)
class _QueryPage:
    """A page of a paged query, reachable by its queryToken; reusable until pruned."""

    kind: str  # "Atom", "Process", ...: a token only works on its own queryMore route
    account_id: str
    items: list[dict[str, object]]
    total: int
    next_token: str | None
    issued_at: float


class BoomiApi:
    """The handlers of the simulated Boomi API, and the tokens and pages they have issued."""

    def __init__(
        self,
        world: World,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        result_delay_seconds: float,
        token_ttl_seconds: float,
    ) -> None:
        self.result_delay_seconds = result_delay_seconds
        self.token_ttl_seconds = token_ttl_seconds
        self._world = world
        self._rng = rng
        self._clock = clock
        self._tokens: dict[str, _ListenerStatusToken] = {}
        self._query_pages: dict[str, _QueryPage] = {}
        self._next_prune = clock() + token_ttl_seconds

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        """(method, path under the account, route name for the counters, handler)."""
        return [
            ("POST", "/async/ListenerStatus/query", "listener_status_query", self.status_query),
            ("POST", "/ListenerStatus/query/async", "listener_status_query", self.status_query),
            (
                "GET",
                "/async/ListenerStatus/response/{token}",
                "listener_status_result",
                self.status_result,
            ),
            ("POST", "/changeListenerStatus", "change_listener_status", self.change_status),
            ("POST", "/Atom/query", "atom_query", self.atom_query),
            ("POST", "/Atom/queryMore", "atom_query_more", self.atom_query_more),
            ("POST", "/Process/query", "process_query", self.process_query),
            ("POST", "/Process/queryMore", "process_query_more", self.process_query_more),
            ("POST", "/Process/bulk", "process_bulk", self.process_bulk),
            ("POST", "/Environment/query", "environment_query", self.environment_query),
            (
                "POST",
                "/Environment/queryMore",
                "environment_query_more",
                self.environment_query_more,
            ),
            (
                "POST",
                "/EnvironmentAtomAttachment/query",
                "environment_attachment_query",
                self.attachment_query,
            ),
            (
                "POST",
                "/EnvironmentAtomAttachment/queryMore",
                "environment_attachment_query_more",
                self.attachment_query_more,
            ),
            # Anything else under an account answers 404 after the same rate limit and auth
            # as every call, so a client calling a wrong path still spends its budget.
            ("*", "/{tail:.*}", "unknown", self.unknown_route),
        ]

    def container_of(
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

    # -- handlers ----------------------------------------------------------------------------

    def status_query(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST async/ListenerStatus/query: a token whose result completes after the delay."""
        container_id, listener_id = parse_listener_status_filter(decode_json_body(body))
        # docs/boomi-api.md leaves a query for a container the account does not have undefined:
        # an error, a complete empty result and one that never completes are all plausible.
        # The simulator answers with a token that completes empty after the usual delay, so
        # clients meet an empty complete result here too and must not mistake it for a failure.
        now = self._clock()
        self._prune(now)
        token = f"ListenerStatus-{self._world.new_id()}"
        if draw.hostile_token:
            # As a hostile proxy might hand out: unescaped, it moves the result GET (and the
            # account's credentials) to another path of the host.
            token = f"../../{token}?x=#"
        self._tokens[token] = _ListenerStatusToken(
            account.account_id,
            container_id,
            listener_id,
            now,
            draw.never_settle,
            draw.first_get_in_progress,
        )
        return Answer(
            200,
            {
                "@type": "AsyncOperationTokenResult",
                "asyncToken": {"@type": "AsyncToken", "token": token},
                "responseStatusCode": 202,
            },
        )

    def status_result(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """GET async/ListenerStatus/response/{token}: in progress, the rows, or gone."""
        record = self._tokens.get(request.match_info["token"])
        if record is None or record.account_id != account.account_id:
            return error(410, "The async token is unknown or no longer valid.")
        if draw.runtime_offline:
            return error(410, RUNTIME_OFFLINE)
        if draw.gone_status == 204:
            return Answer(204)
        if draw.gone_status == 410:
            return error(410, "The async token is no longer valid.")
        now = self._clock()
        if record.consumed or now - record.issued_at >= self.token_ttl_seconds:
            return Answer(204)
        container = account.containers.get(record.container_id)
        first_get, record.first_get_in_progress = record.first_get_in_progress, False
        complete = (
            not record.never_settles
            and not first_get
            and now - record.issued_at >= self.result_delay_seconds
            # A runtime that is offline never answers the platform's question.
            and (container is None or container.status != "OFFLINE")
        )
        if not complete:
            return self._in_progress(draw)
        self._world.apply_due_effects()
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
            # Complete and empty: 200, like any result (the spec knows no other way).
            return Answer(
                200,
                {"@type": "AsyncOperationResult", "numberOfResults": 0, "responseStatusCode": 200},
            )
        return Answer(
            200,
            {
                "@type": "AsyncOperationResult",
                "result": rows,
                "numberOfResults": len(rows),
                "responseStatusCode": 200,
            },
        )

    def change_status(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST changeListenerStatus: accept a restart, pause or resume; it takes effect later."""
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
        self._world.accept_action(account.account_id, container_id, listener_id, action)
        return Answer(200)

    def atom_query(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST Atom/query: the account's containers as Atoms, filtered and paged."""
        wanted = parse_filter_predicate(decode_json_body(body), ATOM_PROPERTIES)
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
            if wanted({prop: getattr(container, attr) for prop, attr in ATOM_PROPERTIES.items()})
        ]
        return self._first_page("Atom", account, atoms)

    def atom_query_more(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST Atom/queryMore: the next page of an Atom query."""
        return self._next_page("Atom", account, body)

    def process_query(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST Process/query: the listeners' processes, filtered and paged."""
        wanted = parse_filter_predicate(decode_json_body(body), PROCESS_PROPERTIES)
        processes = [
            self._process_json(listener)
            for listener in account.listeners.values()
            if wanted({"id": listener.listener_id, "name": listener.process_name})
        ]
        return self._first_page("Process", account, processes)

    def process_query_more(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST Process/queryMore: the next page of a Process query."""
        return self._next_page("Process", account, body)

    def process_bulk(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST Process/bulk: processes by id, one response entry each."""
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
                # As the Bulk GET page shows a failed item, without the Result the schema marks
                # required (docs/boomi-api.md, "Processes").
                entry["statusCode"] = 400
                entry["errorMessage"] = f"Process {process_id} does not exist."
            else:
                entry["statusCode"] = 200
                entry["Result"] = self._process_json(listener)
            responses.append(entry)
        return Answer(200, {"@type": "BulkResult", "response": responses})

    def environment_query(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST Environment/query: the account's environments, filtered and paged."""
        wanted = parse_filter_predicate(decode_json_body(body), ENVIRONMENT_PROPERTIES)
        rows: list[dict[str, object]] = []
        for environment in account.environments.values():
            fields = {
                "id": environment.environment_id,
                "name": environment.name,
                "classification": environment.classification,
            }
            if not wanted(fields):
                continue
            row: dict[str, object] = {
                "@type": "Environment",
                "id": environment.environment_id,
                "name": environment.name,
            }
            if environment.classification is not None:
                row["classification"] = environment.classification
            rows.append(row)
        return self._first_page("Environment", account, rows)

    def environment_query_more(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST Environment/queryMore: the next page of an Environment query."""
        return self._next_page("Environment", account, body)

    def attachment_query(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST EnvironmentAtomAttachment/query: which runtime is in which environment."""
        wanted = parse_filter_predicate(decode_json_body(body), ATTACHMENT_PROPERTIES)
        rows: list[dict[str, object]] = [
            {
                "@type": "EnvironmentAtomAttachment",
                "id": attachment_id(container_id, environment_id),
                "atomId": container_id,
                "environmentId": environment_id,
            }
            for container_id, environment_id in account.attachments.items()
            # A runtime that was removed takes its attachment with it.
            if container_id in account.containers
            and wanted({"atomId": container_id, "environmentId": environment_id})
        ]
        return self._first_page("EnvironmentAtomAttachment", account, rows)

    def attachment_query_more(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """POST EnvironmentAtomAttachment/queryMore: the next page of an attachment query."""
        return self._next_page("EnvironmentAtomAttachment", account, body)

    def unknown_route(
        self, request: web.Request, account: SimAccount, body: bytes, draw: FaultDraw
    ) -> Answer:
        """Any other path under an account: 404."""
        return error(404, f"No such API object or operation: {request.method} {request.path}.")

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _in_progress(draw: FaultDraw) -> Answer:
        """The answer while the result is not ready: bare, as the spec has it, unless a fault
        asks for a variant a client must survive."""
        body: dict[str, object] = {"@type": "AsyncOperationResult"}
        if draw.in_progress_empty:
            body |= {"numberOfResults": 0, "result": []}
        if draw.in_progress_status_rows:
            body["result"] = [
                {"@type": "AsyncOperationStatus", "message": "Connecting to runtime..."}
            ]
        body["responseStatusCode"] = 202
        return Answer(200 if draw.in_progress_http_200 else 202, body)

    @staticmethod
    def _process_json(listener: SimListener) -> dict[str, object]:
        # The spec requires Description; none of the simulated processes is from an
        # integration pack.
        return {
            "@type": "Process",
            "id": listener.listener_id,
            "name": listener.process_name,
            "Description": "",
            "IntegrationPack": [],
        }

    def _first_page(self, kind: str, account: SimAccount, items: list[dict[str, object]]) -> Answer:
        now = self._clock()
        self._prune(now)
        pages = [items[start : start + PAGE_SIZE] for start in range(0, len(items), PAGE_SIZE)]
        next_token: str | None = None
        # Later pages are registered back to front so each knows the token of the one after.
        for page in reversed(pages[1:]):
            token = self._world.new_id().replace("-", "")
            self._query_pages[token] = _QueryPage(
                kind, account.account_id, page, len(items), next_token, now
            )
            next_token = token
        return Answer(200, self._query_result(pages[0] if pages else [], len(items), next_token))

    def _next_page(self, kind: str, account: SimAccount, body: bytes) -> Answer:
        token = body.decode("utf-8", errors="replace").strip()
        page = self._query_pages.get(token)
        if page is None or page.kind != kind or page.account_id != account.account_id:
            raise BadRequest(f"Unknown or expired queryToken for {kind}/queryMore.")
        return Answer(200, self._query_result(page.items, page.total, page.next_token))

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

    def _prune(self, now: float) -> None:
        """Forget tokens long past their lifetime, so a long demo run does not grow forever.

        Once forgotten, a ListenerStatus token answers 410 like one never issued, which
        docs/boomi-api.md allows for; until then an expired one answers 204.
        """
        if now < self._next_prune:
            return
        self._next_prune = now + self.token_ttl_seconds
        horizon = now - 2 * self.token_ttl_seconds
        self._tokens = {t: r for t, r in self._tokens.items() if r.issued_at >= horizon}
        self._query_pages = {t: p for t, p in self._query_pages.items() if p.issued_at >= horizon}
