"""The ``web`` section: where the HTTP server listens, its web config file, the lifecycle API;
and the ``HOST:PORT`` parser."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationInfo, field_validator

from exporter.config.base import StrictModel

_HOSTNAME = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*"
)
_PORT = re.compile(r"[0-9]{1,5}")


def parse_listen_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[IPv6]:PORT`` into host and port; ValueError says what is wrong.

    An empty host (``:9877``) means every interface, as asyncio's ``create_server`` reads it.
    """
    host, separator, port_text = address.rpartition(":")
    if not separator:
        raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:9877")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("must have an IPv6 address inside the brackets") from None
    elif ":" in host:
        raise ValueError("must put an IPv6 address in brackets, e.g. [::]:9877")
    elif host and not _HOSTNAME.fullmatch(host):
        raise ValueError("must have a host name or IP address before the ':'")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError("must end with a port number from 0 to 65535")
    return host, int(port_text)


class WebConfig(StrictModel):
    """Where the HTTP server (metrics, landing page, webhook) listens, and how it is secured."""

    listen_address: str = "0.0.0.0:9877"
    # The --web.config.file (exporter-toolkit format: TLS, basic auth, headers); the flag wins.
    config_file: Path | None = None
    # POST /-/reload is refused (403) unless this or --web.enable-lifecycle is set, as in
    # Prometheus: anyone who can reach the port could otherwise make it re-read its files.
    enable_lifecycle: bool = False

    @field_validator("config_file", mode="before")
    @classmethod
    def _resolve_config_file(cls, value: Any, info: ValidationInfo) -> Any:
        base_dir = info.context.get("base_dir") if isinstance(info.context, dict) else None
        relative = isinstance(value, str) and value and not Path(value).is_absolute()
        if relative and isinstance(base_dir, Path):
            return str(base_dir / value)
        return value

    @field_validator("listen_address")
    @classmethod
    def _check_listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @property
    def host(self) -> str:
        """The host to bind, without IPv6 brackets; empty means every interface."""
        return parse_listen_address(self.listen_address)[0]

    @property
    def port(self) -> int:
        """The TCP port to bind; 0 lets the system pick one."""
        return parse_listen_address(self.listen_address)[1]
