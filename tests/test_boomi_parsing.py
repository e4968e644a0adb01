"""Table-driven tests of the pure parts of exporter.boomi: parsers, filters, limiter, backoff."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from exporter.boomi import (
    PRIORITY_BACKGROUND,
    PRIORITY_REMEDIATION,
    PRIORITY_RESULT,
    PRIORITY_STATUS,
    ApiError,
    AsyncResult,
    ListenerStatus,
    MalformedResponse,
    RateLimiter,
    ResultDelay,
    RetryPolicy,
    listener_status_filter,
    normalize_status,
    parse_atom_page,
    parse_listener_status_result,
    parse_process_bulk,
    parse_query_token,
    retry_after_seconds,
)

CONNECTING = {"@type": "AsyncOperationStatus", "message": "Connecting to runtime..."}


def row(listener_id: str, status: Any = "listening", connector: Any = "wss") -> dict[str, Any]:
    item: dict[str, Any] = {"@type": "ListenerStatus", "listenerId": listener_id, "status": status}
    if connector is not None:
        item["connectorType"] = connector
    return item


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("listening", "listening"),
        ("LISTENING", "listening"),
        (" Paused ", "paused"),
        ("ERRORED", "errored"),
        ("errored", "errored"),
        ("UNKNOWN", "unknown"),
        ("UNSUPPORTED", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        (3, "unknown"),
    ],
)
def test_normalize_status(raw: object, expected: str) -> None:
    assert normalize_status(raw) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Still working, with the progress note that is not a listener.
        ({"@type": "AsyncOperationResult", "result": [CONNECTING], "responseStatusCode": 202},
         AsyncResult(settled=False)),
        ({"responseStatusCode": 202}, AsyncResult(settled=False)),
        ({"responseStatusCode": "202", "result": []}, AsyncResult(settled=False)),
        # The reported settled-empty quirk: 202 with numberOfResults 0.
        ({"responseStatusCode": 202, "numberOfResults": 0}, AsyncResult(settled=True)),
        # Done, documented shape.
        ({"@type": "AsyncOperationResult", "result": [row("l1")], "numberOfResults": 1,
          "responseStatusCode": 200},
         AsyncResult(True, (ListenerStatus("l1", "listening", "wss", "listening"),))),
        # Done and empty, with result missing or null.
        ({"responseStatusCode": 200, "numberOfResults": 0}, AsyncResult(settled=True)),
        ({"responseStatusCode": 200, "result": None}, AsyncResult(settled=True)),
        # Upper-case status, odd status, missing connector type, progress row mixed in.
        ({"responseStatusCode": 200,
          "result": [CONNECTING, row("a", "ERRORED"), row("b", "UNSUPPORTED", None),
                     row("c", "paused", "com.boomi.connector.x-12ab")]},
         AsyncResult(True, (
             ListenerStatus("a", "errored", "wss", "ERRORED"),
             ListenerStatus("b", "unknown", "", "UNSUPPORTED"),
             ListenerStatus("c", "paused", "com.boomi.connector.x-12ab", "paused"),
         ))),
        # Status missing altogether: unknown, raw kept.
        ({"responseStatusCode": 200, "result": [{"listenerId": "d"}]},
         AsyncResult(True, (ListenerStatus("d", "unknown", "", "None"),))),
    ],
)  # fmt: skip
def test_parse_listener_status_result(body: object, expected: AsyncResult) -> None:
    assert parse_listener_status_result(body, container_id="c1") == expected


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], MalformedResponse),
        ("text", MalformedResponse),
        (None, MalformedResponse),
        ({}, MalformedResponse),
        ({"responseStatusCode": "done"}, MalformedResponse),
        ({"responseStatusCode": True}, MalformedResponse),
        ({"responseStatusCode": 200, "result": {"listenerId": "x"}}, MalformedResponse),
        ({"responseStatusCode": 200, "result": ["x"]}, MalformedResponse),
        ({"responseStatusCode": 200, "result": [{"status": "listening"}]}, MalformedResponse),
        ({"responseStatusCode": 200, "result": [{"listenerId": 5}]}, MalformedResponse),
        ({"responseStatusCode": 400, "result": []}, ApiError),
        ({"responseStatusCode": 500}, ApiError),
    ],
)
def test_parse_listener_status_result_rejects(body: object, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        parse_listener_status_result(body, container_id="c-42")
    assert "c-42" in str(caught.value)
    assert caught.value.operation == "listener_status_result"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "token"),
    [
        ({"@type": "AsyncOperationTokenResult",
          "asyncToken": {"@type": "AsyncToken", "token": "ListenerStatus-1"},
          "responseStatusCode": 202}, "ListenerStatus-1"),
        ({"asyncToken": {"token": "t"}}, "t"),
    ],
)  # fmt: skip
def test_parse_query_token(body: object, token: str) -> None:
    assert parse_query_token(body) == token


@pytest.mark.parametrize(
    "body",
    [{}, {"asyncToken": None}, {"asyncToken": {"token": ""}}, {"asyncToken": "t"}, [], "x"],
)
def test_parse_query_token_rejects(body: object) -> None:
    with pytest.raises(MalformedResponse, match="container c9"):
        parse_query_token(body, container_id="c9")


def test_parse_atom_page_and_token() -> None:
    body = {
        "@type": "QueryResult",
        "result": [
            {"@type": "Atom", "id": "a1", "name": "prod", "status": "ONLINE", "type": "MOLECULE",
             "hostName": "h1"},
            {"id": "a2", "status": "offline"},
        ],
        "numberOfResults": 2,
        "queryToken": "next",
    }  # fmt: skip
    atoms, token = parse_atom_page(body)
    assert token == "next"
    assert [(a.container_id, a.name, a.status, a.type) for a in atoms] == [
        ("a1", "prod", "ONLINE", "MOLECULE"),
        ("a2", "", "OFFLINE", ""),
    ]
    assert parse_atom_page({"result": []}) == ([], None)
    for bad in ({"result": "x"}, {"result": [{"name": "no id"}]}, []):
        with pytest.raises(MalformedResponse):
            parse_atom_page(bad)


def test_parse_process_bulk_keeps_only_successes() -> None:
    body = {
        "@type": "BulkResult",
        "response": [
            {"index": 0, "id": "p1", "statusCode": 200, "Result": {"id": "p1", "name": "Orders"}},
            {"index": 1, "id": "p2", "statusCode": 400, "ErrorMessage": "not found"},
            {"index": 2, "id": "p3", "statusCode": 200, "Result": None},
            "garbage",
        ],
    }
    assert parse_process_bulk(body) == {"p1": "Orders"}
    with pytest.raises(MalformedResponse):
        parse_process_bulk({"response": {}})


def test_listener_status_filter_shapes() -> None:
    assert listener_status_filter("c") == {
        "QueryFilter": {
            "expression": {"argument": ["c"], "operator": "EQUALS", "property": "containerId"}
        }
    }
    nested = listener_status_filter("c", "l")["QueryFilter"]["expression"]
    assert nested["operator"] == "and"
    assert [e["property"] for e in nested["nestedExpression"]] == ["containerId", "listenerId"]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("3", 3.0), (" 1.5 ", 1.5), ("-1", None), ("nan", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)  # fmt: skip
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_backoff_is_bounded_full_jitter() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # jitter spreads over the whole range


class FakeClock:
    """A clock that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Let every task that is ready run first (as on a real loop, where time passes only
        # while everyone waits), then jump.
        for _ in range(5):
            await asyncio.sleep(0)
        self.now += max(0.0, seconds)


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))


