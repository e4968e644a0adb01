"""Wires configuration, Boomi clients, poller, fleet, store, metrics, remediation and web server
into one daemon, and applies a reloaded configuration without losing state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from exporter.boomi import OP_QUERY, BoomiClient
from exporter.boomi.credentials import CredentialGates
from exporter.boomi.settings import ClientSettings
from exporter.config import AccountConfig, Config, ConfigError, load_config
from exporter.fleet import FleetRefresher, merge_targets
from exporter.ledger import Entry, Ledger, LedgerError
from exporter.metrics import ExporterMetrics
from exporter.poller import Poller, Target
from exporter.remediation import Remediator, add_webhook
from exporter.secretfile import DEFAULT_INTERVAL_SECONDS, SecretFile
from exporter.state import SnapshotStore
from exporter.watched_secrets import FileSecret, WatchedSecrets, current_webhook_auth
from exporter.web import create_app, start_server
from exporter.webconfig import WebConfigError
from exporter.websecurity import WebSecurity

log = logging.getLogger(__name__)


def containers_by_account(config: Config) -> dict[str, frozenset[str]]:
    """Each configured account's listed container ids."""
    return {
        account.account_id: frozenset(container.id for container in account.containers)
        for account in config.accounts
    }


def _log_interrupted(entries: tuple[Entry, ...]) -> None:
    for entry in entries:
        log.warning(
            "remediation interrupted: %s of listener %s on container %s (account %s), ledger"
            " entry %d received at %s: %s; its listener stays in cooldown from the start",
            entry["action"] or "?",
            entry["listener_id"] or "?",
            entry["container_id"] or "?",
            entry["account_id"] or "?",
            entry["id"],
            entry["received_at"],
            entry["reason"],
        )


