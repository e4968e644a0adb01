"""`boomi-listener-exporter --demo`: the exporter, with remediation, against an embedded,
flapping simulator."""

from __future__ import annotations

import asyncio
import contextlib

from exporter.config import Config
from exporter.daemon import Exporter, run_until_stopped
from exporter.signals import stop_on_signals
from exporter.simulator import Simulator, serve
from exporter.websecurity import WebSecurity

DEMO_ACCOUNT = "demo-account"
# A demo value, printed in the banner; a real deployment reads its token from a secret.
DEMO_WEBHOOK_TOKEN = "demo-webhook-token"
DEMO_BANNER = """
Boomi listener exporter demo (Ctrl-C to stop)
  exporter landing page:  {scheme}://localhost:{port}/
  metrics:                {scheme}://localhost:{port}/metrics
  simulated Boomi API:    {base_url}/{account}   (user {username}, password {password})
  simulator state:        {control_url}/__simulator/state
  remediation webhook:    POST {scheme}://localhost:{port}/webhook/alertmanager
                          (Authorization: Bearer {token}; restarts errored listeners)
  remediation decisions:  http://localhost:{port}/api/v1/actions   (the ledger: {ledger})
The fleet flaps now and then: listeners go errored or paused and come back.
Its runtimes are in a PROD and a TEST environment; one is attached to no environment.
"""


def demo_config(base_url: str, sim: Simulator) -> Config:
    """Poll every container of the simulator's demo account every 10 s; remediation enabled."""
    account = sim.accounts[DEMO_ACCOUNT]
    return Config.model_validate(
        {
            "accounts": [
                {
                    "account_id": DEMO_ACCOUNT,
                    "base_url": base_url,
                    "username": account.username,
                    "password": account.password,
                    "max_requests_per_second": 5,
                    "containers": [
                        {"id": container.container_id, "name": container.name}
                        for container in account.containers.values()
                    ],
                }
            ],
            "poll": {"interval_seconds": 10, "result_timeout_seconds": 30},
            "remediation": {
                "enabled": True,
                "dry_run": False,
                "auth": {"bearer_token": DEMO_WEBHOOK_TOKEN},
                "cooldown_seconds": 60,
                "verify_timeout_seconds": 30,
            },
        }
    )


async def _demo(host: str, port: int, security: WebSecurity, storage_path: str | None) -> None:
    # Three runtimes in the PROD and TEST environments, and one attached to none.
    sim = Simulator.with_fleet(
        account_id=DEMO_ACCOUNT,
        containers=3,
        listeners_per_container=4,
        unattached_containers=1,
        result_delay_seconds=1.0,
    )
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    flapping = asyncio.create_task(sim.flap(interval_seconds=15, probability=0.08))
    exporter = Exporter(demo_config(base_url, sim), security=security, storage_path=storage_path)
    stop = stop_on_signals()
    account = sim.accounts[DEMO_ACCOUNT]

    def started(bound: int) -> None:
        print(
            DEMO_BANNER.format(
                port=bound,
                scheme=security.scheme,
                base_url=base_url,
                account=DEMO_ACCOUNT,
                username=account.username,
                password=account.password,
                control_url=base_url.removesuffix("/api/rest/v1"),
                token=DEMO_WEBHOOK_TOKEN,
                ledger=exporter.ledger.path if exporter.ledger else "none",
            ),
            flush=True,
        )

    try:
        await run_until_stopped(exporter, host, port, stop, started)
    finally:
        flapping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flapping
        await runner.cleanup()


def run_demo(
    host: str,
    port: int,
    security: WebSecurity | None = None,
    *,
    storage_path: str | None = None,
) -> int:
    """Run the demo until SIGINT/SIGTERM, serving with `security` (TLS, basic auth); exit 0.
    Its remediation ledger is at `storage_path` (the --storage.path flag), else `data/` in the
    working directory.

    LedgerError if the ledger cannot be opened.
    """
    asyncio.run(_demo(host, port, security or WebSecurity(None), storage_path))
    return 0
