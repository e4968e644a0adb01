"""Tests of the simulator's fault injection: validation, each fault over a real socket, reproducibility."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import aiohttp
import pytest

from exporter.simulator import (
    Faults,
)
from tests.simulator_helpers import (
    BNS,
    FakeClock,
    make_sim,
    running,
    status_filter,
)


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
        # The fault is a real-time delay, so real time is what it is checked in; a lower bound,
        # which a busy machine can only make easier to meet.
        assert time.monotonic() - started >= 0.1  # lower bound: a busy machine only adds


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
