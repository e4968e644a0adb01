"""The priority rate limiter, against a fake clock (the result-delay learning: test_result_delays.py)."""

from __future__ import annotations

import asyncio

import pytest

from exporter.boomi import (
    PRIORITY_BACKGROUND,
    PRIORITY_REMEDIATION,
    PRIORITY_RESULT,
    PRIORITY_STATUS,
    RateLimiter,
)


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
