"""The ``remediation`` section: whether alerts may change listeners, webhook auth and guards."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter.boomi.environments import EnvironmentClassification
from exporter.boomi.shapes import ListenerStatusName, RemediationAction
from exporter.config.base import StrictModel, error_at, no_repeats, secret_from_file

# The vocabularies are Boomi's, defined once beside the client's parsers.
ListenerState = ListenerStatusName

__all__ = ["ListenerState", "RemediationAction"]


class BasicAuthConfig(StrictModel):
    """HTTP Basic credentials that Alertmanager must present to the webhook."""

    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)
    # Where the password was read from, re-read when it changes (see AccountConfig).
    password_file: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _read_password_file(cls, data: Any, info: ValidationInfo) -> Any:
        return secret_from_file(data, "password", info, keep_path=True)


class WebhookAuthConfig(StrictModel):
    """How the webhook authenticates Alertmanager: a bearer token or Basic auth, exactly one."""

    bearer_token: SecretStr | None = Field(default=None, min_length=1)
    # Where the token was read from, re-read when it changes (see AccountConfig).
    bearer_token_file: str | None = Field(default=None, exclude=True)
    basic: BasicAuthConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_bearer_token_file(cls, data: Any, info: ValidationInfo) -> Any:
        return secret_from_file(data, "bearer_token", info, keep_path=True)

    @model_validator(mode="after")
    def _check_exactly_one(self) -> WebhookAuthConfig:
        if self.bearer_token is None and self.basic is None:
            raise error_at("", "needs bearer_token (or bearer_token_file) or basic")
        if self.bearer_token is not None and self.basic is not None:
            raise error_at("", "give either bearer_token or basic, not both")
        return self

    @property
    def kind(self) -> Literal["bearer_token", "basic"]:
        """Which of the two methods is configured, for summaries and logs."""
        return "bearer_token" if self.bearer_token is not None else "basic"


# Tags of the union below; pydantic puts them into error locations, which error paths leave out.
_AUTH_MAPPING_TAG = "auth:mapping"
_AUTH_NONE_TAG = "auth:none"
AUTH_UNION_TAGS = frozenset({_AUTH_MAPPING_TAG, _AUTH_NONE_TAG})
_AUTH_SHAPE = "must be a mapping with bearer_token or basic, or the word none"


def _auth_kind(value: Any) -> str | None:
    if value == "none":
        return _AUTH_NONE_TAG
    if isinstance(value, dict | WebhookAuthConfig):
        return _AUTH_MAPPING_TAG
    return None


WebhookAuthSetting = Annotated[
    Annotated[WebhookAuthConfig, Tag(_AUTH_MAPPING_TAG)]
    | Annotated[Literal["none"], Tag(_AUTH_NONE_TAG)],
    Discriminator(_auth_kind, custom_error_type="auth_shape", custom_error_message=_AUTH_SHAPE),
]


class RemediationConfig(StrictModel):
    """Whether and how Alertmanager alerts may restart listeners, and the guards around it."""

    enabled: bool = False
    dry_run: bool = True
    # "none" must be written out: an open webhook that restarts things is never a default.
    auth: WebhookAuthSetting | None = None
    allowed_actions: list[RemediationAction] = Field(default=["restart"], min_length=1)
    restart_when: list[ListenerState] = Field(default=["errored"], min_length=1)
    # [] means any runtime; else alerts for runtimes outside these classifications, or whose
    # environment is not known, are rejected (behind Alertmanager's own routing).
    environment_classifications: list[EnvironmentClassification] = Field(default_factory=list)
    cooldown_seconds: float = Field(default=900.0, ge=0)
    max_actions_per_hour: int = Field(default=10, ge=0)
    verify_timeout_seconds: float = Field(default=180.0, gt=0)
    max_body_bytes: int = Field(default=1048576, gt=0)

    _check_no_repeats = field_validator(
        "allowed_actions", "restart_when", "environment_classifications"
    )(no_repeats)

    @model_validator(mode="after")
    def _check_auth_when_enabled(self) -> RemediationConfig:
        if self.enabled and self.auth is None:
            raise error_at(
                "auth",
                "required when remediation is enabled (bearer_token, basic, or the word none)",
            )
        return self
