"""Run the benchmarks from the repo root: `python -m bench.run SUBCOMMAND`.

Each subcommand prints Markdown tables and writes bench/results/<subcommand>.json with the
machine, the parameters and every raw measurement. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bench import common, firstpicture, floor, memcpu, memory, poll, remediation, scrape, scrape_tls

VARIANTS = ["current", "static", "static-stream"]

Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]


async def _poll(args: argparse.Namespace) -> dict[str, Any]:
    return await poll.run(
        containers=args.containers,
        rate_limit=args.rate_limit,
        budget=args.budget,
        delays=args.delays,
        repeat=args.repeat,
        cycles=args.cycles,
        naive_sample=args.naive_sample,
        interval=args.interval,
        seed=args.seed,
        faults=dict(args.fault),
    )


def _fault(text: str) -> tuple[str, float]:
    """A --fault NAME=RATE argument: a field of the simulator's Faults and its rate."""
    name, _, rate = text.partition("=")
    try:
        return name, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=RATE, not {text!r}") from None


async def _scrape(args: argparse.Namespace) -> dict[str, Any]:
    return await scrape.run(
        containers=args.containers,
        listeners=args.listeners,
        requests=args.requests,
        max_seconds=args.max_seconds,
        variants=args.variants,
        changed_per_scrape=args.changed_per_scrape,
        flip_every=args.flip_every,
        pause=args.pause,
    )


async def _scrape_tls(args: argparse.Namespace) -> dict[str, Any]:
    return await scrape_tls.run(
        containers=args.containers,
        listeners=args.listeners,
        requests=args.requests,
        rounds=args.rounds,
        changed_per_scrape=args.changed_per_scrape,
    )


async def _memcpu(args: argparse.Namespace) -> dict[str, Any]:
    return await memcpu.run(
        containers=args.containers,
        listeners=args.listeners,
        cycles=args.cycles,
        budget=args.budget,
        profile=args.profile,
    )


async def _first_picture(args: argparse.Namespace) -> dict[str, Any]:
    return await firstpicture.run(
        fleets=args.fleets,
        rps=args.rate_limit,
        interval=args.interval,
        repeat=args.repeat,
        seed=args.seed,
    )


async def _floor(args: argparse.Namespace) -> dict[str, Any]:
    return await floor.run(
        containers=args.containers,
        listeners=args.listeners,
        rounds=args.rounds,
        requests=args.requests,
        polling=args.polling,
    )


async def _memory(args: argparse.Namespace) -> dict[str, Any]:
    return memory.run(containers=args.containers, listeners=args.listeners, rounds=args.rounds)


