"""The snapshot store: what the exporter last learnt about each container and its listeners.

The poller writes it, `/metrics`, the landing page and remediation read it. Each container's
entry is an immutable `ContainerSnapshot` replaced whole on every update, so a reader always
sees one consistent poll result and never a half-written one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from exporter.boomi import Environment, ListenerStatus

OFFLINE_ERROR = "the runtime is OFFLINE in Boomi; its listeners are not polled"


@dataclass(frozen=True, slots=True)
class ContainerSnapshot:
    """One container's last known listeners and the health of its polling."""

    account_id: str
    container_id: str
    container_name: str
    listeners: tuple[ListenerStatus, ...] = ()  # of the last successful poll
    polled: bool = False  # a poll has finished (successfully or not)
    up: bool = False  # the last poll succeeded
    last_success_time: float | None = None  # Unix time of the last successful poll
    last_error: str = ""  # the last failure's message, "" after a success
    poll_duration_seconds: float | None = None  # of the last finished poll
    container_type: str = ""  # ATOM, MOLECULE or CLOUD once Boomi has said
    online: bool | None = None  # False when Boomi reports the container OFFLINE; None: not known
    environment: Environment | None = None  # None: not attached, or not known yet
    environment_known: bool = False  # the account's environments have been read


@dataclass
class SnapshotStore:
    """Per container the latest snapshot, keyed by (account_id, container_id)."""

    _containers: dict[tuple[str, str], ContainerSnapshot] = field(default_factory=dict)
    # (account_id, listener_id) -> process name; a listener id is its process's id. Read it
    # freely; change it only through set_process_names / forget_process_names.
    process_names: dict[tuple[str, str], str] = field(default_factory=dict)
    # Counters bumped by changes, so readers can cache what they derive from the store:
    # `version` by every change; `names_version` when process names change;
    # `listeners_version` when the published listeners change: the set of containers, a
    # container's listener tuple, or a process name. A poll that finds the same listeners keeps
    # the old tuple object, so an unchanged `snapshot.listeners` is also the same object.
    version: int = 0
    names_version: int = 0
    listeners_version: int = 0
    # Called with a container's new snapshot when a poll or the Atom query replaces it, so a
    # reader can derive what it needs then, on the poll path, rather than at scrape time.
    on_update: Callable[[ContainerSnapshot], None] | None = None
    # account_id -> {container_id: environment} as last read; a container tracked later gets
    # its environment from here at once. Absent: the account's environments were never read.
    _environments: dict[str, Mapping[str, Environment]] = field(default_factory=dict)

    @classmethod
    def for_containers(cls, containers: Iterable[tuple[str, str, str]]) -> SnapshotStore:
        """A store that knows the given (account_id, container_id, name) and nothing else yet."""
        store = cls()
        store.set_containers(containers)
        return store

    def set_containers(self, containers: Iterable[tuple[str, str, str]]) -> None:
        """Track exactly these containers: keep the state of known ones, forget removed ones."""
        wanted: dict[tuple[str, str], ContainerSnapshot] = {}
        for account_id, container_id, name in containers:
            key = (account_id, container_id)
            old = self._containers.get(key)
            if old is not None:
                wanted[key] = replace(old, container_name=name)
                continue
            new = ContainerSnapshot(account_id, container_id, name)
            environments = self._environments.get(account_id)
            if environments is not None:
                new = replace(
                    new, environment=environments.get(container_id), environment_known=True
                )
            wanted[key] = new
        self._containers = wanted
        self.listeners_version += 1
        self.version += 1

    def set_process_names(self, account_id: str, names: dict[str, str]) -> None:
        """Record process names of an account's listeners."""
        changed = {
            (account_id, listener_id): name
            for listener_id, name in names.items()
            if self.process_names.get((account_id, listener_id)) != name
        }
        if changed:
            self.process_names.update(changed)
            self.names_version += 1
            self.listeners_version += 1
            self.version += 1

    def forget_process_names(self, account_id: str, listener_ids: Iterable[str]) -> None:
        """Drop the names of listeners that went away."""
        keys = [
            (account_id, lid) for lid in listener_ids if (account_id, lid) in self.process_names
        ]
        for key in keys:
            del self.process_names[key]
        if keys:
            self.names_version += 1
            self.listeners_version += 1
            self.version += 1

    def set_container_status(
        self, account_id: str, container_id: str, *, container_type: str, online: bool
    ) -> None:
        """Record what Boomi's Atom query says of a tracked container (others are ignored)."""
        old = self._containers.get((account_id, container_id))
        if old is None or (old.container_type, old.online) == (container_type, online):
            return
        new = replace(old, container_type=container_type, online=online)
        if not online:
            # Shown down at once, with the reason, without waiting for a poll to notice.
            new = replace(new, polled=True, up=False, last_error=OFFLINE_ERROR)
        self._put(new)

    def set_environments(self, account_id: str, environments: Mapping[str, Environment]) -> None:
        """Record each of an account's containers' environment; those not in it are unattached."""
        self._environments[account_id] = environments
        for (owner, container_id), old in list(self._containers.items()):
            if owner != account_id:
                continue
            environment = environments.get(container_id)
            if old.environment_known and old.environment == environment:
                continue
            self._put(replace(old, environment=environment, environment_known=True))

    def environments_of(self, account_id: str) -> Mapping[str, Environment] | None:
        """The account's last known {container_id: environment}; None if never read."""
        return self._environments.get(account_id)

    def record_success(
        self,
        account_id: str,
        container_id: str,
        listeners: Iterable[ListenerStatus],
        *,
        duration_seconds: float,
        now: float,
    ) -> None:
        """Replace the container's listeners with a poll's result; vanished listeners go."""
        old = self._containers.get((account_id, container_id))
        if old is None:  # removed while its poll was in flight
            return
        new_listeners = tuple(sorted(listeners, key=lambda item: item.listener_id))
        if new_listeners == old.listeners:
            new_listeners = old.listeners  # the same object: readers see "unchanged" by identity
        else:
            self.listeners_version += 1
        self._put(
            replace(
                old,
                listeners=new_listeners,
                polled=True,
                up=True,
                last_success_time=now,
                last_error="",
                poll_duration_seconds=duration_seconds,
            )
        )

    def record_failure(
        self, account_id: str, container_id: str, error: str, *, duration_seconds: float
    ) -> None:
        """Mark a failed poll: listeners keep their last values, `up` goes to 0."""
        old = self._containers.get((account_id, container_id))
        if old is None:
            return
        self._put(
            replace(
                old, polled=True, up=False, last_error=error, poll_duration_seconds=duration_seconds
            )
        )

    def _put(self, snapshot: ContainerSnapshot) -> None:
        self._containers[(snapshot.account_id, snapshot.container_id)] = snapshot
        self.version += 1
        if self.on_update is not None:
            self.on_update(snapshot)

    def containers(self) -> list[ContainerSnapshot]:
        """Every tracked container's snapshot, in configuration order."""
        return list(self._containers.values())

    def get(self, account_id: str, container_id: str) -> ContainerSnapshot | None:
        """One container's snapshot, or None when it is not tracked."""
        return self._containers.get((account_id, container_id))

    def ready(self) -> bool:
        """True once every tracked container has finished its first poll."""
        return all(snapshot.polled for snapshot in self._containers.values())