class Exporter:
    """The running daemon: polls in the background and serves what it learnt over HTTP.

    With remediation enabled it owns the ledger under `storage.path` (or `storage_path`, the
    --storage.path flag, which wins over the file on every reload), opened at start.
    `security` is the web config in force (default: `web.config_file` of the config, which raises
    WebConfigError when it cannot be used); `enable_lifecycle` is the --web.enable-lifecycle
    flag, on top of `web.enable_lifecycle`; the watcher re-reads the server's certificate files
    every `secret_check_seconds`.
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        security: WebSecurity | None = None,
        enable_lifecycle: bool = False,
        secret_check_seconds: float = DEFAULT_INTERVAL_SECONDS,
        storage_path: str | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.web = security if security is not None else WebSecurity(config.web.config_file)
        self.storage_path = storage_path
        self.ledger: Ledger | None = None
        self.store = SnapshotStore()
        self.metrics = ExporterMetrics(self.store)
        # One for the daemon: accounts of one Boomi user share its count of rejected sign-ins.
        self.gates = CredentialGates()
        self.secrets = WatchedSecrets(
            on_change=self._secret_changed,
            interval_seconds=secret_check_seconds,
            also=self.web.refreshables,
        )
        self.secrets.follow(config)
        self.clients: dict[str, BoomiClient] = {
            account.account_id: self._build_client(ClientSettings.from_config(account, config))
            for account in config.accounts
        }
        for account in config.accounts:
            self._probe_with_status(account)
        self.metrics.credentials.accounts = lambda: (
            (account_id, client.calls_stopped) for account_id, client in self.clients.items()
        )
        self.poller = Poller(
            self.clients,
            self.store,
            interval_seconds=config.poll.interval_seconds,
            result_timeout_seconds=config.poll.result_timeout_seconds,
        )
        self.refreshers: dict[str, FleetRefresher] = {}
        self._targets: dict[str, list[Target]] = {}
        self.remediator = Remediator(
            config.remediation,
            self.clients,
            self.store,
            self.metrics.count_remediation,
            containers=self.polled_containers,
        )
        self.remediator.auth_source = lambda: current_webhook_auth(
            self.remediator.config.auth, self.secrets
        )
        self.app = create_app(
            self.store,
            self.metrics,
            extra_routes=lambda app: add_webhook(app, self.remediator),
            reload=self.reload if config_path is not None else None,
            notices=self.notices,
            ledger=lambda: self.ledger,
            lifecycle=enable_lifecycle or config.web.enable_lifecycle,
        )
        self.web.install(self.app)
        # Renewed certificates (cert-manager) are served without a restart.
        self._runner: web.AppRunner | None = None
        self._reloading = asyncio.Lock()

    def _build_client(self, settings: ClientSettings) -> BoomiClient:
        password = None
        if settings.password_file is not None:
            password = FileSecret(self.secrets.file(settings.password_file), settings.password)
        return settings.build(
            on_request=self.metrics.observe_request, gates=self.gates, password=password
        )

    def _probe_with_status(self, account: AccountConfig) -> None:
        # Listed containers are polled from the start: their ListenerStatus calls prove a new
        # secret (see exporter.boomi.credentials).
        self.clients[account.account_id].credentials.status_probes = bool(account.containers)

    def _secret_changed(self, file: SecretFile) -> None:
        # A new Boomi secret is tried at once: the account's containers are polled now rather
        # than at their next interval.
        for account in self.config.accounts:
            if account.password_file is not None and Path(account.password_file) == file.path:
                self.poller.restart_account(account.account_id)

    def notices(self) -> list[str]:
        """What the landing page says above the containers: stopped calls, bad secret files."""
        stopped = (client.refusal(OP_QUERY) for client in self.clients.values())
        refusals = [refusal for refusal in stopped if refusal is not None]
        return [*dict.fromkeys(refusals), *self.secrets.problems()]

    def polled_containers(self) -> Mapping[str, frozenset[str]]:
        """Each account's containers being polled now (listed and discovered): the allow-list."""
        return {
            account_id: frozenset(target.container_id for target in targets)
            for account_id, targets in self._targets.items()
        }

    def _set_account_targets(self, account_id: str, targets: list[Target]) -> None:
        self._targets[account_id] = targets
        self.poller.set_targets(t for ts in self._targets.values() for t in ts)

    def _refresher(
        self, account: AccountConfig, config: Config, discovered: list[Target] | None = None
    ) -> FleetRefresher:
        return FleetRefresher(
            account,
            config.names,
            self.clients[account.account_id],
            self.store,
            self._set_account_targets,
            names_check_seconds=min(15.0, config.poll.interval_seconds),
            discovered=discovered or (),
        )

    async def open_ledger(self, config: Config) -> None:
        """Open the ledger if `config` enables remediation and it is not open yet.

        LedgerError (naming the path) if it cannot be opened for writing or another process
        owns it. The entries a previous process left unfinished are logged, one line each.
        """
        if not config.remediation.enabled or self.ledger is not None:
            return
        directory = self.storage_path or config.storage.path
        ledger = await asyncio.to_thread(
            Ledger.open, directory, retention_days=config.storage.retention_days
        )
        _log_interrupted(ledger.interrupted)
        log.info("remediation ledger at %s", ledger.path)
        self.ledger = self.remediator.ledger = ledger

    async def start(self, host: str, port: int) -> int:
        """Start serving HTTP and polling; return the port really bound (for port 0).

        LedgerError if remediation needs the ledger and it cannot be opened; nothing runs then.
        """
        try:
            await self.open_ledger(self.config)
        except LedgerError:
            await self.stop()
            raise
        self._runner, bound = await start_server(
            self.app, host, port, ssl_context=self.web.ssl_context
        )
        self.secrets.start()
        for account in self.config.accounts:
            refresher = self._refresher(account, self.config)
            self.refreshers[account.account_id] = refresher
            refresher.start()
        self._log_remediation()
        self._warn_insecure()
        log.info(
            "serving on %s://%s:%d/metrics (%s), polling %d containers of %d accounts",
            self.web.scheme,
            host or "0.0.0.0",
            bound,
            self.web.describe(),
            sum(len(targets) for targets in self._targets.values()),
            len(self.config.accounts),
        )
        return bound

    def _warn_insecure(self) -> None:
        # At start and at every reload, so the setting is never forgotten in a quiet log.
        for account in self.config.accounts:
            if account.tls_config.insecure_skip_verify:
                log.warning(
                    "account %s: tls_config.insecure_skip_verify is true: Boomi's certificate is"
                    " NOT checked, so anyone on the way can read the Boomi credentials",
                    account.account_id,
                )

    def _log_remediation(self) -> None:
        remediation = self.config.remediation
        if not remediation.enabled:
            return
        if remediation.auth == "none":
            log.warning(
                "remediation webhook is enabled WITHOUT authentication (auth: none): anyone"
                " who can reach this port can make it restart listeners"
            )
        log.info(
            "remediation webhook enabled at /webhook/alertmanager%s; actions %s",
            " in dry-run mode (no changes are made)" if remediation.dry_run else "",
            ", ".join(remediation.allowed_actions),
        )

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config file; apply it if valid, else keep the running one. (ok, message)"""
        if self.config_path is None:
            return False, "no configuration file to reload (demo mode)"
        async with self._reloading:
            try:
                new = load_config(self.config_path)
                self.web.reload()  # the web config file's users and headers
            except (ConfigError, WebConfigError) as exc:
                self.metrics.config_reload_successful.set(0)
                where = "web config file: " if isinstance(exc, WebConfigError) else ""
                log.error("reload refused, keeping the running configuration: %s%s", where, exc)
                return False, f"{where}{exc}"
            try:
                await self.open_ledger(new)  # remediation enabled by this reload
            except LedgerError as exc:
                self.metrics.config_reload_successful.set(0)
                log.error("reload refused, keeping the running configuration: %s", exc)
                return False, str(exc)
            await self._apply(new)
            self._warn_insecure()
            self.metrics.config_reload_successful.set(1)
            self.metrics.config_reload_time.set_to_current_time()
            log.info("configuration reloaded from %s", self.config_path)
            return True, "configuration reloaded"

    async def _apply(self, new: Config) -> None:
        old = self.config
        old_accounts = {account.account_id: account for account in old.accounts}
        new_ids = {account.account_id for account in new.accounts}
        retired: list[BoomiClient] = []
        self.secrets.follow(new)
        for account_id in set(old_accounts) - new_ids:
            await self.refreshers.pop(account_id).stop()
            self._targets.pop(account_id, None)
            retired.append(self.clients.pop(account_id))
        self.poller.configure(
            interval_seconds=new.poll.interval_seconds,
            result_timeout_seconds=new.poll.result_timeout_seconds,
        )
        restarted: list[str] = []
        for account in new.accounts:
            previous = old_accounts.get(account.account_id)
            settings = ClientSettings.from_config(account, new)
            client_changed = (
                previous is None or ClientSettings.from_config(previous, old) != settings
            )
            if client_changed:
                client = self._build_client(settings)
                if previous is not None:
                    old_client = self.clients[account.account_id]
                    retired.append(old_client)
                    restarted.append(account.account_id)
                    carry_over_window(old_client, client)
                self.clients[account.account_id] = client
            else:
                # A reload is when calls Boomi refused for a missing privilege are tried again.
                self.clients[account.account_id].reset_privileges()
            self._probe_with_status(account)
            if client_changed or previous != account or old.names != new.names:
                refresher = self.refreshers.pop(account.account_id, None)
                if refresher is not None:
                    await refresher.stop()
                # Listed containers at once; discovered ones stay until discovery itself (an
                # Atom query that succeeds) says otherwise.
                kept = [
                    t for t in self._targets.get(account.account_id, [])
                    if t.container_id not in {c.id for c in account.containers}
                    and account.discovery.enabled
                ]  # fmt: skip
                self._targets[account.account_id] = merge_targets(account, None) + kept
                refresher = self._refresher(account, new, kept)
                self.refreshers[account.account_id] = refresher
                refresher.start()
        self.poller.set_targets(t for ts in self._targets.values() for t in ts)
        for account_id in restarted:
            self.poller.restart_account(account_id)
        await asyncio.gather(*(client.close() for client in retired))
        self.remediator.configure(new.remediation)
        if new.web.listen_address != old.web.listen_address:
            log.warning(
                "web.listen_address changed to %s: restart the exporter to apply it",
                new.web.listen_address,
            )
        if new.storage != old.storage and self.ledger is not None:
            log.warning("storage changed: restart the exporter to apply it")
        for key in ("config_file", "enable_lifecycle"):
            if getattr(new.web, key) != getattr(old.web, key):
                log.warning("web.%s changed: restart the exporter to apply it", key)
        self.config = new
        if new.remediation != old.remediation:
            self._log_remediation()

    async def stop(self) -> None:
        """Stop polling and remediating, close the Boomi sessions and the HTTP server."""
        # First, and without awaiting: an alert that arrives while the rest stops starts nothing.
        self.remediator.begin_stop()
        await self.secrets.stop()
        await asyncio.gather(*(refresher.stop() for refresher in self.refreshers.values()))
        await self.poller.stop()
        await self.remediator.stop()
        await asyncio.gather(*(client.close() for client in self.clients.values()))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.ledger is not None:
            # After the server: a late delivery is still recorded (or rejected, not lost).
            for entry in await self.ledger.close():
                log.info("ledger entry %d marked interrupted", entry["id"])


def carry_over_window(old: BoomiClient, new: BoomiClient) -> None:
    """Give the new client of an account the old one's rate limiter, set to the new budget.

    Boomi still counts the old client's requests of the last second; a new, empty window let a
    reload send twice the budget (10 requests in 0.95 s against 5).
    """
    limiter = old.limiter
    limiter.set_rate(new.limiter.rate)
    new.limiter = limiter


async def poll_once(config: Config) -> SnapshotStore:
    """Poll every configured container once, concurrently, name what was found; the store."""
    exporter = Exporter(config, security=WebSecurity(None))  # no server: no web config to read
    for client in exporter.clients.values():
        # The Atom query goes first here, and alone: it is the one to try the credentials.
        client.credentials.status_probes = False
    found = {account.account_id: merge_targets(account, None) for account in config.accounts}
    exporter.store.set_containers(
        (t.account_id, t.container_id, t.name) for ts in found.values() for t in ts
    )
    refreshers = [
        FleetRefresher(
            account,
            config.names,
            exporter.clients[account.account_id],
            exporter.store,
            found.__setitem__,
        )
        for account in config.accounts
    ]
    try:
        # Container names and OFFLINE status first (a failure here only costs the names).
        await asyncio.gather(*(refresher.refresh_containers() for refresher in refreshers))
        targets = [t for ts in found.values() for t in ts]
        exporter.store.set_containers((t.account_id, t.container_id, t.name) for t in targets)
        await asyncio.gather(*(exporter.poller.poll(t) for t in targets))
        if config.names.enabled:
            await asyncio.gather(*(refresher.refresh_names() for refresher in refreshers))
    finally:
        await asyncio.gather(*(client.close() for client in exporter.clients.values()))
    return exporter.store


async def run_until_stopped(
    exporter: Exporter, host: str, port: int, stop: asyncio.Event, on_started: Callable[[int], None]
) -> None:
    """Run the exporter until `stop` is set, then shut it down."""
    bound = await exporter.start(host, port)
    on_started(bound)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await exporter.stop()
