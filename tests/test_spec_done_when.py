"""Issue 13, done when: the exporter against the simulator's off-spec variants, end to end.

- In-progress answers that carry `numberOfResults: 0` and an empty `result` (what a serializer
  writing every field sends while Boomi works): on main, the exporter published no listeners
  for every cycle that saw one. Here /metrics is sampled for 15 s and every listener must be
  there, with its status, in every sample.
- A 410 on one container's results: Boomi's words on the landing page and in `--once`.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from exporter.simulator import Faults
from tests.conftest import SimServer, StartExporter, config_for
from tests.test_cli import run_cli, write_config
from tests.test_daemon import simulator_truth, status_series

OFFLINE = "The API is retired or the specified Runtime is currently offline."
WINDOW_SECONDS = 15.0  # the window; a sampling period, not a bound on anything


def in_progress_answers(server: SimServer) -> int:
    return server.count("GET listener_status_result 202")


@pytest.mark.parametrize(
    "sim_server",
    [{"containers": 6, "listeners_per_container": 3, "result_delay_seconds": 0.2}],
    indirect=True,
)
async def test_every_listener_stays_on_metrics_while_in_progress_answers_say_zero_results(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    sim_server.sim.set_faults(Faults(in_progress_empty_rate=1.0))
    truth = simulator_truth(sim_server)
    running = await start_exporter(config_for(sim_server, interval_seconds=0.3))
    await running.wait_for(lambda samples: status_series(samples) == truth)
    before = in_progress_answers(sim_server)
    samples_taken = 0
    deadline = time.monotonic() + WINDOW_SECONDS
    while time.monotonic() < deadline:
        assert status_series(await running.samples()) == truth
        samples_taken += 1
        await asyncio.sleep(0.02)
    # Not vacuous: the exporter kept polling, and kept meeting the in-progress answers that
    # emptied every container on main.
    assert samples_taken > 100
    assert in_progress_answers(sim_server) - before >= 5
    assert sim_server.count("GET listener_status_result 200") > 6 * 20


async def test_a_410_shows_boomi_s_words_on_the_landing_page(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    gone, *others = sim_server.container_ids()
    sim_server.sim.set_faults(Faults(runtime_offline_410_rate=1.0, container_ids=[gone]))
    running = await start_exporter(config_for(sim_server))
    ids = (("account_id", "test-account"), ("container_id", gone))
    await running.wait_for(lambda samples: samples.get(("boomi_container_up", ids)) == 0)
    page = await running.text("/")
    assert OFFLINE in page
    assert page.count(OFFLINE) == 1  # only the container it concerns
    samples = await running.samples()
    for other in others:
        assert (
            samples[
                ("boomi_container_up", (("account_id", "test-account"), ("container_id", other)))
            ]
            == 1
        )


async def test_a_410_shows_boomi_s_words_in_once(tmp_path: Path, sim_server: SimServer) -> None:
    gone = sim_server.container_ids()[0]
    sim_server.sim.set_faults(Faults(runtime_offline_410_rate=1.0, container_ids=[gone]))
    path = write_config(tmp_path, sim_server)
    code, out, err = await run_cli(
        "--once", "--config", str(path), env={"BOOMI_PASSWORD": sim_server.account.password}
    )
    assert code == 1, err  # a container failed
    name = sim_server.account.containers[gone].name
    line = next(line for line in out.splitlines() if line.startswith(name))
    assert re.search(r"POLL FAILED: .*HTTP 410: " + re.escape(OFFLINE), line), out
    for listener in sim_server.account.listeners.values():
        if listener.container_id != gone:
            assert listener.listener_id in out  # the others were polled
    assert "Traceback" not in err
