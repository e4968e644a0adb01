"""`boomi-listener-exporter simulate`: run the Boomi API simulator alone, until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections.abc import Sequence

from exporter.config import parse_listen_address
from exporter.signals import stop_on_signals
from exporter.simulator import Simulator, describe, serve


def build_parser() -> argparse.ArgumentParser:
    """Flags of the simulate subcommand."""
    parser = argparse.ArgumentParser(
        prog="boomi-listener-exporter simulate",
        description="Serve a fake Boomi Platform API (ListenerStatus, changeListenerStatus, "
        "Atom, Process) with a control API under /__simulator/.",
    )
    parser.add_argument("--listen", default="127.0.0.1:9878", metavar="HOST:PORT")
    parser.add_argument("--account-id", default="demo-account")
    parser.add_argument("--containers", type=int, default=3, metavar="N")
    parser.add_argument("--listeners-per-container", type=int, default=4, metavar="M")
    parser.add_argument("--rate-limit-rps", type=float, default=10.0, metavar="R")
    parser.add_argument("--result-delay-seconds", type=float, default=1.0, metavar="S")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--username", default="demo@example.com")
    parser.add_argument("--password", default="demo-password")
    parser.add_argument(
        "--lockout-after",
        type=int,
        default=6,
        metavar="N",
        help="lock a user after N rejected sign-ins, as Boomi does after six (default 6)",
    )
    parser.add_argument(
        "--tls-cert", metavar="PATH", help="serve HTTPS with this PEM certificate (and chain)"
    )
    parser.add_argument("--tls-key", metavar="PATH", help="the certificate's unencrypted PEM key")
    return parser


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server SSLContext for the simulator; ValueError says what is wrong (no traceback)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except ssl.SSLError as exc:
        raise ValueError(f"cannot load them: {exc.reason or 'not valid PEM'}") from None
    except OSError as exc:
        raise ValueError(f"cannot read them: {exc.strerror or 'read error'}") from None
    return context


async def _run(sim: Simulator, host: str, port: int, context: ssl.SSLContext | None) -> None:
    runner, base_url = await serve(sim, host, port, ssl_context=context)
    print(describe(sim, base_url), flush=True)
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str]) -> int:
    """Run the simulator; exit 2 on bad flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        parser.error(f"--listen: {exc}")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    context = None
    if args.tls_cert is not None:
        try:
            context = server_context(args.tls_cert, args.tls_key)
        except ValueError as exc:
            parser.error(f"--tls-cert/--tls-key: {exc}")
    if args.containers < 0 or args.listeners_per_container < 0 or args.rate_limit_rps <= 0:
        parser.error(
            "--containers and --listeners-per-container must be >= 0, --rate-limit-rps > 0"
        )
    if args.lockout_after < 1:
        parser.error("--lockout-after must be at least 1")
    sim = Simulator.with_fleet(
        account_id=args.account_id,
        containers=args.containers,
        listeners_per_container=args.listeners_per_container,
        seed=args.seed,
        rate_limit_rps=args.rate_limit_rps,
        result_delay_seconds=args.result_delay_seconds,
        username=args.username,
        password=args.password,
        lockout_after=args.lockout_after,
    )
    asyncio.run(_run(sim, host or "127.0.0.1", port, context))
    return 0
