"""The ``storage`` section: where the remediation ledger lives, and how long it keeps entries."""

from __future__ import annotations

from pydantic import Field

from exporter.config.base import StrictModel


class StorageConfig(StrictModel):
    """The directory of the remediation ledger (``--storage.path``) and its retention."""

    # Relative to the working directory, as Alertmanager's --storage.path is; the image's
    # WORKDIR makes the default land on its declared volume.
    path: str = Field(default="data/", min_length=1)
    retention_days: float = Field(default=30.0, gt=0)
