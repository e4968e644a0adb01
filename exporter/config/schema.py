"""The whole config document: its six sections and the checks that span them."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from exporter.config.accounts import AccountConfig
from exporter.config.base import StrictModel, error_at
from exporter.config.polling import NamesConfig, PollConfig
from exporter.config.remediation import RemediationConfig
from exporter.config.storage import StorageConfig
from exporter.config.web import WebConfig


class Config(StrictModel):
    """The whole exporter configuration."""

    accounts: list[AccountConfig] = Field(min_length=1)
    poll: PollConfig = PollConfig()
    names: NamesConfig = NamesConfig()
    web: WebConfig = WebConfig()
    storage: StorageConfig = StorageConfig()
    remediation: RemediationConfig = RemediationConfig()

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_are_defaults(cls, data: Any) -> Any:
        # "poll:" with every option commented out parses as null; it means "all defaults".
        if isinstance(data, dict):
            return {
                key: {}
                if value is None and key in ("poll", "names", "web", "storage", "remediation")
                else value
                for key, value in data.items()
            }
        return data

    @model_validator(mode="after")
    def _check_unique_ids(self) -> Config:
        account_paths: dict[str, str] = {}
        container_paths: dict[str, str] = {}
        for account_index, account in enumerate(self.accounts):
            path = f"accounts[{account_index}]"
            _claim(account_paths, account.account_id, f"{path}.account_id", "account")
            for container_index, container in enumerate(account.containers):
                container_path = f"{path}.containers[{container_index}].id"
                _claim(container_paths, container.id, container_path, "container")
        return self


def _claim(paths: dict[str, str], key: str, path: str, what: str) -> None:
    """Record that `key` is defined at `path`; an error there if it was defined before."""
    if key in paths:
        raise error_at(path, f"duplicate {what} id, also at {paths[key]}")
    paths[key] = path
