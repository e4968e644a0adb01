"""Helpers of the simulator tests: a small world, a fake clock and a thin client over a real socket."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from exporter.simulator import (
    Simulator,
    serve,
)

ACCOUNT = "acme-AB12CD"
USER = "ops@acme.example"
PASSWORD = "s3cret-demo"
API_TOKEN = "token-demo-123"
BNS = "{http://api.platform.boomi.com/}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def basic(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


JSON = {"Accept": "application/json", "Content-Type": "application/json"}
AUTH = {"Authorization": basic(USER, PASSWORD)}


class FakeClock:
    """A clock the test moves by hand, or that moves when the code under test sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """An injectable sleep: let every task that is ready run first, then jump."""
        # As on a real loop, where time passes only while everyone waits.
        for _ in range(5):
            await asyncio.sleep(0)
        self.now += max(0.0, seconds)


@dataclass
class Reply:
    status: int
    headers: Any
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Api:
    """A thin client for one account of a running simulator."""

    session: aiohttp.ClientSession
    base_url: str
    root_url: str
    account: str = ACCOUNT

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        data: str | None = None,
    ) -> Reply:
        all_headers = {**JSON, **AUTH} if headers is None else headers
        payload = data if data is not None else (None if body is None else json.dumps(body))
        url = f"{self.base_url}/{self.account}/{path}"
        async with self.session.request(method, url, data=payload, headers=all_headers) as resp:
            return Reply(resp.status, resp.headers, await resp.text())

    async def query(self, container_id: str, listener_id: str | None = None) -> str:
        reply = await self.call(
            "POST", "async/ListenerStatus/query", status_filter(container_id, listener_id)
        )
        assert reply.status == 200, reply.text
        token: str = reply.json["asyncToken"]["token"]
        return token

    async def result(self, token: str) -> Reply:
        return await self.call("GET", f"async/ListenerStatus/response/{token}")

    async def change(self, **body: str) -> Reply:
        return await self.call("POST", "changeListenerStatus", body)

    async def control(self, method: str, path: str, body: Any = None) -> Reply:
        url = f"{self.root_url}/__simulator/{path}"
        async with self.session.request(method, url, json=body) as resp:
            return Reply(resp.status, resp.headers, await resp.text())


@asynccontextmanager
async def running(sim: Simulator, account: str = ACCOUNT) -> AsyncIterator[Api]:
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(session, base_url, base_url.removesuffix("/api/rest/v1"), account)
    finally:
        await runner.cleanup()


def status_filter(container_id: str, listener_id: str | None = None) -> dict[str, Any]:
    container = {"argument": [container_id], "operator": "EQUALS", "property": "containerId"}
    if listener_id is None:
        return {"QueryFilter": {"expression": container}}
    listener = {"argument": [listener_id], "operator": "EQUALS", "property": "listenerId"}
    return {
        "QueryFilter": {
            "expression": {"operator": "and", "nestedExpression": [container, listener]}
        }
    }


def make_sim(clock: FakeClock | None = None, **kwargs: Any) -> Simulator:
    """A small world: c1 with three listeners, c2 with one, an empty and an offline container."""
    sim = Simulator(seed=7, clock=clock or time.monotonic, **kwargs)
    # A generous rate limit: a fake clock that stands still would otherwise throttle the tests.
    sim.add_account(
        ACCOUNT, username=USER, password=PASSWORD, api_token=API_TOKEN, rate_limit_rps=1000
    )
    sim.add_container(ACCOUNT, "c1", "prod-molecule-1")
    sim.add_container(ACCOUNT, "c2", "prod-atom-1", type="ATOM")
    sim.add_container(ACCOUNT, "c-empty", "test-molecule-1")
    sim.add_container(ACCOUNT, "c-off", "dr-molecule-1", status="OFFLINE")
    sim.add_listener(ACCOUNT, "c1", "l1", status="listening", process_name="Orders WSS Listener")
    sim.add_listener(ACCOUNT, "c1", "l2", status="errored", connector_type="atomqueue")
    sim.add_listener(ACCOUNT, "c1", "l3", status="paused", connector_type=None)
    sim.add_listener(ACCOUNT, "c2", "l4", status="listening", process_name="Invoices")
    sim.add_listener(ACCOUNT, "c-off", "l5")
    return sim


def statuses(sim: Simulator) -> dict[str, str]:
    state: Any = sim.state()
    return {lst["listener_id"]: lst["status"] for lst in state["accounts"][ACCOUNT]["listeners"]}


async def settled_rows(api: Api, clock: FakeClock, token: str) -> list[dict[str, Any]]:
    clock.advance(10)
    reply = await api.result(token)
    assert reply.status == 200, reply.text
    rows: list[dict[str, Any]] = reply.json["result"]
    return rows
