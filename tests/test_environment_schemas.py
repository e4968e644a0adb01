"""Contract: the client's environment request bodies and the simulator's environment answers
validate against Boomi's own schemas (a copy of just those, tests/schemas/boomi-environments.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from exporter.boomi.environments import attachment_query_body, environment_query_body
from exporter.simulator import Simulator
from tests.simulator_helpers import ACCOUNT, JSON, basic, running

SCHEMAS = Path(__file__).parent / "schemas" / "boomi-environments.json"
URI = "urn:boomi-environments"


def validator(name: str) -> jsonschema.Draft202012Validator:
    document = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(
        URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"{URI}#/components/schemas/{name}"}, registry=registry
    )


def errors(name: str, instance: object) -> list[str]:
    return [error.message for error in validator(name).iter_errors(instance)]


def test_the_request_bodies_are_schema_valid() -> None:
    assert errors("EnvironmentQueryConfig", environment_query_body()) == []
    assert (
        errors(
            "EnvironmentAtomAttachmentQueryConfig",
            attachment_query_body("456789ab-cdef-0123-4567-89abcdef0123"),
        )
        == []
    )


def test_the_schema_rejects_what_the_client_avoids() -> None:
    # Boomi's CLI lists environments with an empty QueryFilter: not valid against the schema.
    assert errors("EnvironmentQueryConfig", {"QueryFilter": {}})
    # And the validator does check the filter's vocabulary.
    bad_property = {"argument": ["x"], "operator": "EQUALS", "property": "atomId"}
    assert errors("EnvironmentQueryConfig", {"QueryFilter": {"expression": bad_property}})
    bad_row = {"@type": "Environment", "id": "e1", "name": "n", "classification": "PRODUCTION"}
    assert errors("EnvironmentQueryResponse", {"result": [bad_row], "numberOfResults": 1})


async def _pages(api: Any, kind: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    headers = {**JSON, "Authorization": basic("demo@example.com", "demo-password")}
    reply = await api.call("POST", f"{kind}/query", body, headers=headers)
    assert reply.status == 200, reply.text
    pages = [reply.json]
    while "queryToken" in pages[-1]:
        more = {**headers, "Content-Type": "text/plain"}
        reply = await api.call(
            "POST", f"{kind}/queryMore", headers=more, data=pages[-1]["queryToken"]
        )
        assert reply.status == 200, reply.text
        pages.append(reply.json)
    return pages


async def test_the_simulators_answers_are_schema_valid() -> None:
    sim = Simulator.with_fleet(
        account_id=ACCOUNT,
        containers=230,
        listeners_per_container=0,
        unattached_containers=2,
        rate_limit_rps=100,
    )
    sim.add_environment(ACCOUNT, "Basic support", classification=None)
    for number in range(150):
        sim.add_environment(ACCOUNT, f"Sandbox {number}", classification="TEST")
    production = next(
        e for e in sim.accounts[ACCOUNT].environments.values() if e.name == "Production"
    )
    async with running(sim) as api:
        environments = await _pages(api, "Environment", environment_query_body())
        attachments = await _pages(
            api, "EnvironmentAtomAttachment", attachment_query_body(production.environment_id)
        )
    assert [len(page["result"]) for page in environments] == [100, 53]
    assert len(attachments) == 2  # 173 PROD runtimes of the 230
    for page in environments:
        assert errors("EnvironmentQueryResponse", page) == []
    for page in attachments:
        assert errors("EnvironmentAtomAttachmentQueryResponse", page) == []
    rows = [row for page in environments for row in page["result"]]
    assert any("classification" not in row for row in rows)  # basic support: no key at all
