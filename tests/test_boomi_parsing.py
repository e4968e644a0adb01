"""Table-driven tests of exporter.boomi.shapes: the response parsers and request bodies."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.boomi import (
    CHANGE_ACTIONS,
    REMEDIATION_ACTIONS,
    ApiError,
    AsyncResult,
    ListenerStatus,
    MalformedResponse,
    listener_status_filter,
    normalize_status,
    parse_atom_page,
    parse_listener_status_result,
    parse_process_bulk,
    parse_query_token,
    retry_after_seconds,
)
from exporter.boomi.shapes import change_listener_status_body

CONNECTING = {"@type": "AsyncOperationStatus", "message": "Connecting to runtime..."}


def row(listener_id: str, status: Any = "listening", connector: Any = "wss") -> dict[str, Any]:
    item: dict[str, Any] = {"@type": "ListenerStatus", "listenerId": listener_id, "status": status}
    if connector is not None:
        item["connectorType"] = connector
    return item


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("listening", "listening"),
        ("LISTENING", "listening"),
        (" Paused ", "paused"),
        ("ERRORED", "errored"),
        ("errored", "errored"),
        ("UNKNOWN", "unknown"),
        ("UNSUPPORTED", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        (3, "unknown"),
    ],
)
def test_normalize_status(raw: object, expected: str) -> None:
    assert normalize_status(raw) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Still working, with the progress note that is not a listener.
        ({"@type": "AsyncOperationResult", "result": [CONNECTING], "responseStatusCode": 202},
         AsyncResult(settled=False)),
        ({"responseStatusCode": 202}, AsyncResult(settled=False)),
        ({"responseStatusCode": "202", "result": []}, AsyncResult(settled=False)),
        # 202 is in progress whatever else the body holds (issue 13): a serializer that writes
        # every field sends numberOfResults 0 and an empty result while Boomi works.
        ({"responseStatusCode": 202, "numberOfResults": 0}, AsyncResult(settled=False)),
        ({"@type": "AsyncOperationResult", "numberOfResults": 0, "result": [],
          "responseStatusCode": 202}, AsyncResult(settled=False)),
        ({"responseStatusCode": 202, "numberOfResults": 1, "result": [row("l1")]},
         AsyncResult(settled=False)),
        ({"responseStatusCode": 202, "result": {"odd": "shape"}}, AsyncResult(settled=False)),
        # Done, documented shape.
        ({"@type": "AsyncOperationResult", "result": [row("l1")], "numberOfResults": 1,
          "responseStatusCode": 200},
         AsyncResult(True, (ListenerStatus("l1", "listening", "wss", "listening"),))),
        # Done and empty, with result missing or null.
        ({"responseStatusCode": 200, "numberOfResults": 0}, AsyncResult(settled=True)),
        ({"responseStatusCode": 200, "result": None}, AsyncResult(settled=True)),
        # Upper-case status, odd status, missing connector type, progress row mixed in.
        ({"responseStatusCode": 200,
          "result": [CONNECTING, row("a", "ERRORED"), row("b", "UNSUPPORTED", None),
                     row("c", "paused", "com.boomi.connector.x-12ab")]},
         AsyncResult(True, (
             ListenerStatus("a", "errored", "wss", "ERRORED"),
             ListenerStatus("b", "unknown", "", "UNSUPPORTED"),
             ListenerStatus("c", "paused", "com.boomi.connector.x-12ab", "paused"),
         ))),
        # Rows of another @type are skipped; a row without @type is read as a ListenerStatus.
        ({"responseStatusCode": 200, "numberOfResults": 2,
          "result": [{"@type": "Error", "message": "x"}, {"listenerId": "e", "status": "paused"}]},
         AsyncResult(True, (ListenerStatus("e", "paused", "", "paused"),))),
        # Status missing altogether: unknown, raw kept.
        ({"responseStatusCode": 200, "result": [{"listenerId": "d"}]},
         AsyncResult(True, (ListenerStatus("d", "unknown", "", "None"),))),
    ],
)  # fmt: skip
def test_parse_listener_status_result(body: object, expected: AsyncResult) -> None:
    assert parse_listener_status_result(body, container_id="c1") == expected


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], MalformedResponse),
        ("text", MalformedResponse),
        (None, MalformedResponse),
        ({}, MalformedResponse),
        ({"responseStatusCode": "done"}, MalformedResponse),
        ({"responseStatusCode": True}, MalformedResponse),
        ({"responseStatusCode": 200, "result": {"listenerId": "x"}}, MalformedResponse),
        ({"responseStatusCode": 200, "result": ["x"]}, MalformedResponse),
        ({"responseStatusCode": 200, "result": [{"status": "listening"}]}, MalformedResponse),
        ({"responseStatusCode": 200, "result": [{"listenerId": 5}]}, MalformedResponse),
        ({"responseStatusCode": 400, "result": []}, ApiError),
        ({"responseStatusCode": 500}, ApiError),
    ],
)
def test_parse_listener_status_result_rejects(body: object, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        parse_listener_status_result(body, container_id="c-42")
    assert "c-42" in str(caught.value)
    assert caught.value.operation == "listener_status_result"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "token"),
    [
        ({"@type": "AsyncOperationTokenResult",
          "asyncToken": {"@type": "AsyncToken", "token": "ListenerStatus-1"},
          "responseStatusCode": 202}, "ListenerStatus-1"),
        ({"asyncToken": {"token": "t"}}, "t"),
    ],
)  # fmt: skip
def test_parse_query_token(body: object, token: str) -> None:
    assert parse_query_token(body) == token


@pytest.mark.parametrize(
    "body",
    [{}, {"asyncToken": None}, {"asyncToken": {"token": ""}}, {"asyncToken": "t"}, [], "x"],
)
def test_parse_query_token_rejects(body: object) -> None:
    with pytest.raises(MalformedResponse, match="container c9"):
        parse_query_token(body, container_id="c9")


def test_parse_atom_page_and_token() -> None:
    body = {
        "@type": "QueryResult",
        "result": [
            {"@type": "Atom", "id": "a1", "name": "prod", "status": "ONLINE", "type": "MOLECULE",
             "hostName": "h1"},
            {"id": "a2", "status": "offline"},
        ],
        "numberOfResults": 2,
        "queryToken": "next",
    }  # fmt: skip
    atoms, token = parse_atom_page(body)
    assert token == "next"
    assert [(a.container_id, a.name, a.status, a.type) for a in atoms] == [
        ("a1", "prod", "ONLINE", "MOLECULE"),
        ("a2", "", "OFFLINE", ""),
    ]
    assert parse_atom_page({"result": []}) == ([], None)
    for bad in ({"result": "x"}, {"result": [{"name": "no id"}]}, []):
        with pytest.raises(MalformedResponse):
            parse_atom_page(bad)


def test_parse_process_bulk_keeps_only_successes() -> None:
    body = {
        "@type": "BulkResult",
        "response": [
            {"index": 0, "id": "p1", "statusCode": 200, "Result": {"id": "p1", "name": "Orders"}},
            {"index": 1, "id": "p2", "statusCode": 400, "ErrorMessage": "not found"},
            {"index": 2, "id": "p3", "statusCode": 200, "Result": None},
            "garbage",
        ],
    }
    assert parse_process_bulk(body) == {"p1": "Orders"}
    with pytest.raises(MalformedResponse):
        parse_process_bulk({"response": {}})


def test_listener_status_filter_shapes() -> None:
    assert listener_status_filter("c") == {
        "QueryFilter": {
            "expression": {"argument": ["c"], "operator": "EQUALS", "property": "containerId"}
        }
    }
    nested = listener_status_filter("c", "l")["QueryFilter"]["expression"]
    assert nested["operator"] == "and"
    assert [e["property"] for e in nested["nestedExpression"]] == ["containerId", "listenerId"]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("3", 3.0), (" 1.5 ", 1.5), ("-1", None), ("nan", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)  # fmt: skip
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_change_actions_are_the_remediation_actions_for_one_listener_or_all() -> None:
    assert REMEDIATION_ACTIONS == ("restart", "pause", "resume")
    assert sorted(CHANGE_ACTIONS) == sorted(
        [*REMEDIATION_ACTIONS, *(f"{action}_all" for action in REMEDIATION_ACTIONS)]
    )


def test_change_listener_status_body_shapes() -> None:
    assert change_listener_status_body("c", "pause", "l") == {
        "containerId": "c",
        "action": "pause",
        "listenerId": "l",
    }
    assert change_listener_status_body("c", "resume_all") == {
        "containerId": "c",
        "action": "resume_all",
    }
    for action, listener in [("reboot", "l"), ("restart", None), ("restart_all", "l")]:
        with pytest.raises(ValueError, match=action):
            change_listener_status_body("c", action, listener)
