"""The ``--web.config.file`` applied to the exporter's own server: TLS, Basic auth, headers.

It puts the building blocks together: ``webconfig`` reads the file, ``webtls`` holds the SSL
context and reloads renewed certificates, ``webauth`` checks passwords. The file is read at
start, where a problem is exit 2 naming the key (``--check-config`` reads it the same way).
The daemon's watcher refreshes the certificate files, so a renewal is served without a restart.
A reload (SIGHUP, ``POST /-/reload``) re-reads the file and applies ``basic_auth_users`` and
``http_server_config.headers``; a changed ``tls_server_config`` (TLS on or off, other files)
needs a restart, as the listening socket was made with it, and the log says so.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from exporter.secretfile import Refreshable
from exporter.webauth import BasicAuth, basic_auth_middleware
from exporter.webconfig import WebConfig, load_web_config
from exporter.webtls import ServerTLS

__all__ = ["WebSecurity"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebSecurity:
    """The web config in force: the server's SSL context, the Basic auth check, the headers.

    ``path`` None means plain HTTP without authentication. Raises WebConfigError (naming the
    key) when the file or its certificate files cannot be used.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.config = load_web_config(self.path) if self.path is not None else WebConfig()
        tls = self.config.tls_server_config
        self.tls = ServerTLS(tls) if tls is not None else None
        self.auth: BasicAuth | None = None
        self._check: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]] | None = None
        self._use_users(self.config)
        self._headers = dict(self.config.http_server_config.headers)

    def _use_users(self, config: WebConfig) -> None:
        users = config.basic_auth_users
        self.auth = BasicAuth(users) if users else None
        self._check = basic_auth_middleware(self.auth) if self.auth is not None else None

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The context to serve with, None for plain HTTP."""
        return self.tls.context if self.tls is not None else None

    @property
    def scheme(self) -> str:
        """``https`` or ``http``, for the URLs the exporter prints."""
        return "https" if self.tls is not None else "http"

    @property
    def refreshables(self) -> list[Refreshable]:
        """What the daemon's watcher re-reads: the certificate, key and client CA files."""
        return [self.tls] if self.tls is not None else []

    def install(self, app: web.Application) -> None:
        """Guard ``app`` with the Basic auth check and add the headers to every response."""

        @web.middleware
        async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            # Looked up per request, so a reload that changes the users applies at once.
            check = self._check
            if check is None:
                return await handler(request)
            return await check(request, handler)

        async def add_headers(_request: web.Request, response: web.StreamResponse) -> None:
            for name, value in self._headers.items():
                response.headers.setdefault(name, value)  # a handler's own header wins

        app.middlewares.append(basic_auth)
        app.on_response_prepare.append(add_headers)

    def reload(self) -> None:
        """Re-read the file; apply users and headers. WebConfigError leaves everything as it was."""
        if self.path is None:
            return
        new = load_web_config(self.path)
        if new.tls_server_config != self.config.tls_server_config:
            log.warning(
                "%s: tls_server_config changed: restart the exporter to apply it (renewed"
                " certificate and key files are picked up without a restart)",
                self.path,
            )
            new = new.model_copy(update={"tls_server_config": self.config.tls_server_config})
        if new.basic_auth_users != self.config.basic_auth_users:
            # A new BasicAuth starts with an empty cache: only when the users really changed.
            self._use_users(new)
        self._headers = dict(new.http_server_config.headers)
        self.config = new

    def describe(self) -> str:
        """What the server requires, for the start-up log line (no secret)."""
        tls = self.config.tls_server_config
        parts = [
            "plain HTTP" if tls is None else f"TLS ({tls.min_version} to {tls.max_version})",
        ]
        if tls is not None and tls.client_auth_type != "NoClientCert":
            parts.append(f"client certificates: {tls.client_auth_type}")
        users = len(self.config.basic_auth_users)
        parts.append(f"basic auth for {users} user(s)" if users else "no basic auth")
        return ", ".join(parts)
