"""How an account reaches Boomi, with Prometheus's ``http_config`` names: proxy and TLS.

The keys sit on each account (``accounts[N].proxy_url``, ``accounts[N].tls_config.ca_file``),
as they sit on each scrape config in Prometheus. The files of ``tls_config`` are loaded while
validating, so a CA bundle that cannot be read is a configuration error naming the key, at
start, at reload and in ``--check-config``, not a failure at the first poll.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from exporter.boomi.transport import ClientTLS, TLSFileError, TLSVersionName, client_ssl_context
from exporter.config.base import StrictModel, error_at

_TLS_FILES = ("ca_file", "cert_file", "key_file")


class TLSClientConfig(StrictModel):
    """``tls_config``: CAs trusted besides the system store, a client certificate, checks."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = Field(default=None, min_length=1)
    insecure_skip_verify: bool = False
    min_version: TLSVersionName = "TLS12"

    @model_validator(mode="before")
    @classmethod
    def _resolve_files(cls, data: Any, info: ValidationInfo) -> Any:
        # Relative to the config file's folder, like every other *_file of the config.
        base_dir = info.context.get("base_dir") if isinstance(info.context, dict) else None
        if not isinstance(data, dict) or not isinstance(base_dir, Path):
            return data
        resolved = dict(data)
        for key in _TLS_FILES:
            value = resolved.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                resolved[key] = str(base_dir / value)
        return resolved

    @model_validator(mode="after")
    def _check_files(self) -> TLSClientConfig:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            raise error_at(missing, "required with the other of cert_file and key_file")
        if self.ca_file is None and self.cert_file is None:
            return self  # nothing to read; the system store is checked when it is used
        try:
            client_ssl_context(self.client_tls())
        except TLSFileError as exc:
            raise error_at(exc.key, str(exc)) from None
        return self

    def client_tls(self) -> ClientTLS:
        """The client's value of these settings."""
        return ClientTLS(
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            server_name=self.server_name,
            min_version=self.min_version,
            insecure_skip_verify=self.insecure_skip_verify,
        )


class HTTPClientConfig(StrictModel):
    """The ``http_config`` keys of an account: the proxy to Boomi and the TLS settings."""

    # May carry credentials (http://user:password@proxy:3128), hence a secret.
    proxy_url: SecretStr | None = None
    no_proxy: str | None = Field(default=None, min_length=1)
    proxy_from_environment: bool = False
    tls_config: TLSClientConfig = TLSClientConfig()

    @model_validator(mode="before")
    @classmethod
    def _empty_tls_config_is_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "tls_config" in data and data["tls_config"] is None:
            return {**data, "tls_config": {}}
        return data

    @field_validator("proxy_url")
    @classmethod
    def _check_proxy_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # The messages never quote the URL: it may hold the proxy's password.
        try:
            parts = urlsplit(value.get_secret_value())
            _ = parts.port  # raises for a port that is not a number from 0 to 65535
        except ValueError:
            raise ValueError("must be an http:// or https:// URL with a valid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL (socks is not supported)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be scheme://[user:password@]host[:port], without a path")
        if any(character.isspace() for character in value.get_secret_value()):
            raise ValueError("must not contain spaces")
        return value

    @model_validator(mode="after")
    def _check_proxy_choice(self) -> HTTPClientConfig:
        # Prometheus's rules for the same three keys.
        if self.proxy_from_environment and self.proxy_url is not None:
            raise error_at("proxy_url", "cannot be used together with proxy_from_environment")
        if self.proxy_from_environment and self.no_proxy is not None:
            raise error_at(
                "no_proxy", "cannot be used with proxy_from_environment (which reads NO_PROXY)"
            )
        if self.no_proxy is not None and self.proxy_url is None:
            raise error_at("no_proxy", "needs proxy_url")
        return self
