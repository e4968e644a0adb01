"""The simulator's request log: arrival order, its own clock, the container, the outcome."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from exporter.simulator import Faults, RequestLog
from tests.sim_log import wait_until
from tests.simulator_helpers import (
    AUTH,
    JSON,
    FakeClock,
    basic,
    make_sim,
    running,
    status_filter,
)


async def test_requests_are_logged_in_arrival_order_on_the_simulators_clock() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    async with running(sim) as api:
        token = await api.query("c1")
        clock.advance(2.5)
        await api.result(token)
        await api.change(containerId="c2", listenerId="l4", action="restart")
        await api.call("POST", "Atom/query")
    entries = list(sim.request_log)
    assert [(e.seq, e.at, e.method, e.route, e.container_id, e.outcome) for e in entries] == [
        (1, 1000.0, "POST", "listener_status_query", "c1", "200"),
        (2, 1002.5, "GET", "listener_status_result", "c1", "200"),
        (3, 1002.5, "POST", "change_listener_status", "c2", "200"),
        (4, 1002.5, "POST", "atom_query", None, "200"),
    ]
    assert {e.account_id for e in entries} == {"acme-AB12CD"}
    assert sim.request_log.last_seq == 4
    assert [e.seq for e in sim.request_log.since(2)] == [3, 4]


async def test_refused_throttled_and_dropped_requests_are_logged_with_their_outcome() -> None:
    sim = make_sim()
    async with running(sim) as api:
        await api.call("POST", "Atom/query", headers=JSON)  # no credentials
        await api.call("POST", "Atom/query", headers={**JSON, "Authorization": basic("x", "y")})
        await api.call(
            "POST", "async/ListenerStatus/query", status_filter("c1"), headers=JSON | AUTH
        )
        sim.set_faults(Faults(throttle_rate=1.0))
        await api.call("POST", "async/ListenerStatus/query", status_filter("c2"))
        sim.set_faults(Faults(drop_rate=1.0))
        with contextlib.suppress(aiohttp.ClientError):  # closed without an answer
            await api.call("POST", "async/ListenerStatus/query", status_filter("c2"))
    outcomes = [(e.route, e.container_id, e.outcome) for e in sim.request_log]
    assert outcomes == [
        ("atom_query", None, "401"),
        ("atom_query", None, "403"),
        ("listener_status_query", "c1", "200"),
        ("listener_status_query", "c2", "503"),
        ("listener_status_query", "c2", "dropped"),
    ]


async def test_a_request_being_answered_is_logged_unanswered() -> None:
    sim = make_sim()
    sim.set_faults(Faults(slow_rate=1.0, slow_seconds=0.3))
    async with running(sim) as api:
        slow = asyncio.create_task(api.call("POST", "Atom/query"))
        await wait_until(lambda: len(sim.request_log) > 0, "the request arrives")
        (entry,) = sim.request_log
        assert not entry.answered and entry.outcome == ""
        assert (await slow).status == 200
        assert entry.answered and entry.outcome == "200"


def test_the_log_keeps_only_the_latest_requests_and_numbers_on() -> None:
    log = RequestLog(capacity=3)
    for index in range(5):
        log.arrived(float(index), "a", "GET", f"route-{index}")
    assert [(e.seq, e.route) for e in log] == [(3, "route-2"), (4, "route-3"), (5, "route-4")]
    log.clear()
    assert len(log) == 0
    assert log.arrived(9.0, "a", "GET", "later").seq == 6
