"""The exporter's configuration: one model per YAML section, and the loader that checks them.

Modules: ``base`` (what every model shares), ``accounts``, ``polling`` (poll and names), ``web``,
``storage``, ``remediation`` (one per section), ``http`` (an account's proxy and TLS),
``schema`` (the whole document) and ``loading`` (YAML, ``${ENV}``, errors in English). Every
name is re-exported here, so ``from exporter.config import X`` is the one import the rest of
the exporter needs.
"""

from exporter.config.accounts import (
    DEFAULT_BASE_URL,
    AccountConfig,
    ContainerConfig,
    ContainerStatus,
    ContainerType,
    DiscoveryConfig,
)
from exporter.config.http import HTTPClientConfig, TLSClientConfig
from exporter.config.loading import ConfigError, load_config, parse_config
from exporter.config.polling import NamesConfig, PollConfig
from exporter.config.remediation import (
    BasicAuthConfig,
    ListenerState,
    RemediationAction,
    RemediationConfig,
    WebhookAuthConfig,
    WebhookAuthSetting,
)
from exporter.config.schema import Config
from exporter.config.storage import StorageConfig
from exporter.config.web import WebConfig, parse_listen_address

__all__ = [
    "DEFAULT_BASE_URL",
    "AccountConfig",
    "BasicAuthConfig",
    "Config",
    "ConfigError",
    "ContainerConfig",
    "ContainerStatus",
    "ContainerType",
    "DiscoveryConfig",
    "HTTPClientConfig",
    "ListenerState",
    "NamesConfig",
    "PollConfig",
    "RemediationAction",
    "RemediationConfig",
    "StorageConfig",
    "TLSClientConfig",
    "WebConfig",
    "WebhookAuthConfig",
    "WebhookAuthSetting",
    "load_config",
    "parse_config",
    "parse_listen_address",
]
