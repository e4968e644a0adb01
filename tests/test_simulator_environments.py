"""The simulator's environments over a real socket: the Environment and EnvironmentAtomAttachment
queries (filters, paging by 100) and the control API that attaches, moves and detaches runtimes."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.simulator import Simulator, parse_filter_predicate
from tests.simulator_helpers import ACCOUNT, JSON, Api, basic, make_sim, running


def expression(prop: str, operator: str, *arguments: str) -> dict[str, Any]:
    return {"argument": list(arguments), "operator": operator, "property": prop}


def query(expr: dict[str, Any] | None) -> dict[str, Any]:
    return {"QueryFilter": {} if expr is None else {"expression": expr}}


def with_environments() -> Simulator:
    sim = make_sim()
    prod = sim.add_environment(ACCOUNT, "Production", environment_id="e-prod")
    test = sim.add_environment(ACCOUNT, "Test", classification="TEST", environment_id="e-test")
    sim.add_environment(ACCOUNT, "Basic", classification=None, environment_id="e-basic")
    sim.attach(ACCOUNT, "c1", prod.environment_id)
    sim.attach(ACCOUNT, "c2", prod.environment_id)
    sim.attach(ACCOUNT, "c-empty", test.environment_id)
    return sim  # c-off is attached to none


async def names(api: Api, body: dict[str, Any]) -> list[str]:
    reply = await api.call("POST", "Environment/query", body)
    assert reply.status == 200, reply.text
    return [row["name"] for row in reply.json["result"]]


async def test_environment_query_filters() -> None:
    async with running(with_environments()) as api:
        everything = ["Production", "Test", "Basic"]
        assert await names(api, query(expression("name", "LIKE", "%"))) == everything
        assert await names(api, query(None)) == everything  # what Boomi's CLI sends
        assert await names(api, {}) == everything
        assert await names(api, query(expression("classification", "EQUALS", "PROD"))) == [
            "Production"
        ]
        assert await names(api, query(expression("name", "LIKE", "T_st"))) == ["Test"]
        assert await names(api, query(expression("name", "LIKE", "%o%"))) == ["Production"]
        either = {
            "operator": "or",
            "nestedExpression": [
                expression("classification", "EQUALS", "PROD"),
                expression("classification", "EQUALS", "TEST"),
            ],
        }
        # Basic environment support: no classification, so neither PROD nor TEST.
        assert await names(api, query(either)) == ["Production", "Test"]
        assert await names(api, query(expression("classification", "IS_NULL"))) == ["Basic"]
        both = {
            "operator": "and",
            "nestedExpression": [
                expression("classification", "NOT_EQUALS", "TEST"),
                expression("id", "EQUALS", "e-prod"),
            ],
        }
        assert await names(api, query(both)) == ["Production"]
        reply = await api.call(
            "POST", "Environment/query", query(expression("name", "EQUALS", "Test"))
        )
        (row,) = reply.json["result"]
        assert row == {
            "@type": "Environment",
            "id": "e-test",
            "name": "Test",
            "classification": "TEST",
        }
        reply = await api.call(
            "POST", "Environment/query", query(expression("name", "EQUALS", "Basic"))
        )
        assert "classification" not in reply.json["result"][0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (query(expression("atomId", "EQUALS", "x")), "Unknown filter property 'atomId'"),
        (query(expression("name", "BETWEEN", "a", "b")), "Operator 'BETWEEN' is not supported"),
        (query(expression("name", "LIKE")), "takes 1 string argument"),
        (query({"operator": "or", "nestedExpression": []}), "non-empty nestedExpression"),
        ("[]", "must be a JSON object"),
    ],
)
async def test_environment_query_refuses_bad_filters(body: Any, message: str) -> None:
    async with running(with_environments()) as api:
        if isinstance(body, str):
            reply = await api.call("POST", "Environment/query", data=body)
        else:
            reply = await api.call("POST", "Environment/query", body)
        assert reply.status == 400
        assert message in reply.json["message"]


async def attached(api: Api, expr: dict[str, Any]) -> list[tuple[str, str]]:
    reply = await api.call("POST", "EnvironmentAtomAttachment/query", query(expr))
    assert reply.status == 200, reply.text
    rows = reply.json["result"]
    assert {row["@type"] for row in rows} <= {"EnvironmentAtomAttachment"}
    return [(row["atomId"], row["environmentId"]) for row in rows]


async def test_attachment_query_by_environment_and_by_runtime() -> None:
    sim = with_environments()
    async with running(sim) as api:
        prod = expression("environmentId", "EQUALS", "e-prod")
        assert await attached(api, prod) == [("c1", "e-prod"), ("c2", "e-prod")]
        assert await attached(api, expression("atomId", "EQUALS", "c-empty")) == [
            ("c-empty", "e-test")
        ]
        assert await attached(api, expression("atomId", "EQUALS", "c-off")) == []
        assert await attached(api, expression("environmentId", "EQUALS", "e-basic")) == []
        reply = await api.call("POST", "EnvironmentAtomAttachment/query", query(prod))
        ids = {row["id"] for row in reply.json["result"]}
        # One id per attachment, synthesized: neither the runtime's nor the environment's.
        assert len(ids) == 2 and not ids & {"c1", "c2", "e-prod"}
        # A runtime that is removed takes its attachment with it.
        del sim.accounts[ACCOUNT].containers["c2"]
        assert await attached(api, prod) == [("c1", "e-prod")]


async def test_both_queries_page_by_100_and_tokens_stay_with_their_object() -> None:
    sim = Simulator.with_fleet(
        account_id=ACCOUNT, containers=240, listeners_per_container=0, rate_limit_rps=1000
    )
    for number in range(120):
        sim.add_environment(ACCOUNT, f"Sandbox {number}", classification="TEST")
    production = next(
        e for e in sim.accounts[ACCOUNT].environments.values() if e.name == "Production"
    )
    async with running(sim) as api:
        api_headers = {**JSON, "Authorization": basic("demo@example.com", "demo-password")}
        first = await api.call(
            "POST", "Environment/query", query(expression("name", "LIKE", "%")), headers=api_headers
        )
        assert (len(first.json["result"]), first.json["numberOfResults"]) == (100, 122)
        token = first.json["queryToken"]
        text = {**api_headers, "Content-Type": "text/plain"}
        # An environment token does not page attachments.
        wrong = await api.call(
            "POST", "EnvironmentAtomAttachment/queryMore", headers=text, data=token
        )
        assert wrong.status == 400
        more = await api.call("POST", "Environment/queryMore", headers=text, data=token)
        assert len(more.json["result"]) == 22 and "queryToken" not in more.json
        by_production = query(expression("environmentId", "EQUALS", production.environment_id))
        first = await api.call(
            "POST", "EnvironmentAtomAttachment/query", by_production, headers=api_headers
        )
        assert (len(first.json["result"]), first.json["numberOfResults"]) == (100, 180)
        more = await api.call(
            "POST",
            "EnvironmentAtomAttachment/queryMore",
            headers=text,
            data=first.json["queryToken"],
        )
        assert len(more.json["result"]) == 80 and "queryToken" not in more.json


async def test_control_api_attaches_moves_and_detaches_a_runtime() -> None:
    sim = make_sim()
    async with running(sim) as api:
        reply = await api.control(
            "POST", "environments", {"account_id": ACCOUNT, "name": "Production"}
        )
        assert reply.status == 201
        prod = reply.json
        assert (prod["name"], prod["classification"]) == ("Production", "PROD")
        reply = await api.control(
            "POST",
            "environments",
            {
                "account_id": ACCOUNT,
                "name": "Test",
                "classification": "TEST",
                "environment_id": "t",
            },
        )
        assert reply.status == 201 and reply.json["environment_id"] == "t"
        reply = await api.control(
            "PUT", "containers/c1/environment", {"environment_id": prod["environment_id"]}
        )
        assert reply.status == 200
        assert await attached(api, expression("atomId", "EQUALS", "c1")) == [
            ("c1", prod["environment_id"])
        ]
        # Attaching again moves it: still one attachment.
        reply = await api.control("PUT", "containers/c1/environment", {"environment_id": "t"})
        assert reply.status == 200
        assert await attached(api, expression("atomId", "EQUALS", "c1")) == [("c1", "t")]
        state = (await api.control("GET", "state")).json["accounts"][ACCOUNT]
        assert [(a["container_id"], a["environment_id"]) for a in state["attachments"]] == [
            ("c1", "t")
        ]
        assert {e["name"] for e in state["environments"]} == {"Production", "Test"}
        reply = await api.control("DELETE", "containers/c1/environment")
        assert reply.status == 204
        assert await attached(api, expression("atomId", "EQUALS", "c1")) == []
        # Refusals name what is wrong.
        for method, path, body, status, message in [
            ("DELETE", "containers/c1/environment", None, 404, "not attached"),
            ("PUT", "containers/nope/environment", {"environment_id": "t"}, 404, "nope"),
            ("PUT", "containers/c1/environment", {"environment_id": "nope"}, 404, "nope"),
            ("PUT", "containers/c1/environment", {"environment": "t"}, 400, "environment_id"),
            ("POST", "environments", {"account_id": ACCOUNT, "name": "X", "environment_id": "t"},
             409, "already exists"),
            ("POST", "environments", {"account_id": "nope", "name": "X"}, 404, "nope"),
        ]:  # fmt: skip
            reply = await api.control(method, path, body)
            assert reply.status == status, (path, reply.text)
            assert message in reply.json["error"]


async def test_faults_can_be_limited_to_routes() -> None:
    sim = with_environments()
    async with running(sim) as api:
        reply = await api.control(
            "POST", "faults", {"error_5xx_rate": 1.0, "routes": ["environment_query"]}
        )
        assert reply.status == 200, reply.text
        failed = await api.call("POST", "Environment/query", query(None))
        assert failed.status in (500, 502)
        fine = await api.call("POST", "EnvironmentAtomAttachment/query", query(None))
        assert fine.status == 200
        reply = await api.control("POST", "faults", {"routes": "environment_query"})
        assert reply.status == 400 and "routes" in reply.json["error"]


def test_the_fleet_has_a_prod_and_a_test_environment_and_spare_runtimes() -> None:
    sim = Simulator.with_fleet(
        account_id=ACCOUNT, containers=4, listeners_per_container=1, unattached_containers=1
    )
    account = sim.accounts[ACCOUNT]
    where = {
        container.name: account.environments[account.attachments[cid]].classification
        if cid in account.attachments
        else None
        for cid, container in account.containers.items()
    }
    assert where == {
        "prod-molecule-1": "PROD",
        "prod-atom-1": "PROD",
        "test-molecule-1": "TEST",
        "prod-cloud-1": "PROD",
        "spare-atom-1": None,
    }
    # Environments do not draw from the seeded generator: the fleet's ids stay as they were.
    plain = Simulator.with_fleet(account_id=ACCOUNT, containers=4, listeners_per_container=1)
    assert list(plain.accounts[ACCOUNT].containers) == list(account.containers)[:4]


@pytest.mark.parametrize(
    ("expr", "fields", "expected"),
    [
        (expression("name", "LIKE", "%"), {"name": ""}, True),
        (expression("name", "LIKE", "%"), {"name": None}, False),  # an absent field
        (expression("name", "LIKE", "a.c%"), {"name": "a.cde"}, True),
        (expression("name", "LIKE", "a.c%"), {"name": "abcde"}, False),  # . is no wildcard
        (expression("name", "LIKE", "a_c"), {"name": "abc"}, True),
        (expression("name", "LIKE", "a_c"), {"name": "abbc"}, False),
        (expression("name", "EQUALS", "x"), {"name": None}, False),
        (expression("name", "NOT_EQUALS", "x"), {"name": None}, True),
        (expression("name", "IS_NOT_NULL"), {"name": ""}, False),
    ],
)
def test_filter_predicate(expr: dict[str, Any], fields: dict[str, Any], expected: bool) -> None:
    predicate = parse_filter_predicate(query(expr), {"name"})
    assert predicate(fields) is expected
