"""The simulator's request log: every Boomi API request in arrival order, on its own clock.

What a client did, as "Boomi" saw it: which request arrived before which, about which
container, how it was answered, and when by the simulator's clock. Tests assert on that order
(the urgent query arrived before the queued ones, no query for an offline runtime, one rejected
sign-in per back-off period) rather than on how long something took, which depends on how busy
the machine is. The log keeps the most recent requests only, so a demo that runs for weeks does
not grow.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class LoggedRequest:
    """One API request as the simulator saw it; `outcome` is filled in when it is answered."""

    seq: int  # arrival order from 1; never reused, so "after request n" stays meaningful
    at: float  # the simulator's clock when the request arrived
    account_id: str  # as in the URL, known to the simulator or not
    method: str
    route: str  # the route name, as in Simulator.request_counts
    container_id: str | None = None  # set once authenticated, for requests about a container
    outcome: str = ""  # the HTTP status, or "dropped"; "" while the request is being answered

    @property
    def answered(self) -> bool:
        """The simulator has answered (or dropped) the request."""
        return self.outcome != ""


class RequestLog:
    """The last `capacity` API requests in arrival order (the oldest go first)."""

    def __init__(self, capacity: int = 2_000) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=capacity)
        self._numbers = itertools.count(1)
        self.last_seq = 0  # of the latest arrival; 0 before the first

    def arrived(self, at: float, account_id: str, method: str, route: str) -> LoggedRequest:
        """Log a request that just arrived; the caller fills in what it learns later."""
        self.last_seq = next(self._numbers)
        entry = LoggedRequest(self.last_seq, at, account_id, method, route)
        self._entries.append(entry)
        return entry

    def since(self, seq: int) -> list[LoggedRequest]:
        """The requests that arrived after request `seq` (0: all that are kept)."""
        return [entry for entry in self._entries if entry.seq > seq]

    def clear(self) -> None:
        """Forget every request; numbering goes on."""
        self._entries.clear()

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
