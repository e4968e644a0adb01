"""The result timeout counts from the query's answer, not from when the cycle began queueing.

A first cycle of many containers queues their queries in the account's rate limiter: at 1,000
containers and 10 requests per second the last one waits about 200 s for its turn, longer than
the default result timeout of 120 s. That wait is not Boomi's, and must not fail the cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from exporter.boomi import BoomiClient
from tests.conftest import SimServer

CONTAINERS = 12
RATE = 4.0  # requests per second: 24 requests take about 6 s
TIMEOUT = 3.0  # shorter than the queue, longer than any one container's query-to-result


@pytest.mark.parametrize(
    "sim_server",
    [{"containers": CONTAINERS, "listeners_per_container": 1, "result_delay_seconds": 0.05}],
    indirect=True,
)
async def test_queries_queued_longer_than_the_result_timeout_still_get_their_results(
    sim_server: SimServer, make_client: Callable[..., BoomiClient]
) -> None:
    client = make_client(max_requests_per_second=RATE)
    containers = sim_server.container_ids()
    results = await asyncio.gather(
        *(client.fetch_listener_statuses(c, result_timeout_seconds=TIMEOUT) for c in containers)
    )
    # The limiter lets RATE requests through per second (results ahead of queries), so the last
    # queries left after about twice TIMEOUT of queueing; counted from the cycle's start, their
    # results timed out before anyone asked for them.
    assert [len(listeners) for listeners in results] == [1] * CONTAINERS
    assert sim_server.count("POST listener_status_query 200") == CONTAINERS
    assert sim_server.count("GET listener_status_result 503") == 0
