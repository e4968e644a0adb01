"""Tests of the simulator's Atom and Process queries, paging and Process/bulk, over a real socket."""

from __future__ import annotations

from typing import Any

from exporter.simulator import (
    Simulator,
)
from tests.simulator_helpers import (
    ACCOUNT,
    JSON,
    basic,
    make_sim,
    running,
)

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
            "result": [
                {
                    "@type": "Process",
                    "id": "l4",
                    "name": "Invoices",
                    "Description": "",
                    "IntegrationPack": [],
                }
            ],
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
            "Result": {
                "@type": "Process",
                "id": "l1",
                "name": "Orders WSS Listener",
                "Description": "",
                "IntegrationPack": [],
            },
        }
        assert missing["index"] == 1
        assert missing["id"] == "nope"
        assert missing["statusCode"] == 400
        assert missing["errorMessage"]
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
        # Environment/query stood here before the simulator served environments.
        assert (await api.call("POST", "DeployedPackage/query", {})).status == 404
        assert sim.request_counts == {"GET unknown 404": 1, "POST unknown 404": 1}
