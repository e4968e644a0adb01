"""`boomi-listener-exporter restart`: an operator restarts (pauses, resumes) one listener by hand.

It goes through the remediation guards but the alert: the container must be configured, the
action allowed, the listener's current status must call for it (check-before-act), `dry_run` is
honoured, and the result is verified. It shows what it will do and asks before doing it.

It goes through the same ledger as the daemon (`storage.path`, or `--storage.path`), so the
daemon's cooldowns and budget apply to it and its action is on record (source `cli`). While a
daemon owns the ledger, the command is its guest (it writes under SQLite's own lock, and marks
nothing of the daemon's `interrupted`); with no daemon running it owns the ledger for as long as
it runs. A ledger it cannot open for writing is exit 2: no action without a record.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from exporter.boomi import BoomiError
from exporter.boomi.settings import ClientSettings
from exporter.boomi.shapes import REMEDIATION_ACTIONS
from exporter.config import ConfigError, load_config
from exporter.daemon import containers_by_account
from exporter.ledger import Ledger, LedgerError
from exporter.metrics import ExporterMetrics
from exporter.remediation import ActionRequest, Remediator, precondition_met
from exporter.state import SnapshotStore

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """Flags of the restart subcommand."""
    parser = argparse.ArgumentParser(
        prog="boomi-listener-exporter restart",
        description="Restart, pause or resume one Boomi listener through the same guards as "
        "the Alertmanager webhook, and verify the result.",
    )
    parser.add_argument("--config", required=True, metavar="PATH")
    parser.add_argument("--container", required=True, metavar="ID", help="container id")
    parser.add_argument("--listener", required=True, metavar="ID", help="listener (process) id")
    parser.add_argument("--action", choices=REMEDIATION_ACTIONS, default="restart")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        metavar="DIR",
        help="the exporter's ledger directory (default from the config, else data/)",
    )
    return parser


async def _run(args: argparse.Namespace, confirm: Callable[[str], bool]) -> int:
    config = load_config(args.config)
    containers = containers_by_account(config)
    account = next((a for a in config.accounts if args.container in containers[a.account_id]), None)
    if account is None:
        print(f"container {args.container} is not in the configuration", file=sys.stderr)
        return EXIT_USAGE
    if args.action not in config.remediation.allowed_actions:
        print(
            f"action {args.action} is not in remediation.allowed_actions"
            f" ({', '.join(config.remediation.allowed_actions)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        ledger = await asyncio.to_thread(
            Ledger.open,
            args.storage_path or config.storage.path,
            retention_days=config.storage.retention_days,
            guest_when_owned=True,
        )
    except LedgerError as exc:
        print(f"cannot record the action, so nothing is done: {exc}", file=sys.stderr)
        return EXIT_USAGE
    metrics = ExporterMetrics(SnapshotStore())
    client = ClientSettings.from_config(account, config).build(on_request=metrics.observe_request)
    outcomes: list[str] = []
    remediator = Remediator(
        config.remediation,
        {account.account_id: client},
        SnapshotStore(),
        lambda _labels, outcome: outcomes.append(outcome),
        containers=lambda: containers,
        ledger=ledger,
    )
    try:
        listeners = await client.fetch_listener_statuses(
            args.container,
            args.listener,
            result_timeout_seconds=config.poll.result_timeout_seconds,
            urgent=True,
        )
        status = next(
            (item.status for item in listeners if item.listener_id == args.listener), None
        )
        where = (
            f"listener {args.listener} on container {args.container} (account {account.account_id})"
        )
        if status is None:
            print(f"Boomi does not report {where}; nothing to do.")
            return EXIT_FAILURE
        restart_when = frozenset(config.remediation.restart_when)
        if not precondition_met(args.action, status, restart_when):
            print(f"{where} is {status}: a {args.action} is not needed; nothing done.")
            return EXIT_FAILURE
        mode = " (dry run: remediation.dry_run is true, nothing will change)"
        plan = (
            f"Will {args.action} {where}, now {status}{mode if config.remediation.dry_run else ''}."
        )
        print(plan)
        if not args.yes and not confirm("Proceed? [y/N] "):
            print("Cancelled.")
            return EXIT_FAILURE
        outcome, why, task = await remediator.submit_request(
            ActionRequest(account.account_id, args.container, args.listener, args.action, "manual")
        )
        if task is None:
            print(f"Outcome: {outcome}: {why}")
            return EXIT_FAILURE
        await task
    except BoomiError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await client.close()
        await ledger.close()
    outcome = outcomes[-1] if outcomes else "failed"
    print(f"Outcome: {outcome} (recorded in {ledger.path})")
    return EXIT_OK if outcome in ("recovered", "dry_run") else EXIT_FAILURE


def _ask(prompt: str) -> bool:
    if not sys.stdin.isatty():
        print("Not a terminal: pass --yes to confirm.", file=sys.stderr)
        return False
    return input(prompt).strip().lower() in ("y", "yes")


def main(argv: Sequence[str]) -> int:
    """Run the restart subcommand; exit 0 when the listener ended where the action aimed."""
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args, _ask))
    except ConfigError as exc:
        print(f"boomi-listener-exporter: bad configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
