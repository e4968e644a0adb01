"""Tests of the Boomi API simulator, over a real socket with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from exporter.simulator import (
    BadRequest,
    Faults,
    Simulator,
    describe,
    parse_basic_auth,
    parse_listener_status_filter,
    parse_query_filter,
    render_xml,
    serve,
)

ACCOUNT = "acme-AB12CD"
USER = "ops@acme.example"
PASSWORD = "s3cret-demo"
API_TOKEN = "token-demo-123"
BNS = "{http://api.platform.boomi.com/}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def basic(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


JSON = {"Accept": "application/json", "Content-Type": "application/json"}
AUTH = {"Authorization": basic(USER, PASSWORD)}


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    status: int
    headers: Any
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Api:
    """A thin client for one account of a running simulator."""

    session: aiohttp.ClientSession
    base_url: str
    root_url: str
    account: str = ACCOUNT

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        data: str | None = None,
    ) -> Reply:
        all_headers = {**JSON, **AUTH} if headers is None else headers
        payload = data if data is not None else (None if body is None else json.dumps(body))
        url = f"{self.base_url}/{self.account}/{path}"
        async with self.session.request(method, url, data=payload, headers=all_headers) as resp:
            return Reply(resp.status, resp.headers, await resp.text())

    async def query(self, container_id: str, listener_id: str | None = None) -> str:
        reply = await self.call(
            "POST", "async/ListenerStatus/query", status_filter(container_id, listener_id)
        )
        assert reply.status == 200, reply.text
        token: str = reply.json["asyncToken"]["token"]
        return token

    async def result(self, token: str) -> Reply:
        return await self.call("GET", f"async/ListenerStatus/response/{token}")

    async def change(self, **body: str) -> Reply:
        return await self.call("POST", "changeListenerStatus", body)

    async def control(self, method: str, path: str, body: Any = None) -> Reply:
        url = f"{self.root_url}/__simulator/{path}"
        async with self.session.request(method, url, json=body) as resp:
            return Reply(resp.status, resp.headers, await resp.text())


@asynccontextmanager
async def running(sim: Simulator, account: str = ACCOUNT) -> AsyncIterator[Api]:
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(session, base_url, base_url.removesuffix("/api/rest/v1"), account)
    finally:
        await runner.cleanup()


def status_filter(container_id: str, listener_id: str | None = None) -> dict[str, Any]:
    container = {"argument": [container_id], "operator": "EQUALS", "property": "containerId"}
    if listener_id is None:
        return {"QueryFilter": {"expression": container}}
    listener = {"argument": [listener_id], "operator": "EQUALS", "property": "listenerId"}
    return {
        "QueryFilter": {
            "expression": {"operator": "and", "nestedExpression": [container, listener]}
        }
    }


def make_sim(clock: FakeClock | None = None, **kwargs: Any) -> Simulator:
    """A small world: c1 with three listeners, c2 with one, an empty and an offline container."""
    sim = Simulator(seed=7, clock=clock or time.monotonic, **kwargs)
    # A generous rate limit: a fake clock that stands still would otherwise throttle the tests.
    sim.add_account(
        ACCOUNT, username=USER, password=PASSWORD, api_token=API_TOKEN, rate_limit_rps=1000
    )
    sim.add_container(ACCOUNT, "c1", "prod-molecule-1")
    sim.add_container(ACCOUNT, "c2", "prod-atom-1", type="ATOM")
    sim.add_container(ACCOUNT, "c-empty", "test-molecule-1")
    sim.add_container(ACCOUNT, "c-off", "dr-molecule-1", status="OFFLINE")
    sim.add_listener(ACCOUNT, "c1", "l1", status="listening", process_name="Orders WSS Listener")
    sim.add_listener(ACCOUNT, "c1", "l2", status="errored", connector_type="atomqueue")
    sim.add_listener(ACCOUNT, "c1", "l3", status="paused", connector_type=None)
    sim.add_listener(ACCOUNT, "c2", "l4", status="listening", process_name="Invoices")
    sim.add_listener(ACCOUNT, "c-off", "l5")
    return sim


def statuses(sim: Simulator) -> dict[str, str]:
    state: Any = sim.state()
    return {lst["listener_id"]: lst["status"] for lst in state["accounts"][ACCOUNT]["listeners"]}


async def settled_rows(api: Api, clock: FakeClock, token: str) -> list[dict[str, Any]]:
    clock.advance(10)
    reply = await api.result(token)
    assert reply.status == 200, reply.text
    rows: list[dict[str, Any]] = reply.json["result"]
    return rows


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (None, []),
        ({}, []),
        ({"QueryFilter": {}}, []),
        (
            {
                "QueryFilter": {
                    "expression": {"argument": ["a"], "operator": "EQUALS", "property": "id"}
                }
            },
            [("id", "a")],
        ),
        (
            {
                "@type": "QueryConfig",
                "QueryFilter": {
                    "@type": "QueryFilter",
                    "expression": {
                        "@type": "GroupingExpression",
                        "operator": "and",
                        "nestedExpression": [
                            {"argument": ["a"], "operator": "EQUALS", "property": "id"},
                            {
                                "operator": "AND",
                                "nestedExpression": {
                                    "argument": ["n"],
                                    "operator": "equals",
                                    "property": "name",
                                },
                            },
                        ],
                    },
                },
            },
            [("id", "a"), ("name", "n")],
        ),
    ],
)
def test_parse_query_filter_accepts(document: object, expected: list[tuple[str, str]]) -> None:
    assert parse_query_filter(document, {"id", "name"}) == expected


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "JSON object"),
        ({"QueryFilter": []}, "QueryFilter"),
        ({"QueryFilter": {"expression": "x"}}, "object"),
        ({"QueryFilter": {"expression": {"argument": ["a"], "property": "id"}}}, "operator"),
        (
            {
                "QueryFilter": {
                    "expression": {"argument": ["a"], "operator": "LIKE", "property": "id"}
                }
            },
            "LIKE",
        ),
        (
            {"QueryFilter": {"expression": {"operator": "or", "nestedExpression": []}}},
            "'or'",
        ),
        ({"QueryFilter": {"expression": {"operator": "and", "nestedExpression": []}}}, "nested"),
        (
            {
                "QueryFilter": {
                    "expression": {"argument": ["a"], "operator": "EQUALS", "property": "x"}
                }
            },
            "Unknown filter property 'x'",
        ),
        (
            {
                "QueryFilter": {
                    "expression": {"argument": "a", "operator": "EQUALS", "property": "id"}
                }
            },
            "one string argument",
        ),
        (
            {
                "QueryFilter": {
                    "expression": {"argument": ["a", "b"], "operator": "EQUALS", "property": "id"}
                }
            },
            "one string argument",
        ),
    ],
)
def test_parse_query_filter_rejects(document: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_query_filter(document, {"id", "name"})


def test_parse_listener_status_filter() -> None:
    assert parse_listener_status_filter(status_filter("c1")) == ("c1", None)
    assert parse_listener_status_filter(status_filter("c1", "l1")) == ("c1", "l1")
    only_listener = {
        "QueryFilter": {
            "expression": {"argument": ["l1"], "operator": "EQUALS", "property": "listenerId"}
        }
    }
    with pytest.raises(BadRequest, match="containerId"):
        parse_listener_status_filter(only_listener)
    with pytest.raises(BadRequest, match="containerId"):
        parse_listener_status_filter(None)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("u@x", "p:with:colons"), ("u@x", "p:with:colons")),
        (basic("BOOMI_TOKEN.u@x", "t"), ("BOOMI_TOKEN.u@x", "t")),
        ("", None),
        ("Bearer abc", None),
        ("Basic !!!notbase64", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
    ],
)
def test_parse_basic_auth(header: str, expected: tuple[str, str] | None) -> None:
    assert parse_basic_auth(header) == expected


def test_render_xml_is_well_formed_and_escaped() -> None:
    document = {
        "@type": "QueryResult",
        "result": [{"@type": "Atom", "id": "a", "name": 'x < y & "z"', "online": True}],
        "numberOfResults": 1,
        "skipped": None,
    }
    root = ET.fromstring(render_xml(document))
    assert root.tag == f"{BNS}QueryResult"
    assert root.get("numberOfResults") == "1"
    assert root.get("skipped") is None
    (atom,) = root.findall(f"{BNS}result")
    assert atom.get(XSI_TYPE) == "bns:Atom"
    assert atom.get("name") == 'x < y & "z"'
    assert atom.get("online") == "true"


def test_faults_validation() -> None:
    with pytest.raises(ValueError, match="throttle_rate"):
        Faults(throttle_rate=1.5)
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.from_json({"throttle": 1})
    with pytest.raises(ValueError, match="number"):
        Faults.from_json({"drop_rate": "often"})
    with pytest.raises(ValueError, match="container_ids"):
        Faults.from_json({"container_ids": "c1"})
    assert Faults.from_json({"drop_rate": 1, "container_ids": ["c1"]}) == Faults(
        drop_rate=1, container_ids=["c1"]
    )


# --------------------------------------------------------------------------------------------
# Authentication and content negotiation
# --------------------------------------------------------------------------------------------


async def test_missing_or_invalid_authorization_is_401() -> None:
    async with running(make_sim()) as api:
        for headers in (JSON, {**JSON, "Authorization": "Bearer abc"}):
            reply = await api.call(
                "POST", "async/ListenerStatus/query", status_filter("c1"), headers=headers
            )
            assert reply.status == 401
            assert reply.json["@type"] == "Error"
            assert reply.json["message"]


async def test_wrong_credentials_and_unknown_account_are_403() -> None:
    async with running(make_sim()) as api:
        wrong = {**JSON, "Authorization": basic(USER, "wrong")}
        reply = await api.call(
            "POST", "async/ListenerStatus/query", status_filter("c1"), headers=wrong
        )
        assert reply.status == 403
        assert reply.json == {
            "@type": "Error",
            "message": "Access denied due to insufficient permissions.",
        }
        # The token user does not take the password, only the API token.
        token_user_password = {**JSON, "Authorization": basic(f"BOOMI_TOKEN.{USER}", PASSWORD)}
        reply = await api.call("POST", "Atom/query", headers=token_user_password)
        assert reply.status == 403
        api.account = "someone-else"
        reply = await api.call("POST", "Atom/query")
        assert reply.status == 403
        assert reply.json["message"] == "Access denied due to insufficient permissions."


async def test_boomi_token_user_with_api_token_is_accepted() -> None:
    async with running(make_sim()) as api:
        token_auth = {**JSON, "Authorization": basic(f"BOOMI_TOKEN.{USER}", API_TOKEN)}
        reply = await api.call(
            "POST", "async/ListenerStatus/query", status_filter("c1"), headers=token_auth
        )
        assert reply.status == 200
        assert reply.json["asyncToken"]["token"].startswith("ListenerStatus-")


async def test_xml_unless_json_is_asked_for() -> None:
    clock = FakeClock()
    async with running(make_sim(clock)) as api:
        no_accept = {"Content-Type": "application/json", **AUTH}
        reply = await api.call(
            "POST", "async/ListenerStatus/query", status_filter("c1"), headers=no_accept
        )
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/xml")
        root = ET.fromstring(reply.text)
        assert root.tag == f"{BNS}AsyncOperationTokenResult"
        assert root.get("responseStatusCode") == "202"
        token_element = root.find(f"{BNS}asyncToken")
        assert token_element is not None
        token = token_element.get("token")
        assert token is not None and token.startswith("ListenerStatus-")

        clock.advance(10)
        reply = await api.call("GET", f"async/ListenerStatus/response/{token}", headers=AUTH)
        root = ET.fromstring(reply.text)
        assert root.tag == f"{BNS}AsyncOperationResult"
        rows = root.findall(f"{BNS}result")
        assert {row.get("listenerId") for row in rows} == {"l1", "l2", "l3"}
        assert {row.get(XSI_TYPE) for row in rows} == {"bns:ListenerStatus"}

        # Errors follow the same rule.
        reply = await api.call("POST", "Atom/query", headers={"Authorization": basic(USER, "x")})
        assert reply.status == 403
        assert (
            ET.fromstring(reply.text).get("message")
            == "Access denied due to insufficient permissions."
        )


# --------------------------------------------------------------------------------------------
# ListenerStatus
# --------------------------------------------------------------------------------------------


async def test_query_then_unsettled_then_result_then_gone() -> None:
    clock = FakeClock()
    sim = make_sim(clock, result_delay_seconds=5.0)
    async with running(sim) as api:
        token = await api.query("c1")
        http_statuses = set()
        for _ in range(12):
            reply = await api.result(token)
            http_statuses.add(reply.status)
            assert reply.json == {
                "@type": "AsyncOperationResult",
                "result": [
                    {"@type": "AsyncOperationStatus", "message": "Connecting to runtime..."}
                ],
                "responseStatusCode": 202,
            }
        # Both HTTP statuses occur for an unsettled answer, as in reality.
        assert http_statuses == {200, 202}

        clock.advance(5.0)
        reply = await api.result(token)
        assert reply.status == 200
        assert reply.json == {
            "@type": "AsyncOperationResult",
            "result": [
                {
                    "@type": "ListenerStatus",
                    "listenerId": "l1",
                    "status": "listening",
                    "connectorType": "wss",
                },
                {
                    "@type": "ListenerStatus",
                    "listenerId": "l2",
                    "status": "errored",
                    "connectorType": "atomqueue",
                },
                {"@type": "ListenerStatus", "listenerId": "l3", "status": "paused"},
            ],
            "numberOfResults": 3,
            "responseStatusCode": 200,
        }

        reply = await api.result(token)
        assert reply.status == 204
        assert reply.text == ""
        counts = sim.request_counts
        assert counts["POST listener_status_query 200"] == 1
        assert (
            counts["GET listener_status_result 200"] + counts["GET listener_status_result 202"]
            == 13
        )
        assert counts["GET listener_status_result 204"] == 1


async def test_result_shows_status_when_first_served() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    async with running(sim) as api:
        token = await api.query("c1", "l1")
        sim.set_status(ACCOUNT, "l1", "UNSUPPORTED")
        rows = await settled_rows(api, clock, token)
        assert rows == [
            {
                "@type": "ListenerStatus",
                "listenerId": "l1",
                "status": "UNSUPPORTED",
                "connectorType": "wss",
            }
        ]


async def test_legacy_query_route_and_sdk_type_keys() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    async with running(sim) as api:
        body = status_filter("c2")
        body["@type"] = "ListenerStatusQueryConfig"
        body["QueryFilter"]["@type"] = "QueryFilter"
        body["QueryFilter"]["expression"]["@type"] = "SimpleExpression"
        reply = await api.call("POST", "ListenerStatus/query/async", body)
        assert reply.status == 200
        rows = await settled_rows(api, clock, reply.json["asyncToken"]["token"])
        assert [row["listenerId"] for row in rows] == ["l4"]
        assert sim.request_counts["POST listener_status_query 200"] == 1


@pytest.mark.parametrize(
    ("container_id", "listener_id"),
    [("c-empty", None), ("no-such-container", None), ("c1", "l4"), ("c1", "no-such-listener")],
)
async def test_settled_empty_result_is_the_documented_202_quirk(
    container_id: str, listener_id: str | None
) -> None:
    clock = FakeClock()
    async with running(make_sim(clock)) as api:
        token = await api.query(container_id, listener_id)
        clock.advance(10)
        reply = await api.result(token)
        assert reply.status == 202
        assert reply.json == {
            "@type": "AsyncOperationResult",
            "numberOfResults": 0,
            "responseStatusCode": 202,
        }
        assert (await api.result(token)).status == 204


async def test_offline_container_never_settles_until_online() -> None:
    clock = FakeClock()
    async with running(make_sim(clock)) as api:
        token = await api.query("c-off")
        clock.advance(600)
        reply = await api.result(token)
        assert reply.json["responseStatusCode"] == 202
        assert reply.json["result"][0]["@type"] == "AsyncOperationStatus"
        assert (await api.control("PUT", "containers/c-off", {"status": "ONLINE"})).status == 200
        reply = await api.result(token)
        assert reply.json["responseStatusCode"] == 200
        assert [row["listenerId"] for row in reply.json["result"]] == ["l5"]


async def test_unknown_token_is_410() -> None:
    sim = make_sim()
    sim.add_account("other", username=USER, password=PASSWORD)
    sim.add_container("other", "c1", "other-molecule")
    async with running(sim) as api:
        reply = await api.result("ListenerStatus-never-issued")
        assert reply.status == 410
        assert reply.json["@type"] == "Error"
        token = await api.query("c1")
        api.account = "other"
        assert (await api.result(token)).status == 410


async def test_token_expires_after_ttl() -> None:
    clock = FakeClock()
    async with running(make_sim(clock, token_ttl_seconds=60.0)) as api:
        token = await api.query("c1")
        clock.advance(59.0)
        assert (await api.result(token)).json["responseStatusCode"] == 200
        token = await api.query("c1")
        clock.advance(60.0)
        reply = await api.result(token)
        assert reply.status == 204
        assert reply.text == ""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "containerId"),
        ("[1]", "JSON object"),
        (
            json.dumps(
                {
                    "QueryFilter": {
                        "expression": {
                            "argument": ["l1"],
                            "operator": "EQUALS",
                            "property": "listenerId",
                        }
                    }
                }
            ),
            "containerId",
        ),
        (
            json.dumps(
                {
                    "QueryFilter": {
                        "expression": {
                            "argument": ["x"],
                            "operator": "EQUALS",
                            "property": "status",
                        }
                    }
                }
            ),
            "status",
        ),
    ],
)
async def test_bad_query_bodies_are_400(data: str, message: str) -> None:
    async with running(make_sim()) as api:
        reply = await api.call("POST", "async/ListenerStatus/query", data=data)
        assert reply.status == 400
        assert reply.json["@type"] == "Error"
        assert message in reply.json["message"]


# --------------------------------------------------------------------------------------------
# Rate limit
# --------------------------------------------------------------------------------------------


async def test_rate_limit_accepts_exactly_r_per_second() -> None:
    clock = FakeClock()
    sim = Simulator(seed=1, clock=clock)
    sim.add_account(ACCOUNT, username=USER, password=PASSWORD, rate_limit_rps=4)
    sim.add_container(ACCOUNT, "c1", "prod-molecule-1")
    async with running(sim) as api:
        replies = await asyncio.gather(*(api.call("POST", "Atom/query") for _ in range(12)))
        codes = sorted(reply.status for reply in replies)
        assert codes == [200] * 4 + [503] * 8
        rejected = next(reply for reply in replies if reply.status == 503)
        assert rejected.json["@type"] == "Error"
        assert "Retry-After" not in rejected.headers
        assert sim.throttled == 8
        assert sim.request_counts == {"POST atom_query 200": 4, "POST atom_query 503": 8}

        # Rejected requests do not use up the budget: the window slides from accepted ones.
        clock.advance(0.999)
        assert (await api.call("POST", "Atom/query")).status == 503
        clock.advance(0.002)
        replies = await asyncio.gather(*(api.call("POST", "Atom/query") for _ in range(5)))
        assert sorted(reply.status for reply in replies) == [200] * 4 + [503]

        # Unauthenticated requests spend the account's budget too; the control API never does.
        clock.advance(1.0)
        bad = {**JSON, "Authorization": basic(USER, "wrong")}
        replies = await asyncio.gather(
            *(api.call("POST", "Atom/query", headers=bad) for _ in range(5))
        )
        assert sorted(reply.status for reply in replies) == [403] * 4 + [503]
        for _ in range(10):
            assert (await api.control("GET", "state")).status == 200


# --------------------------------------------------------------------------------------------
# changeListenerStatus
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"action": "restart", "listenerId": "l2"},
            {"l1": "listening", "l2": "listening", "l3": "paused"},
        ),
        (
            {"action": "restart", "listenerId": "l3"},
            {"l1": "listening", "l2": "errored", "l3": "paused"},
        ),
        (
            {"action": "restart", "listenerId": "l1"},
            {"l1": "listening", "l2": "errored", "l3": "paused"},
        ),
        (
            {"action": "pause", "listenerId": "l1"},
            {"l1": "paused", "l2": "errored", "l3": "paused"},
        ),
        (
            {"action": "resume", "listenerId": "l3"},
            {"l1": "listening", "l2": "errored", "l3": "listening"},
        ),
        (
            {"action": "resume", "listenerId": "l2"},
            {"l1": "listening", "l2": "errored", "l3": "paused"},
        ),
        ({"action": "restart_all"}, {"l1": "listening", "l2": "listening", "l3": "paused"}),
        ({"action": "pause_all"}, {"l1": "paused", "l2": "paused", "l3": "paused"}),
        ({"action": "resume_all"}, {"l1": "listening", "l2": "errored", "l3": "listening"}),
    ],
)
async def test_change_listener_status_takes_effect_after_the_delay(
    body: dict[str, str], expected: dict[str, str]
) -> None:
    clock = FakeClock()
    sim = make_sim(clock, restart_delay_seconds=2.0)
    before = statuses(sim)
    async with running(sim) as api:
        reply = await api.change(containerId="c1", **body)
        assert reply.status == 200
        assert reply.text == ""
        entry = sim.change_log[-1]
        assert entry["account_id"] == ACCOUNT
        assert entry["container_id"] == "c1"
        assert entry["listener_id"] == body.get("listenerId")
        assert entry["action"] == body["action"]
        assert abs(float(str(entry["time"])) - time.time()) < 60

        clock.advance(1.9)
        assert statuses(sim) == before
        clock.advance(0.1)
        after = statuses(sim)
        assert {lid: after[lid] for lid in ("l1", "l2", "l3")} == expected
        # Other containers are never touched.
        assert after["l4"] == before["l4"]
        assert after["l5"] == before["l5"]

        # A fresh ListenerStatus query sees the effect.
        rows = await settled_rows(api, clock, await api.query("c1"))
        assert {row["listenerId"]: row["status"] for row in rows} == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "not valid JSON"),
        ('["restart"]', "JSON object"),
        (json.dumps({"containerId": "c1", "listenerId": "l1"}), "Unknown action None"),
        (
            json.dumps({"containerId": "c1", "listenerId": "l1", "action": "reboot"}),
            "Unknown action 'reboot'",
        ),
        (
            json.dumps({"containerId": "c1", "listenerId": "l1", "action": "RESTART"}),
            "Unknown action",
        ),
        (json.dumps({"listenerId": "l1", "action": "restart"}), "containerId is required"),
        (
            json.dumps({"containerId": "nope", "listenerId": "l1", "action": "restart"}),
            "Container nope does not exist",
        ),
        (
            json.dumps({"containerId": "c1", "action": "restart"}),
            "listenerId is required for the restart action",
        ),
        (
            json.dumps({"containerId": "c1", "action": "pause"}),
            "listenerId is required for the pause action",
        ),
        (
            json.dumps({"containerId": "c1", "action": "resume"}),
            "listenerId is required for the resume action",
        ),
        (
            json.dumps({"containerId": "c1", "listenerId": "l1", "action": "restart_all"}),
            "omit listenerId",
        ),
        (
            json.dumps({"containerId": "c1", "listenerId": "l1", "action": "pause_all"}),
            "omit listenerId",
        ),
        (
            json.dumps({"containerId": "c1", "listenerId": "l1", "action": "resume_all"}),
            "omit listenerId",
        ),
        (
            json.dumps({"containerId": "c1", "listenerId": "nope", "action": "restart"}),
            "Listener nope does not exist",
        ),
        (
            json.dumps({"containerId": "c2", "listenerId": "l1", "action": "restart"}),
            "not deployed on container c2",
        ),
    ],
)
async def test_change_listener_status_errors_are_400(data: str, message: str) -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    before = statuses(sim)
    async with running(sim) as api:
        reply = await api.call("POST", "changeListenerStatus", data=data)
        assert reply.status == 400
        assert reply.json["@type"] == "Error"
        assert message in reply.json["message"]
        assert sim.change_log == []
        clock.advance(100)
        assert statuses(sim) == before
        assert sim.request_counts == {"POST change_listener_status 400": 1}


async def test_change_listener_status_without_permission_is_403() -> None:
    async with running(make_sim()) as api:
        headers = {**JSON, "Authorization": basic(USER, "wrong")}
        reply = await api.call(
            "POST",
            "changeListenerStatus",
            {"containerId": "c1", "listenerId": "l2", "action": "restart"},
            headers=headers,
        )
        assert reply.status == 403
        assert reply.json["message"] == "Access denied due to insufficient permissions."


# --------------------------------------------------------------------------------------------
# Atom and Process
# --------------------------------------------------------------------------------------------


async def test_atom_query_pages_by_100() -> None:
    sim = Simulator.with_fleet(
        account_id=ACCOUNT, containers=250, listeners_per_container=0, rate_limit_rps=100
    )
    expected_ids = set(sim.accounts[ACCOUNT].containers)
    api_headers = {**JSON, "Authorization": basic("demo@example.com", "demo-password")}
    async with running(sim) as api:
        reply = await api.call("POST", "Atom/query", {"QueryFilter": None}, headers=api_headers)
        pages = [reply.json]
        while "queryToken" in pages[-1]:
            token = pages[-1]["queryToken"]
            more_headers = {**api_headers, "Content-Type": "text/plain"}
            reply = await api.call("POST", "Atom/queryMore", headers=more_headers, data=token)
            assert reply.status == 200
            pages.append(reply.json)
        assert [len(page["result"]) for page in pages] == [100, 100, 50]
        assert {page["numberOfResults"] for page in pages} == {250}
        assert {page["@type"] for page in pages} == {"QueryResult"}
        atoms = [atom for page in pages for atom in page["result"]]
        assert {atom["id"] for atom in atoms} == expected_ids
        assert set(atoms[0]) == {
            "@type",
            "id",
            "name",
            "status",
            "type",
            "hostName",
            "currentVersion",
        }
        assert atoms[0]["name"] == "prod-molecule-1"

        reply = await api.call("POST", "Atom/queryMore", headers=api_headers, data="no-such-token")
        assert reply.status == 400
        assert "queryToken" in reply.json["message"]
        # A token only serves its own object type.
        first = await api.call("POST", "Atom/query", headers=api_headers)
        reply = await api.call(
            "POST", "Process/queryMore", headers=api_headers, data=first.json["queryToken"]
        )
        assert reply.status == 400


async def test_atom_query_filters() -> None:
    async with running(make_sim()) as api:

        def equals(prop: str, value: str) -> dict[str, Any]:
            return {
                "QueryFilter": {
                    "expression": {"argument": [value], "operator": "EQUALS", "property": prop}
                }
            }

        reply = await api.call("POST", "Atom/query", equals("name", "prod-atom-1"))
        assert reply.json["numberOfResults"] == 1
        assert reply.json["result"][0]["id"] == "c2"
        assert reply.json["result"][0]["type"] == "ATOM"
        assert "queryToken" not in reply.json
        reply = await api.call("POST", "Atom/query", equals("status", "OFFLINE"))
        assert [atom["id"] for atom in reply.json["result"]] == ["c-off"]
        both = {
            "QueryFilter": {
                "expression": {
                    "operator": "and",
                    "nestedExpression": [
                        equals("type", "MOLECULE")["QueryFilter"]["expression"],
                        equals("id", "c1")["QueryFilter"]["expression"],
                    ],
                }
            }
        }
        reply = await api.call("POST", "Atom/query", both)
        assert [atom["id"] for atom in reply.json["result"]] == ["c1"]
        reply = await api.call("POST", "Atom/query", equals("name", "nothing"))
        assert reply.json == {"@type": "QueryResult", "result": [], "numberOfResults": 0}
        reply = await api.call("POST", "Atom/query", equals("color", "blue"))
        assert reply.status == 400
        assert "color" in reply.json["message"]


async def test_process_query_and_bulk() -> None:
    sim = make_sim()
    async with running(sim) as api:
        reply = await api.call(
            "POST",
            "Process/query",
            {
                "QueryFilter": {
                    "expression": {
                        "argument": ["Invoices"],
                        "operator": "EQUALS",
                        "property": "name",
                    }
                }
            },
        )
        assert reply.json == {
            "@type": "QueryResult",
            "result": [{"@type": "Process", "id": "l4", "name": "Invoices"}],
            "numberOfResults": 1,
        }
        reply = await api.call(
            "POST", "Process/bulk", {"type": "GET", "request": [{"id": "l1"}, {"id": "nope"}]}
        )
        assert reply.status == 200
        assert reply.json["@type"] == "BulkResult"
        found, missing = reply.json["response"]
        assert found == {
            "@type": "BulkResponse",
            "index": 0,
            "id": "l1",
            "statusCode": 200,
            "Result": {"@type": "Process", "id": "l1", "name": "Orders WSS Listener"},
        }
        assert missing["index"] == 1
        assert missing["id"] == "nope"
        assert missing["statusCode"] == 400
        assert missing["ErrorMessage"]
        assert "Result" not in missing

        reply = await api.call(
            "POST",
            "Process/bulk",
            {"type": "GET", "request": [{"id": f"p{i}"} for i in range(101)]},
        )
        assert reply.status == 400
        assert "100" in reply.json["message"]
        reply = await api.call("POST", "Process/bulk", {"type": "DELETE", "request": []})
        assert reply.status == 400
        assert sim.request_counts["POST process_bulk 400"] == 2


async def test_unknown_route_is_404_and_counted() -> None:
    sim = make_sim()
    async with running(sim) as api:
        reply = await api.call("GET", "Atom/query")
        assert reply.status == 404
        assert reply.json["@type"] == "Error"
        assert (await api.call("POST", "Environment/query", {})).status == 404
        assert sim.request_counts == {"GET unknown 404": 1, "POST unknown 404": 1}


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


async def test_fault_5xx() -> None:
    sim = make_sim()
    sim.set_faults(Faults(error_5xx_rate=1.0))
    async with running(sim) as api:
        replies = [await api.call("POST", "Atom/query") for _ in range(10)]
        assert {reply.status for reply in replies} == {500, 502}
        assert {reply.json["@type"] for reply in replies} == {"Error"}
        assert sim.throttled == 0


async def test_fault_throttle_with_retry_after() -> None:
    sim = make_sim()
    sim.set_faults(Faults(throttle_rate=1.0, retry_after_seconds=2))
    async with running(sim) as api:
        reply = await api.call("POST", "async/ListenerStatus/query", status_filter("c1"))
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "2"
        assert reply.json["@type"] == "Error"
        assert sim.throttled == 1
        assert sim.request_counts == {"POST listener_status_query 503": 1}


async def test_fault_malformed_json() -> None:
    sim = make_sim()
    sim.set_faults(Faults(malformed_rate=1.0))
    async with running(sim) as api:
        reply = await api.call("POST", "async/ListenerStatus/query", status_filter("c1"))
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(reply.text)


async def test_fault_xml_although_json_was_asked_for() -> None:
    sim = make_sim()
    sim.set_faults(Faults(xml_rate=1.0))
    async with running(sim) as api:
        reply = await api.call("POST", "async/ListenerStatus/query", status_filter("c1"))
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/xml")
        assert ET.fromstring(reply.text).tag == f"{BNS}AsyncOperationTokenResult"


async def test_fault_slow() -> None:
    sim = make_sim()
    sim.set_faults(Faults(slow_rate=1.0, slow_seconds=0.1))
    async with running(sim) as api:
        started = time.monotonic()
        reply = await api.call("POST", "Atom/query")
        assert reply.status == 200
        assert time.monotonic() - started >= 0.1


async def test_fault_never_settle() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    sim.set_faults(Faults(never_settle_rate=1.0))
    async with running(sim) as api:
        token = await api.query("c1")
        sim.set_faults(Faults())
        clock.advance(600)
        for _ in range(3):
            assert (await api.result(token)).json["responseStatusCode"] == 202
        clock.advance(1800)
        assert (await api.result(token)).status == 204


async def test_fault_drop_closes_the_connection() -> None:
    sim = make_sim()
    sim.set_faults(Faults(drop_rate=1.0))
    async with running(sim) as api:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api.call("POST", "Atom/query")
        sim.set_faults(Faults())
        assert (await api.call("POST", "Atom/query")).status == 200
        assert sim.request_counts == {"POST atom_query dropped": 1, "POST atom_query 200": 1}


async def test_fault_gone_although_the_result_exists() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    async with running(sim) as api:
        token = await api.query("c1")
        clock.advance(10)
        sim.set_faults(Faults(gone_rate=1.0))
        codes = {(await api.result(token)).status for _ in range(12)}
        assert codes == {204, 410}
        sim.set_faults(Faults())
        assert (await api.result(token)).json["numberOfResults"] == 3


async def test_faults_limited_to_some_containers() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    sim.set_faults(Faults(error_5xx_rate=1.0, container_ids=["c1"]))
    async with running(sim) as api:
        assert (
            await api.call("POST", "async/ListenerStatus/query", status_filter("c1"))
        ).status >= 500
        token = await api.query("c2")
        assert (await api.call("POST", "Atom/query")).status == 200
        assert (
            await api.call("POST", "Process/bulk", {"type": "GET", "request": []})
        ).status == 200
        change = {"containerId": "c1", "listenerId": "l1", "action": "restart"}
        assert (await api.call("POST", "changeListenerStatus", change)).status >= 500
        change = {"containerId": "c2", "listenerId": "l4", "action": "restart"}
        assert (await api.call("POST", "changeListenerStatus", change)).status == 200
        clock.advance(10)
        assert (await api.result(token)).status == 200

        # The result of a c1 token, issued before the faults, is hit too.
        sim.set_faults(Faults())
        token = await api.query("c1")
        sim.set_faults(Faults(error_5xx_rate=1.0, container_ids=["c1"]))
        assert (await api.result(token)).status >= 500


async def test_faults_are_reproducible_for_a_seed() -> None:
    async def run() -> list[int]:
        sim = make_sim()
        sim.set_faults(Faults(error_5xx_rate=0.3, throttle_rate=0.2))
        async with running(sim) as api:
            return [(await api.call("POST", "Atom/query")).status for _ in range(30)]

    first = await run()
    assert first == await run()
    assert {200, 503} <= set(first)
    assert set(first) & {500, 502}


# --------------------------------------------------------------------------------------------
# Control API
# --------------------------------------------------------------------------------------------


async def test_control_state() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    async with running(sim) as api:
        await api.change(containerId="c1", listenerId="l2", action="restart")
        clock.advance(10)
        reply = await api.control("GET", "state")
        assert reply.status == 200
        state = reply.json
        assert state == json.loads(json.dumps(sim.state()))
        account = state["accounts"][ACCOUNT]
        assert account["rate_limit_rps"] == 1000
        assert account["containers"][0] == {
            "container_id": "c1",
            "name": "prod-molecule-1",
            "type": "MOLECULE",
            "status": "ONLINE",
            "host_name": "",
        }
        assert {
            "listener_id": "l2",
            "container_id": "c1",
            "status": "listening",
            "connector_type": "atomqueue",
            "process_name": "",
        } in account["listeners"]
        assert [entry["action"] for entry in state["change_log"]] == ["restart"]
        assert state["request_counts"] == {"POST change_listener_status 200": 1}
        assert state["throttled"] == 0
        assert state["faults"]["drop_rate"] == 0.0


async def test_control_listener_endpoints() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    async with running(sim) as api:
        reply = await api.control("PUT", "listeners/l1", {"status": "errored"})
        assert reply.status == 200
        assert reply.json["status"] == "errored"
        rows = await settled_rows(api, clock, await api.query("c1", "l1"))
        assert rows[0]["status"] == "errored"
        assert (await api.control("PUT", "listeners/nope", {"status": "errored"})).status == 404
        assert (await api.control("PUT", "listeners/l1", {"state": "errored"})).status == 400

        new = {
            "account_id": ACCOUNT,
            "container_id": "c-empty",
            "listener_id": "l9",
            "status": "listening",
            "connector_type": None,
            "process_name": "New Listener",
        }
        reply = await api.control("POST", "listeners", new)
        assert reply.status == 201
        assert reply.json == {k: v for k, v in new.items() if k != "account_id"}
        assert (await api.control("POST", "listeners", new)).status == 409
        assert (await api.control("POST", "listeners", {**new, "container_id": "x"})).status == 404
        rows = await settled_rows(api, clock, await api.query("c-empty"))
        assert rows == [{"@type": "ListenerStatus", "listenerId": "l9", "status": "listening"}]

        assert (await api.control("DELETE", "listeners/l9")).status == 204
        assert (await api.control("DELETE", "listeners/l9")).status == 404
        clock.advance(10)
        token = await api.query("c-empty")
        clock.advance(10)
        assert (await api.result(token)).json["numberOfResults"] == 0


async def test_control_listener_in_several_accounts_needs_account_id() -> None:
    sim = make_sim()
    sim.add_account("other")
    sim.add_container("other", "c1", "other-molecule")
    sim.add_listener("other", "c1", "l1")
    async with running(sim) as api:
        assert (await api.control("PUT", "listeners/l1", {"status": "paused"})).status == 400
        reply = await api.control(
            "PUT", "listeners/l1", {"status": "paused", "account_id": "other"}
        )
        assert reply.status == 200
        assert sim.accounts["other"].listeners["l1"].status == "paused"
        assert sim.accounts[ACCOUNT].listeners["l1"].status == "listening"


async def test_control_container_endpoint() -> None:
    async with running(make_sim()) as api:
        reply = await api.control("PUT", "containers/c1", {"status": "OFFLINE"})
        assert reply.status == 200
        assert reply.json["status"] == "OFFLINE"
        reply = await api.call("POST", "Atom/query")
        assert {atom["id"]: atom["status"] for atom in reply.json["result"]}["c1"] == "OFFLINE"
        assert (await api.control("PUT", "containers/nope", {"status": "OFFLINE"})).status == 404


async def test_control_faults_and_reset_counters() -> None:
    sim = make_sim()
    async with running(sim) as api:
        reply = await api.control(
            "POST", "faults", {"throttle_rate": 1.0, "retry_after_seconds": 0.5}
        )
        assert reply.status == 200
        assert reply.json["throttle_rate"] == 1.0
        assert reply.json["retry_after_seconds"] == 0.5
        assert reply.json["error_5xx_rate"] == 0.0
        reply = await api.call("POST", "Atom/query")
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "0.5"

        assert (await api.control("POST", "faults", {"throttle": 1.0})).status == 400
        assert (await api.control("POST", "faults", {"drop_rate": 2})).status == 400
        assert (await api.control("POST", "faults", [])).status == 400
        assert sim.faults.throttle_rate == 1.0  # a rejected update leaves the faults alone

        reply = await api.control("DELETE", "faults")
        assert reply.status == 200
        assert reply.json["throttle_rate"] == 0.0
        assert (await api.call("POST", "Atom/query")).status == 200
        await api.change(containerId="c1", listenerId="l2", action="restart")
        assert sim.throttled == 1 and sim.change_log and sim.request_counts

        assert (await api.control("POST", "reset-counters")).status == 204
        assert sim.throttled == 0
        assert sim.change_log == []
        assert sim.request_counts == {}


# --------------------------------------------------------------------------------------------
# Fleet, determinism, demo helpers
# --------------------------------------------------------------------------------------------


async def test_same_seed_same_fleet_and_tokens() -> None:
    async def tokens(sim: Simulator) -> list[str]:
        async with running(sim, "demo-account") as api:
            api_headers = {**JSON, "Authorization": basic("demo@example.com", "demo-password")}
            container_id = next(iter(sim.accounts["demo-account"].containers))
            body = status_filter(container_id)
            replies = [
                await api.call("POST", "async/ListenerStatus/query", body, headers=api_headers)
                for _ in range(3)
            ]
            return [reply.json["asyncToken"]["token"] for reply in replies]

    first, second, other = (Simulator.with_fleet(seed=seed) for seed in (5, 5, 6))
    assert first.state() == second.state()
    assert first.state() != other.state()
    assert await tokens(first) == await tokens(second)
    assert await tokens(first) != await tokens(other)


def test_fleet_is_realistic() -> None:
    sim = Simulator.with_fleet(containers=3, listeners_per_container=5)
    account = sim.accounts["demo-account"]
    assert [c.name for c in account.containers.values()] == [
        "prod-molecule-1",
        "prod-atom-1",
        "test-molecule-1",
    ]
    listeners = list(account.listeners.values())
    assert len(listeners) == 15
    connector_types = {listener.connector_type for listener in listeners}
    assert {"wss", "atomqueue", "jms", None} <= connector_types
    assert any(ct is not None and len(ct) > 20 for ct in connector_types)
    assert "Orders WSS Listener" in {listener.process_name for listener in listeners}
    assert sum(listener.status == "listening" for listener in listeners) > len(listeners) / 2
    assert account.rate_limit_rps == 10.0


def test_describe_tells_how_to_connect() -> None:
    sim = Simulator.with_fleet(containers=2, listeners_per_container=3, rate_limit_rps=5)
    text = describe(sim, "http://127.0.0.1:8080/api/rest/v1")
    for expected in (
        "http://127.0.0.1:8080/api/rest/v1",
        "demo-account",
        "demo@example.com",
        "demo-password",
        "BOOMI_TOKEN.demo@example.com",
        "demo-api-token",
        "2 containers, 6 listeners",
        "5 requests per second",
        "curl",
        "http://127.0.0.1:8080/__simulator/state",
    ):
        assert expected in text


async def test_flap_changes_statuses_and_stops_when_cancelled() -> None:
    sim = Simulator.with_fleet(containers=2, listeners_per_container=4)
    for account_id, account in sim.accounts.items():
        for listener_id in account.listeners:
            sim.set_status(account_id, listener_id, "listening")

    def all_listening() -> bool:
        return all(
            lst.status == "listening" for lst in sim.accounts["demo-account"].listeners.values()
        )

    calm = asyncio.create_task(sim.flap(interval_seconds=0.01, probability=0.0))
    await asyncio.sleep(0.05)
    calm.cancel()
    assert all_listening()

    flapping = asyncio.create_task(sim.flap(interval_seconds=0.02, probability=1.0))
    try:
        for _ in range(100):
            await asyncio.sleep(0.005)
            if not all_listening():
                break
        assert not all_listening()
    finally:
        flapping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flapping


async def test_serve_reports_a_loopback_url_for_a_wildcard_host() -> None:
    runner, base_url = await serve(make_sim(), "0.0.0.0", 0)
    try:
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/api/rest/v1")
        async with (
            aiohttp.ClientSession() as session,
            session.get(base_url.removesuffix("/api/rest/v1") + "/__simulator/state") as resp,
        ):
            assert resp.status == 200
    finally:
        await runner.cleanup()
