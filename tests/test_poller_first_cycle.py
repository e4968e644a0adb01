"""Every container's first poll cycle starts at once; later cycles keep their slot and jitter.

Only the schedule's clock and sleep are fake: a clock that moves only when the test moves it,
so each task's requested sleep is exact however busy the machine is. The cycles themselves
run against the simulator over a real socket.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from exporter.boomi import BoomiClient
from exporter.poller import Poller, Target
from exporter.state import SnapshotStore
from tests.conftest import ACCOUNT, SimServer

INTERVAL = 600.0


class ScheduleClock:
    """A clock that moves only on `advance`; `sleep` returns once it has moved far enough.

    Every sleep is recorded per task (the poller names a task after its container) as the
    time it was asked at and the delay asked for.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.requests: dict[str, list[tuple[float, float]]] = {}
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        task = asyncio.current_task()
        self.requests.setdefault(task.get_name() if task else "", []).append((self.now, delay))
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((self.now + delay, future))
        await future

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for wake, future in self._waiters:
            if wake <= self.now and not future.done():
                future.set_result(None)
        self._waiters = [(wake, future) for wake, future in self._waiters if not future.done()]

    def slots(self, cycle: int, origin: float) -> list[float]:
        """When each task asked to wake for its `cycle`-th cycle (0-based), from `origin`."""
        return [now + delay - origin for now, delay in (r[cycle] for r in self.requests.values())]


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    # A generous real-time bound only so that a broken poller fails instead of hanging.
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        await asyncio.sleep(0.01)


async def test_first_cycles_start_at_once_and_later_ones_on_their_slot_with_jitter(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    clock = ScheduleClock()
    origin = clock()
    targets = [Target(ACCOUNT, container, f"c{n}") for n, container in enumerate(sim_server.container_ids())]  # fmt: skip
    store = SnapshotStore.for_containers((t.account_id, t.container_id, t.name) for t in targets)
    poller = Poller(
        {ACCOUNT: make_client()},
        store,
        interval_seconds=INTERVAL,
        result_timeout_seconds=5,
        rng=random.Random(3),
        clock=clock,
        sleep=clock.sleep,
    )
    poller.set_targets(targets)
    try:
        await wait_until(lambda: len(clock.requests) == len(targets), "every task has begun")
        # No start jitter for the first cycle: the rate limiter spreads the first queries.
        assert clock.slots(0, origin) == [0.0] * len(targets)
        # Every first poll reached Boomi and finished without the clock moving at all.
        await wait_until(store.ready, "every container's first poll")
        assert sim_server.count("POST listener_status_query 200") == len(targets)

        await wait_until(
            lambda: all(len(r) >= 2 for r in clock.requests.values()), "second cycles asked for"
        )
        second = clock.slots(1, origin)
        # The second cycle waits for its slot, one interval on, plus up to 10% of it...
        assert all(INTERVAL < slot <= 1.1 * INTERVAL for slot in second), second
        # ...a jitter of its own for each container, so steady cycles stay spread.
        assert len(set(second)) == len(targets), second
        assert sim_server.count("POST listener_status_query") == len(targets)

        clock.advance(1.1 * INTERVAL)  # past every second slot
        await wait_until(
            lambda: all(len(r) >= 3 for r in clock.requests.values()), "third cycles asked for"
        )
        assert sim_server.count("POST listener_status_query 200") == 2 * len(targets)
        third = clock.slots(2, origin)
        # The cadence keeps its phase: the third slot is two intervals after the start,
        # however late the second cycle began, plus a new jitter.
        assert all(2 * INTERVAL < slot <= 2.1 * INTERVAL for slot in third), third
        assert [t - s for t, s in zip(third, second, strict=True)] != [INTERVAL] * len(targets)
    finally:
        await poller.stop()
