"""The result-delay learning (exporter/boomi/delays.py), on a fake clock.

`run` plays the client's loop against a fake Boomi: each query's result is ready after its own
delay, and the first GET of a token may lie ("in progress" however late it comes, issue 19).
Times are simulated seconds, nothing sleeps. The patterns cover delays from 0.05 to 20 s, steady,
noisy and stepping up or down, found first from above and from below, with first GETs that tell
the truth, always lie or lie at random.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.boomi import AccountResultDelays, ResultDelay, ResultLooks

Delay = Callable[[int, random.Random], float]
Lies = Callable[[int, random.Random], bool]

RESULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Cycle:
    delay: float  # when this query's result was ready
    found_at: float | None  # when the GET that found it went out; None: timed out
    gets: int
    estimate: float  # learnt after this cycle


def cycle(looks: ResultLooks, delay: float, first_lies: bool, latency: float) -> Cycle:
    """One query's GETs, as the client times them: each goes out at `next_at` or, if the
    previous answer came later, right after it."""
    looks.start()
    now, gets = 0.0, 0
    while True:
        now = max(now, looks.next_at)
        if now > RESULT_TIMEOUT:
            return Cycle(delay, None, gets, looks.estimate.seconds or 0.0)
        sent, gets = now, gets + 1
        now += latency  # the answer comes back
        if sent >= delay and not (first_lies and gets == 1):
            looks.settled(sent)
            return Cycle(delay, sent, gets, looks.estimate.seconds or 0.0)
        looks.unsettled(sent)


def run(
    delay: Delay, lies: Lies, *, cycles: int, latency: float = 0.05, seed: int = 1
) -> list[Cycle]:
    rng = random.Random(seed)
    looks = AccountResultDelays().looks("c-1")
    return [cycle(looks, delay(i, rng), lies(i, rng), latency) for i in range(cycles)]


def steady(seconds: float) -> Delay:
    return lambda i, rng: seconds


def noisy(seconds: float, spread: float) -> Delay:
    return lambda i, rng: rng.uniform(seconds * (1 - spread), seconds * (1 + spread))


def step(before: float, after: float, at: int = 20) -> Delay:
    return lambda i, rng: before if i < at else after


def never(i: int, rng: random.Random) -> bool:
    return False


def always(i: int, rng: random.Random) -> bool:
    return True


def sometimes(share: float) -> Lies:
    return lambda i, rng: rng.random() < share


def check_converged(
    history: list[Cycle], *, settle: int, max_gets: float, latency: float = 0.05
) -> None:
    """After `settle` cycles: the result is found soon after it is ready, at a bounded cost,
    by an estimate near the real delay."""
    assert all(c.found_at is not None for c in history), "a healthy container timed out"
    tail = history[settle:]
    delays = [c.delay for c in tail]
    mean_gets = sum(c.gets for c in tail) / len(tail)
    assert mean_gets <= max_gets, f"{mean_gets:.2f} GETs per cycle"
    for c in tail:
        assert c.found_at is not None
        # Noisy delays are covered up to their slow end.
        assert c.found_at <= 1.3 * max(delays) + 2 * latency + 0.1, c
        # Below the real delay only where it makes no difference: the look after a primer
        # cannot go out before the primer's answer is back.
        assert 0.7 * min(delays) - 2 * latency - 0.01 <= c.estimate, c
        assert c.estimate <= 1.3 * max(delays) + 0.15, c


# (name, delay pattern, first-GET behaviour, cycles to settle, GETs per cycle after that)
PATTERNS = [
    ("steady 1 s", steady(1.0), never, 10, 1.1),
    ("steady 2 s", steady(2.0), never, 10, 1.1),
    ("steady 3 s", steady(3.0), never, 10, 1.1),
    ("steady 0.05 s", steady(0.05), never, 10, 1.1),
    ("steady 20 s", steady(20.0), never, 10, 1.1),
    ("noisy 1 s +-20%", noisy(1.0, 0.2), never, 30, 1.3),
    ("from above: 20 s, then 0.5 s", step(20.0, 0.5), never, 100, 1.1),
    ("from below: 0.05 s, then 8 s", step(0.05, 8.0), never, 30, 1.1),
    # Issue 19: the first GET always says "in progress". The best possible is two GETs.
    ("first GET lies, 0.5 s", steady(0.5), always, 10, 2.1),
    ("first GET lies, 3 s", steady(3.0), always, 10, 2.1),
    ("first GET lies, 0.05 s", steady(0.05), always, 60, 2.1),
    ("first GET lies, noisy 1 s", noisy(1.0, 0.2), always, 30, 2.2),
    ("first GET lies, from above", step(20.0, 0.5), always, 100, 2.1),
    ("first GET lies, from below", step(0.05, 8.0), always, 30, 2.1),
    ("first GET lies 30% of the time, 0.5 s", steady(0.5), sometimes(0.3), 30, 2.0),
    ("first GET lies 30% of the time, 3 s", steady(3.0), sometimes(0.3), 30, 2.0),
    ("first GET lies 30%, from above", step(20.0, 0.5), sometimes(0.3), 250, 2.0),
    ("first GET lies 30%, from below", step(0.05, 8.0), sometimes(0.3), 60, 2.0),
    ("first GET lies 5% of the time, 1 s", steady(1.0), sometimes(0.05), 30, 1.25),
]


@pytest.mark.parametrize(
    ("delay", "lies", "settle", "max_gets"),
    [pattern[1:] for pattern in PATTERNS],
    ids=[pattern[0] for pattern in PATTERNS],
)
def test_the_estimate_converges_on_the_real_delay(
    delay: Delay, lies: Lies, settle: int, max_gets: float
) -> None:
    history = run(delay, lies, cycles=settle + 200)
    check_converged(history, settle=settle, max_gets=max_gets)


def test_issue_19_an_always_lying_first_get_no_longer_raises_the_estimate_to_its_cap() -> None:
    # Today's main: 0.5 s of real delay, the estimate went 1.6, 4.0, 7.9 ... 30 s and stayed.
    history = run(steady(0.5), always, cycles=300)
    assert max(c.estimate for c in history[10:]) < 0.7
    assert max(c.found_at or 99 for c in history[10:]) < 0.7


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
# Found once in a full run: exactly 1.35 GETs a cycle against a bound of 1.35.
@example(base=1.0, spread=0.1, change=1.0, lie_share=0.0, latency=0.3, seed=0)
@given(
    base=st.floats(0.05, 20.0),
    spread=st.sampled_from([0.0, 0.1, 0.2]),
    change=st.sampled_from([1.0, 0.1, 0.5, 2.0, 10.0]),
    lie_share=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    latency=st.sampled_from([0.0, 0.05, 0.3]),
    seed=st.integers(0, 1000),
)
def test_any_delay_pattern_and_first_get_behaviour_converge(
    base: float, spread: float, change: float, lie_share: float, latency: float, seed: int
) -> None:
    after = min(20.0, max(0.05, base * change))

    def delay(i: int, rng: random.Random) -> float:
        seconds = base if i < 20 else after
        return rng.uniform(seconds * (1 - spread), seconds * (1 + spread))

    history = run(delay, sometimes(lie_share), cycles=600, latency=latency, seed=seed)
    tail = history[400:]
    assert all(c.found_at is not None for c in history), "a healthy container timed out"
    # The cost: about one GET a cycle while first GETs tell the truth, two when they lie.
    truthful_gets = 1.0 + 2 * spread + 0.15
    max_gets = 2.0 + spread + 0.15 if lie_share else truthful_gets
    # 1e-9: the bound is a sum of floats (1.0 + 2 * 0.1 + 0.15 is 1.3499999999999999).
    assert sum(c.gets for c in tail) / len(tail) <= max_gets + 1e-9
    # Freshness and the estimate: near the real delay, whatever the first GETs do.
    high, low = after * (1 + spread), after * (1 - spread)
    for c in tail:
        assert c.found_at is not None
        # A near miss looks again a quarter later: found by 1.25 x the estimate.
        assert c.found_at <= 1.3 * 1.25 * high + 2 * latency + 0.15, c
        assert 0.7 * low - 2 * latency - 0.01 <= c.estimate <= 1.3 * high + 2 * latency + 0.15, c


# -- the rules, one by one ---------------------------------------------------------------------


def test_a_new_container_probes_then_starts_between_the_last_two_looks() -> None:
    looks = AccountResultDelays().looks("c-1")
    looks.start()
    times = []
    for _ in range(4):
        times.append(looks.next_at)
        looks.unsettled(looks.next_at)
    assert times == pytest.approx([0.1, 0.3, 0.7, 1.5])  # 0.1 s, then doubling
    looks.settled(looks.next_at)  # at 3.1 s
    assert looks.estimate.seconds == pytest.approx((1.5 + 3.1) / 2)


def test_a_near_miss_looks_again_a_quarter_later_then_backs_off_to_5_s() -> None:
    looks = AccountResultDelays().looks("c-1")
    looks.estimate.seconds = 2.0
    looks.start()
    assert looks.next_at == 2.0
    gaps, sent = [], 2.0
    for _ in range(6):
        looks.unsettled(sent)
        gaps.append(looks.next_at - sent)
        sent = looks.next_at
    assert gaps == pytest.approx([0.5, 1.0, 2.0, 4.0, 5.0, 5.0])


def test_found_at_the_first_look_creeps_down_1_percent_then_faster() -> None:
    looks = AccountResultDelays().looks("c-1")
    looks.estimate.seconds = 10.0
    estimates = []
    for _ in range(17):
        looks.start()
        looks.settled(looks.next_at)
        estimates.append(looks.estimate.seconds)
    assert estimates[0] == pytest.approx(10.0 * (1 - ResultDelay.CREEP))
    assert estimates[7] == pytest.approx(10.0 * (1 - ResultDelay.CREEP) ** 8)
    assert estimates[8] == pytest.approx(estimates[7] * (1 - 2 * ResultDelay.CREEP))


def test_crept_just_below_goes_back_to_the_tighter_bound_and_holds() -> None:
    looks = AccountResultDelays().looks("c-1")
    looks.estimate.seconds = 1.0
    looks.start()
    looks.unsettled(1.0)
    looks.settled(1.25)  # the result is ready somewhere after 1.0 s, by 1.25 s
    assert looks.estimate.seconds == 1.25
    ready = 1.2  # the real delay
    last_found = 1.25
    while True:  # creep down to it
        looks.start()
        if looks.next_at < ready:
            break
        last_found = looks.next_at
        looks.settled(last_found)
    looks.unsettled(looks.next_at)  # too early
    looks.settled(looks.next_at)  # a quarter later
    assert looks.estimate.seconds == last_found  # where the last cycle found it, not later
    for _ in range(ResultDelay.HOLD_CYCLES):
        looks.start()
        looks.settled(looks.next_at)
        assert looks.estimate.seconds == last_found  # held
    looks.start()
    looks.settled(looks.next_at)
    assert looks.estimate.seconds == pytest.approx(last_found * (1 - ResultDelay.CREEP))


def test_a_delay_that_grew_past_earlier_cycles_jumps_to_the_finding_look() -> None:
    looks = AccountResultDelays().looks("c-1")
    looks.estimate.seconds = 1.0
    looks.start()
    looks.settled(1.0)
    looks.start()
    looks.unsettled(0.99)  # early, not suspect
    looks.unsettled(1.2475)  # later than the last result: the delay grew
    looks.settled(1.7475)
    assert looks.estimate.seconds == 1.7475


def test_a_first_get_that_contradicts_the_last_result_is_checked_at_once() -> None:
    looks = AccountResultDelays().looks("c-1")
    looks.estimate.seconds, looks.estimate.hold = 1.0, 5  # held at 1.0 s
    looks.start()
    looks.settled(1.0)
    looks.start()
    looks.unsettled(1.0)  # "in progress" when the last cycle had it by 1.0 s
    assert looks.next_at == 1.0  # at once
    looks.settled(1.06)  # it lied: found right after
    assert looks.estimate.seconds == 1.0  # not raised
    assert looks.estimate.ready_by == 1.0
    assert 0 < looks.estimate.lie_rate < ResultDelay.LIES_START  # one lie is not yet a habit


def test_first_gets_that_keep_lying_get_a_primer_and_are_tested_ever_less_often() -> None:
    looks = AccountResultDelays().looks("c-1")
    looks.estimate.seconds, looks.estimate.hold = 1.0, 100  # held at 1.0 s
    looks.start()
    looks.settled(1.0)
    plans = []
    for _ in range(40):
        looks.start()
        plans.append(looks.plan.value)
        first = looks.next_at
        looks.unsettled(first)  # the first GET always lies
        if first < 0.5:
            assert looks.next_at == looks.estimate.seconds  # a primer, then the real look
        looks.settled(max(looks.next_at, 1.0) + 0.05)
        assert looks.estimate.seconds <= 1.0  # never raised; creeping down while primed
    # Two lies in a row, then a primer, then the first test.
    assert plans[:4] == ["trust", "trust", "primer", "test"]
    tests = [i for i, plan in enumerate(plans) if plan == "test"]
    assert [b - a for a, b in itertools.pairwise(tests)] == [3, 5, 9, 17]  # 2, 4, 8, 16 primers


def test_first_gets_that_find_the_result_again_are_believed_again() -> None:
    looks = AccountResultDelays().looks("c-1")
    estimate = looks.estimate
    estimate.seconds, estimate.ready_by, estimate.hold = 1.0, 1.0, 100
    estimate.lie_rate, estimate.first_look_lies, estimate.test_in = 0.5, True, 0
    plans = []
    for _ in range(12):
        looks.start()
        plans.append(looks.plan.value)
        looks.settled(looks.next_at)  # whatever the plan, the first GET finds the result
    assert plans[0] == "test"
    assert plans[-1] == "trust"
    assert estimate.lie_rate < ResultDelay.LIES_STOP


def test_a_new_container_starts_from_the_account_s_typical_delay() -> None:
    delays = AccountResultDelays()
    looks = delays.looks("c-1")
    looks.start()
    assert looks.next_at == ResultDelay.PROBE_SECONDS  # nothing known: probe
    looks.settled(0.1)  # found at the first look: only "at most this long"
    assert delays.typical is None
    looks.start()
    looks.unsettled(0.1)  # "in progress" where the last cycle found it: look again at once
    looks.unsettled(0.15)  # still in progress: it is later than the last cycle saw
    looks.settled(1.0)  # a measurement
    assert delays.typical == delays.seconds("c-1")
    learnt = delays.typical
    assert learnt is not None
    other = delays.looks("c-2")
    other.start()
    assert other.next_at == learnt  # a new container starts from the account's typical delay
    other.unsettled(learnt)
    other.settled(2.0)
    assert delays.typical == pytest.approx(0.8 * learnt + 0.2 * 2.0)  # a moving average
    assert delays.expected == pytest.approx((learnt + 2.0) / 2)
    other.start()
    assert other.next_at == 2.0  # its own estimate wins once it has one
    delays.forget("c-2")
    assert delays.seconds("c-2") is None
    assert delays.expected == learnt