@pytest.mark.parametrize("rate", [1, 2, 5, 10, 2.5])
async def test_rate_limiter_never_exceeds_rate_in_any_second(rate: float) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def caller() -> None:
        for _ in range(10):
            await limiter.acquire()
            sent.append(clock())

    await asyncio.gather(*(caller() for _ in range(8)))
    assert len(sent) == 80
    assert max_in_any_window(sent) <= int(rate)
    # ...and it is not needlessly slow: the window plus its safety margin, and nothing more.
    ideal = (80 / int(rate) - 1) * (1.0 + RateLimiter.WINDOW_MARGIN_SECONDS)
    assert sent[-1] - sent[0] <= ideal + 0.01


async def test_rate_limiter_below_one_per_second_spaces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.5, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(3):
        await limiter.acquire()
        sent.append(clock())
    assert sent[1] - sent[0] >= 2.0 and sent[2] - sent[1] >= 2.0


async def test_rate_limiter_pause_holds_every_caller() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    limiter.pause(3.0)
    start = clock()
    await limiter.acquire()
    assert clock() - start >= 3.0
    limiter.pause(1.0)
    limiter.pause(0.1)  # a shorter pause does not shorten the one in force
    start = clock()
    await limiter.acquire()
    assert clock() - start >= 1.0


def test_rate_limiter_rejects_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


