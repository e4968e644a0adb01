"""The simulated Boomi world: accounts, their containers, listeners and environments, and what
actions do.

No HTTP here: the world is built, read and changed by plain method calls. Delayed effects of
changeListenerStatus are applied lazily when the world is read, so a fake clock drives them
without sleeping. Users carry Boomi's rule about sign-ins: rejected ones are counted per user,
and the user is locked after ``lockout_after`` of them (six, as in Boomi), so that even the
right password is refused until someone unlocks it. The listener actions and statuses are the
simulator's own deliberate copy of docs/boomi-api.md, not the client's: the fake must not share
the client's beliefs.

A little over 500 lines: accounts, containers, listeners, environments and users are one world
that actions change together.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Final

ACTIONS: Final = ("restart", "restart_all", "pause", "pause_all", "resume", "resume_all")


@dataclass
class SimListener:
    """A listener process deployed on one container; its id is also its process id."""

    listener_id: str
    container_id: str
    # The raw value served: normally listening, paused or errored, but anything goes, so that
    # tests can check how clients cope with values such as "UNSUPPORTED".
    status: str
    connector_type: str | None = "wss"  # None: the key is omitted from answers
    process_name: str = ""


@dataclass
class SimContainer:
    """A runtime (Atom, Molecule or Cloud) that hosts listeners."""

    container_id: str
    name: str
    type: str = "MOLECULE"  # ATOM | MOLECULE | CLOUD
    status: str = "ONLINE"  # ONLINE | OFFLINE | WARNING | UNKNOWN
    host_name: str = ""


TOKEN_PREFIX: Final = "BOOMI_TOKEN."
LOCKOUT_AFTER: Final = 6  # Boomi locks a user after six rejected sign-ins


@dataclass
class SimUser:
    """A Boomi user: its password and API token, its rejected sign-ins, the calls it may not make.

    Several accounts may share a user (sub-accounts and partner accounts do); its sign-ins and
    its lockout are the user's, whichever account they were for.
    """

    username: str
    password: str = field(repr=False)
    api_token: str = field(repr=False)
    rejected_sign_ins: int = 0  # since the last unlock; a success does not reset it
    locked: bool = False
    # Route names (as in request_counts) answered 403, as for a user without the privilege.
    denied_routes: set[str] = field(default_factory=set)

    def accepts(self, login: str, password: str) -> bool:
        """Whether these Basic credentials are this user's: the password, or the API token."""
        if login == self.username:
            return password == self.password
        return login == TOKEN_PREFIX + self.username and password == self.api_token

    def to_json(self) -> dict[str, object]:
        """What the control API shows of the user: never its password or token."""
        return {
            "username": self.username,
            "rejected_sign_ins": self.rejected_sign_ins,
            "locked": self.locked,
            "denied_routes": sorted(self.denied_routes),
        }


@dataclass
class SimEnvironment:
    """An environment that runtimes are attached to (each runtime to at most one)."""

    environment_id: str
    name: str
    # PROD or TEST; None: the key is omitted, as for accounts with basic environment support.
    classification: str | None = "PROD"


def attachment_id(container_id: str, environment_id: str) -> str:
    """Boomi's EnvironmentAtomAttachment id: synthesized from both ids, long and not a UUID."""
    raw = f"{container_id}:{environment_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


@dataclass
class SimAccount:
    """A Boomi account: its user, rate limit, and the containers and listeners it owns."""

    account_id: str
    # The plain user signs in with its password; "BOOMI_TOKEN.<username>" with its API token.
    user: SimUser
    rate_limit_rps: float = 10.0
    containers: dict[str, SimContainer] = field(default_factory=dict)
    listeners: dict[str, SimListener] = field(default_factory=dict)  # ids unique per account
    environments: dict[str, SimEnvironment] = field(default_factory=dict)
    attachments: dict[str, str] = field(default_factory=dict)  # container id -> environment id

    @property
    def username(self) -> str:
        """The account's user."""
        return self.user.username

    @property
    def password(self) -> str:
        """The user's password (demo values, not secrets)."""
        return self.user.password

    @property
    def api_token(self) -> str:
        """The user's API token, signed in as BOOMI_TOKEN.<username>."""
        return self.user.api_token

    def accepts(self, username: str, password: str) -> bool:
        """Whether these Basic credentials are those of this account's user."""
        return self.user.accepts(username, password)


