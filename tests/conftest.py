"""Shared fixtures: a Boomi API simulator on a real loopback socket, clients and exporters."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.boomi import BoomiClient, RetryPolicy
from exporter.config import Config, StorageConfig
from exporter.daemon import Exporter
from exporter.simulator import SimAccount, Simulator, serve

ACCOUNT = "test-account"


@dataclass
class SimServer:
    """A running simulator and where to reach it."""

    sim: Simulator
    base_url: str  # .../api/rest/v1 (the client appends the account id)

    @property
    def account(self) -> SimAccount:
        return self.sim.accounts[ACCOUNT]

    @property
    def control_url(self) -> str:
        return self.base_url.removesuffix("/api/rest/v1") + "/__simulator"

    def container_ids(self) -> list[str]:
        return list(self.account.containers)

    def listeners_of(self, container_id: str) -> dict[str, str]:
        """{listener id: raw status} of one container, as the simulator holds it now."""
        return {
            listener.listener_id: listener.status
            for listener in self.sim.accounts[ACCOUNT].listeners.values()
            if listener.container_id == container_id
        }

    def count(self, key_prefix: str) -> int:
        """Requests served whose "METHOD route STATUS" key starts with this prefix."""
        return sum(n for key, n in self.sim.request_counts.items() if key.startswith(key_prefix))


@pytest.fixture(autouse=True)
def _no_ledger_in_the_working_directory() -> Iterator[None]:
    """A test that leaves the default storage path (./data) behind fails: it wrote where a user's
    checkout keeps nothing, and the next test's daemon would find its ledger there."""
    data = Path("data")
    existed = data.exists()
    yield
    if not existed and data.exists():
        shutil.rmtree(data)
        pytest.fail("the test wrote ./data: give its daemon a storage path under tmp_path")


@pytest.fixture
def make_sim() -> Callable[..., Simulator]:
    def factory(**kwargs: object) -> Simulator:
        options: dict[str, object] = {
            "account_id": ACCOUNT,
            "containers": 3,
            "listeners_per_container": 4,
            "result_delay_seconds": 0.05,
            "restart_delay_seconds": 0.1,
            "rate_limit_rps": 50,
            "seed": 7,
        }
        options.update(kwargs)
        return Simulator.with_fleet(**options)  # type: ignore[arg-type]

    return factory


@pytest.fixture
async def sim_server(
    request: pytest.FixtureRequest, make_sim: Callable[..., Simulator]
) -> AsyncIterator[SimServer]:
    """A simulator on loopback; parametrize indirectly with a dict of with_fleet options."""
    options = getattr(request, "param", {})
    sim = make_sim(**options)
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    try:
        yield SimServer(sim, base_url)
    finally:
        await runner.cleanup()


FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.02, max_delay=0.2)


@pytest.fixture
async def make_client(sim_server: SimServer) -> AsyncIterator[Callable[..., BoomiClient]]:
    """Build clients for the simulator's account; all are closed at the end of the test."""
    clients: list[BoomiClient] = []

    def factory(**kwargs: object) -> BoomiClient:
        options: dict[str, object] = {
            "base_url": sim_server.base_url,
            "username": sim_server.account.username,
            "password": sim_server.account.password,
            "max_requests_per_second": 40,
            "request_timeout_seconds": 2.0,
            "retry": FAST_RETRY,
        }
        options.update(kwargs)
        client = BoomiClient(ACCOUNT, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


INTERVAL = 0.4

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def config_for(
    server: SimServer, *, remediation: dict[str, Any] | None = None, **poll: Any
) -> Config:
    account = server.account
    return Config.model_validate(
        {
            "accounts": [
                {
                    "account_id": ACCOUNT,
                    "base_url": server.base_url,
                    "username": account.username,
                    "password": account.password,
                    "max_requests_per_second": 40,
                    "containers": [
                        {"id": c.container_id, "name": c.name} for c in account.containers.values()
                    ],
                }
            ],
            "poll": {
                "interval_seconds": INTERVAL,
                "result_timeout_seconds": 2,
                "request_timeout_seconds": 1,
            }
            | poll,
            "remediation": remediation or {},
        }
    )


class Running:
    """A started exporter and an HTTP session to it."""

    def __init__(self, exporter: Exporter, url: str, session: aiohttp.ClientSession) -> None:
        self.exporter = exporter
        self.url = url
        self.session = session

    async def text(self, path: str = "/metrics", **headers: str) -> str:
        async with self.session.get(self.url + path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.text()

    async def samples(self) -> Samples:
        result: Samples = {}
        for family in text_string_to_metric_families(await self.text()):
            for sample in family.samples:
                result[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return result

    async def wait_for(
        self, predicate: Callable[[Samples], bool], timeout: float = 20.0
    ) -> Samples:
        # The timeout is a cap that only a hang reaches, never a measurement.
        deadline = time.monotonic() + timeout
        while True:
            samples = await self.samples()
            if predicate(samples):
                return samples
            if time.monotonic() > deadline:
                raise AssertionError("condition not met on /metrics within the timeout")
            await asyncio.sleep(0.05)


StartExporter = Callable[[Config], Awaitable[Running]]


@pytest.fixture
async def start_exporter(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[StartExporter]:
    """Start exporters; one whose config leaves storage.path at its default gets a ledger
    directory of its own, so that tests never share one (or write into the checkout)."""
    started: list[Running] = []

    async def start(config: Config) -> Running:
        if config.storage.path == StorageConfig().path:
            ledger_dir = tmp_path_factory.mktemp("ledger")
            config = config.model_copy(
                update={"storage": config.storage.model_copy(update={"path": str(ledger_dir)})}
            )
        exporter = Exporter(config)
        port = await exporter.start("127.0.0.1", 0)
        running = Running(exporter, f"http://127.0.0.1:{port}", aiohttp.ClientSession())
        started.append(running)
        return running

    yield start
    for running in started:
        await running.session.close()
        await running.exporter.stop()
