"""Tests of the Boomi API simulator as a whole: auth and content negotiation, the rate limit,
the generated fleet, determinism and the demo helpers, over a real socket with a plain aiohttp client.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import aiohttp
import pytest

from exporter.simulator import (
    Simulator,
    describe,
    serve,
)
from tests.sim_log import wait_until
from tests.simulator_helpers import (
    ACCOUNT,
    API_TOKEN,
    AUTH,
    BNS,
    JSON,
    PASSWORD,
    USER,
    XSI_TYPE,
    FakeClock,
    basic,
    make_sim,
    running,
    status_filter,
)

# --------------------------------------------------------------------------------------------
# Authentication and content negotiation
# --------------------------------------------------------------------------------------------


async def test_missing_or_invalid_authorization_is_401() -> None:
    async with running(make_sim()) as api:
        for headers in (JSON, {**JSON, "Authorization": "Bearer abc"}):
            reply = await api.call(
                "POST", "async/ListenerStatus/query", status_filter("c1"), headers=headers
            )
            assert reply.status == 401
            assert reply.json["@type"] == "Error"
            assert reply.json["message"]


async def test_wrong_credentials_and_unknown_account_are_403() -> None:
    async with running(make_sim()) as api:
        wrong = {**JSON, "Authorization": basic(USER, "wrong")}
        reply = await api.call(
            "POST", "async/ListenerStatus/query", status_filter("c1"), headers=wrong
        )
        assert reply.status == 403
        assert reply.json == {
            "@type": "Error",
            "message": "Access denied due to insufficient permissions.",
        }
        # The token user does not take the password, only the API token.
        token_user_password = {**JSON, "Authorization": basic(f"BOOMI_TOKEN.{USER}", PASSWORD)}
        reply = await api.call("POST", "Atom/query", headers=token_user_password)
        assert reply.status == 403
        api.account = "someone-else"
        reply = await api.call("POST", "Atom/query")
        assert reply.status == 403
        assert reply.json["message"] == "Access denied due to insufficient permissions."


async def test_boomi_token_user_with_api_token_is_accepted() -> None:
    async with running(make_sim()) as api:
        token_auth = {**JSON, "Authorization": basic(f"BOOMI_TOKEN.{USER}", API_TOKEN)}
        reply = await api.call(
            "POST", "async/ListenerStatus/query", status_filter("c1"), headers=token_auth
        )
        assert reply.status == 200
        assert reply.json["asyncToken"]["token"].startswith("ListenerStatus-")


async def test_xml_unless_json_is_asked_for() -> None:
    clock = FakeClock()
    async with running(make_sim(clock)) as api:
        no_accept = {"Content-Type": "application/json", **AUTH}
        reply = await api.call(
            "POST", "async/ListenerStatus/query", status_filter("c1"), headers=no_accept
        )
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/xml")
        root = ET.fromstring(reply.text)
        assert root.tag == f"{BNS}AsyncOperationTokenResult"
        assert root.get("responseStatusCode") == "202"
        token_element = root.find(f"{BNS}asyncToken")
        assert token_element is not None
        token = token_element.get("token")
        assert token is not None and token.startswith("ListenerStatus-")

        clock.advance(10)
        reply = await api.call("GET", f"async/ListenerStatus/response/{token}", headers=AUTH)
        root = ET.fromstring(reply.text)
        assert root.tag == f"{BNS}AsyncOperationResult"
        rows = root.findall(f"{BNS}result")
        assert {row.get("listenerId") for row in rows} == {"l1", "l2", "l3"}
        assert {row.get(XSI_TYPE) for row in rows} == {"bns:ListenerStatus"}

        # Errors follow the same rule.
        reply = await api.call("POST", "Atom/query", headers={"Authorization": basic(USER, "x")})
        assert reply.status == 403
        assert (
            ET.fromstring(reply.text).get("message")
            == "Access denied due to insufficient permissions."
        )


# --------------------------------------------------------------------------------------------
# Rate limit
# --------------------------------------------------------------------------------------------


async def test_rate_limit_accepts_exactly_r_per_second() -> None:
    clock = FakeClock()
    sim = Simulator(seed=1, clock=clock)
    sim.add_account(ACCOUNT, username=USER, password=PASSWORD, rate_limit_rps=4)
    sim.add_container(ACCOUNT, "c1", "prod-molecule-1")
    async with running(sim) as api:
        replies = await asyncio.gather(*(api.call("POST", "Atom/query") for _ in range(12)))
        codes = sorted(reply.status for reply in replies)
        assert codes == [200] * 4 + [503] * 8
        rejected = next(reply for reply in replies if reply.status == 503)
        assert rejected.json["@type"] == "Error"
        assert "Retry-After" not in rejected.headers
        assert sim.throttled == 8
        assert sim.request_counts == {"POST atom_query 200": 4, "POST atom_query 503": 8}

        # Rejected requests do not use up the budget: the window slides from accepted ones.
        clock.advance(0.999)
        assert (await api.call("POST", "Atom/query")).status == 503
        clock.advance(0.002)
        replies = await asyncio.gather(*(api.call("POST", "Atom/query") for _ in range(5)))
        assert sorted(reply.status for reply in replies) == [200] * 4 + [503]

        # Unauthenticated requests spend the account's budget too; the control API never does.
        clock.advance(1.0)
        bad = {**JSON, "Authorization": basic(USER, "wrong")}
        replies = await asyncio.gather(
            *(api.call("POST", "Atom/query", headers=bad) for _ in range(5))
        )
        assert sorted(reply.status for reply in replies) == [403] * 4 + [503]
        for _ in range(10):
            assert (await api.control("GET", "state")).status == 200


# --------------------------------------------------------------------------------------------
# Fleet, determinism, demo helpers
# --------------------------------------------------------------------------------------------


async def test_same_seed_same_fleet_and_tokens() -> None:
    async def tokens(sim: Simulator) -> list[str]:
        async with running(sim, "demo-account") as api:
            api_headers = {**JSON, "Authorization": basic("demo@example.com", "demo-password")}
            container_id = next(iter(sim.accounts["demo-account"].containers))
            body = status_filter(container_id)
            replies = [
                await api.call("POST", "async/ListenerStatus/query", body, headers=api_headers)
                for _ in range(3)
            ]
            return [reply.json["asyncToken"]["token"] for reply in replies]

    first, second, other = (Simulator.with_fleet(seed=seed) for seed in (5, 5, 6))
    assert first.state() == second.state()
    assert first.state() != other.state()
    assert await tokens(first) == await tokens(second)
    assert await tokens(first) != await tokens(other)


def test_fleet_is_realistic() -> None:
    sim = Simulator.with_fleet(containers=3, listeners_per_container=5)
    account = sim.accounts["demo-account"]
    assert [c.name for c in account.containers.values()] == [
        "prod-molecule-1",
        "prod-atom-1",
        "test-molecule-1",
    ]
    listeners = list(account.listeners.values())
    assert len(listeners) == 15
    connector_types = {listener.connector_type for listener in listeners}
    assert {"wss", "atomqueue", "jms", None} <= connector_types
    assert any(ct is not None and len(ct) > 20 for ct in connector_types)
    assert "Orders WSS Listener" in {listener.process_name for listener in listeners}
    assert sum(listener.status == "listening" for listener in listeners) > len(listeners) / 2
    assert account.rate_limit_rps == 10.0


def test_describe_tells_how_to_connect() -> None:
    sim = Simulator.with_fleet(containers=2, listeners_per_container=3, rate_limit_rps=5)
    text = describe(sim, "http://127.0.0.1:8080/api/rest/v1")
    for expected in (
        "http://127.0.0.1:8080/api/rest/v1",
        "demo-account",
        "demo@example.com",
        "demo-password",
        "BOOMI_TOKEN.demo@example.com",
        "demo-api-token",
        "2 containers, 6 listeners",
        "5 requests per second",
        "curl",
        "http://127.0.0.1:8080/__simulator/state",
    ):
        assert expected in text


async def test_flap_changes_statuses_and_stops_when_cancelled() -> None:
    sim = Simulator.with_fleet(containers=2, listeners_per_container=4)
    for account_id, account in sim.accounts.items():
        for listener_id in account.listeners:
            sim.set_status(account_id, listener_id, "listening")

    def all_listening() -> bool:
        return all(
            lst.status == "listening" for lst in sim.accounts["demo-account"].listeners.values()
        )

    calm = asyncio.create_task(sim.flap(interval_seconds=0.01, probability=0.0))
    await asyncio.sleep(0.05)
    calm.cancel()
    assert all_listening()

    flapping = asyncio.create_task(sim.flap(interval_seconds=0.02, probability=1.0))
    try:
        await wait_until(lambda: not all_listening(), "a flap")
    finally:
        flapping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flapping


async def test_serve_reports_a_loopback_url_for_a_wildcard_host() -> None:
    runner, base_url = await serve(make_sim(), "0.0.0.0", 0)
    try:
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/api/rest/v1")
        async with (
            aiohttp.ClientSession() as session,
            session.get(base_url.removesuffix("/api/rest/v1") + "/__simulator/state") as resp,
        ):
            assert resp.status == 200
    finally:
        await runner.cleanup()
