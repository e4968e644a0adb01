"""How one account's requests reach Boomi: through which proxy, trusting which CAs, as whom.

The settings carry Prometheus's ``http_config`` names (``proxy_url``, ``no_proxy``,
``proxy_from_environment``, ``tls_config``), so operators set them the way they already do for
Prometheus itself. :class:`Transport` is the frozen value the account's client is built from
(part of ``ClientSettings``, so a reload that changes it rebuilds the client);
:meth:`Transport.route` turns it into a :class:`Route` for one base URL: the session's connector
and headers, and the options of every request.

The proxy is chosen once per client, not per request: a client only ever talks to its base
URL's host, so ``no_proxy`` is decided when the client is built. ``proxy_from_environment``
reads ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` the way aiohttp's ``trust_env`` does (Python's
``urllib.request`` functions), but without ``trust_env`` itself: that also reads ``~/.netrc``,
whose entry for the Boomi host would clash with the client's own Authorization header.

Credentials in a proxy URL never reach aiohttp inside a URL (where an error message could show
them): they become a ``Proxy-Authorization`` header, sent in the ``CONNECT`` for an https
target (never inside the tunnel, where Boomi would see it), or on each request for a plain http
target, whose requests go to the proxy itself.

``tls_config.ca_file`` is trusted in addition to the system store, never instead of it: a
corporate CA that inspects TLS must not stop the exporter from trusting Boomi when it is
bypassed. A TLS failure becomes one sentence saying what to set (:func:`describe_failure`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiohttp

__all__ = [
    "ClientTLS",
    "Failure",
    "Proxy",
    "Route",
    "TLSFileError",
    "TLSVersionName",
    "Transport",
    "bypasses_proxy",
    "choose_proxy",
    "client_ssl_context",
    "describe_failure",
    "split_proxy_url",
    "tls_files_digest",
]

log = logging.getLogger(__name__)

TLSVersionName = Literal["TLS12", "TLS13"]
_VERSIONS: dict[TLSVersionName, ssl.TLSVersion] = {
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# OpenSSL's verify codes (x509_vfy.h) for "the issuer is not among the trusted CAs".
_UNKNOWN_CA_CODES = frozenset({2, 18, 19, 20, 21})
_EXPIRED, _NOT_YET_VALID, _REVOKED = 10, 9, 23
_NAME_MISMATCH_CODES = frozenset({62, 64})  # a host name, an IP address


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """``tls_config`` of an account: extra trusted CAs, a client certificate, name, version."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    min_version: TLSVersionName = "TLS12"
    insecure_skip_verify: bool = False


class TLSFileError(Exception):
    """A ``tls_config`` file cannot be used; ``key`` is the key that names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _EncryptedKey(Exception):
    """Raised by the password callback: OpenSSL must never prompt on the terminal."""


def _refuse_password() -> bytes:
    raise _EncryptedKey


def client_ssl_context(tls: ClientTLS) -> ssl.SSLContext:
    """The client's SSLContext: the system store plus ``ca_file``; raises TLSFileError."""
    context = ssl.create_default_context()
    context.minimum_version = _VERSIONS[tls.min_version]
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca_file))
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                raise TLSFileError(
                    "ca_file", f"{tls.ca_file} holds no PEM certificate that can be used"
                ) from None
            reason = exc.strerror or "read error"
            raise TLSFileError("ca_file", f"cannot read {tls.ca_file}: {reason}") from None
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file), password=_refuse_password
            )
        except _EncryptedKey:
            raise TLSFileError(
                "key_file", f"{tls.key_file} is encrypted; give an unencrypted key"
            ) from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TLSFileError(
                    "key_file", f"{tls.key_file} does not belong to the certificate in cert_file"
                ) from None
            raise TLSFileError(
                "cert_file",
                f"{tls.cert_file} and key_file cannot be loaded ({exc.reason or 'not valid PEM'})",
            ) from None
        except OSError as exc:
            raise TLSFileError(
                "cert_file", f"cannot read {tls.cert_file} or key_file: {exc.strerror or 'error'}"
            ) from None
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_files_digest(tls: ClientTLS) -> str:
    """A digest of the ``tls_config`` files' contents, so a reload sees a replaced CA bundle."""
    digest = hashlib.sha256()
    for path in (tls.ca_file, tls.cert_file, tls.key_file):
        if path is None:
            digest.update(b"\0")
            continue
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")  # the config validation has already said why
    return digest.hexdigest()


