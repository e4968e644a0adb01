"""The ``poll`` and ``names`` sections: how often Boomi is asked for statuses and for names."""

from __future__ import annotations

from pydantic import Field

from exporter.config.base import StrictModel


class NamesConfig(StrictModel):
    """Resolving listener ids to process names (Process/bulk), for labels and pages."""

    enabled: bool = True
    # New listeners are named within a poll or two; known names are re-read this often.
    refresh_seconds: float = Field(default=21600.0, gt=0)


class PollConfig(StrictModel):
    """How often each container is polled and how long one poll may take."""

    interval_seconds: float = Field(default=60.0, gt=0)
    result_timeout_seconds: float = Field(default=120.0, gt=0)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
