"""The ``accounts`` section: Boomi credentials, rate budget, listed containers and discovery."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from exporter.boomi.environments import EnvironmentClassification
from exporter.config.base import StrictModel, error_at, no_repeats, secret_from_file
from exporter.config.http import HTTPClientConfig

DEFAULT_BASE_URL = "https://api.boomi.com/api/rest/v1"
# Boomi's account ids look like "acme-AB12CD".
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ContainerConfig(StrictModel):
    """One Boomi container (Atom, Molecule or Cloud) whose listeners are polled."""

    id: str = Field(min_length=1)
    name: str | None = None


ContainerType = Literal["ATOM", "MOLECULE", "CLOUD"]
ContainerStatus = Literal["ONLINE", "OFFLINE", "WARNING", "UNKNOWN"]


class DiscoveryConfig(StrictModel):
    """Find an account's containers with Boomi's Atom query, in addition to the listed ones."""

    enabled: bool = False
    types: list[ContainerType] = Field(default=["ATOM", "MOLECULE", "CLOUD"], min_length=1)
    statuses: list[ContainerStatus] = Field(default=["ONLINE"], min_length=1)
    # A regular expression the whole container name must match (anchored, as in Prometheus).
    name_pattern: str = ".*"
    # Only runtimes attached to an environment of these classifications; [] means any, and
    # includes runtimes attached to no environment.
    environment_classifications: list[EnvironmentClassification] = Field(default_factory=list)
    # A regular expression the whole environment name must match; a runtime attached to no
    # environment matches only ".*".
    environment_name_pattern: str = ".*"
    # Also how often every container's status (ONLINE/OFFLINE), type and name are refreshed.
    interval_seconds: float = Field(default=600.0, gt=0)

    @field_validator("name_pattern", "environment_name_pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression: {exc.msg}") from None
        return value

    _check_no_repeats = field_validator("types", "statuses", "environment_classifications")(
        no_repeats
    )


class AccountConfig(HTTPClientConfig):
    """One Boomi account: API credentials, this exporter's rate budget and its containers.

    The proxy and TLS keys (Prometheus's http_config names) come from `HTTPClientConfig`.
    """

    account_id: str = Field(min_length=1)
    # The client appends the account id; a trailing '/' is removed so that join stays simple.
    base_url: str = DEFAULT_BASE_URL
    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)
    # Where `password` was read from (resolved), to re-read it when it changes; None when the
    # password is in the config. Set from the `password_file` key; never dumped.
    password_file: str | None = Field(default=None, exclude=True)
    # Boomi documents 10 requests/s per account; partner accounts can have more, hence 100.
    max_requests_per_second: float = Field(default=5.0, gt=0, le=100)
    # Boomi locks a user after six rejected sign-ins: after this many rejections of one secret
    # value, no call is made until the secret changes. At most 5, so that one is always left.
    max_auth_failures: int = Field(default=2, ge=1, le=5)
    # The wait between those rejections (a secret being rotated may need a moment).
    auth_failure_backoff_seconds: float = Field(default=300.0, ge=0)
    # At least one, unless discovery is enabled.
    containers: list[ContainerConfig] = Field(default_factory=list)
    discovery: DiscoveryConfig = DiscoveryConfig()

    @model_validator(mode="after")
    def _check_something_to_poll(self) -> AccountConfig:
        if not self.containers and not self.discovery.enabled:
            raise error_at("containers", "required (at least one), unless discovery is enabled")
        return self

    @model_validator(mode="before")
    @classmethod
    def _read_password_file(cls, data: Any, info: ValidationInfo) -> Any:
        return secret_from_file(data, "password", info, keep_path=True)

    @field_validator("account_id")
    @classmethod
    def _check_account_id(cls, value: str) -> str:
        # The id becomes a URL path segment: "..", "/", "?", "#" or "%" would move the calls.
        if re.search(r"[\s/?#%]", value):
            raise ValueError("must not contain spaces or any of / ? # %")
        if not _ACCOUNT_ID.fullmatch(value):
            raise ValueError(
                "must be a Boomi account id: letters, digits, '-', '_' and '.',"
                " starting with a letter or a digit"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises for a port that is not a number from 0 to 65535
        except ValueError:
            raise ValueError("must be an http:// or https:// URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if any(character.isspace() for character in value):
            raise ValueError("must not contain spaces")
        if "@" in parts.netloc:
            raise ValueError("must not contain credentials; use username and password")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")