async def test_rate_limiter_serves_status_before_background_work() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    order: list[str] = []

    async def caller(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        order.append(name)

    background = [asyncio.create_task(caller(f"b{i}", PRIORITY_BACKGROUND)) for i in range(4)]
    await asyncio.sleep(0)  # the background callers queue first...
    status = [asyncio.create_task(caller(f"s{i}", PRIORITY_STATUS)) for i in range(4)]
    await asyncio.gather(*background, *status)
    # ...but only those granted before the status callers arrived go ahead of them.
    granted_first = [name for name in order if name.startswith("b")][:2]
    assert order[:2] == granted_first
    assert order[2:6] == ["s0", "s1", "s2", "s3"]
    assert order[6:] == ["b2", "b3"]


async def test_rate_limiter_serves_remediation_then_results_then_queries_then_background() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock, sleep=clock.sleep)
    order: list[str] = []
    await limiter.acquire()  # the window is full: everyone below has to queue

    async def caller(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        order.append(name)

    callers = [
        ("background", PRIORITY_BACKGROUND),
        ("query", PRIORITY_STATUS),
        ("result", PRIORITY_RESULT),
        ("restart", PRIORITY_REMEDIATION),
    ]
    await asyncio.gather(*(caller(name, priority) for name, priority in callers))
    assert order == ["restart", "result", "query", "background"]


async def test_rate_limiter_restamp_moves_a_slot_to_when_the_request_really_left() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    first = await limiter.acquire()
    second = await limiter.acquire()
    clock.now += 0.5  # the second request was held up (a GC pause) before its headers went out
    assert limiter.restamp(second) == first + 0.5
    assert limiter.restamp(first + 0.5) == first + 0.5  # not moved when no time has passed
    await limiter.acquire()
    # The third slot opens one window after the FIRST request; had the second kept its grant
    # time it would also open then, but the window now still holds the moved second request.
    assert clock() - first == pytest.approx(1.0 + RateLimiter.WINDOW_MARGIN_SECONDS)
    await limiter.acquire()
    assert clock() - first == pytest.approx(1.5 + RateLimiter.WINDOW_MARGIN_SECONDS)


async def test_rate_limiter_skips_cancelled_waiters() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    start = clock()
    await limiter.acquire()
    assert clock() - start < 1.1  # the cancelled waiter did not use the next slot


def test_result_delay_probes_then_learns() -> None:
    estimate = ResultDelay()
    assert estimate.first_wait() == 0.1
    assert estimate.next_wait(0.1, first_miss=True) == 0.2  # probing doubles
    estimate.settled(1.3, first_look=False)
    assert estimate.first_wait() == 1.3
    assert estimate.next_wait(1.3, first_miss=True) == pytest.approx(0.325)  # just missed
    assert estimate.next_wait(0.4, first_miss=False) == 0.8
    assert estimate.next_wait(4.0, first_miss=False) == 5.0  # capped
    estimate.settled(1.3, first_look=True)  # found at the first look: creep down
    assert estimate.first_wait() == pytest.approx(1.3 * ResultDelay.CREEP)
    estimate.settled(2.0, first_look=False)  # looked too early: jump to what it took
    assert estimate.first_wait() == 2.0


def test_result_delay_learnt_by_probing_starts_between_the_last_two_looks() -> None:
    estimate = ResultDelay()
    assert estimate.settled(1.5, first_look=False, unsettled_at=0.7) == pytest.approx(1.1)
    # Once learnt, a look too early means "at least this long": the late end, as before.
    assert estimate.settled(1.4, first_look=False, unsettled_at=1.1) == 1.4


def test_result_delay_of_a_new_container_starts_from_the_account_s_typical_delay() -> None:
    estimate = ResultDelay()
    assert estimate.first_wait(typical=1.2) == 1.2  # no probing when the account knows better
    assert estimate.next_wait(1.2, first_miss=True) == pytest.approx(0.3)  # then "just missed"
    assert estimate.settled(1.5, first_look=False) == 1.5
    assert estimate.first_wait(typical=0.5) == 1.5  # its own estimate wins once it has one


def test_result_delay_costs_about_one_get_per_cycle_for_a_steady_delay() -> None:
    """Simulate cycles against a fixed true delay and count the GETs."""
    for true_delay in (1.0, 2.0, 3.0):
        estimate = ResultDelay()
        gets = 0
        for _ in range(60):
            elapsed, wait, looks = 0.0, estimate.first_wait(), 0
            while True:
                elapsed += wait
                looks += 1
                if elapsed >= true_delay:
                    estimate.settled(elapsed, first_look=looks == 1)
                    break
                wait = estimate.next_wait(wait, first_miss=looks == 1)
            gets += looks
        # Counted over the steady state too: the first cycle's probing is included.
        assert gets / 60 <= 1.2, (true_delay, gets / 60)