async def _remediation(args: argparse.Namespace) -> dict[str, Any]:
    return await remediation.run(
        rounds=args.rounds,
        alerts=args.alerts,
        storm_size=args.storm,
        repeat=args.repeat,
        directory=args.dir,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    poll = sub.add_parser("poll", help="targets 1-2: full-cycle throughput vs a naive loop")
    poll.add_argument("--containers", type=int, default=200)
    poll.add_argument("--rate-limit", type=float, default=10.0, help="simulator's limit per s")
    poll.add_argument("--budget", type=float, default=10.0, help="max_requests_per_second")
    poll.add_argument("--delays", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    poll.add_argument("--repeat", type=int, default=3, help="exporter runs per delay")
    poll.add_argument("--cycles", type=int, default=2, help="cycles per run (1 = cold only)")
    poll.add_argument("--naive-sample", type=int, default=20, help="0 skips the naive loop")
    poll.add_argument("--interval", type=float, default=50.0, help="poll.interval_seconds")
    poll.add_argument("--seed", type=int, default=1)
    poll.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="NAME=RATE",
        help="a simulator fault for the whole run, e.g. first_get_in_progress_rate=1",
    )
    poll.add_argument("--label", default="", help="write results/poll-LABEL.json")

    scrape = sub.add_parser("scrape", help="target 3: /metrics latency with 10,000 listeners")
    scrape.add_argument("--containers", type=int, default=1000)
    scrape.add_argument("--listeners", type=int, default=10, help="per container")
    scrape.add_argument("--requests", type=int, default=200, help="per scraper and format")
    scrape.add_argument("--max-seconds", type=float, default=40.0, help="per scraper and format")
    scrape.add_argument(
        "--variants",
        nargs="+",
        default=["current"],
        choices=VARIANTS,
    )
    scrape.add_argument("--label", default="", help="write results/scrape-LABEL.json")
    scrape.add_argument(
        "--changed-per-scrape",
        type=int,
        default=250,
        help="containers refreshed between two scrapes (1,000 per 60 s, scraped every 15 s)",
    )
    scrape.add_argument(
        "--flip-every", type=float, default=30.0, help="seconds between status changes; 0: none"
    )
    scrape.add_argument(
        "--pause", type=float, default=0.2, help="seconds between scrapes (polling scenario)"
    )

    secure = sub.add_parser(
        "scrape-tls", help="target 3 over TLS + basic auth, against plain HTTP in the same run"
    )
    secure.add_argument("--containers", type=int, default=1000)
    secure.add_argument("--listeners", type=int, default=10, help="per container")
    secure.add_argument("--requests", type=int, default=100, help="per scraper and pattern")
    secure.add_argument("--rounds", type=int, default=2, help="plain/TLS alternations")
    secure.add_argument(
        "--changed-per-scrape", type=int, default=250, help="0: the store does not change"
    )
    secure.add_argument("--label", default="", help="write results/scrape-tls-LABEL.json")

    memcpu = sub.add_parser("memcpu", help="targets 4-5: RSS over 10 cycles, CPU per cycle")
    memcpu.add_argument("--containers", type=int, default=1000)
    memcpu.add_argument("--listeners", type=int, default=10, help="per container")
    memcpu.add_argument("--cycles", type=int, default=10)
    memcpu.add_argument("--budget", type=float, default=100.0, help="max_requests_per_second")
    memcpu.add_argument("--profile", metavar="FILE", help="write cProfile stats of cycles 2..")
    memcpu.add_argument("--label", default="", help="write results/memcpu-LABEL.json")

    first = sub.add_parser(
        "first-picture", help="issue 18: start to the first complete picture, per account"
    )
    first.add_argument(
        "--fleets",
        nargs="+",
        default=["1x50", "1x200", "1x1000", "5x200"],
        help="AxN: A accounts of N containers, each account its own rate limit",
    )
    first.add_argument("--rate-limit", type=float, default=10.0, help="per account, both sides")
    first.add_argument("--interval", type=float, default=600.0, help="poll.interval_seconds")
    first.add_argument("--repeat", type=int, default=1, help="runs per fleet")
    first.add_argument("--seed", type=int, default=1)
    first.add_argument("--label", default="", help="write results/first-picture-LABEL.json")

    floor = sub.add_parser("floor", help="issue 18: /metrics against a static server, RSS")
    floor.add_argument("--containers", type=int, nargs="+", default=[1000])
    floor.add_argument("--listeners", type=int, default=10, help="per container")
    floor.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    floor.add_argument("--requests", type=int, default=40, help="per scraper, format, round")
    floor.add_argument(
        "--polling", action=argparse.BooleanOptionalAction, default=True,
        help="also the polling-store scenario",
    )  # fmt: skip
    floor.add_argument("--label", default="", help="write results/floor-LABEL.json")

    memory = sub.add_parser("memory", help="issue 18: where 10,000 listeners' memory goes")
    memory.add_argument("--containers", type=int, default=1000)
    memory.add_argument("--listeners", type=int, default=10, help="per container")
    memory.add_argument("--rounds", type=int, default=20, help="rounds of polls and scrapes")
    memory.add_argument("--label", default="", help="write results/memory-LABEL.json")

    remediation = sub.add_parser("remediation", help="target 6: webhook latency, restart delay")
    remediation.add_argument("--rounds", type=int, default=40, help="webhook posts timed")
    remediation.add_argument("--alerts", type=int, default=50, help="alerts per payload")
    remediation.add_argument("--storm", type=int, default=200, help="posts per storm")
    remediation.add_argument("--repeat", type=int, default=3, help="storms per scenario")
    remediation.add_argument(
        "--dir", default=None, help="where the on-disk ledgers go (default: the system's temp)"
    )

    sub.add_parser("all", help="every benchmark with its defaults")
    # Internal: the /metrics server of the scrape benchmark, in its own process.
    server = sub.add_parser("scrape-server", help=argparse.SUPPRESS)
    server.add_argument("--containers", type=int, default=1000)
    server.add_argument("--listeners", type=int, default=10)
    server.add_argument("--variant", choices=VARIANTS, default="current")
    server.add_argument("--churn", type=float, default=0.0)
    server.add_argument("--flip-every", type=float, default=0.0)
    server.add_argument("--web-config", default=None, help="a --web.config.file (TLS, users)")
    return parser


RUNNERS: dict[str, Runner] = {
    "poll": _poll,
    "scrape": _scrape,
    "scrape-tls": _scrape_tls,
    "memcpu": _memcpu,
    "remediation": _remediation,
    "memory": _memory,
    "first-picture": _first_picture,
    "floor": _floor,
}


def _run_one(name: str, args: argparse.Namespace) -> None:
    info = common.machine_info()
    print(f"== {name}: {info['cpu_model']}, {info['nproc']} CPUs, Python {info['python']}")
    print(f"   load average at start {info['loadavg_start']:.2f}", flush=True)
    result = asyncio.run(RUNNERS[name](args))
    common.finish_run(info)
    document: dict[str, Any] = {
        "benchmark": name,
        "command": "python -m bench.run " + " ".join(sys.argv[1:]),
    }
    document |= {"machine": info, **result}
    label = getattr(args, "label", "")
    path = common.write_json(f"{name}-{label}" if label else name, document)
    print(f"   load average at end {info['loadavg_end']:.2f}; wrote {path}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "scrape-server":
        scrape.serve_forever(args)
        return 0
    if args.command == "all":
        # Each in a fresh process: memory measured after another benchmark would include
        # what that one left in the heap.
        failed = 0
        for name in RUNNERS:
            done = subprocess.run([sys.executable, "-m", "bench.run", name], check=False)
            failed += done.returncode != 0
        return 1 if failed else 0
    _run_one(args.command, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
