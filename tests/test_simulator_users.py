"""The simulator's users, over a real socket: Boomi's lockout rule, revoked secrets, privileges,
and the control API that changes them; and the outage fault."""

from __future__ import annotations

import asyncio

import pytest

from exporter.simulator import Faults, Simulator
from tests.simulator_helpers import (
    ACCOUNT,
    API_TOKEN,
    JSON,
    PASSWORD,
    USER,
    Reply,
    basic,
    make_sim,
    running,
    status_filter,
)

WRONG = {**JSON, "Authorization": basic(USER, "wrong")}
RIGHT = {**JSON, "Authorization": basic(USER, PASSWORD)}
TOKEN = {**JSON, "Authorization": basic(f"BOOMI_TOKEN.{USER}", API_TOKEN)}


async def test_the_sixth_rejected_sign_in_locks_the_user_even_against_the_right_password() -> None:
    async with running(make_sim()) as api:
        for number in range(1, 6):
            assert (await api.call("POST", "Atom/query", headers=WRONG)).status == 403
            user = (await api.control("GET", "state")).json["users"][USER]
            assert user == {
                "username": USER,
                "rejected_sign_ins": number,
                "locked": False,
                "denied_routes": [],
            }
        # Five rejections do not lock: the right password still works.
        assert (await api.call("POST", "Atom/query", headers=RIGHT)).status == 200
        assert (await api.call("POST", "Atom/query", headers=WRONG)).status == 403
        state = (await api.control("GET", "state")).json["users"][USER]
        assert state["locked"] and state["rejected_sign_ins"] == 6
        for headers in (RIGHT, TOKEN):
            reply = await api.call("POST", "Atom/query", headers=headers)
            assert reply.status == 403
            assert reply.json["@type"] == "Error"
        # A locked user's attempts are rejected sign-ins too.
        assert (await api.control("GET", "state")).json["users"][USER]["rejected_sign_ins"] == 8

        reply = await api.control("POST", f"users/{USER}/unlock")
        assert reply.status == 200
        assert reply.json == {
            "username": USER,
            "rejected_sign_ins": 0,
            "locked": False,
            "denied_routes": [],
        }
        assert (await api.call("POST", "Atom/query", headers=RIGHT)).status == 200
        assert (await api.control("POST", "users/nobody@example.com/unlock")).status == 404


async def test_the_lockout_threshold_is_configurable_and_counts_the_user_across_accounts() -> None:
    sim = make_sim(lockout_after=2)
    sim.add_account("sub-account", username=USER)  # a sub-account of the same user
    async with running(sim) as api:
        assert (await api.call("POST", "Atom/query", headers=WRONG)).status == 403
        api.account = "sub-account"
        assert (await api.call("POST", "Atom/query", headers=WRONG)).status == 403
        assert sim.users[USER].locked
        for account in (ACCOUNT, "sub-account"):
            api.account = account
            assert (await api.call("POST", "Atom/query", headers=RIGHT)).status == 403
    with pytest.raises(ValueError, match="lockout_after"):
        Simulator(lockout_after=0)


async def test_a_request_without_credentials_or_for_an_unknown_account_is_no_sign_in() -> None:
    async with running(make_sim(lockout_after=1)) as api:
        assert (await api.call("POST", "Atom/query", headers=JSON)).status == 401
        api.account = "someone-else"
        assert (await api.call("POST", "Atom/query", headers=RIGHT)).status == 403
        assert (await api.control("GET", "state")).json["users"][USER]["rejected_sign_ins"] == 0


async def test_a_user_has_one_password_whatever_the_account() -> None:
    sim = make_sim()
    with pytest.raises(ValueError, match="another password"):
        sim.add_account("other", username=USER, password="not-the-users")
    assert "other" not in sim.accounts


async def test_a_new_password_and_a_new_token_revoke_the_old_ones() -> None:
    sim = make_sim()
    sim.add_account("sub-account", username=USER)
    async with running(sim) as api:
        reply = await api.control("PUT", f"users/{USER}", {"api_token": "token-2"})
        assert reply.status == 200
        assert "token-2" not in reply.text and "api_token" not in reply.json
        assert (await api.call("POST", "Atom/query", headers=TOKEN)).status == 403
        rotated = {**JSON, "Authorization": basic(f"BOOMI_TOKEN.{USER}", "token-2")}
        api.account = "sub-account"  # the user's, so its new token works there too
        assert (await api.call("POST", "Atom/query", headers=rotated)).status == 200

        assert (await api.control("PUT", f"users/{USER}", {"password": "pw-2"})).status == 200
        assert (await api.call("POST", "Atom/query", headers=RIGHT)).status == 403
        new_password = {**JSON, "Authorization": basic(USER, "pw-2")}
        assert (await api.call("POST", "Atom/query", headers=new_password)).status == 200
        assert sim.users[USER].rejected_sign_ins == 2

        for bad in ({"password": ""}, {"api_token": 7}, {"pasword": "x"}):
            assert (await api.control("PUT", f"users/{USER}", bad)).status == 400
        assert (await api.control("PUT", "users/nobody", {"password": "x"})).status == 404


async def test_a_denied_route_answers_403_without_counting_a_rejected_sign_in() -> None:
    async with running(make_sim(lockout_after=1)) as api:
        reply = await api.control("PUT", f"users/{USER}", {"denied_routes": ["process_bulk"]})
        assert reply.status == 200 and reply.json["denied_routes"] == ["process_bulk"]
        bulk = {"type": "GET", "request": [{"id": "l1"}]}
        for _ in range(3):
            reply = await api.call("POST", "Process/bulk", bulk)
            assert reply.status == 403
            assert reply.json["message"] == "Access denied due to insufficient permissions."
        # Authenticated: other calls go on, and the user is not locked.
        token = await api.query("c1")
        assert token
        assert (await api.call("POST", "Atom/query")).status == 200
        assert sim_user_state(await api.control("GET", "state")) == (0, False)
        reply = await api.control("PUT", f"users/{USER}", {"denied_routes": ["no_such_route"]})
        assert reply.status == 400 and "process_bulk" in reply.json["error"]
        assert (await api.control("PUT", f"users/{USER}", {"denied_routes": []})).status == 200
        assert (await api.call("POST", "Process/bulk", bulk)).status == 200


def sim_user_state(reply: Reply) -> tuple[int, bool]:
    user = reply.json["users"][USER]
    return user["rejected_sign_ins"], user["locked"]


async def test_an_outage_answers_504_after_the_latency_before_sign_in_and_rate_limit() -> None:
    sim = make_sim(lockout_after=1)
    sim.set_faults(Faults(outage_seconds=0.05))
    async with running(sim) as api:
        replies = await asyncio.gather(
            api.call("POST", "async/ListenerStatus/query", status_filter("c1"), headers=WRONG),
            api.call("POST", "Atom/query"),
        )
        assert [reply.status for reply in replies] == [504, 504]
        assert all(reply.json["@type"] == "Error" for reply in replies)
        assert sim.users[USER].rejected_sign_ins == 0  # never reached the sign-in
        assert (await api.control("POST", "faults", {"outage_seconds": -1})).status == 400
        assert (await api.control("DELETE", "faults")).status == 200
        assert (await api.call("POST", "Atom/query")).status == 200
