"""When to look for a ListenerStatus result: learnt per container and per account.

A query's result is ready some time after the query; a GET before then costs a request from the
account's budget, a GET after it costs freshness. `ResultDelay` learns one container's delay,
`AccountResultDelays` keeps every container's and the account's typical delay (what a new
container starts from), and `ResultLooks` times the GETs of one query and learns from them. The
client only asks when to look and reports what it found.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ResultDelay:
    """When to look for one container's ListenerStatus result, learnt from earlier cycles.

    A container new to the client starts from what the account's other containers took (they
    talk to the same Boomi), or, when nothing is known yet, probes: 0.1 s, then doubling. A
    result found at the first look may have been ready earlier, so the estimate creeps down 1% a
    cycle; a first look that came too early sets the estimate to the time the result really
    took. A look too early costs a request, which the account's budget pays for in cycle time; a
    look too late costs a fraction of a second of freshness in a poll interval of a minute; so
    the creep is slow: about one cycle in twenty costs a second GET.
    """

    CREEP = 0.99
    PROBE_SECONDS = 0.1
    MAX_WAIT_SECONDS = 5.0

    seconds: float | None = None

    def first_wait(self, typical: float | None = None) -> float:
        """How long after the query to look first; `typical`: the account's usual delay."""
        if self.seconds is None:
            self.seconds = typical
        return self.PROBE_SECONDS if self.seconds is None else self.seconds

    def next_wait(self, previous: float, *, first_miss: bool) -> float:
        """How long to wait after a look that found the result unsettled."""
        if first_miss and self.seconds is not None:
            return max(self.PROBE_SECONDS, self.seconds / 4)  # just missed: look again soon
        return min(previous * 2, self.MAX_WAIT_SECONDS)  # slow or offline: back off

    def settled(
        self, observed: float, *, first_look: bool, unsettled_at: float | None = None
    ) -> float:
        """Learn from a settled result that took `observed` seconds after the query.

        `unsettled_at`: when the last look that found it unsettled went out. While probing,
        the looks double apart, so the result was ready somewhere between the two: start from
        the middle rather than from the late end, which would take many cycles to creep down.
        """
        if first_look and self.seconds is not None:
            self.seconds = max(0.02, self.seconds * self.CREEP)
        elif self.seconds is None and unsettled_at is not None:
            self.seconds = min(30.0, (unsettled_at + observed) / 2)
        else:
            self.seconds = min(30.0, observed)
        return self.seconds


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


class ResultLooks:
    """The result GETs of a query: how long to wait before each, and what their answers teach.

    Times are seconds after the query, taken when each GET went out: time in the rate limiter's
    queue is not Boomi's.
    """

    def __init__(self, account: AccountResultDelays, estimate: ResultDelay) -> None:
        self._account = account
        self._estimate = estimate
        self._looks = 0
        self._unsettled_at: float | None = None
        self.wait = 0.0  # before the next look

    def start(self) -> None:
        """A query was just sent (again, if its token was gone): its looks start afresh."""
        self._looks = 0
        self._unsettled_at = None
        self.wait = self._estimate.first_wait(self._account.typical)

    def unsettled(self, sent_after: float) -> None:
        """A look that went out `sent_after` seconds after the query found no result yet."""
        self._looks += 1
        self._unsettled_at = sent_after
        self.wait = self._estimate.next_wait(self.wait, first_miss=self._looks == 1)

    def settled(self, sent_after: float) -> None:
        """A look that went out `sent_after` seconds after the query found the result."""
        self._looks += 1
        learnt = self._estimate.settled(
            sent_after, first_look=self._looks == 1, unsettled_at=self._unsettled_at
        )
        if self._looks > 1:
            # A measurement (a look found it unsettled, the next settled). A result found at
            # the first look only says "at most this long"; averaging those in would drag the
            # typical delay down with every container's creep.
            self._account.measured(learnt)
