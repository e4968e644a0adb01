"""Order and causality from the simulator's request log, instead of durations.

A test that asserts "this took less than N seconds" is a coin that a busy machine turns over
some day. These helpers read what the simulator saw instead (which request arrived before
which, how many cycles a container has had) and wait for a condition with a generous cap that
only a hang reaches. The cap is a failure timeout, never the assertion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from exporter.simulator import LoggedRequest, Simulator

QUERY = "listener_status_query"
RESULT = "listener_status_result"
CHANGE = "change_listener_status"
# Long enough that only a hang reaches it on a loaded two-core machine; the tests that use it
# normally wait well under a second.
WAIT_CAP_SECONDS = 30.0


def requests(
    sim: Simulator,
    route: str | None = None,
    *,
    container_id: str | None = None,
    after: int = 0,
) -> list[LoggedRequest]:
    """The logged API requests after request `after`, optionally of one route and container."""
    return [
        entry
        for entry in sim.request_log.since(after)
        if (route is None or entry.route == route)
        and (container_id is None or entry.container_id == container_id)
    ]


def queries(sim: Simulator, container_id: str | None = None, *, after: int = 0) -> int:
    """How many ListenerStatus queries (poll cycles, without faults) arrived after `after`."""
    return len(requests(sim, QUERY, container_id=container_id, after=after))


async def wait_until(
    condition: Callable[[], bool], what: str, *, timeout: float = WAIT_CAP_SECONDS
) -> None:
    """Return once `condition()` holds; fail naming `what` if it has not after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:g} s")
        await asyncio.sleep(0.02)


async def wait_for_cycles(
    sim: Simulator, container_ids: Iterable[str], cycles: int, *, after: int
) -> None:
    """Wait until each container has been queried `cycles` times since request `after`."""
    wanted = list(container_ids)
    await wait_until(
        lambda: all(queries(sim, c, after=after) >= cycles for c in wanted),
        f"{cycles} poll cycles of {wanted}",
    )
