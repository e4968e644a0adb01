"""A rate limiter for one request budget, with priorities: nothing in it is Boomi-specific.

The client keeps one per account; the poller, discovery and remediation share it, so the
account's budget is spent in the order that matters (remediation, results, queries, background).
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Lower goes first. A restart in progress outranks polling, so an alert does not wait behind a
# whole cycle; a poll's result GET outranks new queries, so a result is fetched when it is ready
# rather than after every other container's query (throughput is the same, freshness better);
# discovery and process names only use budget the status cycle leaves.
PRIORITY_REMEDIATION = 0
PRIORITY_RESULT = 1
PRIORITY_STATUS = 2
PRIORITY_BACKGROUND = 3


class RateLimiter:
    """At most `rate` requests in any window of one second, shared by every caller of an account.

    A sliding log of send times rather than a token bucket: a bucket lets a full burst follow a
    full second, which Boomi's window counts as too many. Waiters are served by priority, then
    in arrival order, so background work only ever uses budget that status polling leaves.
    `pause(seconds)` holds every caller back after Boomi said 503, so a shared account recovers.
    """

    # Requests are stamped when their headers are written, but Boomi counts them on arrival,
    # which network jitter (or a pause of either side) can bunch; the margin absorbs that.
    WINDOW_MARGIN_SECONDS = 0.05

    def __init__(self, rate: float, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self.set_rate(rate)
        self._sent: list[float] = []  # send times in the window, sorted
        self._paused_until = 0.0
        self._waiting: list[tuple[int, int, asyncio.Future[float]]] = []
        self._arrivals = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        self._clock = clock
        self._sleep = sleep

    def set_rate(self, rate: float) -> None:
        """Set the budget; requests already sent stay in the window (a reload keeps it)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        if rate >= 1:
            self.capacity, self.window = int(rate), 1.0
        else:
            self.capacity, self.window = 1, 1.0 / rate
        self.window += self.WINDOW_MARGIN_SECONDS

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` from now (extends, never shortens, a pause in force)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _delay(self, now: float) -> float:
        expired = bisect.bisect_right(self._sent, now - self.window)
        del self._sent[:expired]
        delay = self._paused_until - now
        if len(self._sent) >= self.capacity:
            delay = max(delay, self._sent[0] + self.window - now)
        return delay

    async def acquire(self, priority: int = PRIORITY_STATUS) -> float:
        """Wait until one more request fits in the window; record it as sent and return the stamp.

        Pass the stamp to `restamp` when the request really leaves, if that can be later.
        """
        granted: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), granted))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="rate limiter")
        # A busy event loop can resume this caller well after the grant; the request leaves
        # later still, so that is the time the window must count.
        return self.restamp(await granted)

    def restamp(self, stamp: float) -> float:
        """Move a request's recorded send time from `stamp` to now (never earlier); return it."""
        now = self._clock()
        if now <= stamp:
            return stamp
        index = bisect.bisect_left(self._sent, stamp)
        if index < len(self._sent) and self._sent[index] == stamp:
            del self._sent[index]
        bisect.insort(self._sent, now)
        return now

    async def _dispatch(self) -> None:
        # One dispatcher hands out slots; it sleeps until the next slot, then serves whoever
        # is first in line at that moment, so a late high-priority caller overtakes.
        while self._waiting:
            delay = self._delay(self._clock())
            if delay > 0:
                await self._sleep(delay)
                continue
            _, _, granted = heapq.heappop(self._waiting)
            if granted.done():  # its caller was cancelled while waiting
                continue
            now = self._clock()
            bisect.insort(self._sent, now)
            granted.set_result(now)