# --- the proxy ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy to use: its URL without credentials, and the header that carries them."""

    url: str
    source: str  # "proxy_url", or the environment variable it came from
    authorization: str | None = field(default=None, repr=False)


def split_proxy_url(url: str, *, source: str) -> Proxy:
    """Separate the credentials from a proxy URL (``scheme://user:password@host:port``)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    authorization = None
    if parts.username is not None:
        user_password = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(user_password.encode()).decode("ascii")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return Proxy(f"{parts.scheme}://{host}{port}", source, authorization)


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` exempts host:port, as Go's httpproxy (Prometheus) reads it.

    Comma-separated entries: ``*`` (everything), an IP address, a CIDR range, or a domain
    (``example.com`` is the domain and its subdomains, ``.example.com`` only the subdomains),
    each optionally with ``:port``.
    """
    host = host.lower().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port: int | None = None
        if entry.startswith("["):  # [IPv6]:port
            inside, _, rest = entry[1:].partition("]")
            entry = inside
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
        elif entry.count(":") == 1:
            name, _, number = entry.partition(":")
            if number.isdigit():
                entry, entry_port = name, int(number)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if address is not None and address in network:
                return True
            continue
        try:
            entry_address = ipaddress.ip_address(entry)
        except ValueError:
            entry_address = None
        if entry_address is not None:
            if address == entry_address:
                return True
            continue
        if entry.startswith("*."):
            entry = entry[1:]
        if entry.startswith("."):
            if host.endswith(entry):
                return True
        elif host == entry or host.endswith("." + entry):
            return True
    return False


def choose_proxy(
    target: str, *, proxy_url: str | None, no_proxy: str, from_environment: bool
) -> Proxy | None:
    """The proxy for requests to ``target`` (a URL), or None to connect directly."""
    parts = urlsplit(target)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if proxy_url is not None:
        if no_proxy and bypasses_proxy(host, port, no_proxy):
            return None
        return split_proxy_url(proxy_url, source="proxy_url")
    if not from_environment:
        return None
    # Exactly what aiohttp's trust_env asks urllib: *_PROXY (lower case wins) and NO_PROXY.
    chosen = urllib.request.getproxies().get(parts.scheme)
    if not chosen or urllib.request.proxy_bypass(host):
        return None
    return split_proxy_url(chosen, source=f"{parts.scheme.upper()}_PROXY")


# --- the route: what the client uses -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """A transport failure in one sentence, and whether trying again can help."""

    message: str
    retry: bool


@dataclass(frozen=True, slots=True)
class Transport:
    """How an account reaches Boomi; equal values build equal clients."""

    proxy_url: str | None = field(default=None, repr=False)  # may hold credentials
    no_proxy: str = ""
    proxy_from_environment: bool = False
    tls: ClientTLS = ClientTLS()
    # The tls files' contents, so that a reload notices a renewed CA bundle or certificate.
    files_digest: str = ""

    def route(self, base_url: str) -> Route:
        """Where requests to ``base_url`` go; reads the tls files (validated with the config)."""
        parts = urlsplit(base_url)
        secure = parts.scheme == "https"
        return Route(
            host=self.tls.server_name or parts.hostname or "",
            secure=secure,
            proxy=choose_proxy(
                base_url,
                proxy_url=self.proxy_url,
                no_proxy=self.no_proxy,
                from_environment=self.proxy_from_environment,
            ),
            ssl_context=client_ssl_context(self.tls) if secure else None,
            server_hostname=self.tls.server_name if secure else None,
        )


