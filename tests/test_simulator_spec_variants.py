"""The simulator follows Boomi's published API by default; the variants a client must survive
are named faults, off until asked for (issue 13). Over a real socket, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.boomi.shapes import atom_query_body
from exporter.simulator import Faults
from tests.simulator_helpers import FakeClock, make_sim, running, status_filter

IN_PROGRESS = {"@type": "AsyncOperationResult", "responseStatusCode": 202}
CONNECTING = {"@type": "AsyncOperationStatus", "message": "Connecting to runtime..."}


@pytest.mark.parametrize(
    ("faults", "status", "body"),
    [
        (Faults(), 202, IN_PROGRESS),  # the spec: bare
        (Faults(in_progress_empty_rate=1.0), 202, IN_PROGRESS | {"numberOfResults": 0, "result": []}),
        (Faults(in_progress_status_rows_rate=1.0), 202, IN_PROGRESS | {"result": [CONNECTING]}),
        (Faults(in_progress_http_200_rate=1.0), 200, IN_PROGRESS),
    ],
)  # fmt: skip
async def test_in_progress_answers(faults: Faults, status: int, body: dict[str, Any]) -> None:
    clock = FakeClock()
    sim = make_sim(clock, result_delay_seconds=5.0)
    sim.set_faults(faults)
    async with running(sim) as api:
        token = await api.query("c1")
        reply = await api.result(token)
        assert (reply.status, reply.json) == (status, body)
        clock.advance(5.0)
        reply = await api.result(token)
        # Ready: a result, whatever the in-progress variant.
        assert (reply.status, reply.json["responseStatusCode"]) == (200, 200)
        assert reply.json["numberOfResults"] == 3


async def test_always_in_progress_first_get() -> None:
    clock = FakeClock()
    sim = make_sim(clock, result_delay_seconds=0.5)
    sim.set_faults(Faults(first_get_in_progress_rate=1.0))
    async with running(sim) as api:
        token = await api.query("c1")
        clock.advance(60)  # long ready
        first = await api.result(token)
        assert (first.status, first.json) == (202, IN_PROGRESS)
        second = await api.result(token)
        assert second.status == 200
        assert [row["listenerId"] for row in second.json["result"]] == ["l1", "l2", "l3"]


async def test_runtime_offline_410_and_unreachable_504_for_one_container() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    sim.set_faults(
        Faults(runtime_offline_410_rate=1.0, runtime_unreachable_504_rate=0.0, container_ids=["c1"])
    )
    async with running(sim) as api:
        token, other = await api.query("c1"), await api.query("c2")
        clock.advance(10)
        reply = await api.result(token)
        assert reply.status == 410
        assert reply.json == {
            "@type": "Error",
            "message": "The API is retired or the specified Runtime is currently offline.",
        }
        assert (await api.result(other)).status == 200  # other containers are fine

        sim.set_faults(Faults(runtime_unreachable_504_rate=1.0, container_ids=["c1"]))
        reply = await api.call("POST", "async/ListenerStatus/query", status_filter("c1"))
        assert reply.status == 504
        assert "cannot reach the Runtime" in reply.json["message"]
        assert (
            await api.call("POST", "async/ListenerStatus/query", status_filter("c2"))
        ).status == 200


@pytest.mark.parametrize(
    ("faults", "body"),
    [
        (Faults(), {"@type": "Error", "message": "Unknown or expired queryToken for Atom/queryMore."}),
        (Faults(message_error_body_rate=1.0), {"message": "Unknown or expired queryToken for Atom/queryMore."}),
        (Faults(nested_error_body_rate=1.0), {"error": {"message": "Unknown or expired queryToken for Atom/queryMore."}}),
    ],
)  # fmt: skip
async def test_error_body_forms(faults: Faults, body: dict[str, Any]) -> None:
    sim = make_sim()
    sim.set_faults(faults)
    async with running(sim) as api:
        reply = await api.call("POST", "Atom/queryMore", headers=None, data="no-such-token")
        assert (reply.status, reply.json) == (400, body)


async def test_the_default_503_says_what_boomi_says() -> None:
    sim = make_sim()
    sim.set_faults(Faults(throttle_rate=1.0))
    async with running(sim) as api:
        reply = await api.call("POST", "Atom/query", atom_query_body())
        assert reply.status == 503
        assert reply.json["message"] == (
            "The Boomi server is currently unavailable or your account's rate limits have been"
            " exceeded. Retry later."
        )


async def test_atom_query_with_or_groupings() -> None:
    async with running(make_sim()) as api:
        reply = await api.call("POST", "Atom/query", atom_query_body())  # what the client sends
        assert sorted(atom["id"] for atom in reply.json["result"]) == [
            "c-empty",
            "c-off",
            "c1",
            "c2",
        ]

        def status(value: str) -> dict[str, Any]:
            return {"argument": [value], "operator": "EQUALS", "property": "status"}

        either = {"operator": "or", "nestedExpression": [status("OFFLINE"), status("WARNING")]}
        reply = await api.call("POST", "Atom/query", atom_query_body(either))
        assert [atom["id"] for atom in reply.json["result"]] == ["c-off"]
        empty = {"operator": "or", "nestedExpression": []}
        reply = await api.call("POST", "Atom/query", atom_query_body(empty))
        assert reply.status == 400
        assert "'or'" in reply.json["message"]
