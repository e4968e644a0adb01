"""What unauthenticated clients make the web server log: once per kind, one line, no traceback.

aiohttp logs every malformed request at ERROR with a traceback ("Error handling request"), and
asyncio logs every failed accept() when file descriptors run out, with a traceback, once a
second. Anyone who can reach the port could so flood the log. `quiet_client_errors` installs a
filter on those two loggers that turns the first event of each kind into one WARNING line and
drops the repeats, with a count of them at most once an hour. Errors of the exporter's own
handlers keep their traceback: those are bugs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

REPEAT_REPORT_SECONDS = 3600.0
# What asyncio's selector loop says when accept() fails for lack of resources.
_ACCEPT_FAILED = "socket.accept() out of system resource"


class ClientErrorFilter(logging.Filter):
    """Collapses log records caused by clients into one line per kind (see the module doc)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # kind -> (last logged, repeats since)

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass other records untouched; rewrite the first of a kind, drop the repeats."""
        described = _describe(record)
        if described is None:
            return True
        kind, message = described
        now = self._clock()
        logged = self._seen.get(kind)
        if logged is not None and now - logged[0] < REPEAT_REPORT_SECONDS:
            self._seen[kind] = (logged[0], logged[1] + 1)
            return False
        repeats = logged[1] if logged is not None else 0
        self._seen[kind] = (now, 0)
        if repeats:
            message += f" ({repeats} more since the last report)"
        record.msg, record.args = message + "; further ones are not logged for an hour", None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno = min(record.levelno, logging.WARNING)
        record.levelname = logging.getLevelName(record.levelno)
        return True


def _describe(record: logging.LogRecord) -> tuple[str, str] | None:
    """(kind, one line) for a record caused by a client, else None."""
    exception = record.exc_info[1] if record.exc_info else None
    if record.name == "aiohttp.server" and isinstance(exception, HttpProcessingError):
        kind = type(exception).__name__
        return kind, f"web server: refused a malformed request ({kind}, HTTP {exception.code})"
    if record.name == "asyncio" and str(record.msg).startswith(_ACCEPT_FAILED):
        reason = exception.strerror if isinstance(exception, OSError) else None
        kind = f"accept {getattr(exception, 'errno', '')}"
        return kind, (
            "web server: cannot accept connections"
            f" ({reason or 'out of system resources'}); is something holding many open?"
        )
    return None


_FILTER = ClientErrorFilter()


def quiet_client_errors() -> None:
    """Install the filter on aiohttp's server logger and asyncio's logger (once)."""
    for name in ("aiohttp.server", "asyncio"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
