"""The Boomi client's errors: one class per outcome the caller handles differently.

Every error carries the operation (an `OP_*` name) and the container it concerns, and its message
is one sentence for the user. Nothing else escapes the client.
"""

from __future__ import annotations


class BoomiError(Exception):
    """Base class: a Boomi API call failed. The message is one sentence for the user."""

    def __init__(self, message: str, *, operation: str = "", container_id: str = "") -> None:
        super().__init__(message)
        self.operation = operation
        self.container_id = container_id


class AuthError(BoomiError):
    """Boomi rejected the credentials (401/403); the client backs off for the whole account."""


class RateLimited(BoomiError):
    """Boomi kept answering 503 (over the account's rate limit) after every retry."""


class TokenExpired(BoomiError):
    """An async token's result is gone (HTTP 204) or the token is invalid (HTTP 410)."""


class ResultTimeout(BoomiError):
    """An async result did not settle within the configured bound."""


class ApiError(BoomiError):
    """Boomi answered an error (4xx/5xx) or could not be reached."""

    def __init__(
        self, message: str, *, operation: str = "", container_id: str = "", code: str = ""
    ) -> None:
        super().__init__(message, operation=operation, container_id=container_id)
        self.code = code


class MalformedResponse(BoomiError):
    """Boomi answered something that is not the documented shape."""


def malformed(operation: str, container_id: str, what: str) -> MalformedResponse:
    """The error for an answer to `operation` that was `what` instead of the documented shape."""
    where = f" for container {container_id}" if container_id else ""
    return MalformedResponse(
        f"Boomi answered {operation}{where} with {what}",
        operation=operation,
        container_id=container_id,
    )
