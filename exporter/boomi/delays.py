"""When to look for a ListenerStatus result: learnt per container and per account.

A query's result is ready some time after the query; a GET before then costs a request from the
account's budget, a GET after it costs freshness. `ResultDelay` learns one container's delay,
`AccountResultDelays` keeps every container's and the account's typical delay (what a new
container starts from), and `ResultLooks` times the GETs of one query and learns from them. The
client only asks when to look and reports what it found.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Plan(enum.Enum):
    """How the first GET of a query is timed and read."""

    TRUST = "trust"  # first GET at the estimate; "in progress" means not ready yet
    PRIMER = "primer"  # first GET early, its "in progress" ignored; the real look at the estimate
    TEST = "test"  # first GET when the last result was found: does "in progress" still lie?


@dataclass
class ResultDelay:
    """When to look for one container's ListenerStatus result, learnt from earlier cycles.

    `seconds` is the estimate: when, after its query, a GET finds the result. A container new to
    the client starts from what the account's other containers took (they talk to the same
    Boomi), or, when nothing is known yet, probes: 0.1 s, then doubling.

    From above: a result found by the first look that counts may have been ready earlier, so
    the estimate creeps down, 1% a cycle, the step doubling every 8 such cycles in a row (from
    30 s to 0.5 s in about 45 cycles). From below: a look that found the result in progress and
    the next that found it bracket the delay. When `ready_by`, the tightest time at which
    earlier cycles found it, lies inside the bracket, the estimate goes back there, and if an
    earlier bracket still stands (`floor`: nothing has been found before its "in progress"
    since) it holds there for 16 cycles before creeping again, so about one cycle in eighteen
    costs a second GET and the estimate stays within a creep step of the delay. Otherwise (the
    delay grew) the estimate becomes the time of the finding look.

    Whatever Boomi's first GET of a token does: some answer "in progress" to it however late it
    comes (issue 19). Believed, that would raise the estimate every cycle, to its cap, until
    healthy containers time out. So a first GET that says "in progress" at or after `ready_by`
    is suspect, and the next GET goes out at once: if it finds the result, the first one lied
    and teaches nothing; if not, the delay really grew. Each first GET that could tell counts
    towards `lie_rate` (an exponential average). From two lies in a row until three truths in a
    row, the first GET goes early (a primer, its answer ignored) and the real look comes at the
    estimate; one cycle in 1, 2, 4 ... up to 64 (while they keep lying) tests a first GET at
    `ready_by` again. Fake-clock runs (tests/test_result_delays.py) put the cost at about 1.06
    GETs a cycle when first GETs tell the truth and 2.06 when they always lie.
    """

    CREEP = 0.01  # the estimate's step down after a result found at the first look that counts
    CREEP_DOUBLES_EVERY = 8  # such cycles in a row before the step doubles
    MAX_CREEP = 0.25
    HOLD_CYCLES = 16
    PROBE_SECONDS = 0.1
    MAX_WAIT_SECONDS = 5.0
    MIN_SECONDS = 0.02
    MAX_SECONDS = 30.0
    LIE_WEIGHT = 0.25  # of the newest first GET that could tell, in `lie_rate`
    LIES_START = 0.4  # `lie_rate` from which the first GET is a primer: two lies in a row
    LIES_STOP = 0.25  # and below which it is believed again: three truths in a row
    MAX_TEST_EVERY = 64

    seconds: float | None = None
    ready_by: float | None = None  # the tightest recent time at which a GET found the result
    hold: int = 0  # cycles left without creeping
    floor: float | None = None  # the "in progress" of the last bracket, while it stands
    found_first_in_a_row: int = 0  # results found by the first look that counts, in a row
    lie_rate: float = 0.0
    first_look_lies: bool = False
    test_every: int = 1  # cycles between tests while first GETs lie
    test_in: int = 0  # primer cycles left before the next test

    def plan(self, typical: float | None = None) -> Plan:
        """Start a query's looks (`typical`: the account's usual delay); how to time the first."""
        if self.seconds is None:
            self.seconds = typical
        if not self.first_look_lies or self.seconds is None:
            return Plan.TRUST
        return Plan.PRIMER if self.test_in > 0 else Plan.TEST

    def first_wait(self, plan: Plan) -> float:
        """How long after the query the first GET goes out."""
        if self.seconds is None:
            return self.PROBE_SECONDS
        if plan is Plan.PRIMER:
            return min(self.PROBE_SECONDS, self.seconds / 2)
        if plan is Plan.TEST and self.ready_by is not None:
            return max(self.seconds, self.ready_by)
        return self.seconds

    def first_gap(self) -> float:
        """The wait after the first look that counts found the result in progress: just missed."""
        if self.seconds is None:
            return 2 * self.PROBE_SECONDS
        return max(self.PROBE_SECONDS, self.seconds / 4)

    def suspects_a_lie(self, plan: Plan, first_in_progress_at: float) -> bool:
        """Whether a first GET's "in progress" contradicts `ready_by`: then look again at once.

        Right after such an answer, a GET that finds the result means the first one lied; one
        that finds it in progress means the result is later than earlier cycles saw.
        """
        return (
            plan is not Plan.PRIMER
            and self.ready_by is not None
            and first_in_progress_at >= self.ready_by
        )

    def learn(
        self, plan: Plan, in_progress_at: list[float], found_at: float, *, first_lied: bool
    ) -> bool:
        """Learn from a query's looks: when each GET that found it in progress went out, and
        when the one that found the result did (seconds after the query); `first_lied`: the
        look right after a suspect first GET found the result. True when the looks measured the
        delay (an "in progress" that counts, then the result), not only bounded it.
        """
        self._judge_first_look(plan, in_progress_at, first_lied)
        counted = in_progress_at[1:] if plan is Plan.PRIMER or first_lied else in_progress_at
        if counted:
            self._bracketed(counted[-1], found_at)
        else:
            self._found_first(found_at)
        seconds = found_at if self.seconds is None else self.seconds
        self.seconds = min(self.MAX_SECONDS, max(self.MIN_SECONDS, seconds))
        if self.ready_by is not None:
            # At the cap, a first look at the estimate must still be able to catch a lie.
            self.ready_by = min(self.ready_by, self.MAX_SECONDS)
        return bool(counted)

    def _judge_first_look(self, plan: Plan, in_progress_at: list[float], lied: bool) -> None:
        """Count a first GET that could tell whether first GETs lie into `lie_rate`."""
        if plan is Plan.PRIMER and in_progress_at:
            self.test_in -= 1
        elif not in_progress_at or lied:
            self._observe(lied=lied)
        elif self.suspects_a_lie(plan, in_progress_at[0]):
            self._observe(lied=False)  # the look right after found it in progress too

    def _observe(self, *, lied: bool) -> None:
        self.lie_rate += self.LIE_WEIGHT * (lied - self.lie_rate)
        if not lied:
            self.test_every, self.test_in = 1, 0  # passed: test again next cycle
        else:
            if self.first_look_lies:  # a test failed: wait twice as long for the next
                self.test_every = min(2 * self.test_every, self.MAX_TEST_EVERY)
            self.test_in = self.test_every
        if self.lie_rate >= self.LIES_START and not self.first_look_lies:
            self.first_look_lies = True
            # What the lying first GETs taught (a hold, a streak) is void: start creeping.
            self.hold = self.found_first_in_a_row = 0
        elif self.lie_rate < self.LIES_STOP:
            self.first_look_lies = False

    def _bracketed(self, missed_at: float, found_at: float) -> None:
        """A look that counts found it in progress at `missed_at`, a later one found it."""
        self.found_first_in_a_row = 0
        floor, self.floor = self.floor, missed_at
        if self.seconds is None:
            # While probing, looks double apart: the result was ready somewhere between the
            # last two; the middle is nearer than the late end, which would take many cycles
            # to creep down from.
            self.seconds = (missed_at + found_at) / 2
            self.ready_by = found_at
        elif self.ready_by is not None and self.ready_by > missed_at:
            # Crept just below the delay, which earlier cycles put at most at `ready_by`: go
            # back there. If an earlier bracket still stands, this one is no surprise: stay a
            # while before creeping again. If not, it may have been a lying first GET, which
            # must not stall the creep a long way above the delay.
            self.seconds = self.ready_by = min(found_at, self.ready_by)
            if floor is not None:
                self.hold = self.HOLD_CYCLES
        else:
            self.seconds = self.ready_by = found_at  # slower than earlier cycles saw

    def _found_first(self, found_at: float) -> None:
        """The first look that counts found the result at `found_at`: at most this long."""
        # After a lie the result was found late only because the first GET lied, so the
        # earlier, tighter bound stays: lies cannot ratchet it up.
        self.ready_by = found_at if self.ready_by is None else min(found_at, self.ready_by)
        if self.floor is not None and found_at < self.floor:
            self.floor = None  # found before an earlier "in progress": the delay fell
        if self.seconds is None:
            self.seconds = found_at
        elif self.hold > 0:
            self.hold -= 1
            self.seconds = min(self.seconds, found_at)
        else:
            doublings = self.found_first_in_a_row // self.CREEP_DOUBLES_EVERY
            step = min(self.MAX_CREEP, self.CREEP * 2**doublings)
            self.found_first_in_a_row += 1
            self.seconds = min(self.seconds, found_at) * (1 - step)


class AccountResultDelays:
    """Every container's `ResultDelay` on one account, and the account's typical delay."""

    def __init__(self) -> None:
        # Per container: when its results tend to be ready, so the first GET comes then rather
        # than on a blind timer.
        self._containers: dict[str, ResultDelay] = {}
        self.typical: float | None = None  # a moving average over containers

    def looks(self, container_id: str) -> ResultLooks:
        """Time the result GETs of one fetch of `container_id` (call `start` after each query)."""
        return ResultLooks(self, self._containers.setdefault(container_id, ResultDelay()))

    def seconds(self, container_id: str) -> float | None:
        """The delay learnt for a container, None while nothing is known."""
        estimate = self._containers.get(container_id)
        return None if estimate is None else estimate.seconds

    def estimate(self, container_id: str) -> ResultDelay | None:
        """What was learnt about a container (for reports and tests), None while nothing is."""
        return self._containers.get(container_id)

    @property
    def expected(self) -> float:
        """The mean learnt result delay over the account's containers (for reports)."""
        learnt = [e.seconds for e in self._containers.values() if e.seconds is not None]
        return sum(learnt) / len(learnt) if learnt else ResultDelay.PROBE_SECONDS

    def forget(self, container_id: str) -> None:
        """Drop what was learnt about a container that is no longer polled."""
        self._containers.pop(container_id, None)

    def measured(self, seconds: float) -> None:
        """Average a measured result delay (not an upper bound) into the typical delay."""
        typical = self.typical
        self.typical = seconds if typical is None else 0.8 * typical + 0.2 * seconds


