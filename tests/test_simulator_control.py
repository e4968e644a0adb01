"""Tests of the simulator's control API under /__simulator/, over a real socket."""

from __future__ import annotations

import json

from tests.simulator_helpers import (
    ACCOUNT,
    FakeClock,
    make_sim,
    running,
    settled_rows,
)

# --------------------------------------------------------------------------------------------
# Control API
# --------------------------------------------------------------------------------------------


async def test_control_state() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    async with running(sim) as api:
        await api.change(containerId="c1", listenerId="l2", action="restart")
        clock.advance(10)
        reply = await api.control("GET", "state")
        assert reply.status == 200
        state = reply.json
        assert state == json.loads(json.dumps(sim.state()))
        account = state["accounts"][ACCOUNT]
        assert account["rate_limit_rps"] == 1000
        assert account["containers"][0] == {
            "container_id": "c1",
            "name": "prod-molecule-1",
            "type": "MOLECULE",
            "status": "ONLINE",
            "host_name": "",
        }
        assert {
            "listener_id": "l2",
            "container_id": "c1",
            "status": "listening",
            "connector_type": "atomqueue",
            "process_name": "",
        } in account["listeners"]
        assert [entry["action"] for entry in state["change_log"]] == ["restart"]
        assert state["request_counts"] == {"POST change_listener_status 200": 1}
        assert state["throttled"] == 0
        assert state["faults"]["drop_rate"] == 0.0


async def test_control_listener_endpoints() -> None:
    clock = FakeClock()
    sim = make_sim(clock)
    async with running(sim) as api:
        reply = await api.control("PUT", "listeners/l1", {"status": "errored"})
        assert reply.status == 200
        assert reply.json["status"] == "errored"
        rows = await settled_rows(api, clock, await api.query("c1", "l1"))
        assert rows[0]["status"] == "errored"
        assert (await api.control("PUT", "listeners/nope", {"status": "errored"})).status == 404
        assert (await api.control("PUT", "listeners/l1", {"state": "errored"})).status == 400

        new = {
            "account_id": ACCOUNT,
            "container_id": "c-empty",
            "listener_id": "l9",
            "status": "listening",
            "connector_type": None,
            "process_name": "New Listener",
        }
        reply = await api.control("POST", "listeners", new)
        assert reply.status == 201
        assert reply.json == {k: v for k, v in new.items() if k != "account_id"}
        assert (await api.control("POST", "listeners", new)).status == 409
        assert (await api.control("POST", "listeners", {**new, "container_id": "x"})).status == 404
        rows = await settled_rows(api, clock, await api.query("c-empty"))
        assert rows == [{"@type": "ListenerStatus", "listenerId": "l9", "status": "listening"}]

        assert (await api.control("DELETE", "listeners/l9")).status == 204
        assert (await api.control("DELETE", "listeners/l9")).status == 404
        clock.advance(10)
        token = await api.query("c-empty")
        clock.advance(10)
        assert (await api.result(token)).json["numberOfResults"] == 0


async def test_control_listener_in_several_accounts_needs_account_id() -> None:
    sim = make_sim()
    sim.add_account("other")
    sim.add_container("other", "c1", "other-molecule")
    sim.add_listener("other", "c1", "l1")
    async with running(sim) as api:
        assert (await api.control("PUT", "listeners/l1", {"status": "paused"})).status == 400
        reply = await api.control(
            "PUT", "listeners/l1", {"status": "paused", "account_id": "other"}
        )
        assert reply.status == 200
        assert sim.accounts["other"].listeners["l1"].status == "paused"
        assert sim.accounts[ACCOUNT].listeners["l1"].status == "listening"


async def test_control_container_endpoint() -> None:
    async with running(make_sim()) as api:
        reply = await api.control("PUT", "containers/c1", {"status": "OFFLINE"})
        assert reply.status == 200
        assert reply.json["status"] == "OFFLINE"
        reply = await api.call("POST", "Atom/query")
        assert {atom["id"]: atom["status"] for atom in reply.json["result"]}["c1"] == "OFFLINE"
        assert (await api.control("PUT", "containers/nope", {"status": "OFFLINE"})).status == 404


async def test_control_faults_and_reset_counters() -> None:
    sim = make_sim()
    async with running(sim) as api:
        reply = await api.control(
            "POST", "faults", {"throttle_rate": 1.0, "retry_after_seconds": 0.5}
        )
        assert reply.status == 200
        assert reply.json["throttle_rate"] == 1.0
        assert reply.json["retry_after_seconds"] == 0.5
        assert reply.json["error_5xx_rate"] == 0.0
        reply = await api.call("POST", "Atom/query")
        assert reply.status == 503
        assert reply.headers["Retry-After"] == "0.5"

        assert (await api.control("POST", "faults", {"throttle": 1.0})).status == 400
        assert (await api.control("POST", "faults", {"drop_rate": 2})).status == 400
        assert (await api.control("POST", "faults", [])).status == 400
        assert sim.faults.throttle_rate == 1.0  # a rejected update leaves the faults alone

        reply = await api.control("DELETE", "faults")
        assert reply.status == 200
        assert reply.json["throttle_rate"] == 0.0
        assert (await api.call("POST", "Atom/query")).status == 200
        await api.change(containerId="c1", listenerId="l2", action="restart")
        assert sim.throttled == 1 and sim.change_log and sim.request_counts

        assert (await api.control("POST", "reset-counters")).status == 204
        assert sim.throttled == 0
        assert sim.change_log == []
        assert sim.request_counts == {}
