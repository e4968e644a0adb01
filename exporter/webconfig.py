"""Read and validate the ``--web.config.file``, in Prometheus exporter-toolkit's format.

The format is the one every Go exporter reads (``docs/web-configuration.md`` in
prometheus/exporter-toolkit), so operators can reuse the file they already have:
``tls_server_config``, ``http_server_config.headers`` and ``basic_auth_users``. Relative file
names resolve against the web config file's directory, as the toolkit does.

Unknown keys are errors naming the key path. So are the toolkit keys that configure Go's TLS
stack or server (``cipher_suites``, ``curve_preferences``, ``http2``, ...) when they are set:
silently ignoring a security setting would pass a review it should fail. Messages never carry a
configured value (the bcrypt hashes are secrets too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = [
    "ALLOWED_HEADERS",
    "ClientAuthType",
    "HTTPServerConfig",
    "TLSServerConfig",
    "TLSVersionName",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
    "summarize_web_config",
]

TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
# The toolkit's values; "RequireClientCert" is its old spelling of "RequireAnyClientCert".
ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
_TLS_ORDER: tuple[TLSVersionName, ...] = ("TLS10", "TLS11", "TLS12", "TLS13")
_VERIFYING = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")

# exporter-toolkit's extraHTTPHeaders (web/handler.go): the headers that may be set, and for
# some the only values allowed (an empty tuple allows any value).
ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

# Toolkit keys this exporter refuses when they are set, with what to do instead.
_GO_ONLY = "an exporter-toolkit option for Go's TLS stack that this exporter does not support"
_UNSUPPORTED_KEYS: Mapping[str, Mapping[str, str]] = {
    "": {"rate_limit": "not supported by this exporter; remove it"},
    "tls_server_config": {
        "cipher_suites": f"{_GO_ONLY}; remove it",
        "curve_preferences": f"{_GO_ONLY}; remove it",
        "prefer_server_cipher_suites": f"{_GO_ONLY}; remove it",
        "client_allowed_sans": f"{_GO_ONLY}; remove it (use a dedicated client_ca_file)",
        "cert": "inline certificates are not supported; use cert_file",
        "key": "inline keys are not supported; use key_file",
        "client_ca": "inline CA certificates are not supported; use client_ca_file",
    },
    "http_server_config": {"http2": "an exporter-toolkit option for Go's HTTP/2 server; remove it"},
}

# $2a$, $2b$ or $2y$, a two-digit cost from 04 to 31, then 22 characters of salt and 31 of hash.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

_PATH_ERROR = "web_config_path"


class WebConfigError(Exception):
    """The web config file cannot be used; ``str()`` is one line per problem, naming the key."""


def _error_at(path: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(_PATH_ERROR, "{message}", {"path": path, "message": message})


def _refuse_unsupported(section: str, data: Any) -> Any:
    """Drop unsupported keys left empty; raise naming the first one that is set."""
    if not isinstance(data, dict):
        return data
    kept = dict(data)
    for key, advice in _UNSUPPORTED_KEYS[section].items():
        if key not in kept:
            continue
        if kept[key] in (None, "", [], {}):
            del kept[key]
        else:
            raise _error_at(key, advice)
    return kept


def _unset(value: Any) -> bool:
    return value is None or value == ""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TLSServerConfig(_Model):
    """``tls_server_config``: the server certificate, client certificates and TLS versions."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        data = _refuse_unsupported("tls_server_config", data)
        if isinstance(data, dict):
            # The toolkit treats an empty string as "not set"; templated configs rely on it.
            data = {key: value for key, value in data.items() if not _unset(value)}
        return data

    @model_validator(mode="after")
    def _check_consistent(self) -> TLSServerConfig:
        if self.cert_file is None or self.key_file is None:
            missing = "cert_file" if self.cert_file is None else "key_file"
            raise _error_at(missing, "required to serve TLS (give cert_file and key_file)")
        if _TLS_ORDER.index(self.max_version) < _TLS_ORDER.index(self.min_version):
            raise _error_at("max_version", "must not be lower than min_version")
        if self.client_auth_type in _VERIFYING and self.client_ca_file is None:
            raise _error_at("client_ca_file", f"required with {self.client_auth_type}")
        if self.client_ca_file is not None and self.client_auth_type == "NoClientCert":
            # The toolkit's rule: a CA without a policy is a mistake, not a no-op.
            raise _error_at("client_auth_type", "must be set when client_ca_file is given")
        if self.client_auth_type in ("RequireAnyClientCert", "RequireClientCert"):
            # Python's ssl module cannot require a certificate without verifying it.
            raise _error_at(
                "client_auth_type",
                f"{self.client_auth_type} (a certificate without verification) is not"
                " supported; use RequireAndVerifyClientCert with client_ca_file",
            )
        return self

    def resolved(self, base_dir: Path) -> TLSServerConfig:
        """The same settings with relative file names joined to ``base_dir``."""

        changes: dict[str, Path] = {}
        for key in ("cert_file", "key_file", "client_ca_file"):
            path: Path | None = getattr(self, key)
            if path is not None and not path.is_absolute():
                changes[key] = base_dir / path
        return self.model_copy(update=changes)