@dataclass
class ResultLooks:
    """The result GETs of a query: when to send each, and what their answers teach.

    Times are seconds after the query, taken when each GET went out: time in the rate limiter's
    queue is not Boomi's. `next_at` is when the next GET should go out.
    """

    account: AccountResultDelays
    estimate: ResultDelay
    next_at: float = 0.0
    _gap: float = field(default=0.0, init=False)
    # The first GET said "in progress" when earlier cycles had found the result by then.
    _suspect: bool = field(default=False, init=False)
    _plan: Plan = field(default=Plan.TRUST, init=False)
    _in_progress_at: list[float] = field(default_factory=list, init=False)

    @property
    def plan(self) -> Plan:
        """How this query's first GET is timed and read."""
        return self._plan

    def start(self) -> None:
        """A query was just sent (again, if its token was gone): its looks start afresh."""
        self._plan = self.estimate.plan(self.account.typical)
        self._in_progress_at = []
        self.next_at = self.estimate.first_wait(self._plan)
        self._gap = 0.0
        self._suspect = False

    def unsettled(self, sent_after: float) -> None:
        """A look that went out `sent_after` seconds after the query found it in progress."""
        self._in_progress_at.append(sent_after)
        looks = len(self._in_progress_at)
        seconds = self.estimate.seconds
        if self._plan is Plan.PRIMER and looks == 1 and seconds is not None:
            self.next_at = max(sent_after, seconds)  # the real look, at the estimate
            return
        if looks == 1 and self.estimate.suspects_a_lie(self._plan, sent_after):
            self._suspect = True
            self.next_at = sent_after  # at once: did it lie?
            return
        self._suspect = False
        # The first miss that counts was probably a near miss: look again soon. Then back off:
        # the runtime is slow or offline.
        if self._gap == 0.0:
            self._gap = self.estimate.first_gap()
        else:
            self._gap = min(self._gap * 2, self.estimate.MAX_WAIT_SECONDS)
        self.next_at = sent_after + self._gap

    def settled(self, sent_after: float) -> None:
        """A look that went out `sent_after` seconds after the query found the result."""
        lied = self._suspect and len(self._in_progress_at) == 1
        if self.estimate.learn(self._plan, self._in_progress_at, sent_after, first_lied=lied):
            # A measurement. A result found at the first look that counts only says "at most
            # this long"; averaging those in would drag the typical delay down with every
            # container's creep.
            self.account.measured(self.estimate.seconds or sent_after)