@dataclass(frozen=True, slots=True)
class Route:
    """The way to one Boomi host: connector, headers and per-request options for aiohttp."""

    host: str  # the name certificates are checked against, for messages
    secure: bool
    proxy: Proxy | None
    ssl_context: ssl.SSLContext | None
    server_hostname: str | None

    def connector(self) -> aiohttp.TCPConnector:
        """A connector with this route's TLS settings (call it inside the event loop)."""
        return aiohttp.TCPConnector(ssl=self.ssl_context if self.ssl_context is not None else True)

    @property
    def session_headers(self) -> dict[str, str]:
        """Headers for every request: proxy credentials when the proxy sees the requests."""
        if self.proxy is not None and self.proxy.authorization and not self.secure:
            return {"Proxy-Authorization": self.proxy.authorization}
        return {}

    @property
    def request_options(self) -> dict[str, Any]:
        """Keyword arguments of ``ClientSession.request`` for this route."""
        options: dict[str, Any] = {}
        if self.proxy is not None:
            options["proxy"] = self.proxy.url
            if self.proxy.authorization and self.secure:
                # Sent in the CONNECT only; the requests inside the tunnel never carry it.
                options["proxy_headers"] = {"Proxy-Authorization": self.proxy.authorization}
        if self.server_hostname is not None:
            options["server_hostname"] = self.server_hostname
        return options

    def describe(self) -> str:
        """How requests travel, for the log (no credentials)."""
        if self.proxy is None:
            return "directly"
        return f"through the proxy {self.proxy.url} (from {self.proxy.source})"


def _certificate_reason(error: BaseException | None, host: str) -> str:
    code = getattr(error, "verify_code", None)
    if code in _UNKNOWN_CA_CODES:
        return "unknown CA; set tls_config.ca_file"
    if code in _NAME_MISMATCH_CODES:
        return f"the certificate is not for {host}; set tls_config.server_name"
    if code == _EXPIRED:
        return "the certificate has expired"
    if code == _NOT_YET_VALID:
        return "the certificate is not valid yet"
    if code == _REVOKED:
        return "the certificate is revoked"
    message = getattr(error, "verify_message", None)
    return str(message) if message else "the certificate is not trusted"


def describe_failure(exc: BaseException, route: Route) -> Failure | None:
    """One sentence for a TLS or proxy failure; None for anything else (a generic transport
    failure, which the client retries)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = _certificate_reason(exc.certificate_error, route.host)
        return Failure(f"certificate verify failed for {route.host}: {reason}", retry=False)
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        cause = exc.os_error
        reason = getattr(cause, "reason", None) or type(cause).__name__
        return Failure(
            f"TLS handshake with {route.host} failed ({reason}); check tls_config"
            " (cert_file and key_file if the server wants a client certificate, min_version)",
            retry=False,
        )
    proxy = route.proxy.url if route.proxy is not None else "the proxy"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        if exc.status in (401, 407):  # 407 is the rule; some proxies (tinyproxy) say 401
            return Failure(
                f"{proxy} refused the proxy credentials (HTTP {exc.status}); check the user"
                " and password in proxy_url",
                retry=False,
            )
        return Failure(
            f"{proxy} could not connect to {route.host} (HTTP {exc.status})",
            retry=exc.status >= 500,
        )
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return Failure(f"cannot connect to {proxy}", retry=True)
    if (
        isinstance(exc, aiohttp.ClientConnectorError)
        and route.secure
        and isinstance(exc.os_error, ConnectionResetError)
    ):
        # What many servers do instead of sending a TLS alert (Python's own, for one). The
        # next poll tries again; retrying at once would only repeat the refusal.
        return Failure(
            f"{route.host} closed the connection during the TLS handshake; check"
            " tls_config.min_version, and cert_file and key_file if it wants a client certificate",
            retry=False,
        )
    return None
