"""The fault soak of tests/test_reliability.py, for as long and as wide as you like.

    python bench/soak.py --duration 600 --containers 50

Runs the exporter against the simulator over loopback with every kind of fault injected,
listener statuses flipping, and a wrong-password account; checks every /metrics scrape
against what the simulator ever said; samples memory; stops the faults and measures how long
until every container is fresh again. Prints a report (and JSON with --json); exits 1 if any
problem was found. Record results in bench/SOAK.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_reliability import SoakSettings, run_soak


def main() -> int:
    defaults = SoakSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults")
    parser.add_argument("--containers", type=int, default=defaults.containers)
    parser.add_argument("--listeners", type=int, default=defaults.listeners_per_container)
    parser.add_argument("--interval", type=float, default=defaults.interval_seconds)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--no-trace", action="store_true", help="skip tracemalloc (RSS only, less overhead)"
    )
    parser.add_argument(
        "--no-long-retry-after",
        action="store_true",
        help="leave out the first answer's 503 with Retry-After: 86400 (see SoakSettings)",
    )
    parser.add_argument(
        "--error-latency",
        type=float,
        default=0.2,
        help="seconds every 5xx and 503 answer waits (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="also print the report as JSON")
    args = parser.parse_args()
    settings = SoakSettings(
        fault_seconds=args.duration,
        containers=args.containers,
        listeners_per_container=args.listeners,
        interval_seconds=args.interval,
        fault_rate=args.fault_rate,
        seed=args.seed,
        trace_memory=not args.no_trace,
        long_retry_after=not args.no_long_retry_after,
        error_latency_seconds=args.error_latency,
    )
    print(f"machine: {platform.platform()}, Python {platform.python_version()}", flush=True)
    report = asyncio.run(run_soak(settings, progress=lambda line: print(line, flush=True)))
    print(report.summary())
    if args.json:
        print(json.dumps(dataclasses.asdict(report), default=str))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
