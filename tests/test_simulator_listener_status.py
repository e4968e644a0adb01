"""Tests of the simulator's ListenerStatus query and result and of changeListenerStatus, over a real socket."""

from __future__ import annotations

import json
import time

import pytest

from tests.simulator_helpers import (
    ACCOUNT,
    JSON,
    PASSWORD,
    USER,
    FakeClock,
    basic,
    make_sim,
    running,
    settled_rows,
    status_filter,
    statuses,
)

# --------------------------------------------------------------------------------------------
# ListenerStatus
# --------------------------------------------------------------------------------------------


async def test_query_then_unsettled_then_result_then_gone() -> None:
    clock = FakeClock()
    sim = make_sim(clock, result_delay_seconds=5.0)
    async with running(sim) as api:
        token = await api.query("c1")
        for _ in range(12):
            reply = await api.result(token)
            # In progress, bare, as the spec has it (the variants are faults).
            assert reply.status == 202
            assert reply.json == {"@type": "AsyncOperationResult", "responseStatusCode": 202}

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
        assert counts["GET listener_status_result 202"] == 12
        assert counts["GET listener_status_result 200"] == 1
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
async def test_an_empty_result_completes_as_200(container_id: str, listener_id: str | None) -> None:
    # Issue 13: no source supports the "settled empty 202" an earlier note described.
    clock = FakeClock()
    async with running(make_sim(clock)) as api:
        token = await api.query(container_id, listener_id)
        clock.advance(10)
        reply = await api.result(token)
        assert reply.status == 200
        assert reply.json == {
            "@type": "AsyncOperationResult",
            "numberOfResults": 0,
            "responseStatusCode": 200,
        }
        assert (await api.result(token)).status == 204


async def test_offline_container_never_settles_until_online() -> None:
    clock = FakeClock()
    async with running(make_sim(clock)) as api:
        token = await api.query("c-off")
        clock.advance(600)
        reply = await api.result(token)
        assert reply.json == {"@type": "AsyncOperationResult", "responseStatusCode": 202}
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
        sent_after = time.time()
        reply = await api.change(containerId="c1", **body)
        answered_before = time.time()
        assert reply.status == 200
        assert reply.text == ""
        entry = sim.change_log[-1]
        assert entry["account_id"] == ACCOUNT
        assert entry["container_id"] == "c1"
        assert entry["listener_id"] == body.get("listenerId")
        assert entry["action"] == body["action"]
        # Unix time (not the fake clock) of when the call was accepted.
        assert sent_after <= float(str(entry["time"])) <= answered_before

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
