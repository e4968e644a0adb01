"""The signals of the long-running commands (daemon, demo, simulate): one helper for all three."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable


def stop_on_signals(*, on_hangup: Callable[[], None] | None = None) -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets; SIGHUP calls `on_hangup` when one is given.

    Call it from inside the running loop, which the handlers belong to.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if on_hangup is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    return stop