@dataclass(frozen=True)
class _PendingEffect:
    due: float
    account_id: str
    container_id: str
    listener_id: str | None  # None: every listener of the container (the *_all actions)
    action: str


def effect_of(action: str, status: str) -> str:
    """A listener's status once a restart, pause or resume has taken effect."""
    if action == "pause":
        return "paused"
    if action == "resume":
        return "listening" if status == "paused" else status
    # Restarting a paused listener leaves it paused (Boomi's Listeners panel documents this).
    return status if status == "paused" else "listening"


class World:
    """Every simulated account, with the listener actions accepted and not yet in effect."""

    def __init__(
        self,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        restart_delay_seconds: float,
        lockout_after: int = LOCKOUT_AFTER,
    ) -> None:
        if lockout_after < 1:
            raise ValueError(f"lockout_after must be at least 1, not {lockout_after!r}")
        self.restart_delay_seconds = restart_delay_seconds
        self.lockout_after = lockout_after
        self._clock = clock
        self._rng = rng
        self._accounts: dict[str, SimAccount] = {}
        self._users: dict[str, SimUser] = {}
        self._pending: list[_PendingEffect] = []
        self.change_log: list[dict[str, object]] = []

    @property
    def accounts(self) -> dict[str, SimAccount]:
        """Every account by id, with delayed listener effects that are due applied."""
        self.apply_due_effects()
        return self._accounts

    def account(self, account_id: str) -> SimAccount:
        """The account with this id; KeyError naming it if there is none."""
        try:
            return self._accounts[account_id]
        except KeyError:
            raise KeyError(f"account {account_id} does not exist") from None

    @property
    def users(self) -> dict[str, SimUser]:
        """Every user by username."""
        return self._users

    def user(self, username: str) -> SimUser:
        """The user with this name; KeyError naming it if there is none."""
        try:
            return self._users[username]
        except KeyError:
            raise KeyError(f"user {username} does not exist") from None

    def new_id(self) -> str:
        """A UUID from the seeded generator, so ids are the same for the same seed."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # -- building the world ------------------------------------------------------------------

    def add_account(
        self,
        account_id: str,
        *,
        username: str = "demo@example.com",
        password: str | None = None,
        api_token: str | None = None,
        rate_limit_rps: float = 10.0,
    ) -> SimAccount:
        """Add an empty account of a user, new or already known.

        A new user gets the password and API token given (default "demo-password" and
        "demo-api-token"). A known one keeps its own: a user has one password and one token,
        whatever the account, so giving others is a ValueError, as are a taken id and a rate
        that is not positive.
        """
        if account_id in self._accounts:
            raise ValueError(f"account {account_id} already exists")
        if rate_limit_rps <= 0:
            raise ValueError(f"rate_limit_rps must be positive, not {rate_limit_rps!r}")
        user = self._users.get(username)
        if user is None:
            user = SimUser(username, password or "demo-password", api_token or "demo-api-token")
            self._users[username] = user
        elif password not in (None, user.password) or api_token not in (None, user.api_token):
            raise ValueError(f"user {username} already exists with another password or API token")
        account = SimAccount(account_id, user, rate_limit_rps)
        self._accounts[account_id] = account
        return account

    def add_container(
        self,
        account_id: str,
        container_id: str,
        name: str,
        *,
        type: str = "MOLECULE",
        status: str = "ONLINE",
        host_name: str = "",
    ) -> SimContainer:
        """Add a container to an account; KeyError for an unknown account."""
        account = self.account(account_id)
        if container_id in account.containers:
            raise ValueError(f"container {container_id} already exists in account {account_id}")
        container = SimContainer(container_id, name, type, status, host_name)
        account.containers[container_id] = container
        return container

    def add_listener(
        self,
        account_id: str,
        container_id: str,
        listener_id: str,
        *,
        status: str = "listening",
        connector_type: str | None = "wss",
        process_name: str = "",
    ) -> SimListener:
        """Deploy a listener on a container; listener ids are unique per account."""
        account = self.account(account_id)
        if container_id not in account.containers:
            raise KeyError(f"container {container_id} is not in account {account_id}")
        if listener_id in account.listeners:
            raise ValueError(f"listener {listener_id} already exists in account {account_id}")
        listener = SimListener(listener_id, container_id, status, connector_type, process_name)
        account.listeners[listener_id] = listener
        return listener

    def remove_listener(self, account_id: str, listener_id: str) -> None:
        """Undeploy a listener; it vanishes from the next results."""
        account = self.account(account_id)
        if listener_id not in account.listeners:
            raise KeyError(f"listener {listener_id} is not in account {account_id}")
        del account.listeners[listener_id]

    def set_status(self, account_id: str, listener_id: str, status: str) -> None:
        """Set a listener's status now (effects already due are applied first)."""
        self.apply_due_effects()
        account = self.account(account_id)
        if listener_id not in account.listeners:
            raise KeyError(f"listener {listener_id} is not in account {account_id}")
        account.listeners[listener_id].status = status

    def add_environment(
        self,
        account_id: str,
        name: str,
        *,
        classification: str | None = "PROD",
        environment_id: str | None = None,
    ) -> SimEnvironment:
        """Add an environment; its id defaults to one derived from the account and the name.

        The default id does not draw from the seeded generator, so adding environments leaves
        every other id of the world as it was.
        """
        account = self.account(account_id)
        if environment_id is None:
            environment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"environment:{account_id}/{name}"))
        if environment_id in account.environments:
            raise ValueError(f"environment {environment_id} already exists in account {account_id}")
        environment = SimEnvironment(environment_id, name, classification)
        account.environments[environment_id] = environment
        return environment

    def attach(self, account_id: str, container_id: str, environment_id: str) -> None:
        """Attach a runtime to an environment; attaching it again moves it, as in Boomi."""
        account = self.account(account_id)
        if container_id not in account.containers:
            raise KeyError(f"container {container_id} is not in account {account_id}")
        if environment_id not in account.environments:
            raise KeyError(f"environment {environment_id} is not in account {account_id}")
        account.attachments[container_id] = environment_id

    def detach(self, account_id: str, container_id: str) -> None:
        """Detach a runtime from its environment; KeyError if it is not attached."""
        account = self.account(account_id)
        if account.attachments.pop(container_id, None) is None:
            raise KeyError(f"container {container_id} is not attached to an environment")

    def add_fleet(
        self,
        account_id: str,
        *,
        containers: int,
        listeners_per_container: int,
        unattached_containers: int = 0,
    ) -> None:
        """Give an account a realistic, deterministic fleet.

        Ids are UUIDs from the seeded generator; containers are named like "prod-molecule-1";
        listeners cycle through WSS, Atom Queue, JMS, a connector with a long generated id and
        one without a connector type, and are mostly listening. The account gets a PROD
        environment "Production" and a TEST environment "Test"; each runtime is attached to
        the one its name starts with, except `unattached_containers` more runtimes
        ("spare-atom-1", ...) that are attached to none.
        """
        # A generated connector id like the ones newer Boomi connectors carry.
        generated_connector = f"officialboomi-X{self._rng.randrange(1000, 9999)}C-kafka-prod"
        flavours: list[tuple[str | None, str]] = [
            ("wss", "Orders WSS Listener"),
            ("atomqueue", "Invoice Queue Listener"),
            ("jms", "Shipment JMS Listener"),
            (generated_connector, "Customer Events Kafka Listener"),
            (None, "Legacy EDI Listener"),
        ]
        runtimes = [
            ("prod", "molecule", "MOLECULE"),
            ("prod", "atom", "ATOM"),
            ("test", "molecule", "MOLECULE"),
            ("prod", "cloud", "CLOUD"),
        ]
        environments = {
            "prod": self.add_environment(account_id, "Production", classification="PROD"),
            "test": self.add_environment(account_id, "Test", classification="TEST"),
        }
        numbers: dict[str, int] = {}
        layout = [runtimes[index % len(runtimes)] for index in range(containers)]
        layout += [("spare", "atom", "ATOM")] * unattached_containers
        for environment, kind, runtime_type in layout:
            prefix = f"{environment}-{kind}"
            numbers[prefix] = numbers.get(prefix, 0) + 1
            name = f"{prefix}-{numbers[prefix]}"
            container = self.add_container(
                account_id,
                self.new_id(),
                name,
                type=runtime_type,
                host_name=f"{name}.boomi.example.internal",
            )
            if environment in environments:
                self.attach(
                    account_id, container.container_id, environments[environment].environment_id
                )
            for number in range(listeners_per_container):
                connector_type, process_name = flavours[number % len(flavours)]
                if number >= len(flavours):
                    process_name = f"{process_name} {number // len(flavours) + 1}"
                status = self._rng.choices(["listening", "errored", "paused"], [85, 10, 5])[0]
                self.add_listener(
                    account_id,
                    container.container_id,
                    self.new_id(),
                    status=status,
                    connector_type=connector_type,
                    process_name=process_name,
                )

    # -- sign-ins ------------------------------------------------------------------------------

    def sign_in(self, account: SimAccount, login: str, password: str) -> SimUser | None:
        """The signed-in user, or None for a rejected sign-in, which counts against the user.

        A locked user is rejected even with the right password (and that counts too); the
        ``lockout_after``-th rejection locks it.
        """
        user = self._users.get(login.removeprefix(TOKEN_PREFIX))
        if user is None:
            return None  # nobody to count it against
        if user.locked or not user.accepts(login, password):
            user.rejected_sign_ins += 1
            if user.rejected_sign_ins >= self.lockout_after:
                user.locked = True
            return None
        # Signed in, but into an account that is not the user's: refused, not a failed sign-in.
        return user if account.user is user else None

    def unlock(self, username: str) -> SimUser:
        """What an administrator does for a locked user: unlocked, its count back to zero."""
        user = self.user(username)
        user.locked = False
        user.rejected_sign_ins = 0
        return user

    # -- actions and their delayed effects ---------------------------------------------------

    def accept_action(
        self, account_id: str, container_id: str, listener_id: str | None, action: str
    ) -> None:
        """Log an accepted changeListenerStatus call; it takes effect after the restart delay."""
        self.change_log.append(
            {
                "time": time.time(),
                "account_id": account_id,
                "container_id": container_id,
                "listener_id": listener_id,
                "action": action,
            }
        )
        self._pending.append(
            _PendingEffect(
                self._clock() + self.restart_delay_seconds,
                account_id,
                container_id,
                listener_id,
                action.removesuffix("_all"),
            )
        )

    def apply_due_effects(self) -> None:
        """Apply the accepted changeListenerStatus calls whose delay has passed, in order."""
        if not self._pending:
            return
        now = self._clock()
        due = sorted((e for e in self._pending if e.due <= now), key=lambda e: e.due)
        if not due:
            return
        self._pending = [e for e in self._pending if e.due > now]
        for effect in due:
            account = self._accounts.get(effect.account_id)
            if account is None:
                continue
            for listener in account.listeners.values():
                if listener.container_id != effect.container_id:
                    continue
                if effect.listener_id is not None and listener.listener_id != effect.listener_id:
                    continue
                listener.status = effect_of(effect.action, listener.status)

    # -- reading the world -------------------------------------------------------------------

    def accounts_json(self) -> dict[str, object]:
        """Every account's rate limit, containers and listeners as JSON-ready data."""
        self.apply_due_effects()
        return {
            account.account_id: {
                "rate_limit_rps": account.rate_limit_rps,
                "containers": [asdict(c) for c in account.containers.values()],
                "listeners": [asdict(lst) for lst in account.listeners.values()],
                "environments": [asdict(e) for e in account.environments.values()],
                "attachments": [
                    {
                        "id": attachment_id(container_id, environment_id),
                        "container_id": container_id,
                        "environment_id": environment_id,
                    }
                    for container_id, environment_id in account.attachments.items()
                ],
            }
            for account in self._accounts.values()
        }

    # -- background behaviour for the demo ---------------------------------------------------

    async def flap(self, *, interval_seconds: float, probability: float) -> None:
        """Make the fleet misbehave now and then, until cancelled.

        Every interval, each listening listener fails with ``probability`` (errored, or more
        rarely paused); errored ones recover by themselves with the same probability, and
        paused ones with half of it (someone resumed them), so the demo always has work.
        """
        while True:
            await asyncio.sleep(interval_seconds)
            self.apply_due_effects()
            for account in self._accounts.values():
                for listener in account.listeners.values():
                    draw = self._rng.random()
                    if listener.status == "listening":
                        if draw < probability:
                            listener.status = "errored" if self._rng.random() < 0.8 else "paused"
                    elif listener.status in ("errored", "paused"):
                        recovery = probability if listener.status == "errored" else probability / 2
                        if draw < recovery:
                            listener.status = "listening"
