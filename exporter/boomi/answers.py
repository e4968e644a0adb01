"""Reading Boomi's HTTP answers defensively: a bound on their size, and redirects shown safely.

Kept apart from the client's request engine so that both rules read in one place. One answer
of 300 MB took the process to 918 MiB of RSS before the bound; a redirect (never followed: it
would carry the account's credentials) is named without its credentials, query or control
characters.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from exporter.boomi.shapes import clean_text

# The largest answer read: a page of 100 runtimes is about 50 KiB.
MAX_ANSWER_BYTES = 32 * 2**20


async def read_bounded(response: aiohttp.ClientResponse) -> bytes | None:
    """The answer's body, or None as soon as it is known to exceed MAX_ANSWER_BYTES."""
    if response.content_length is not None and response.content_length > MAX_ANSWER_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(2**16):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def shown_location(location: str | None) -> str:
    """Where a redirect pointed, for a message: no credentials, query or control characters."""
    if not location:
        return "an unnamed place (no Location header)"
    try:
        parts = urlsplit(location)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    shown = f"{parts.scheme}://{host}{port}{parts.path}" if host else parts.path
    shown = clean_text(shown)[:200]
    return shown.encode("unicode_escape").decode("ascii") or "/"
