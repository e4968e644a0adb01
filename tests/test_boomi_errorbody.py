"""Boomi's error bodies: the message of each of the three forms, shortened and escaped."""

from __future__ import annotations

import pytest

from exporter.boomi.errorbody import MAX_MESSAGE_CHARS, error_message, error_message_in, safe_text

OFFLINE = "The API is retired or the specified Runtime is currently offline."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"@type": "Error", "message": OFFLINE}, OFFLINE),  # what real answers look like
        ({"message": OFFLINE}, OFFLINE),  # the reference's and the OpenAPI examples' form
        ({"error": {"message": OFFLINE}}, OFFLINE),  # once in the reference
        ({"message": "  two\nlines\r\n and\ttabs "}, "two lines and tabs"),
        ({"message": "ok\x1b[31m red \u202eevil\udc80"}, "ok\\x1b[31m red \\u202eevil\\udc80"),
        ({"message": ""}, None),
        ({"message": 5, "error": {"message": "nested wins over a non-string"}}, "nested wins over a non-string"),
        ({"error": "text"}, None),
        ({}, None),
        ([], None),
        ("message", None),
        (None, None),
    ],
)  # fmt: skip
def test_error_message_of_each_form(body: object, message: str | None) -> None:
    assert error_message(body) == message


def test_a_long_message_is_cut_with_an_ellipsis() -> None:
    message = error_message({"message": "x" * 5000})
    assert message is not None
    assert len(message) == MAX_MESSAGE_CHARS
    assert message.endswith("\u2026")
    assert safe_text("short") == "short"


def test_error_message_in_a_raw_body() -> None:
    assert error_message_in(b'{"error": {"message": "Cannot reach the Runtime."}}') == (
        "Cannot reach the Runtime."
    )
    assert error_message_in(b"<html>Bad Gateway</html>") is None
    assert error_message_in(b"[" * 100_000) is None  # too deep for the parser: no message
