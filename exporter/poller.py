"""The scheduler: keeps every configured container's listener statuses fresh in the store.

One asyncio task per container runs the ListenerStatus cycle (query -> token -> GET until
settled) on the poll interval, one cycle in flight at a time. The first cycle starts at once;
later ones start on their slot with a jitter of at most 10% of the interval. Containers of an
account share the account's `BoomiClient`, so their cycles are pipelined through its rate
limiter: many queries in flight at once, results fetched as they settle. A failure is recorded
for its container only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from exporter.boomi import (
    OP_RESULT,
    AuthError,
    BoomiClient,
    BoomiError,
    ListenerStatus,
    ResultTimeout,
)
from exporter.state import OFFLINE_ERROR, SnapshotStore

log = logging.getLogger(__name__)

JITTER_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class Target:
    """One container to poll, with the account whose client polls it."""

    account_id: str
    container_id: str
    name: str


class Poller:
    """Runs one polling task per target and records every outcome in the store."""

    def __init__(
        self,
        clients: Mapping[str, BoomiClient],
        store: SnapshotStore,
        *,
        interval_seconds: float,
        result_timeout_seconds: float,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clients = clients
        self._store = store
        self._interval = interval_seconds
        self._result_timeout = result_timeout_seconds
        self._rng = rng or random.Random()
        self._wall_clock = wall_clock
        self._clock = clock  # the schedule's: when each cycle starts
        self._sleep = sleep
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._targets: dict[tuple[str, str], Target] = {}
        self._failure_kinds: dict[tuple[str, str], str] = {}  # of the failing containers

    def configure(self, *, interval_seconds: float, result_timeout_seconds: float) -> None:
        """New timings; each container's next cycle uses them."""
        self._interval = interval_seconds
        self._result_timeout = result_timeout_seconds

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Poll exactly these targets: start new ones, stop removed ones, keep the rest running."""
        wanted = {(t.account_id, t.container_id): t for t in targets}
        self._targets = wanted
        self._store.set_containers((t.account_id, t.container_id, t.name) for t in wanted.values())
        for key in list(self._tasks):
            if key not in wanted:
                self._tasks.pop(key).cancel()
                client = self._clients.get(key[0])
                if client is not None:
                    client.forget_container(key[1])
        for key in wanted:
            if key not in self._tasks:
                self._start(key)

    def restart_account(self, account_id: str) -> None:
        """Restart the polling of an account's containers (its client was replaced)."""
        for key in [key for key in self._tasks if key[0] == account_id]:
            self._tasks.pop(key).cancel()
            self._start(key)

    def _start(self, key: tuple[str, str]) -> None:
        self._tasks[key] = asyncio.create_task(self._run(key), name=f"poll {key[0]}/{key[1]}")

    async def stop(self) -> None:
        """Cancel every polling task and wait for them to end."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, key: tuple[str, str]) -> None:
        next_start = self._clock()
        # The first cycle starts at once: the account's rate limiter already spreads the first
        # queries of its containers, and a start jitter only put off the first complete picture
        # (and /-/ready) by up to 10% of the interval, 60 s at 600 s. Later cycles start on
        # their slot plus a jitter, which keeps them spread.
        jitter = 0.0
        while True:
            await self._sleep(max(0.0, next_start + jitter - self._clock()))
            started = self._clock()
            await self.poll(self._targets[key])
            jitter = self._rng.uniform(0, JITTER_FRACTION * self._interval)
            # Fixed cadence from the planned start; an overrun cycle skips missed slots.
            next_start += self._interval
            if next_start < started:
                next_start = started + self._interval

    def _went_offline(self, target: Target) -> bool:
        snapshot = self._store.get(target.account_id, target.container_id)
        return snapshot is not None and snapshot.online is False

    async def _fetch(self, client: BoomiClient, container_id: str) -> tuple[ListenerStatus, ...]:
        # The whole cycle, retries and waits for the rate limiter included, ends at the result
        # timeout: one "Retry-After: 86400" once kept containers "up" on aging data for a day.
        try:
            async with asyncio.timeout(self._result_timeout):
                return await client.fetch_listener_statuses(
                    container_id, result_timeout_seconds=self._result_timeout
                )
        except TimeoutError:
            raise ResultTimeout(
                f"polling container {container_id} did not finish within result_timeout_seconds"
                f" ({self._result_timeout:g} s): Boomi is slow to answer, or asked to wait"
                " (Retry-After)",
                operation=OP_RESULT,
                container_id=container_id,
            ) from None

    async def poll(self, target: Target) -> bool:
        """Run one cycle for a target and record the outcome (True: success); never raises."""
        client = self._clients[target.account_id]
        where = f"container {target.container_id} ({target.name or 'unnamed'})"
        started = time.monotonic()
        previous = self._store.get(target.account_id, target.container_id)
        if self._went_offline(target):
            # Boomi says OFFLINE: a ListenerStatus query would never settle; spend nothing.
            self._store.record_failure(
                target.account_id, target.container_id, OFFLINE_ERROR, duration_seconds=0.0
            )
            return False
        try:
            listeners = await self._fetch(client, target.container_id)
        except BoomiError as exc:
            if self._went_offline(target):
                # It went OFFLINE while this poll waited; that, not the timeout, is the news.
                return False
            self._store.record_failure(
                target.account_id,
                target.container_id,
                str(exc),
                duration_seconds=time.monotonic() - started,
            )
            # Once per kind of failure and container: a new kind of trouble is news, a repeated
            # one is not. Rejected credentials are the client's to log, once per user and
            # secret (exporter.boomi.credentials), not once per container.
            kind = type(exc).__name__
            repeated = self._failure_kinds.get((target.account_id, target.container_id)) == kind
            self._failure_kinds[(target.account_id, target.container_id)] = kind
            level = logging.DEBUG if repeated or isinstance(exc, AuthError) else logging.WARNING
            log.log(level, "polling %s failed: %s", where, exc)
            return False
        except Exception:
            # A bug must not stop this container's polling, nor anyone else's.
            log.exception("polling %s failed unexpectedly", where)
            self._store.record_failure(
                target.account_id,
                target.container_id,
                "internal error (see the log)",
                duration_seconds=time.monotonic() - started,
            )
            return False
        self._store.record_success(
            target.account_id,
            target.container_id,
            listeners,
            duration_seconds=time.monotonic() - started,
            now=self._wall_clock(),
        )
        if self._failure_kinds.pop((target.account_id, target.container_id), None):
            log.info("polling %s works again", where)
        seen = (
            {(item.listener_id, item.raw_status) for item in previous.listeners}
            if previous
            else set()
        )
        for listener in listeners:
            # Once per listener and raw value, so an odd status is visible but not repeated.
            if (
                listener.status == "unknown"
                and (listener.listener_id, listener.raw_status) not in seen
            ):
                log.info(
                    "%s: listener %s has status %r, published as unknown",
                    where,
                    listener.listener_id,
                    listener.raw_status,
                )
        return True
