"""The fleet of one account: which containers to poll, their status, type and environment, and
listener names.

A `FleetRefresher` per account runs two background loops on the account's client, at the rate
limiter's background priority so they only use budget the status cycle leaves:
- containers: on `discovery.interval_seconds`, the Atom query (paged) and the environments
  (Environment and EnvironmentAtomAttachment, paged, one attachment query per environment); it
  refreshes the status (ONLINE/OFFLINE), type, name and environment of every container and,
  with discovery enabled, adds the containers that match the filters to the ones listed in the
  config (listed entries win). A failed environment read keeps the last known environments and
  holds up nothing else;
- names: Process/bulk for listener ids without a name yet, and for all of them again every
  `names.refresh_seconds`.
Filtering and merging are pure functions; the loops only do I/O and hand results on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from exporter.boomi import (
    Atom,
    AuthError,
    BoomiClient,
    BoomiError,
    Environment,
    environments_by_container,
)
from exporter.config import AccountConfig, DiscoveryConfig, NamesConfig
from exporter.environments import discovered_in_environments
from exporter.poller import Target
from exporter.state import SnapshotStore

log = logging.getLogger(__name__)

# How often the names loop looks for listeners it has no name for yet.
NAMES_CHECK_SECONDS = 15.0
# After a failed lookup, wait this long (or the regular interval, if shorter) before the next.
RETRY_AFTER_FAILURE_SECONDS = 300.0


def select_discovered(
    atoms: Iterable[Atom],
    discovery: DiscoveryConfig,
    tracked: Collection[str] = (),
    environments: Mapping[str, Environment] | None = None,
) -> list[Atom]:
    """The containers that discovery adds: the right type, status and environment, a matching
    name.

    The status filter decides what is added; a container already `tracked` stays when its status
    changes (to OFFLINE, say), so it is shown as such instead of vanishing. `environments` is
    the account's {container id: environment} (None: never read; see
    `discovered_in_environments`).
    """
    pattern = re.compile(discovery.name_pattern)
    candidates = [
        atom
        for atom in atoms
        if atom.type in discovery.types
        and (atom.status in discovery.statuses or atom.container_id in tracked)
        and pattern.fullmatch(atom.name)
    ]
    passing = discovered_in_environments(
        [atom.container_id for atom in candidates],
        environments,
        discovery.environment_classifications,
        discovery.environment_name_pattern,
    )
    return [atom for atom in candidates if atom.container_id in passing]


def merge_targets(
    account: AccountConfig,
    atoms: Sequence[Atom] | None,
    tracked: Collection[str] = (),
    environments: Mapping[str, Environment] | None = None,
) -> list[Target]:
    """Listed containers first (named from the config, else from Boomi), then discovered ones.

    `atoms` is None until an Atom query has succeeded: then only the listed containers.
    `tracked` are the discovered containers polled so far (see `select_discovered`), and
    `environments` what the account's environments were last read as.
    """
    names = {atom.container_id: atom.name for atom in atoms or ()}
    targets = [
        Target(account.account_id, container.id, container.name or names.get(container.id, ""))
        for container in account.containers
    ]
    if atoms is not None and account.discovery.enabled:
        listed = {container.id for container in account.containers}
        targets += [
            Target(account.account_id, atom.container_id, atom.name)
            for atom in select_discovered(atoms, account.discovery, tracked, environments)
            if atom.container_id not in listed
        ]
    return targets


class FleetRefresher:
    """Keeps one account's container list and listener names fresh in the background."""

    def __init__(
        self,
        account: AccountConfig,
        names: NamesConfig,
        client: BoomiClient,
        store: SnapshotStore,
        on_targets: Callable[[str, list[Target]], None],
        *,
        names_check_seconds: float = NAMES_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        discovered: Sequence[Target] = (),
    ) -> None:
        self.account = account
        self._names_check = names_check_seconds
        self._names = names
        self._client = client
        self._store = store
        self._on_targets = on_targets
        self._clock = clock
        self._named_at: dict[str, float] = {}  # listener id -> when its name was looked up
        # Containers polled after the last Atom query; after a reload, those the previous
        # refresher had discovered, which stay until an Atom query says otherwise.
        self._discovered = [t for t in discovered if t.account_id == account.account_id]
        self._tracked: set[str] = {t.container_id for t in self._discovered}
        self._tasks: list[asyncio.Task[None]] = []
        # The last environments read, kept in the store across reloads; None: never read.
        self._environments = store.environments_of(account.account_id)
        self._environments_failing = False  # so a lasting failure is logged once
        self.environment_failures = 0  # failed environment reads since start

    def start(self) -> None:
        """Start the background loops."""
        account_id = self.account.account_id
        self._on_targets(account_id, merge_targets(self.account, None) + self._discovered)
        self._tasks.append(
            asyncio.create_task(self._containers_loop(), name=f"containers {account_id}")
        )
        if self._names.enabled:
            self._tasks.append(asyncio.create_task(self._names_loop(), name=f"names {account_id}"))

    async def stop(self) -> None:
        """Cancel the loops and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def refresh_containers(self) -> bool:
        """One discovery round: the Atom query, then the environments; True if both succeeded.

        Either may fail alone: without the Atom query the targets stay as they are, without the
        environments the last known ones are kept.
        """
        try:
            atoms: list[Atom] | None = await self._client.query_atoms()
        except BoomiError as exc:
            level = logging.DEBUG if isinstance(exc, AuthError) else logging.WARNING
            log.log(
                level,
                "account %s: looking up containers failed (%s); polling the listed containers",
                self.account.account_id,
                exc,
            )
            atoms = None
        environments_ok = await self.refresh_environments()
        if atoms is None:
            return False
        for atom in atoms:
            self._store.set_container_status(
                self.account.account_id,
                atom.container_id,
                container_type=atom.type,
                online=atom.status != "OFFLINE",
            )
        targets = merge_targets(self.account, atoms, self._tracked, self._environments)
        self._tracked = {target.container_id for target in targets}
        self._on_targets(self.account.account_id, targets)
        return environments_ok

    async def refresh_environments(self) -> bool:
        """Read the account's environments and their attachments into the store.

        One Environment query, then one attachment query per environment (each paged). On any
        failure the last known environments stay; the failure is counted, and logged once
        until a read succeeds again.
        """
        account_id = self.account.account_id
        try:
            environments = await self._client.query_environments()
            attachments = [
                attachment
                for environment in environments
                for attachment in await self._client.query_environment_attachments(
                    environment.environment_id
                )
            ]
        except BoomiError as exc:
            self.environment_failures += 1
            # Rejected credentials are the credentials rule's one line to log, not this one's.
            quiet = self._environments_failing or isinstance(exc, AuthError)
            level = logging.DEBUG if quiet else logging.WARNING
            self._environments_failing = True
            log.log(
                level,
                "account %s: reading environments failed (%s); %s",
                account_id,
                exc,
                "keeping the last known ones"
                if self._environments is not None
                else "they stay unknown until a read succeeds",
            )
            return False
        if self._environments_failing:
            log.info("account %s: reading environments works again", account_id)
            self._environments_failing = False
        self._environments = environments_by_container(environments, attachments)
        self._store.set_environments(account_id, self._environments)
        return True

    async def refresh_names(self) -> bool:
        """Look up names of listeners never named, or named longer ago than the refresh."""
        now = self._clock()
        account_id = self.account.account_id
        present = {
            listener.listener_id
            for snapshot in self._store.containers()
            if snapshot.account_id == account_id
            for listener in snapshot.listeners
        }
        # Forget listeners that went away, so the bookkeeping does not grow forever.
        gone = set(self._named_at) - present
        for listener_id in gone:
            del self._named_at[listener_id]
        self._store.forget_process_names(account_id, gone)
        wanted = sorted(
            listener_id
            for listener_id in present
            if now - self._named_at.get(listener_id, -math.inf) >= self._names.refresh_seconds
        )
        if not wanted:
            return True
        try:
            names = await self._client.process_names(wanted)
        except BoomiError as exc:
            level = logging.DEBUG if isinstance(exc, AuthError) else logging.WARNING
            log.log(
                level,
                "account %s: looking up process names failed (%s)",
                self.account.account_id,
                exc,
            )
            return False
        for listener_id in wanted:
            # Ids Boomi could not name are not asked for again before the next refresh either.
            self._named_at[listener_id] = now
        self._store.set_process_names(account_id, names)
        return True

    async def _containers_loop(self) -> None:
        interval = self.account.discovery.interval_seconds
        while True:
            ok = await self.refresh_containers()
            await asyncio.sleep(interval if ok else min(interval, RETRY_AFTER_FAILURE_SECONDS))

    async def _names_loop(self) -> None:
        while True:
            ok = await self.refresh_names()
            await asyncio.sleep(self._names_check if ok else RETRY_AFTER_FAILURE_SECONDS)