class HTTPServerConfig(_Model):
    """``http_server_config``: extra response headers, from the toolkit's allow-list only."""

    headers: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        return _refuse_unsupported("http_server_config", data)

    @field_validator("headers", mode="before")
    @classmethod
    def _check_headers(cls, headers: Any) -> Any:
        if headers is None:
            return {}
        if not isinstance(headers, dict):
            return headers  # pydantic says "must be a mapping"
        kept: dict[str, str] = {}
        for name, value in headers.items():
            if name not in ALLOWED_HEADERS:
                raise _error_at(
                    str(name), "this header cannot be set; allowed: " + ", ".join(ALLOWED_HEADERS)
                )
            if _unset(value):
                continue  # the toolkit's "unset if blank"
            if not isinstance(value, str):
                raise _error_at(str(name), "must be a string")
            if "\r" in value or "\n" in value:
                raise _error_at(str(name), "must be one line")
            allowed = ALLOWED_HEADERS[name]
            if allowed and value not in allowed:
                raise _error_at(str(name), "must be one of: " + ", ".join(allowed))
            kept[name] = value
        return kept


class WebConfig(_Model):
    """The whole web config file; ``tls_server_config`` None means plain HTTP."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    basic_auth_users: dict[str, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        data = _refuse_unsupported("", data)
        if isinstance(data, dict):
            data = dict(data)
            # An empty section means the toolkit's defaults, whether written {}, left blank or
            # templated to empty strings: plain HTTP.
            tls = data.get("tls_server_config")
            if tls is None or (isinstance(tls, dict) and all(_unset(v) for v in tls.values())):
                data.pop("tls_server_config", None)
            for key in ("http_server_config", "basic_auth_users"):
                if data.get(key, {}) is None:
                    data[key] = {}
        return data

    @field_validator("basic_auth_users", mode="before")
    @classmethod
    def _check_users(cls, users: Any) -> Any:
        if not isinstance(users, dict):
            return users
        for user, hashed in users.items():
            if not isinstance(user, str):
                raise _error_at(str(user), "a user name must be a string")
            if ":" in user:
                raise _error_at(user, "a user name cannot contain ':' (Basic auth splits there)")
            if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
                raise _error_at(
                    user,
                    "must be a bcrypt hash ($2y$, $2b$ or $2a$, the cost, then 53 characters);"
                    " make one with: htpasswd -nBC 10 '' | tr -d ':\\n'",
                )
        return users

    @property
    def tls_enabled(self) -> bool:
        """True when the server speaks only HTTPS."""
        return self.tls_server_config is not None

    def resolved(self, base_dir: Path) -> WebConfig:
        """The same settings with relative file names joined to ``base_dir``."""
        if self.tls_server_config is None:
            return self
        return self.model_copy(
            update={"tls_server_config": self.tls_server_config.resolved(base_dir)}
        )


# --- error messages ---------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PLAIN_MESSAGES = {
    "extra_forbidden": "unknown key",
    "string_type": "must be a string",
    "path_type": "must be a file name",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
}


def _path(location: Sequence[str | int]) -> str:
    rendered = ""
    for item in location:
        if isinstance(item, int):
            rendered += f"[{item}]"
        elif _IDENTIFIER.fullmatch(item):
            rendered += f".{item}" if rendered else item
        else:
            rendered += f"[{item!r}]"
    return rendered


def _message(error: ErrorDetails) -> tuple[str, str]:
    location = list(error["loc"])
    context = error.get("ctx") or {}
    if error["type"] == _PATH_ERROR:
        extra = str(context.get("path", ""))
        return _path([*location, extra] if extra else location), str(context["message"])
    if error["type"] == "literal_error":
        expected = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        return _path(location), "must be one of: " + ", ".join(expected)
    # Pydantic's own messages describe the expected shape, never the input.
    return _path(location), _PLAIN_MESSAGES.get(error["type"], error["msg"])


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        path, message = _message(error)
        lines.append(f"{path}: {message}" if path else message)
    return "\n".join(lines)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        # The problem text may quote a piece of the document (a hash); the position is enough.
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}"
    return "invalid YAML"


# --- public functions -------------------------------------------------------------------------


def parse_web_config(text: str, *, base_dir: Path) -> WebConfig:
    """Validate web config text; relative file names resolve against ``base_dir``.

    Raises WebConfigError. Only the format is checked here; the certificate files are read by
    :func:`exporter.webtls.ServerTLS`, at start and by ``--check-config``.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(_describe_yaml_error(exc)) from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        raise WebConfigError("invalid YAML: a value does not fit its type") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise WebConfigError(
            "the web config must be a mapping (tls_server_config, http_server_config,"
            " basic_auth_users)"
        )
    try:
        return WebConfig.model_validate(document).resolved(base_dir)
    except ValidationError as exc:
        raise WebConfigError(_describe(exc)) from None
    except RecursionError:
        raise WebConfigError("the web config is nested too deeply") from None


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate the web config file at ``path``; raises WebConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WebConfigError(f"cannot read web config file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise WebConfigError(
            f"cannot read web config file {path}: {exc.strerror or 'read error'}"
        ) from None
    except ValueError:
        raise WebConfigError("the web config file name is not valid") from None
    return parse_web_config(text, base_dir=path.parent)


def summarize_web_config(config: WebConfig) -> str:
    """Describe a valid web config for ``--check-config``, one setting per line, no secret."""
    tls = config.tls_server_config
    if tls is None:
        lines = ["web TLS: off (plain HTTP)"]
    else:
        lines = [
            f"web TLS: on, {tls.min_version} to {tls.max_version},"
            f" certificate {tls.cert_file}, key {tls.key_file} (re-read when they change)",
            f"  client certificates: {tls.client_auth_type}"
            + (f", trusted CAs in {tls.client_ca_file}" if tls.client_ca_file else ""),
        ]
    users = sorted(config.basic_auth_users)
    lines.append(
        f"web basic auth: {len(users)} user(s): {', '.join(users)}"
        if users
        else "web basic auth: off"
    )
    headers = config.http_server_config.headers
    if headers:
        lines.append("web headers: " + ", ".join(headers))
    return "\n".join(lines)
