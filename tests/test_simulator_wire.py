"""Tests of the simulator's wire helpers: QueryFilter parsing, Basic auth and XML."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest

from exporter.simulator import (
    BadRequest,
    parse_basic_auth,
    parse_listener_status_filter,
    parse_query_filter,
    render_xml,
)
from tests.simulator_helpers import (
    BNS,
    XSI_TYPE,
    basic,
    status_filter,
)

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
