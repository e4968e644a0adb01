"""The client follows Boomi's published API (issue 13) and survives the variants it does not
describe, against the simulator over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from exporter.boomi import ApiError, BoomiClient, ResultTimeout, TokenExpired
from exporter.simulator import Faults, Simulator, serve
from tests.conftest import ACCOUNT, FAST_RETRY, SimServer
from tests.simulator_helpers import FakeClock

ClientFactory = Callable[..., BoomiClient]
OFFLINE = "The API is retired or the specified Runtime is currently offline."


@pytest.mark.parametrize(
    "faults",
    [
        Faults(in_progress_empty_rate=1.0),
        Faults(in_progress_status_rows_rate=1.0),
        Faults(in_progress_http_200_rate=1.0),
        Faults(in_progress_empty_rate=1.0, in_progress_http_200_rate=1.0),
        Faults(first_get_in_progress_rate=1.0),
    ],
    ids=[
        "empty result",
        "AsyncOperationStatus rows",
        "HTTP 200",
        "empty with HTTP 200",
        "first GET",
    ],
)
@pytest.mark.parametrize("sim_server", [{"result_delay_seconds": 0.3}], indirect=True)
async def test_in_progress_is_never_a_result(
    sim_server: SimServer, make_client: ClientFactory, faults: Faults
) -> None:
    # On main, an in-progress answer with numberOfResults 0 was taken for "no listeners".
    sim_server.sim.set_faults(faults)
    client = make_client()
    for container in sim_server.container_ids():
        listeners = await client.fetch_listener_statuses(container, result_timeout_seconds=5)
        expected = {lid: status for lid, status in sim_server.listeners_of(container).items()}
        assert {item.listener_id: item.raw_status for item in listeners} == expected
        assert expected
    # Every container's first GET came before its result was ready (0.1 s probe, then the
    # account's typical delay): each saw "in progress" at least once.
    gets = sim_server.count("GET listener_status_result")
    assert gets >= 2 * len(sim_server.container_ids())


@pytest.mark.parametrize("sim_server", [{"listeners_per_container": 0}], indirect=True)
async def test_a_complete_empty_result_is_no_listeners(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    assert await make_client().fetch_listener_statuses(sim_server.container_ids()[0]) == ()
    assert sim_server.count("GET listener_status_result 200") == 1


async def test_an_in_progress_result_that_never_completes_fails_the_poll(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    sim_server.sim.set_faults(Faults(never_settle_rate=1.0, in_progress_empty_rate=1.0))
    with pytest.raises(ResultTimeout, match=r"did not settle within 0\.5 s"):
        await make_client().fetch_listener_statuses(
            sim_server.container_ids()[0], result_timeout_seconds=0.5
        )


async def test_410_twice_tells_boomi_s_words(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    container = sim_server.container_ids()[0]
    sim_server.sim.set_faults(Faults(runtime_offline_410_rate=1.0, container_ids=[container]))
    with pytest.raises(TokenExpired) as caught:
        await make_client().fetch_listener_statuses(container)
    assert OFFLINE in str(caught.value)
    assert "again after a new query" in str(caught.value)
    assert caught.value.container_id == container
    assert sim_server.count("POST listener_status_query") == 2  # started over once


async def test_504_tells_boomi_s_words(sim_server: SimServer, make_client: ClientFactory) -> None:
    container = sim_server.container_ids()[0]
    sim_server.sim.set_faults(Faults(runtime_unreachable_504_rate=1.0, container_ids=[container]))
    with pytest.raises(ApiError) as caught:
        await make_client().fetch_listener_statuses(container)
    assert caught.value.code == "504"
    assert "HTTP 504: Gateway Timeout: the platform cannot reach the Runtime." in str(caught.value)


@pytest.mark.parametrize(
    "faults",
    [Faults(), Faults(message_error_body_rate=1.0), Faults(nested_error_body_rate=1.0)],
    ids=["Error", "message", "error.message"],
)
async def test_each_error_body_form_gives_its_message(
    sim_server: SimServer, make_client: ClientFactory, faults: Faults
) -> None:
    sim_server.sim.set_faults(faults)
    container = sim_server.container_ids()[0]
    with pytest.raises(ApiError) as caught:
        await make_client().change_listener_status(container, "restart", "no-such-listener")
    assert caught.value.code == "400"
    assert str(caught.value).endswith(
        f"HTTP 400: Listener no-such-listener does not exist in account {ACCOUNT}."
    )


async def test_issue_19_a_lying_first_get_does_not_drive_healthy_containers_down() -> None:
    """Fails on main: each cycle set the estimate to the second GET's time, 1.25 x the
    estimate; it reached 30 s and every poll timed out. Here on a fake clock, 300 cycles."""
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(0)
        clock.advance(max(0.0, seconds))

    sim = Simulator.with_fleet(
        account_id=ACCOUNT, containers=1, listeners_per_container=2, result_delay_seconds=0.5,
        rate_limit_rps=1000, clock=clock,
    )  # fmt: skip
    sim.set_faults(Faults(first_get_in_progress_rate=1.0))
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    account = sim.accounts[ACCOUNT]
    client = BoomiClient(
        ACCOUNT, base_url=base_url, username=account.username, password=account.password,
        max_requests_per_second=1000, retry=FAST_RETRY, clock=clock, sleep=sleep,
    )  # fmt: skip
    container = next(iter(account.containers))
    durations = []
    try:
        for _ in range(300):
            started = clock()
            listeners = await client.fetch_listener_statuses(container, result_timeout_seconds=30)
            durations.append(clock() - started)
            assert len(listeners) == 2
    finally:
        await client.close()
        await runner.cleanup()
    learnt = client.result_delays.seconds(container)
    assert learnt is not None and learnt < 0.7
    assert max(durations[20:]) < 0.7  # found soon after the 0.5 s, every cycle
    gets = sim.request_counts["GET listener_status_result 200"] + sim.request_counts.get(
        "GET listener_status_result 202", 0
    )
    assert gets / 300 < 2.2  # the lie costs one GET, not more
