"""Contract tests: Boomi's published schemas judge the simulator's answers and the client's
requests (issue 13).

Every exchange between the real client and the simulator is captured at the simulator (an
aiohttp middleware added by the test, not a hook in the product) and checked against the
reduced copy of Boomi's OpenAPI schemas: each request body against its path's request schema,
each JSON answer against its response schema, errors against what Boomi's error examples have
in common. In-progress answers of the result GET come with HTTP 202, for which the document
lists no answer; they are checked against the GET's one schema, ListenerStatusAsyncResponse,
whose responseStatusCode enumerates 202.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exporter.boomi import BoomiClient, RetryPolicy, TokenExpired
from exporter.boomi.shapes import atom_query_body
from exporter.simulator import Faults, Simulator
from tests.boomi_schemas import document, schemas_of, validate_request, validate_response
from tests.simulator_helpers import JSON, basic

ACCOUNT = "contract-account"
PREFIX = f"/api/rest/v1/{ACCOUNT}"


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str  # below the account's URL
    request_type: str
    request: bytes
    status: int
    response_type: str
    response: bytes

    @property
    def answer(self) -> Any:
        return json.loads(self.response)


@dataclass
class Recorded:
    sim: Simulator
    base_url: str
    exchanges: list[Exchange] = field(default_factory=list)

    def client(self, **options: Any) -> BoomiClient:
        account = self.sim.accounts[ACCOUNT]
        settings: dict[str, Any] = {
            "base_url": self.base_url,
            "username": account.username,
            "password": account.password,
            "max_requests_per_second": 100,
            "request_timeout_seconds": 5,
            "retry": RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02),
        }
        return BoomiClient(ACCOUNT, **(settings | options))


@pytest.fixture
async def recorded() -> AsyncIterator[Recorded]:
    """The simulator on loopback, every Boomi API exchange recorded."""
    sim = Simulator.with_fleet(
        account_id=ACCOUNT, containers=120, listeners_per_container=2, result_delay_seconds=0.2,
        rate_limit_rps=1000, seed=3,
    )  # fmt: skip
    sim.add_container(ACCOUNT, "c-empty", "test-molecule-empty")
    exchanges: list[Exchange] = []

    @web.middleware
    async def capture(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        response = await handler(request)
        if request.path.startswith(PREFIX) and isinstance(response, web.Response):
            raw = response.body if isinstance(response.body, bytes) else b""
            exchanges.append(
                Exchange(
                    request.method, request.path.removeprefix(PREFIX), request.content_type,
                    body, response.status, response.content_type, raw,
                )
            )  # fmt: skip
        return response

    app = sim.app()
    app.middlewares.append(capture)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Recorded(sim, f"http://127.0.0.1:{port}/api/rest/v1", exchanges)
    finally:
        await runner.cleanup()


def check(exchange: Exchange) -> str:
    """Validate one exchange against the document; what kind of answer it was."""
    try:
        request_schema, responses = schemas_of(exchange.method, exchange.path)
    except KeyError:
        request_schema, responses = None, {}  # a path Boomi does not have: only the error
    if request_schema == "text/plain":
        assert exchange.request_type == "text/plain", exchange
    elif request_schema is not None and exchange.request:
        validate_request(request_schema, json.loads(exchange.request))
    if exchange.status >= 400:
        validate_response("Error", exchange.answer)
        return f"error {exchange.status}"
    if not exchange.response:
        return f"empty {exchange.status}"
    assert exchange.response_type == "application/json", exchange
    schema = responses.get("200")  # the 202 of an in-progress GET: see the module's docstring
    assert schema is not None, exchange
    validate_response(schema, exchange.answer)
    if schema == "ListenerStatusAsyncResponse":
        code, rows = exchange.answer["responseStatusCode"], exchange.answer.get("result")
        return "in progress" if code == 202 else ("complete" if rows else "complete, empty")
    return schema


async def test_every_request_of_the_client_and_every_answer_of_the_simulator_match_the_schemas(
    recorded: Recorded,
) -> None:
    sim = recorded.sim
    account = sim.accounts[ACCOUNT]
    containers = [c for c in account.containers if c != "c-empty"]
    async with recorded.client() as client:
        for container in containers[:3]:
            await client.fetch_listener_statuses(container)  # probing: in progress, then complete
        await client.fetch_listener_statuses("c-empty")
        listener = next(
            lst for lst in account.listeners.values() if lst.container_id == containers[0]
        )
        await client.fetch_listener_statuses(containers[0], listener.listener_id, urgent=True)
        await client.change_listener_status(containers[0], "restart", listener.listener_id)
        await client.change_listener_status(containers[0], "pause_all")
        atoms = await client.query_atoms()  # 121 runtimes: two pages, queryMore
        assert len(atoms) == 121
        await client.process_names(list(account.listeners)[:150])  # two bulk calls
        # Error answers: 400, 410, 503 (after the retries), 504.
        with pytest.raises(Exception, match="does not exist"):
            await client.change_listener_status(containers[0], "restart", "no-such-listener")
        with pytest.raises(TokenExpired):
            await client.listener_status_result("ListenerStatus-never-issued", container_id="c-x")
        sim.set_faults(Faults(throttle_rate=1.0))
        with pytest.raises(Exception, match="503"):
            await client.query_atoms()
        sim.set_faults(Faults(runtime_unreachable_504_rate=1.0))
        with pytest.raises(Exception, match="504"):
            await client.query_listener_status(containers[1])
        sim.set_faults(Faults())
    async with recorded.client(password="wrong") as wrong:
        with pytest.raises(Exception, match="rejected the credentials"):
            await wrong.query_atoms()  # 403
    # What the client does not send, the simulator still serves: Process/query, queryMore, 404.
    async with aiohttp.ClientSession(
        headers={**JSON, "Authorization": basic(account.username, account.password)}
    ) as session:
        url = f"{recorded.base_url}/{ACCOUNT}"
        unsupported = {
            "QueryFilter": {
                "expression": {"argument": ["a"], "operator": "GREATER_THAN", "property": "name"}
            }
        }
        name = {
            "QueryFilter": {
                "expression": {
                    "argument": [listener.process_name],
                    "operator": "EQUALS",
                    "property": "name",
                }
            }
        }
        async with session.post(f"{url}/Process/query", json=name) as response:
            assert response.status == 200
        async with session.post(f"{url}/Process/query", json=unsupported) as response:
            # The simulator knows EQUALS, NOT_EQUALS, LIKE and the null tests: told in a valid error.
            assert response.status == 400
        async with session.post(f"{url}/Nothing/here", json={}) as response:
            assert response.status == 404
        async with session.get(f"{url}/Atom/query") as response:
            assert response.status == 404  # a GET of a POST route
    async with (
        aiohttp.ClientSession(headers=JSON) as anonymous,
        anonymous.post(
            f"{recorded.base_url}/{ACCOUNT}/Atom/query", json=atom_query_body()
        ) as response,
    ):
        assert response.status == 401

    kinds = [check(exchange) for exchange in recorded.exchanges]
    seen_calls = {
        (e.method, schemas_of(e.method, e.path)[0])
        for e in recorded.exchanges
        if e.status < 400 and e.path != "/Nothing/here"
    }
    assert seen_calls >= {
        ("POST", "ListenerStatusQueryConfig"), ("GET", None), ("POST", "ChangeListenerStatusRequest"),
        ("POST", "AtomQueryConfig"), ("POST", "text/plain"), ("POST", "ProcessBulkRequest"),
        ("POST", "ProcessQueryConfig"),
    }  # fmt: skip
    assert set(kinds) >= {
        "AsyncOperationTokenResult", "in progress", "complete", "complete, empty", "empty 200",
        "AtomQueryResponse", "ProcessBulkResponse", "ProcessQueryResponse",
        "error 400", "error 401", "error 403", "error 404", "error 410", "error 503", "error 504",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("faults", "valid"),
    [
        (Faults(in_progress_empty_rate=1.0), True),  # valid, and the trap of issue 13
        (Faults(in_progress_http_200_rate=1.0), True),
        (Faults(in_progress_status_rows_rate=1.0), False),  # rows must be ListenerStatus
    ],
    ids=["numberOfResults 0", "HTTP 200", "AsyncOperationStatus rows"],
)
async def test_which_in_progress_variants_the_schema_allows(
    recorded: Recorded, faults: Faults, valid: bool
) -> None:
    recorded.sim.set_faults(faults)
    container = next(iter(recorded.sim.accounts[ACCOUNT].containers))
    async with recorded.client() as client:
        await client.fetch_listener_statuses(container)
    in_progress = [
        e.answer for e in recorded.exchanges
        if e.method == "GET" and e.response and e.answer["responseStatusCode"] == 202
    ]  # fmt: skip
    assert in_progress
    for answer in in_progress:
        if valid:
            validate_response("ListenerStatusAsyncResponse", answer)
        else:
            with pytest.raises(AssertionError, match="listenerId"):
                validate_response("ListenerStatusAsyncResponse", answer)


def test_the_judge_can_fail() -> None:
    # What the simulator and the client sent before issue 13.
    with pytest.raises(AssertionError, match="QueryFilter"):
        validate_request("AtomQueryConfig", {})  # the client's old "every runtime"
    with pytest.raises(AssertionError, match="Description"):
        validate_response(
            "ProcessQueryResponse", {"result": [{"@type": "Process", "id": "p", "name": "n"}]}
        )
    with pytest.raises(AssertionError, match="message"):
        validate_response("Error", {"error": {"message": "a form the examples do not show"}})
    with pytest.raises(AssertionError, match="expression"):
        validate_request("EnvironmentQueryConfig", {"QueryFilter": {}})  # Boomi's CLI's form
    with pytest.raises(AssertionError, match="is no request schema"):
        validate_request("Atom", {})
    validate_response("Error", {"message": "Boomi's own example form"})


def test_the_client_s_every_runtime_filter_is_schema_valid() -> None:
    validate_request("AtomQueryConfig", atom_query_body())


def test_the_reduced_copy_says_where_it_comes_from_and_has_every_schema_needed() -> None:
    reduced = document()
    assert "RenEra-ai/boomi-python" in reduced["note"]
    assert "scripts/reduce_openapi.py" in reduced["note"]
    schemas = reduced["components"]["schemas"]
    assert {"Environment", "EnvironmentAtomAttachment", "EnvironmentQueryConfig",
            "EnvironmentAtomAttachmentQueryConfig", "EnvironmentQueryResponse",
            "EnvironmentAtomAttachmentQueryResponse"} <= set(schemas)  # fmt: skip
    text = json.dumps(reduced["components"])
    assert '"description"' not in text and '"example' not in text
