"""The priority rate limiter and the result-delay learning, against a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from exporter.boomi import (
    PRIORITY_BACKGROUND,
    PRIORITY_REMEDIATION,
    PRIORITY_RESULT,
    PRIORITY_STATUS,
    AccountResultDelays,
    RateLimiter,
    ResultDelay,
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


def test_account_delays_learn_the_typical_delay_only_from_measurements() -> None:
    delays = AccountResultDelays()
    looks = delays.looks("c-1")
    looks.start()
    assert looks.wait == ResultDelay.PROBE_SECONDS  # nothing known: probe
    looks.settled(0.1)  # found at the first look: only "at most this long"
    assert delays.typical is None
    looks.start()
    looks.unsettled(0.1)
    looks.settled(1.0)  # a look missed, the next found it: a measurement
    assert delays.typical == delays.seconds("c-1")
    learnt = delays.typical
    assert learnt is not None
    other = delays.looks("c-2")
    other.start()
    assert other.wait == learnt  # a new container starts from the account's typical delay
    other.unsettled(learnt)
    other.settled(2.0)
    assert delays.typical == pytest.approx(0.8 * learnt + 0.2 * 2.0)  # a moving average
    assert delays.expected == pytest.approx((learnt + 2.0) / 2)
    delays.forget("c-2")
    assert delays.seconds("c-2") is None
    assert delays.expected == learnt
