"""Shared fixtures: a Boomi API simulator on a real loopback socket, and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from exporter.boomi import BoomiClient, RetryPolicy
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
