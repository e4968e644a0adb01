"""The Boomi client against the simulator over a real loopback socket."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from exporter.boomi import (
    ApiError,
    AuthError,
    BoomiClient,
    MalformedResponse,
    RateLimited,
    ResultTimeout,
    RetryPolicy,
    TokenExpired,
)
from exporter.simulator import Faults, Simulator, serve
from tests.conftest import ACCOUNT, FAST_RETRY, SimServer
from tests.sim_log import CHANGE, QUERY, RESULT, requests
from tests.simulator_helpers import FakeClock

ClientFactory = Callable[..., BoomiClient]


@asynccontextmanager
async def on_fake_time(
    make_sim: Callable[..., Simulator], **options: object
) -> AsyncIterator[tuple[SimServer, BoomiClient]]:
    """The simulator and a client on one fake clock, which moves only when the client sleeps.

    What the client learns, and how far apart its requests arrive, is then exact however busy
    the machine is.
    """
    clock = FakeClock()
    sim = make_sim(clock=clock, **options)
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    account = sim.accounts[ACCOUNT]
    client = BoomiClient(
        ACCOUNT,
        base_url=base_url,
        username=account.username,
        password=account.password,
        max_requests_per_second=40,
        retry=FAST_RETRY,
        clock=clock,
        sleep=clock.sleep,
    )
    try:
        yield SimServer(sim, base_url), client
    finally:
        await client.close()
        await runner.cleanup()


def test_backoff_is_bounded_full_jitter() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # jitter spreads over the whole range


def as_dict(listeners: tuple[object, ...]) -> dict[str, str]:
    return {item.listener_id: item.status for item in listeners}  # type: ignore[attr-defined]


async def test_full_cycle_returns_the_simulators_listeners(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    client = make_client()
    container = sim_server.container_ids()[0]
    sim_server.sim.set_status(ACCOUNT, next(iter(sim_server.listeners_of(container))), "ERRORED")
    listeners = await client.fetch_listener_statuses(container, result_timeout_seconds=5)
    expected = {lid: status.lower() for lid, status in sim_server.listeners_of(container).items()}
    assert as_dict(listeners) == expected
    assert "errored" in expected.values()
    connector_types = {item.connector_type for item in listeners}
    assert "wss" in connector_types


async def test_one_listener_query(sim_server: SimServer, make_client: ClientFactory) -> None:
    client = make_client()
    container = sim_server.container_ids()[1]
    listener_id = next(iter(sim_server.listeners_of(container)))
    listeners = await client.fetch_listener_statuses(container, listener_id)
    assert [item.listener_id for item in listeners] == [listener_id]


async def test_missing_connector_type_and_odd_status_are_tolerated(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    container = sim_server.container_ids()[0]
    sim_server.sim.add_listener(
        ACCOUNT, container, "odd", status="UNSUPPORTED", connector_type=None
    )
    listeners = await make_client().fetch_listener_statuses(container)
    odd = next(item for item in listeners if item.listener_id == "odd")
    assert (odd.status, odd.connector_type, odd.raw_status) == ("unknown", "", "UNSUPPORTED")


@pytest.mark.parametrize("sim_server", [{"listeners_per_container": 0}], indirect=True)
async def test_settled_empty_container(sim_server: SimServer, make_client: ClientFactory) -> None:
    listeners = await make_client().fetch_listener_statuses(sim_server.container_ids()[0])
    assert listeners == ()


async def test_slow_result_is_waited_for_and_the_delay_is_learnt(
    make_sim: Callable[..., Simulator],
) -> None:
    async with on_fake_time(make_sim, result_delay_seconds=0.6) as (sim_server, client):
        container = sim_server.container_ids()[0]
        await client.fetch_listener_statuses(container, result_timeout_seconds=5)
        first_gets = sim_server.count("GET listener_status_result")
        assert first_gets >= 3  # probing: 0.1 s, 0.2 s, 0.4 s...
        for _ in range(6):
            await client.fetch_listener_statuses(container, result_timeout_seconds=5)
        assert 0.5 < client.expected_result_delay < 1.0
        sim_server.sim.reset_counters()
        for _ in range(4):
            await client.fetch_listener_statuses(container, result_timeout_seconds=5)
        # Having learnt the delay, a cycle costs the query and about one GET.
        assert sim_server.count("GET listener_status_result") / 4 <= 2.0


async def test_result_that_never_settles_times_out(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    sim_server.sim.set_faults(Faults(never_settle_rate=1.0))
    client = make_client()
    with pytest.raises(ResultTimeout, match=r"did not settle within 0\.5 s"):
        await client.fetch_listener_statuses(
            sim_server.container_ids()[0], result_timeout_seconds=0.5
        )


async def test_offline_runtime_times_out(sim_server: SimServer, make_client: ClientFactory) -> None:
    container = sim_server.container_ids()[0]
    sim_server.account.containers[container].status = "OFFLINE"
    with pytest.raises(ResultTimeout) as caught:
        await make_client().fetch_listener_statuses(container, result_timeout_seconds=0.4)
    assert caught.value.container_id == container


async def test_gone_result_starts_over_once_then_fails(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    sim_server.sim.set_faults(Faults(gone_rate=1.0))
    with pytest.raises(TokenExpired):
        await make_client().fetch_listener_statuses(sim_server.container_ids()[0])
    assert sim_server.count("POST listener_status_query") == 2
    gone = sim_server.count("GET listener_status_result 204") + sim_server.count(
        "GET listener_status_result 410"
    )
    assert gone == 2


async def test_gone_result_recovers_with_a_new_query(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    client = make_client()
    container = sim_server.container_ids()[0]
    token = await client.query_listener_status(container)
    await asyncio.sleep(0.1)
    assert (await client.listener_status_result(token, container_id=container)).settled
    with pytest.raises(TokenExpired, match="HTTP 204"):  # consumed
        await client.listener_status_result(token, container_id=container)
    with pytest.raises(TokenExpired, match="HTTP 410"):  # never issued
        await client.listener_status_result("ListenerStatus-nope", container_id=container)


async def test_wrong_password_raises_auth_error_and_backs_off(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    client = make_client(password="wrong-secret-123", auth_failure_backoff_seconds=60)
    container = sim_server.container_ids()[0]
    with pytest.raises(AuthError) as caught:
        await client.fetch_listener_statuses(container)
    assert "HTTP 403" in str(caught.value)
    assert "wrong-secret-123" not in str(caught.value)
    for _ in range(5):
        with pytest.raises(AuthError, match="no calls for this account during a back-off"):
            await client.fetch_listener_statuses(container)
    # One login attempt in all: no retries, and none during the back-off.
    assert sum(sim_server.sim.request_counts.values()) == 1
    assert sim_server.count("POST listener_status_query 403") == 1


async def test_auth_backoff_ends(sim_server: SimServer, make_client: ClientFactory) -> None:
    client = make_client(password="wrong", auth_failure_backoff_seconds=0.2)
    container = sim_server.container_ids()[0]
    with pytest.raises(AuthError):
        await client.query_listener_status(container)
    await asyncio.sleep(0.25)
    with pytest.raises(AuthError, match="HTTP 403"):
        await client.query_listener_status(container)
    assert sim_server.count("POST listener_status_query 403") == 2


async def test_api_token_user_is_accepted(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    account = sim_server.account
    client = make_client(username=f"BOOMI_TOKEN.{account.username}", password=account.api_token)
    assert await client.fetch_listener_statuses(sim_server.container_ids()[0])


async def test_503_storm_is_retried_and_recovers(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    sim_server.sim.set_faults(Faults(throttle_rate=0.5))
    client = make_client()
    for container in sim_server.container_ids():
        listeners = await client.fetch_listener_statuses(container, result_timeout_seconds=10)
        assert as_dict(listeners).keys() == sim_server.listeners_of(container).keys()
    assert sim_server.sim.throttled > 0


async def test_permanent_503_raises_rate_limited(make_sim: Callable[..., Simulator]) -> None:
    async with on_fake_time(make_sim) as (sim_server, client):
        # Longer than any back-off of FAST_RETRY's first attempts (at most 0.08 s), so it is the
        # wait that shows, and within its max_delay (0.2 s), which caps a Retry-After (issue 19).
        sim_server.sim.set_faults(Faults(throttle_rate=1.0, retry_after_seconds=0.15))
        with pytest.raises(RateLimited):
            await client.query_listener_status(sim_server.container_ids()[0])
    assert sim_server.count("POST listener_status_query 503") == 4  # RetryPolicy.attempts
    arrivals = [entry.at for entry in requests(sim_server.sim, QUERY)]
    # Retry-After honoured between attempts, no more and no less, on the simulator's (fake)
    # clock: the back-offs drawn are shorter, and the account waits out the pause, not longer.
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert gaps == [pytest.approx(0.15)] * 3


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(error_5xx_rate=1.0), ApiError),
        (Faults(drop_rate=1.0), ApiError),
        (Faults(malformed_rate=1.0), MalformedResponse),
        (Faults(xml_rate=1.0), MalformedResponse),
    ],
)
async def test_faults_become_typed_errors(
    sim_server: SimServer, make_client: ClientFactory, faults: Faults, error: type[Exception]
) -> None:
    sim_server.sim.set_faults(faults)
    with pytest.raises(error) as caught:
        await make_client().query_listener_status(sim_server.container_ids()[0])
    assert sim_server.container_ids()[0] in str(caught.value)


async def test_slow_answer_past_the_request_timeout(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    sim_server.sim.set_faults(Faults(slow_rate=1.0, slow_seconds=1.0))
    client = make_client(request_timeout_seconds=0.2)
    with pytest.raises(ApiError, match="timed out"):
        await client.query_listener_status(sim_server.container_ids()[0])


async def test_xml_without_accept_header(sim_server: SimServer) -> None:
    credentials = f"{sim_server.account.username}:{sim_server.account.password}"
    auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    async with aiohttp.ClientSession(headers={"Authorization": auth}) as session:
        url = f"{sim_server.base_url}/{ACCOUNT}/async/ListenerStatus/query"
        body = {"QueryFilter": {"expression": {"argument": ["x"], "operator": "EQUALS",
                                               "property": "containerId"}}}  # fmt: skip
        async with session.post(url, json=body) as response:
            assert response.content_type in ("application/xml", "text/xml")
            assert (await response.text()).lstrip().startswith("<")


@pytest.mark.parametrize("action", ["restart", "pause", "resume"])
async def test_change_listener_status_single(
    sim_server: SimServer, make_client: ClientFactory, action: str
) -> None:
    container = sim_server.container_ids()[0]
    listener_id = next(iter(sim_server.listeners_of(container)))
    await make_client().change_listener_status(container, action, listener_id)
    assert sim_server.sim.change_log[-1] | {"time": 0} == {
        "time": 0,
        "account_id": ACCOUNT,
        "container_id": container,
        "listener_id": listener_id,
        "action": action,
    }


@pytest.mark.parametrize("action", ["restart_all", "pause_all", "resume_all"])
async def test_change_listener_status_all(
    sim_server: SimServer, make_client: ClientFactory, action: str
) -> None:
    container = sim_server.container_ids()[0]
    await make_client().change_listener_status(container, action)
    entry = sim_server.sim.change_log[-1]
    assert (entry["action"], entry["listener_id"]) == (action, None)


async def test_restart_takes_effect_later(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    client = make_client()
    container = sim_server.container_ids()[0]
    errored, paused = list(sim_server.listeners_of(container))[:2]
    sim_server.sim.set_status(ACCOUNT, errored, "errored")
    sim_server.sim.set_status(ACCOUNT, paused, "paused")
    await client.change_listener_status(container, "restart", errored)
    await client.change_listener_status(container, "restart", paused)
    await asyncio.sleep(0.15)  # the simulator's restart delay is 0.1 s in these tests
    statuses = as_dict(await client.fetch_listener_statuses(container))
    assert statuses[errored] == "listening"
    assert statuses[paused] == "paused"  # restarting a paused listener leaves it paused


@pytest.mark.parametrize(
    ("container", "action", "listener", "message"),
    [
        ("known", "restart", "unknown-listener", "listener"),
        ("unknown-container", "restart", "known", "container"),
        ("known", "restart_all", None, None),  # valid: control case
    ],
)
async def test_change_listener_status_errors_from_boomi(
    sim_server: SimServer,
    make_client: ClientFactory,
    container: str,
    action: str,
    listener: str | None,
    message: str | None,
) -> None:
    known_container = sim_server.container_ids()[0]
    known_listener = next(iter(sim_server.listeners_of(known_container)))
    container_id = known_container if container == "known" else container
    listener_id = known_listener if listener == "known" else listener
    client = make_client()
    if message is None:
        await client.change_listener_status(container_id, action, listener_id)
        return
    with pytest.raises(ApiError, match=r"HTTP 400: .*" + message) as caught:
        await client.change_listener_status(container_id, action, listener_id)
    assert caught.value.code == "400"  # type: ignore[attr-defined]


async def test_change_listener_status_rejects_bad_arguments_locally(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="unknown action"):
        await client.change_listener_status("c", "reboot", "l")
    with pytest.raises(ValueError, match="needs a listener"):
        await client.change_listener_status("c", "restart")
    with pytest.raises(ValueError, match="must not name a listener"):
        await client.change_listener_status("c", "restart_all", "l")


async def test_change_is_not_retried_after_a_server_error(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    sim_server.sim.set_faults(Faults(error_5xx_rate=1.0))
    container = sim_server.container_ids()[0]
    with pytest.raises(ApiError):
        await make_client().change_listener_status(
            container, "restart", next(iter(sim_server.listeners_of(container)))
        )
    assert sim_server.count("POST change_listener_status") == 1


@pytest.mark.parametrize("sim_server", [{"containers": 250, "listeners_per_container": 0}],
                         indirect=True)  # fmt: skip
async def test_atom_query_follows_pages(sim_server: SimServer, make_client: ClientFactory) -> None:
    atoms = await make_client().query_atoms()
    assert [atom.container_id for atom in atoms] == sim_server.container_ids()
    assert sim_server.count("POST atom_query 200") == 1
    assert sim_server.count("POST atom_query_more 200") == 2


@pytest.mark.parametrize("sim_server", [{"containers": 60, "listeners_per_container": 4}],
                         indirect=True)  # fmt: skip
async def test_process_names_in_bulk(sim_server: SimServer, make_client: ClientFactory) -> None:
    ids = list(sim_server.account.listeners)  # 240 listeners
    names = await make_client().process_names([*ids, "no-such-process"])
    assert names == {lid: sim_server.account.listeners[lid].process_name for lid in ids}
    assert sim_server.count("POST process_bulk 200") == 3  # 100 + 100 + 41


@pytest.mark.parametrize("sim_server", [{"rate_limit_rps": 10, "containers": 6}], indirect=True)
async def test_rate_limiter_keeps_concurrent_callers_under_the_account_limit(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    """Many concurrent cycles through one client: never more than R in a second and a margin.

    Counted on the limiter's own send stamps, where the contract puts it ("a request counts
    from when its headers leave"). Not on the simulator's arrival times: client and simulator
    share one event loop here, and on a starved CPU a burst's arrivals spread by more than the
    limiter's 50 ms margin for network jitter (the simulator then answers 503 and the client
    retries), which says nothing about the limiter.
    """
    client = make_client(max_requests_per_second=10)
    sent: list[float] = []
    original = client.limiter.acquire

    async def recording_acquire(priority: int = 0) -> float:
        stamp = await original(priority)  # when the caller resumed, moved later once sent
        sent.append(stamp)
        return stamp

    client.limiter.acquire = recording_acquire  # type: ignore[method-assign]
    containers = sim_server.container_ids()
    results = await asyncio.gather(
        *(client.fetch_listener_statuses(c, result_timeout_seconds=20) for c in containers * 4)
    )
    assert len(results) == 24
    served = sum(sim_server.sim.request_counts.values())
    assert served == len(sent) >= 48  # every request went through the limiter
    # Boomi's one-second window plus the 50 ms margin (docs/architecture.md).
    window = 1.0 + 0.05
    sent.sort()
    most = max(sum(1 for t in sent[i:] if t < start + window) for i, start in enumerate(sent))
    assert most <= 10


@pytest.mark.parametrize(
    "sim_server",
    # The simulator's limit above the client's: the order is the point here, and a starved CPU
    # can bunch arrivals past the limiter's margin (see the test above).
    [{"rate_limit_rps": 30, "containers": 40, "result_delay_seconds": 0.3}],
    indirect=True,
)
async def test_results_are_fetched_when_ready_not_after_every_other_query(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    """40 containers at 20/s: the queries alone fill two windows, results are ready in 0.3 s.

    Result GETs go ahead of queries still waiting. So the first window's containers' GETs
    leave in the next window (the earliest the limit allows), ahead of the other queries,
    which were waiting longer: each container's result is fetched in the window after its
    query. The learnt delay counts from when the settling GET went out, so what a container
    learns is at most what the simulator saw between its query and its result.
    """
    client = make_client(max_requests_per_second=20)
    # Signed in first: until the credentials are proven the client sends one request at a
    # time, and the queries would join the limiter's queue one by one instead of together.
    await client.query_atoms()
    containers = sim_server.container_ids()
    await asyncio.gather(
        *(client.fetch_listener_statuses(c, result_timeout_seconds=20) for c in containers)
    )
    sim = sim_server.sim
    assert sim_server.count("GET listener_status_result 503") == 0
    log = list(sim.request_log)
    # The first window: the sign-in's Atom query and 19 queries; the other 21 wait.
    assert [e.route for e in log[:20]] == ["atom_query"] + [QUERY] * 19, log[:21]
    queries = requests(sim, QUERY)
    assert len(queries) == 40
    settling = {c: requests(sim, RESULT, container_id=c)[-1] for c in containers}
    # In line, the 21 queries waiting since the start would all go before these results.
    first_window = [e.container_id or "" for e in queries[:19]]
    assert all(settling[c].seq < queries[19].seq for c in first_window), [
        (e.route, e.container_id) for e in log
    ]
    for query in queries:
        container = query.container_id or ""
        learnt = client.result_delays.seconds(container)
        interval = settling[container].at - query.at
        assert learnt is not None and learnt <= interval, (container, learnt)


@pytest.mark.parametrize(
    "sim_server",
    # The simulator's limit above the client's, as in the test above.
    [{"rate_limit_rps": 30, "containers": 61, "result_delay_seconds": 0.2}],
    indirect=True,
)
async def test_remediation_calls_overtake_a_queued_poll_cycle(
    sim_server: SimServer, make_client: ClientFactory
) -> None:
    """A restart's check and change go ahead of a queued cycle of 60 containers (3 windows).

    Counted in the order the simulator received the requests, not in seconds.
    """
    client = make_client(max_requests_per_second=20)
    # Signed in first, so that the cycle's queries join the limiter's queue together (see the
    # test above).
    await client.query_atoms()
    *containers, target = sim_server.container_ids()
    cycle = asyncio.gather(
        *(client.fetch_listener_statuses(c, result_timeout_seconds=20) for c in containers)
    )
    await asyncio.sleep(0.05)  # the cycle's queries are queued
    listener = next(iter(sim_server.listeners_of(target)))
    await client.fetch_listener_statuses(target, listener, result_timeout_seconds=20, urgent=True)
    await client.change_listener_status(target, "pause", listener)
    await cycle
    sim = sim_server.sim
    cycle_queries = [e.seq for e in requests(sim, QUERY) if e.container_id != target]
    (urgent_query,) = requests(sim, QUERY, container_id=target)
    (change,) = requests(sim, CHANGE)
    assert len(cycle_queries) == 60
    # The limiter had granted the first window (the sign-in and 19 queries) when the check was
    # asked for; the check's query is the first of the next. In line, it would come after all 60.
    assert sum(seq < urgent_query.seq for seq in cycle_queries) <= 19
    # The change follows the check's result, and still comes before the cycle's last queries
    # (the third window); in line it would come after all 60.
    assert sum(seq < change.seq for seq in cycle_queries) < 60
    assert [call["listener_id"] for call in sim.change_log] == [listener]
