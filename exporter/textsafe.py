"""Text from outside (a webhook payload, a config file) made safe to print on one line.

A newline in an alert's fingerprint forged whole log lines, and a right-to-left override in a
container name reversed what `--check-config` showed. `printable` writes every such character
as an escape, so the text stays on one line and reads as it is.
"""

from __future__ import annotations


def _escaped(character: str) -> str:
    if character == "\\":
        return "\\\\"
    if character.isprintable():
        return character
    return character.encode("unicode_escape", errors="backslashreplace").decode("ascii")


def printable(text: str) -> str:
    """`text` with newlines, other controls, bidi overrides, lone surrogates and backslashes
    escaped (`\\n`, `\\u202e`, `\\\\`); printable text, spaces included, is left as it is."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escaped(character) for character in text)
