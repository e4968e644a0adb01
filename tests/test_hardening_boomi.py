"""Issue 19 (hardening), the Boomi client's side: what a hostile or broken Boomi answer does.

Each test runs the client against the simulator over a real socket, with the fault that the
issue found harmful; each failed before the fix. The items are those of the issue's list.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from exporter.boomi import (
    ApiError,
    BoomiClient,
    MalformedResponse,
    RetryPolicy,
    parse_atom_page,
    parse_listener_status_result,
    parse_process_bulk,
    parse_query_token,
)
from exporter.boomi.shapes import OP_RESULT, clean_text, decode_json
from exporter.simulator import Faults
from tests.conftest import SimServer

# A bound on a test that, before the fix, would wait for a day; not a timing assertion.
NO_HANG_SECONDS = 20.0
MAX_ANSWER_BYTES = 32 * 2**20  # the client's bound, as documented

# -- item 2: one Retry-After freezes an account ------------------------------------------------


@pytest.mark.parametrize("status", [503, 502])
async def test_a_retry_after_of_a_day_is_capped_at_the_retry_policy_and_logged_once(
    sim_server: SimServer,
    make_client: Callable[..., BoomiClient],
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        # Every wait the client and its rate limiter ask for is recorded; none really lasts.
        waits.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))

    policy = RetryPolicy(attempts=4, base_delay=0.02, max_delay=0.2)
    client = make_client(sleep=sleep, retry=policy)
    container = sim_server.container_ids()[0]
    sim_server.sim.set_faults(Faults(long_retry_after_status=status, long_retry_after_answers=2))
    caplog.set_level(logging.DEBUG, logger="exporter.boomi")
    listeners = await asyncio.wait_for(
        client.fetch_listener_statuses(container, result_timeout_seconds=2.0),
        timeout=NO_HANG_SECONDS,
    )
    assert {item.listener_id for item in listeners} == set(sim_server.listeners_of(container))
    assert sim_server.count(f"POST listener_status_query {status}") == 2  # both were answered
    # Retry waits and the rate limiter's pause (at most 0.2 s each), and the waits for the
    # result (within the result timeout): nothing near a day.
    assert waits and max(waits) <= 2.0
    warned = [r for r in caplog.records if "Retry-After" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "86400" in warned[0].getMessage() and "at most 0.2 s" in warned[0].getMessage()


# -- item 3: a lone surrogate in any string ----------------------------------------------------


def _decoded(document: Any) -> object:
    # json.dumps writes a lone surrogate as the legal escape "\udc80", as a server would.
    return decode_json(json.dumps(document).encode(), OP_RESULT)


def test_every_string_of_an_answer_is_made_encodable() -> None:
    body = _decoded(
        {
            "responseStatusCode": 200,
            "result": [
                {"listenerId": "l\udc80", "status": "LISTENING\ud83d", "connectorType": "w\udfff"}
            ],
        }
    )
    (listener,) = parse_listener_status_result(body).listeners
    for text in (listener.listener_id, listener.raw_status, listener.connector_type):
        text.encode()  # would raise UnicodeEncodeError for a surrogate
        assert "\ufffd" in text
    (atom,), _ = parse_atom_page(_decoded({"result": [{"id": "c\ud800", "name": "n\udbff"}]}))
    assert (atom.container_id, atom.name) == ("c\ufffd", "n\ufffd")
    names = parse_process_bulk(
        _decoded(
            {"response": [{"statusCode": 200, "Result": {"id": "p", "name": "Orders 🚀\ud83d"}}]}
        )
    )
    assert names == {"p": "Orders 🚀\ufffd"}
    # Raw UTF-8 bytes of a surrogate (which json.loads reads with "surrogatepass") as well.
    assert decode_json(b'{"name": "x\xed\xb2\x80"}', OP_RESULT) == {"name": "x\ufffd"}
    # Text without surrogates is left exactly as it was, emoji included.
    assert clean_text("Orders 🚀 \u00e9") == "Orders 🚀 \u00e9"


async def test_process_names_with_lone_surrogates_arrive_encodable(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    client = make_client()
    ids = list(sim_server.account.listeners)
    sim_server.sim.set_faults(Faults(surrogate_rate=1.0))
    names = await client.process_names(ids)
    assert set(names) == set(ids)
    for listener_id, name in names.items():
        name.encode()
        assert name == sim_server.account.listeners[listener_id].process_name + "\ufffd"


# -- item 9: a hostile token, a huge body, an empty body, a redirect ---------------------------


def test_a_token_of_dots_is_refused() -> None:
    for token in ("..", ".", "..."):
        with pytest.raises(MalformedResponse, match="only dots"):
            parse_query_token({"asyncToken": {"token": token}}, container_id="c1")
    assert parse_query_token({"asyncToken": {"token": "../x"}}) == "../x"  # quoted when used


async def test_a_hostile_token_is_sent_as_one_path_segment(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    client = make_client()
    container = sim_server.container_ids()[0]
    sim_server.sim.set_faults(Faults(hostile_token_rate=1.0))
    listeners = await client.fetch_listener_statuses(container)
    assert {item.listener_id for item in listeners} == set(sim_server.listeners_of(container))
    # The GET reached the result route with the whole token, and nothing else was asked.
    assert sim_server.count("GET listener_status_result 200") >= 1
    assert sim_server.count("GET unknown") == 0


async def test_an_answer_over_the_size_bound_fails_the_call_clearly(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    client = make_client()
    sim_server.sim.set_faults(
        Faults(huge_rate=1.0, huge_bytes=MAX_ANSWER_BYTES + 1, routes=["atom_query"])
    )
    with pytest.raises(MalformedResponse, match="a body larger than 32 MiB"):
        await client.query_atoms()
    # Just under the bound is still read.
    sim_server.sim.set_faults(
        Faults(huge_rate=1.0, huge_bytes=MAX_ANSWER_BYTES - 1, routes=["atom_query"])
    )
    assert len(await client.query_atoms()) == len(sim_server.container_ids())


async def test_an_empty_answer_is_called_empty(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    client = make_client()
    sim_server.sim.set_faults(Faults(empty_rate=1.0, routes=["listener_status_query"]))
    with pytest.raises(MalformedResponse) as caught:
        await client.query_listener_status(sim_server.container_ids()[0])
    assert "an empty body" in str(caught.value)
    assert "NoneType" not in str(caught.value)


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("/__simulator/state", "/__simulator/state"),
        (
            "https://user:pw@login.example:8443/sso?token=abc",
            "https://login.example:8443/sso",
        ),
    ],
)
async def test_a_redirect_is_not_followed_and_is_reported(
    sim_server: SimServer, make_client: Callable[..., BoomiClient], location: str, shown: str
) -> None:
    client = make_client()
    sim_server.sim.set_faults(
        Faults(redirect_rate=1.0, redirect_url=location, routes=["listener_status_query"])
    )
    with pytest.raises(ApiError) as caught:
        await client.query_listener_status(sim_server.container_ids()[0])
    assert f"Boomi redirected to {shown} (HTTP 302)" in str(caught.value)
    assert "pw" not in str(caught.value) and "token=" not in str(caught.value)
    assert sim_server.count("POST listener_status_query 302") == 1  # once: no retry


async def test_a_closed_client_does_not_open_a_new_session(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    client = make_client()
    await client.query_listener_status(sim_server.container_ids()[0])
    await client.close()
    with pytest.raises(ApiError, match="client was replaced"):
        await client.query_listener_status(sim_server.container_ids()[0])


async def test_a_huge_answer_to_a_client_that_gave_up_logs_nothing_in_the_simulator(
    sim_server: SimServer, make_client: Callable[..., BoomiClient], caplog: pytest.LogCaptureFixture
) -> None:
    # The answer comes after the client's timeout: the simulator finds the connection closed.
    client = make_client(request_timeout_seconds=0.1, retry=RetryPolicy(attempts=1))
    sim_server.sim.set_faults(
        Faults(slow_rate=1.0, slow_seconds=0.3, huge_rate=1.0, routes=["atom_query"])
    )
    with pytest.raises(ApiError, match="timed out"):
        await client.query_atoms()
    await asyncio.sleep(0.5)  # the simulator's handler wakes up and finds the client gone
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and r.exc_info]
