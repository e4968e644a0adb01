"""Alertmanager's webhook payload (version 4): its models, and the parser that checks a body.

Only what remediation reads is strictly typed; unknown fields are ignored, so a newer
Alertmanager's additions do not break the webhook.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class WebhookAlert(BaseModel):
    """One alert of a webhook payload; only `status` and `labels` drive decisions."""

    # Unknown fields are ignored so a newer Alertmanager's additions do not break the webhook;
    # the fields we read are strictly typed.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # Alertmanager's field names (camelCase)
    endsAt: str = ""
    generatorURL: str = ""
    fingerprint: str = ""


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body (https://prometheus.io/docs/alerting/latest/configuration/)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert]
    receiver: str = ""
    groupKey: str = ""
    truncatedAlerts: int = Field(default=0, ge=0)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""


class PayloadError(ValueError):
    """The webhook body is not an Alertmanager version 4 payload; the message says why."""


def parse_payload(body: bytes) -> WebhookPayload:
    """Parse and validate a webhook body; PayloadError with a short reason otherwise."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("the body is not valid JSON") from None
    try:
        return WebhookPayload.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        # The location may hold the sender's own keys: keep it short and on one line.
        where = where.encode("unicode_escape").decode("ascii")[:120]
        raise PayloadError(
            f"not an Alertmanager v4 payload: {where}: {first['msg']} "
            f"({exc.error_count()} problem(s))"
        ) from None
