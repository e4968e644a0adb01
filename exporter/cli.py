"""Command line: argument parsing, logging set-up, signal handling, start and graceful stop.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.check_config import summarize
from exporter.config import Config, ConfigError, load_config, parse_listen_address
from exporter.daemon import Exporter, poll_once, run_until_stopped
from exporter.demo import run_demo
from exporter.environments import describe_environment
from exporter.ledger import LedgerError
from exporter.restart_cli import main as restart_main
from exporter.signals import stop_on_signals
from exporter.simulate_cli import main as simulate_main
from exporter.state import SnapshotStore
from exporter.webconfig import WebConfigError, summarize_web_config
from exporter.websecurity import WebSecurity

log = logging.getLogger("exporter")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9877"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON with time, level, logger and message."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    """Log to stderr in text or JSON; aiohttp's access log stays off."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def build_parser() -> argparse.ArgumentParser:
    """The exporter's flags (the `simulate` subcommand has its own parser)."""
    parser = argparse.ArgumentParser(
        prog="boomi-listener-exporter",
        description="Prometheus exporter for Boomi listener status. "
        "Subcommands: 'simulate --help' (the Boomi API simulator), 'restart --help' (restart "
        "one listener by hand, through the remediation guards).",
    )
    parser.add_argument("--config", metavar="PATH", help="YAML configuration file")
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        help="address to serve /metrics on (default from the config, else 0.0.0.0:9877)",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        metavar="DIR",
        help="directory of the remediation ledger (default from the config, else data/)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="web config file (exporter-toolkit format: TLS, basic auth, headers); default"
        " from the config's web.config_file, else plain HTTP",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="allow POST /-/reload (else it answers 403; SIGHUP always reloads)",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--demo", action="store_true", help="run against an embedded Boomi API simulator"
    )
    mode.add_argument(
        "--check-config", action="store_true", help="validate the config, print a summary, exit"
    )
    mode.add_argument("--once", action="store_true", help="poll every container once, print, exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def print_table(store: SnapshotStore) -> None:
    """The --once output: one row per listener, and one per container that failed."""
    rows = [("CONTAINER", "ENVIRONMENT", "PROCESS", "LISTENER ID", "CONNECTOR", "STATUS")]
    for snapshot in store.containers():
        label = snapshot.container_name or snapshot.container_id
        environment = describe_environment(snapshot.environment, snapshot.environment_known)
        if not snapshot.up:
            rows.append((label, environment, "-", "-", "-", f"POLL FAILED: {snapshot.last_error}"))
            continue
        if not snapshot.listeners:
            rows.append((label, environment, "(no listeners)", "-", "-", "-"))
        for listener in snapshot.listeners:
            name = store.process_names.get((snapshot.account_id, listener.listener_id), "-")
            connector = listener.connector_type or "-"
            rows.append(
                (label, environment, name, listener.listener_id, connector, listener.status)
            )
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[5]]))


def listen_address(args: argparse.Namespace, config: Config | None) -> tuple[str, int]:
    """Host and port: the flag wins over the config file, which wins over the default."""
    if args.listen_address:
        return parse_listen_address(args.listen_address)
    if config is not None:
        return config.web.host, config.web.port
    return parse_listen_address(DEFAULT_LISTEN_ADDRESS)


async def _serve(exporter: Exporter, host: str, port: int) -> None:
    reloads: set[asyncio.Task[tuple[bool, str]]] = set()

    def reload() -> None:
        task = asyncio.create_task(exporter.reload(), name="reload")
        reloads.add(task)  # a reference, so the task is not collected while it runs
        task.add_done_callback(reloads.discard)

    stop = stop_on_signals(on_hangup=reload)
    await run_until_stopped(exporter, host, port, stop, lambda _port: None)


def _problem(what: str, exc: Exception) -> int:
    """Print a configuration problem (one line per key) for the user; the exit code."""
    message = str(exc)
    if "\n" in message:
        message = "\n  " + message.replace("\n", "\n  ")
    print(f"boomi-listener-exporter: {what}: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `boomi-listener-exporter` and `python -m exporter`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        return simulate_main(argv[1:])
    if argv[:1] == ["restart"]:
        setup_logging("warning", "text")
        return restart_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        if args.listen_address:
            parse_listen_address(args.listen_address)
    except ValueError as exc:
        print(f"boomi-listener-exporter: --web.listen-address: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.demo:
        host, port = listen_address(args, None)
        try:
            security = WebSecurity(args.web_config_file)
        except WebConfigError as exc:
            return _problem(f"bad web config file {args.web_config_file}", exc)
        try:
            return run_demo(host, port, security, storage_path=args.storage_path)
        except LedgerError as exc:
            print(f"boomi-listener-exporter: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if not args.config:
        parser.error("--config PATH is required (or --demo)")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _problem("bad configuration", exc)
    if args.once:
        store = asyncio.run(poll_once(config))
        print_table(store)
        return EXIT_OK if all(s.up for s in store.containers()) else EXIT_FAILURE
    # The flag wins over web.config_file (whose relative name is relative to the config file).
    web_path: str | Path | None = args.web_config_file or config.web.config_file
    try:
        security = WebSecurity(web_path)  # the certificate files are read here too
    except WebConfigError as exc:
        return _problem(f"bad web config file {web_path}", exc)
    if args.check_config:
        print(f"Configuration {args.config} is valid.")
        print(summarize(config))
        if web_path is not None:
            print(f"Web config file {web_path} is valid.")
        print(summarize_web_config(security.config))
        return EXIT_OK
    host, port = listen_address(args, config)
    try:
        exporter = Exporter(
            config,
            config_path=args.config,
            security=security,
            enable_lifecycle=args.enable_lifecycle,
            storage_path=args.storage_path,
        )
        asyncio.run(_serve(exporter, host, port))
    except LedgerError as exc:
        # Remediation without its record would forget cooldowns on every restart.
        print(f"boomi-listener-exporter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        log.error("cannot serve on %s:%d: %s", host, port, exc.strerror or exc)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
