"""Boomi's official Python SDK (boomi==3.0.1, generated from the same OpenAPI document) parses
every answer of the simulator (issue 13).

The SDK turns a 2xx body into its model classes and, when a body does not fit them, quietly
hands back the raw dict instead (`BaseService._deserialize_or_raw`). So "parses" means: the
answer comes back as the model, never as a dict. The SDK is synchronous (urllib); it runs in a
thread while the simulator serves on the test's event loop, on a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import boomi
import pytest
from boomi.models import (
    AsyncOperationTokenResult,
    AtomQueryConfig,
    AtomQueryConfigQueryFilter,
    AtomQueryResponse,
    AtomSimpleExpression,
    AtomSimpleExpressionOperator,
    AtomSimpleExpressionProperty,
    ChangeListenerStatusRequest,
    ListenerStatus,
    ListenerStatusAsyncResponse,
    ListenerStatusQueryConfig,
    ListenerStatusQueryConfigQueryFilter,
    ListenerStatusSimpleExpression,
    ListenerStatusSimpleExpressionOperator,
    ListenerStatusSimpleExpressionProperty,
)
from boomi.models.change_listener_status_request import Action

from exporter.simulator import Faults, Simulator, serve
from tests.simulator_helpers import FakeClock

ACCOUNT = "sdk-account"
RESULT_DELAY = 0.3


@dataclass
class Served:
    sim: Simulator
    sdk: Any  # boomi.Boomi
    clock: FakeClock  # the simulator's: results are ready when the test moves it


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    clock = FakeClock()
    sim = Simulator.with_fleet(
        account_id=ACCOUNT, containers=3, listeners_per_container=3,
        result_delay_seconds=RESULT_DELAY, rate_limit_rps=1000, clock=clock,
    )  # fmt: skip
    sim.add_container(ACCOUNT, "c-empty", "test-molecule-empty")
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    account = sim.accounts[ACCOUNT]
    sdk = boomi.Boomi(
        account_id=ACCOUNT, username=account.username, password=account.password,
        base_url=base_url + "/{accountId}", timeout=10_000,
    )  # fmt: skip
    try:
        yield Served(sim, sdk, clock)
    finally:
        await runner.cleanup()


def status_query(container_id: str) -> ListenerStatusQueryConfig:
    return ListenerStatusQueryConfig(
        query_filter=ListenerStatusQueryConfigQueryFilter(
            expression=ListenerStatusSimpleExpression(
                operator=ListenerStatusSimpleExpressionOperator.EQUALS,
                property=ListenerStatusSimpleExpressionProperty.CONTAINERID,
                argument=[container_id],
            )
        )
    )


async def test_the_sdk_parses_atom_query_listener_status_and_change_answers(
    served: Served,
) -> None:
    sdk, clock = served.sdk, served.clock
    account = served.sim.accounts[ACCOUNT]

    def conversation() -> dict[str, Any]:
        online = AtomQueryConfig(
            query_filter=AtomQueryConfigQueryFilter(
                expression=AtomSimpleExpression(
                    operator=AtomSimpleExpressionOperator.EQUALS,
                    property=AtomSimpleExpressionProperty.STATUS,
                    argument=["ONLINE"],
                )
            )
        )
        atoms = sdk.atom.query_atom(online)
        container = next(atom.id_ for atom in atoms.result if atom.id_ != "c-empty")
        token = sdk.listener_status.async_get_listener_status(status_query(container))
        in_progress = sdk.listener_status.async_token_listener_status(token.async_token.token)
        clock.advance(RESULT_DELAY + 0.1)
        complete = sdk.listener_status.async_token_listener_status(token.async_token.token)
        empty_token = sdk.listener_status.async_get_listener_status(status_query("c-empty"))
        clock.advance(RESULT_DELAY + 0.1)
        empty = sdk.listener_status.async_token_listener_status(empty_token.async_token.token)
        listener_id = complete.result[0].listener_id
        changed = sdk.change_listener_status.create_change_listener_status(
            ChangeListenerStatusRequest(
                container_id=container, listener_id=listener_id, action=Action.RESTART
            )
        )
        return {
            "atoms": atoms, "token": token, "in_progress": in_progress, "complete": complete,
            "empty": empty, "changed": changed, "container": container,
        }  # fmt: skip

    answers = await asyncio.to_thread(conversation)

    atoms = answers["atoms"]
    assert isinstance(atoms, AtomQueryResponse)
    assert {atom.id_ for atom in atoms.result} == set(account.containers)
    assert {str(getattr(atom.status, "value", atom.status)) for atom in atoms.result} == {"ONLINE"}
    assert isinstance(answers["token"], AsyncOperationTokenResult)
    assert answers["token"].response_status_code == 202
    in_progress = answers["in_progress"]
    assert isinstance(in_progress, ListenerStatusAsyncResponse)
    assert in_progress.response_status_code == 202
    complete = answers["complete"]
    assert isinstance(complete, ListenerStatusAsyncResponse)
    assert complete.response_status_code == 200
    assert all(isinstance(row, ListenerStatus) for row in complete.result)
    expected = {
        lst.listener_id: lst.status
        for lst in account.listeners.values()
        if lst.container_id == answers["container"]
    }
    assert {row.listener_id: row.status for row in complete.result} == expected
    empty = answers["empty"]
    assert isinstance(empty, ListenerStatusAsyncResponse)
    assert (empty.response_status_code, empty.number_of_results) == (200, 0)
    assert answers["changed"] is None  # an empty 200: accepted
    assert served.sim.change_log[-1]["action"] == "restart"


async def test_the_sdk_cannot_parse_the_off_spec_progress_rows(served: Served) -> None:
    """The variant that is now a fault, off by default: the SDK falls back to a raw dict."""
    served.sim.set_faults(Faults(in_progress_status_rows_rate=1.0))
    sdk = served.sdk
    container = next(iter(served.sim.accounts[ACCOUNT].containers))

    def in_progress() -> Any:
        token = sdk.listener_status.async_get_listener_status(status_query(container))
        return sdk.listener_status.async_token_listener_status(token.async_token.token)

    answer = await asyncio.to_thread(in_progress)
    assert isinstance(answer, dict)
    assert answer["result"][0]["@type"] == "AsyncOperationStatus"
