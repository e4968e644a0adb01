"""Boomi's error answers: the message each of its three body forms carries, made safe to show.

docs/boomi-api.md ("Error answers"): real answers are `{"@type": "Error", "message": ...}`, the
reference and the OpenAPI examples show `{"message": ...}`, and one page shows
`{"error": {"message": ...}}`. Whatever the form, the message ends up in a container's last error,
the landing page, `--once` and the log, so it is cut to one short line and every character that
could forge a log line or hide text (control, format and bidi characters, lone surrogates) is
written as an escape. Pure functions, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

# Enough for Boomi's sentences ("The API is retired or the specified Runtime is currently
# offline.", 66 characters); a longer message is somebody's HTML page or a stack trace.
MAX_MESSAGE_CHARS = 200


def safe_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` on one line: unprintable characters escaped, whitespace runs collapsed, cut to
    `limit` characters (an ellipsis marks the cut)."""
    pieces: list[str] = []
    for char in " ".join(text.split()):
        if char.isprintable():
            pieces.append(char)
        else:
            code = ord(char)
            pieces.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    safe = "".join(pieces)
    return safe if len(safe) <= limit else safe[: limit - 1] + "\u2026"


def error_message(body: object) -> str | None:
    """Boomi's message in an error body of any of its three forms, made safe; None if none."""
    if not isinstance(body, Mapping):
        return None
    message = body.get("message")
    if not isinstance(message, str):
        nested = body.get("error")
        message = nested.get("message") if isinstance(nested, Mapping) else None
    if not isinstance(message, str) or not message.strip():
        return None
    return safe_text(message)


def error_message_in(raw: bytes) -> str | None:
    """Boomi's message in a raw error body (JSON of any of the three forms); None if none."""
    try:
        return error_message(json.loads(raw))
    except (ValueError, RecursionError):
        return None
