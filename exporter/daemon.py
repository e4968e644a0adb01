"""Wires configuration, Boomi clients, poller, store, metrics and web server into one daemon."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from exporter.boomi import BoomiClient
from exporter.config import AccountConfig, Config
from exporter.metrics import ExporterMetrics
from exporter.poller import Poller, Target
from exporter.remediation import Remediator, add_webhook
from exporter.state import SnapshotStore
from exporter.web import create_app

log = logging.getLogger(__name__)


def targets_from_config(config: Config) -> list[Target]:
    """Every configured container, in configuration order."""
    return [
        Target(account.account_id, container.id, container.name or "")
        for account in config.accounts
        for container in account.containers
    ]


def containers_by_account(config: Config) -> dict[str, frozenset[str]]:
    """The allow-list of remediation: each configured account's container ids."""
    return {
        account.account_id: frozenset(container.id for container in account.containers)
        for account in config.accounts
    }


def client_for(account: AccountConfig, config: Config, metrics: ExporterMetrics) -> BoomiClient:
    """A Boomi client for one configured account, instrumented into `metrics`."""
    return BoomiClient(
        account.account_id,
        base_url=account.base_url,
        username=account.username,
        password=account.password.get_secret_value(),
        max_requests_per_second=account.max_requests_per_second,
        request_timeout_seconds=config.poll.request_timeout_seconds,
        auth_failure_backoff_seconds=account.auth_failure_backoff_seconds,
        on_request=metrics.observe_request,
    )


class Exporter:
    """The running daemon: polls in the background and serves what it learnt over HTTP."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = SnapshotStore()
        self.metrics = ExporterMetrics(self.store)
        self.clients = {
            account.account_id: client_for(account, config, self.metrics)
            for account in config.accounts
        }
        self.poller = Poller(
            self.clients,
            self.store,
            interval_seconds=config.poll.interval_seconds,
            result_timeout_seconds=config.poll.result_timeout_seconds,
        )
        self.remediator: Remediator | None = None
        remediation = config.remediation
        if remediation.enabled:
            self.remediator = Remediator(
                remediation,
                self.clients,
                self.store,
                self.metrics.count_remediation,
                containers=containers_by_account(config),
            )
        remediator = self.remediator
        self.app = create_app(
            self.store,
            self.metrics,
            extra_routes=(lambda app: add_webhook(app, remediator)) if remediator else None,
            client_max_size=remediation.max_body_bytes,
        )
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Start serving HTTP and polling; return the port really bound (for port 0)."""
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = int(self._runner.addresses[0][1])
        self.poller.set_targets(targets_from_config(self.config))
        remediation = self.config.remediation
        if remediation.enabled:
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
        log.info(
            "serving on http://%s:%d/metrics, polling %d containers of %d accounts",
            host or "0.0.0.0",
            bound,
            len(targets_from_config(self.config)),
            len(self.config.accounts),
        )
        return bound

    async def stop(self) -> None:
        """Stop polling and remediating, close the Boomi sessions and the HTTP server."""
        await self.poller.stop()
        if self.remediator is not None:
            await self.remediator.stop()
        await asyncio.gather(*(client.close() for client in self.clients.values()))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def poll_once(config: Config) -> SnapshotStore:
    """Poll every configured container once, concurrently, and return the resulting store."""
    exporter = Exporter(config)
    exporter.store.set_containers(
        (t.account_id, t.container_id, t.name) for t in targets_from_config(config)
    )
    try:
        await asyncio.gather(*(exporter.poller.poll(t) for t in targets_from_config(config)))
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
