"""The poller's schedule, on a fake clock: when each container's cycles start.

The cycles themselves run against the simulator over a real socket; only the schedule's clock
and sleep are fake, so the start times below are exact, however busy the machine is.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

from exporter.boomi import BoomiClient
from exporter.poller import Poller, Target
from exporter.state import SnapshotStore
from tests.conftest import ACCOUNT, SimServer
from tests.sim_log import wait_until
from tests.simulator_helpers import FakeClock

INTERVAL = 10.0


def scheduled_poller(
    server: SimServer,
    client: BoomiClient,
    clock: FakeClock,
    *,
    cycle_seconds: Callable[[int], float],
) -> tuple[Poller, list[float]]:
    """A poller of the first container on `clock`; each cycle takes `cycle_seconds(n)` of it.

    Returns the poller and the list it fills with each cycle's start time.
    """
    container = server.container_ids()[0]
    store = SnapshotStore.for_containers([(ACCOUNT, container, "c")])
    poller = Poller(
        {ACCOUNT: client},
        store,
        interval_seconds=INTERVAL,
        result_timeout_seconds=5,
        rng=random.Random(3),
        clock=clock,
        sleep=clock.sleep,
    )
    starts: list[float] = []
    poll = poller.poll

    async def timed_poll(target: Target) -> bool:
        starts.append(clock())
        ok = await poll(target)
        clock.advance(cycle_seconds(len(starts)))
        return ok

    poller.poll = timed_poll  # type: ignore[method-assign]
    poller.set_targets([Target(ACCOUNT, container, "c")])
    return poller, starts


async def test_cycles_start_every_interval_with_at_most_a_tenth_of_it_as_jitter(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    clock = FakeClock()
    origin = clock()
    poller, starts = scheduled_poller(sim_server, make_client(), clock, cycle_seconds=lambda _: 0.5)
    try:
        await wait_until(lambda: len(starts) >= 8, "eight poll cycles")
    finally:
        await poller.stop()
    jitters = [start - origin - n * INTERVAL for n, start in enumerate(starts)]
    # Each cycle starts on its slot, however long the one before took (within the interval),
    # plus at most 10% of the interval: a change is seen within one interval and a cycle.
    assert all(0 <= jitter <= 0.1 * INTERVAL for jitter in jitters), jitters
    assert len({round(jitter, 6) for jitter in jitters}) > 1  # the jitter does vary
    # Real cycles: the eighth started once seven had queried the simulator and finished.
    assert sim_server.count("POST listener_status_query 200") >= 7


async def test_a_cycle_that_overruns_the_interval_is_followed_at_once_not_doubled(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    clock = FakeClock()
    poller, starts = scheduled_poller(
        sim_server, make_client(), clock, cycle_seconds=lambda n: 25.0 if n == 2 else 0.0
    )
    try:
        await wait_until(lambda: len(starts) >= 5, "five poll cycles")
    finally:
        await poller.stop()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # The second cycle took 2.5 intervals: the third starts as soon as it ends, the missed
    # slots are skipped rather than run back to back, and the cadence goes on from there.
    assert 25.0 <= gaps[1] <= 25.0 + 0.1 * INTERVAL, gaps
    assert all(INTERVAL <= gap <= 1.1 * INTERVAL for gap in gaps[2:]), gaps
