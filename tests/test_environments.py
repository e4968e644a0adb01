"""Environments, the pure parts table-driven and the client against the simulator: parsers,
request bodies, the discovery filter, the remediation guard, paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.boomi import (
    ApiError,
    Atom,
    AuthError,
    BoomiClient,
    Environment,
    EnvironmentAttachment,
    MalformedResponse,
    RateLimited,
    environments_by_container,
)
from exporter.boomi.environments import (
    attachment_query_body,
    environment_query_body,
    parse_attachment_page,
    parse_environment_page,
)
from exporter.config import DiscoveryConfig
from exporter.environments import (
    describe_environment,
    discovered_in_environments,
    environment_matches,
    remediation_refusal,
)
from exporter.fleet import select_discovered
from exporter.simulator import Faults
from tests.conftest import ACCOUNT, SimServer

ClientFactory = Callable[..., BoomiClient]

# A synthesized attachment id as Boomi's documentation shows one: long, and not a UUID.
LONG_ID = "Ab0Cd1Ef1Gh3Ij4Kl5Mn6Op7Qr8St9Uv0Wx9Yz8Zy7Xw6Vu5Ts4Rq3Po2Nm1Lk0Ji1Hg"

# -- parsers ---------------------------------------------------------------------------------


def env_row(**fields: Any) -> dict[str, Any]:
    return {"@type": "Environment", **fields}


@pytest.mark.parametrize(
    ("body", "expected", "token"),
    [
        # As documented.
        (
            {"result": [env_row(id="e1", name="My Production Environment", classification="PROD")],
             "numberOfResults": 1},
            [Environment("e1", "My Production Environment", "PROD")],
            None,
        ),
        # Accounts with basic environment support send no classification.
        ({"result": [env_row(id="e2", name="Basic")]}, [Environment("e2", "Basic", "")], None),
        ({"result": [env_row(id="e3", name="T", classification=None)]}, [Environment("e3", "T", "")],
         None),
        # Case is normalised; an undocumented value is kept as sent, not guessed at.
        ({"result": [env_row(id="e4", name="t", classification="test")]},
         [Environment("e4", "t", "TEST")], None),
        ({"result": [env_row(id="e5", name="x", classification="SANDBOX")]},
         [Environment("e5", "x", "SANDBOX")], None),
        ({"result": [env_row(id="e6")]}, [Environment("e6", "", "")], None),
        # Paging: the token only when more rows remain.
        ({"result": [env_row(id="e1", name="a")], "queryToken": "tok"},
         [Environment("e1", "a", "")], "tok"),
        ({"result": [], "queryToken": ""}, [], None),
        ({"numberOfResults": 0}, [], None),
        ({"result": None}, [], None),
    ],
)  # fmt: skip
def test_parse_environment_page(body: Any, expected: list[Environment], token: str | None) -> None:
    assert parse_environment_page(body) == (expected, token)


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        {"result": {}},
        {"result": ["e1"]},
        {"result": [env_row(name="no id")]},
        {"result": [env_row(id="", name="empty id")]},
        {"result": [env_row(id=7, name="numeric id")]},
    ],
)
def test_parse_environment_page_refuses_what_is_not_the_documented_shape(body: Any) -> None:
    with pytest.raises(MalformedResponse) as caught:
        parse_environment_page(body)
    assert caught.value.operation == "environment_query"


def attachment_row(**fields: Any) -> dict[str, Any]:
    return {"@type": "EnvironmentAtomAttachment", **fields}


@pytest.mark.parametrize(
    ("body", "expected", "token"),
    [
        (
            {"result": [attachment_row(id=LONG_ID, atomId="a1", environmentId="e1")]},
            [EnvironmentAttachment(LONG_ID, "a1", "e1")],
            None,
        ),
        # The id is not needed to know where a runtime is.
        ({"result": [attachment_row(atomId="a1", environmentId="e1")], "queryToken": "t2"},
         [EnvironmentAttachment("", "a1", "e1")], "t2"),
        ({"result": []}, [], None),
    ],
)  # fmt: skip
def test_parse_attachment_page(
    body: Any, expected: list[EnvironmentAttachment], token: str | None
) -> None:
    assert parse_attachment_page(body) == (expected, token)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"result": "x"},
        {"result": [attachment_row(id=LONG_ID, environmentId="e1")]},
        {"result": [attachment_row(id=LONG_ID, atomId="a1")]},
        {"result": [attachment_row(id=LONG_ID, atomId=["a1"], environmentId="e1")]},
    ],
)
def test_parse_attachment_page_refuses_rows_without_their_ids(body: Any) -> None:
    with pytest.raises(MalformedResponse) as caught:
        parse_attachment_page(body)
    assert caught.value.operation == "environment_attachment_query"


PROD = Environment("e-prod", "Production", "PROD")
TEST = Environment("e-test", "Test", "TEST")
BASIC = Environment("e-basic", "Basic", "")


def test_environments_by_container_leaves_unattached_runtimes_out() -> None:
    attachments = [
        EnvironmentAttachment(LONG_ID, "a1", "e-prod"),
        EnvironmentAttachment("x", "a2", "e-test"),
        # An environment the query did not return: its name and classification are unknown.
        EnvironmentAttachment("y", "a3", "e-gone"),
    ]
    assert environments_by_container([PROD, TEST], attachments) == {"a1": PROD, "a2": TEST}


def test_request_bodies() -> None:
    assert environment_query_body() == {
        "QueryFilter": {"expression": {"argument": ["%"], "operator": "LIKE", "property": "name"}}
    }
    assert attachment_query_body("e1") == {
        "QueryFilter": {
            "expression": {"argument": ["e1"], "operator": "EQUALS", "property": "environmentId"}
        }
    }
    # Each call gets its own body: a caller changing one cannot change the next.
    environment_query_body()["QueryFilter"]["expression"]["argument"].append("x")
    assert environment_query_body()["QueryFilter"]["expression"]["argument"] == ["%"]


# -- the discovery filter and the remediation guard -----------------------------------------


@pytest.mark.parametrize(
    ("environment", "classifications", "pattern", "expected"),
    [
        (PROD, [], ".*", True),
        (None, [], ".*", True),  # [] and .* let unattached runtimes through
        (PROD, ["PROD"], ".*", True),
        (TEST, ["PROD"], ".*", False),
        (TEST, ["PROD", "TEST"], ".*", True),
        (None, ["PROD"], ".*", False),
        (BASIC, ["PROD"], ".*", False),  # no classification is not PROD
        (PROD, [], "Prod.*", True),
        (PROD, [], "Prod", False),  # the whole name must match
        (TEST, [], "Prod.*", False),
        (None, [], "(Prod.*)?", False),  # unattached runtimes match only .*
        (None, [], "", False),
        (PROD, ["PROD"], "Test", False),
        (TEST, ["TEST"], "T.st", True),
    ],
)
def test_environment_matches(
    environment: Environment | None, classifications: list[str], pattern: str, expected: bool
) -> None:
    assert environment_matches(environment, classifications, pattern) is expected


def test_discovery_by_environment_waits_until_environments_are_known() -> None:
    ids = ["a1", "a2", "a3"]
    mapping = {"a1": PROD, "a2": TEST}
    assert discovered_in_environments(ids, None, [], ".*") == set(ids)  # no filter: no wait
    assert discovered_in_environments(ids, None, ["PROD"], ".*") == set()
    assert discovered_in_environments(ids, None, [], "Prod.*") == set()
    assert discovered_in_environments(ids, mapping, ["PROD"], ".*") == {"a1"}
    assert discovered_in_environments(ids, mapping, [], "Test") == {"a2"}


ATOMS = [
    Atom("a1", "prod-molecule-1", "ONLINE", "MOLECULE", ""),
    Atom("a2", "test-molecule-1", "ONLINE", "MOLECULE", ""),
    Atom("a3", "spare-atom-1", "ONLINE", "ATOM", ""),
    Atom("a4", "basic-atom-1", "ONLINE", "ATOM", ""),
    Atom("a5", "prod-molecule-2", "OFFLINE", "MOLECULE", ""),
]
MAPPING = {"a1": PROD, "a2": TEST, "a4": BASIC, "a5": PROD}  # a3 is attached to none


@pytest.mark.parametrize(
    ("discovery", "expected"),
    [
        ({}, ["a1", "a2", "a3", "a4"]),
        ({"environment_classifications": ["PROD"]}, ["a1"]),
        ({"environment_classifications": ["TEST"]}, ["a2"]),
        ({"environment_classifications": ["PROD", "TEST"]}, ["a1", "a2"]),
        ({"environment_name_pattern": "Test|Basic"}, ["a2", "a4"]),
        ({"environment_name_pattern": "Prod"}, []),  # anchored
        ({"environment_name_pattern": "Prod.*", "statuses": ["ONLINE", "OFFLINE"]}, ["a1", "a5"]),
        ({"environment_classifications": ["PROD"], "name_pattern": "prod-.*-2",
          "statuses": ["OFFLINE"]}, ["a5"]),
        ({"environment_classifications": ["TEST"], "types": ["ATOM"]}, []),
    ],
)  # fmt: skip
def test_discovery_by_classification_and_by_name_pattern(
    discovery: dict[str, Any], expected: list[str]
) -> None:
    config = DiscoveryConfig(enabled=True, **discovery)
    selected = select_discovered(ATOMS, config, environments=MAPPING)
    assert [atom.container_id for atom in selected] == expected


@pytest.mark.parametrize(
    ("environment", "known", "classifications", "refused_with"),
    [
        (TEST, True, [], ""),
        (None, False, [], ""),  # not limited: the environment does not matter
        (PROD, True, ["PROD"], ""),
        (TEST, True, ["PROD", "TEST"], ""),
        (TEST, True, ["PROD"], "in environment 'Test' (TEST)"),
        (BASIC, True, ["PROD"], "(no classification)"),
        (None, True, ["PROD"], "not attached to an environment"),
        (None, False, ["PROD"], "not known yet"),
        (PROD, False, ["PROD"], "not known yet"),
    ],
)
def test_remediation_refusal(
    environment: Environment | None, known: bool, classifications: list[str], refused_with: str
) -> None:
    reason = remediation_refusal(environment, known, classifications)
    if refused_with:
        assert refused_with in reason
        assert ", ".join(classifications) in reason
    else:
        assert reason == ""


@pytest.mark.parametrize(
    ("environment", "known", "text"),
    [
        (PROD, True, "Production (PROD)"),
        (BASIC, True, "Basic"),
        (None, True, "no environment"),
        (None, False, "environment unknown"),
    ],
)
def test_describe_environment(environment: Environment | None, known: bool, text: str) -> None:
    assert describe_environment(environment, known) == text


# -- the client against the simulator --------------------------------------------------------


async def test_the_client_reads_environments_and_attachments(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    sim, account = sim_server.sim, sim_server.account
    basic = sim.add_environment(ACCOUNT, "Basic support", classification=None)
    first, second, third = sim_server.container_ids()
    sim.attach(ACCOUNT, second, basic.environment_id)
    sim.detach(ACCOUNT, third)
    client = make_client()
    environments = await client.query_environments()
    assert {(e.name, e.classification) for e in environments} == {
        ("Production", "PROD"),
        ("Test", "TEST"),
        ("Basic support", ""),
    }
    mapping = environments_by_container(
        environments,
        [
            attachment
            for environment in environments
            for attachment in await client.query_environment_attachments(environment.environment_id)
        ],
    )
    production = account.environments[account.attachments[first]]
    assert mapping == {
        first: Environment(production.environment_id, production.name, "PROD"),
        second: Environment(basic.environment_id, "Basic support", ""),
    }
    assert sim_server.count("POST environment_query 200") == 1
    assert sim_server.count("POST environment_attachment_query 200") == 3  # one per environment


@pytest.mark.parametrize(
    "sim_server", [{"containers": 250, "listeners_per_container": 0}], indirect=True
)
async def test_paging_250_attachments_costs_3_calls_and_no_more(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    account = sim_server.account
    (production,) = [e for e in account.environments.values() if e.classification == "PROD"]
    for container_id in account.containers:  # every runtime into one environment
        sim_server.sim.attach(ACCOUNT, container_id, production.environment_id)
    sim_server.sim.reset_counters()
    attachments = await make_client().query_environment_attachments(production.environment_id)
    assert sorted(a.container_id for a in attachments) == sorted(account.containers)
    assert all(len(a.attachment_id) > 36 for a in attachments)  # long, not UUIDs
    assert sim_server.sim.request_counts == {
        "POST environment_attachment_query 200": 1,
        "POST environment_attachment_query_more 200": 2,
    }


async def test_environment_calls_raise_only_the_clients_errors(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    routes = ["environment_query", "environment_attachment_query"]
    client = make_client()
    sim_server.sim.set_faults(Faults(throttle_rate=1.0, routes=routes))
    with pytest.raises(RateLimited):
        await client.query_environments()
    sim_server.sim.set_faults(Faults(malformed_rate=1.0, routes=routes))
    with pytest.raises(MalformedResponse):
        await client.query_environment_attachments("e1")
    sim_server.sim.set_faults(Faults(error_5xx_rate=1.0, routes=routes))
    with pytest.raises(ApiError) as caught:
        await client.query_environments()
    assert caught.value.operation == "environment_query"
    sim_server.sim.set_faults(Faults())
    with pytest.raises(AuthError):
        await make_client(password="wrong").query_environments()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
row_values = st.none() | st.integers() | st.text(max_size=12) | st.lists(st.text(max_size=4))
environment_rows = st.fixed_dictionaries(
    {},
    optional={"id": row_values, "name": row_values, "classification": row_values},
)
attachment_rows = st.fixed_dictionaries(
    {},
    optional={"id": row_values, "atomId": row_values, "environmentId": row_values},
)


def pages(rows: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return json_values | st.fixed_dictionaries(
        {"result": st.lists(rows | json_values, max_size=4)},
        optional={"queryToken": json_values, "numberOfResults": json_values},
    )


@settings(max_examples=300, deadline=None)
@given(body=pages(environment_rows))
def test_environment_parser_takes_anything(body: Any) -> None:
    try:
        environments, token = parse_environment_page(body)
    except MalformedResponse:
        return
    for environment in environments:
        assert environment.environment_id and isinstance(environment.environment_id, str)
        assert isinstance(environment.name, str) and isinstance(environment.classification, str)
    assert token is None or (isinstance(token, str) and token)


@settings(max_examples=300, deadline=None)
@given(body=pages(attachment_rows))
def test_attachment_parser_takes_anything(body: Any) -> None:
    try:
        attachments, token = parse_attachment_page(body)
    except MalformedResponse:
        return
    for attachment in attachments:
        assert attachment.container_id and attachment.environment_id
        assert isinstance(attachment.attachment_id, str)
    assert token is None or (isinstance(token, str) and token)
