"""Load the exporter's YAML config: expand ``${ENV}`` references, read ``*_file`` secrets, validate.

Every problem becomes a :class:`ConfigError` whose lines each name the bad key as a path
(``accounts[0].containers[2].id: required``). No message ever carries a configured value, so a
secret cannot leak through an error, a log line or ``--check-config`` output.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = [
    "AccountConfig",
    "BasicAuthConfig",
    "Config",
    "ConfigError",
    "ContainerConfig",
    "DiscoveryConfig",
    "NamesConfig",
    "PollConfig",
    "RemediationConfig",
    "WebConfig",
    "WebhookAuthConfig",
    "load_config",
    "parse_config",
    "parse_listen_address",
    "summarize",
]

DEFAULT_BASE_URL = "https://api.boomi.com/api/rest/v1"
_MAX_ERROR_LINES = 10

RemediationAction = Literal["restart", "pause", "resume"]
ListenerState = Literal["listening", "paused", "errored", "unknown"]


class ConfigError(Exception):
    """The config cannot be used; ``str()`` is one line per problem, each naming the bad key."""


# A validator that wants to blame a key other than the one pydantic is validating raises this
# error type; ``path`` is relative to the model being validated ("" means the model itself).
_PATH_ERROR = "config_path"


def _error_at(path: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(_PATH_ERROR, "{message}", {"path": path, "message": message})


class _Model(BaseModel):
    # Unknown keys are misspellings; infinities and NaN are never meant as durations or rates.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _secret_from_file(data: Any, field: str, info: ValidationInfo) -> Any:
    """Replace ``<field>_file`` by ``<field>``: the file's content minus one trailing newline."""
    file_key = f"{field}_file"
    if not isinstance(data, dict) or file_key not in data:
        return data
    if field in data:
        raise _error_at(file_key, f"cannot be used together with {field}; give only one")
    name = data[file_key]
    if not isinstance(name, str) or not name:
        raise _error_at(file_key, "must be the path of a file")
    path = Path(name)
    base_dir = info.context.get("base_dir") if isinstance(info.context, dict) else None
    if isinstance(base_dir, Path) and not path.is_absolute():
        path = base_dir / path
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _error_at(file_key, f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise _error_at(file_key, f"cannot read {path}: {exc.strerror or 'read error'}") from None
    except ValueError:  # e.g. a NUL character in the file name
        raise _error_at(file_key, "is not a valid file name") from None
    if content.endswith("\r\n"):
        content = content[:-2]
    elif content.endswith("\n"):
        content = content[:-1]
    remaining = {key: value for key, value in data.items() if key != file_key}
    remaining[field] = content
    return remaining


class ContainerConfig(_Model):
    """One Boomi runtime (Atom, Molecule or Cloud) whose listeners are polled."""

    id: str = Field(min_length=1)
    name: str | None = None


RuntimeType = Literal["ATOM", "MOLECULE", "CLOUD"]
RuntimeStatus = Literal["ONLINE", "OFFLINE", "WARNING", "UNKNOWN"]


class DiscoveryConfig(_Model):
    """Find an account's runtimes with Boomi's Atom query, in addition to the listed ones."""

    enabled: bool = False
    types: list[RuntimeType] = Field(default=["ATOM", "MOLECULE", "CLOUD"], min_length=1)
    statuses: list[RuntimeStatus] = Field(default=["ONLINE"], min_length=1)
    # A regular expression the whole runtime name must match (anchored, as in Prometheus).
    name_pattern: str = ".*"
    # Also how often every runtime's status (ONLINE/OFFLINE), type and name are refreshed.
    interval_seconds: float = Field(default=600.0, gt=0)

    @field_validator("name_pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression: {exc.msg}") from None
        return value

    @field_validator("types", "statuses")
    @classmethod
    def _check_no_repeats(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("must not list the same value twice")
        return values


class AccountConfig(_Model):
    """One Boomi account: API credentials, this exporter's rate budget and its containers."""

    account_id: str = Field(min_length=1)
    # The client appends the account id; a trailing '/' is removed so that join stays simple.
    base_url: str = DEFAULT_BASE_URL
    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)
    # Boomi documents 10 requests/s per account; partner accounts can have more, hence 100.
    max_requests_per_second: float = Field(default=5.0, gt=0, le=100)
    # After Boomi rejects the credentials no call is made for this long, so a wrong password
    # cannot lock the account's user out.
    auth_failure_backoff_seconds: float = Field(default=300.0, ge=0)
    # At least one, unless discovery is enabled.
    containers: list[ContainerConfig] = Field(default_factory=list)
    discovery: DiscoveryConfig = DiscoveryConfig()

    @model_validator(mode="after")
    def _check_something_to_poll(self) -> AccountConfig:
        if not self.containers and not self.discovery.enabled:
            raise _error_at("containers", "required (at least one), unless discovery is enabled")
        return self

    @model_validator(mode="before")
    @classmethod
    def _read_password_file(cls, data: Any, info: ValidationInfo) -> Any:
        return _secret_from_file(data, "password", info)

    @field_validator("account_id")
    @classmethod
    def _check_account_id(cls, value: str) -> str:
        # The id becomes a URL path segment.
        if re.search(r"[\s/?#%]", value):
            raise ValueError("must not contain spaces or any of / ? # %")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises for a port that is not a number from 0 to 65535
        except ValueError:
            raise ValueError("must be an http:// or https:// URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if any(character.isspace() for character in value):
            raise ValueError("must not contain spaces")
        if "@" in parts.netloc:
            raise ValueError("must not contain credentials; use username and password")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")


class NamesConfig(_Model):
    """Resolving listener ids to process names (Process/bulk), for labels and pages."""

    enabled: bool = True
    # New listeners are named within a poll or two; known names are re-read this often.
    refresh_seconds: float = Field(default=21600.0, gt=0)


class PollConfig(_Model):
    """How often each container is polled and how long one poll may take."""

    interval_seconds: float = Field(default=60.0, gt=0)
    result_timeout_seconds: float = Field(default=120.0, gt=0)
    request_timeout_seconds: float = Field(default=30.0, gt=0)


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


class WebConfig(_Model):
    """Where the HTTP server (metrics, landing page, webhook) listens."""

    listen_address: str = "0.0.0.0:9877"

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


class BasicAuthConfig(_Model):
    """HTTP Basic credentials that Alertmanager must present to the webhook."""

    username: str = Field(min_length=1)
    password: SecretStr = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _read_password_file(cls, data: Any, info: ValidationInfo) -> Any:
        return _secret_from_file(data, "password", info)


class WebhookAuthConfig(_Model):
    """How the webhook authenticates Alertmanager: a bearer token or Basic auth, exactly one."""

    bearer_token: SecretStr | None = Field(default=None, min_length=1)
    basic: BasicAuthConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_bearer_token_file(cls, data: Any, info: ValidationInfo) -> Any:
        return _secret_from_file(data, "bearer_token", info)

    @model_validator(mode="after")
    def _check_exactly_one(self) -> WebhookAuthConfig:
        if self.bearer_token is None and self.basic is None:
            raise _error_at("", "needs bearer_token (or bearer_token_file) or basic")
        if self.bearer_token is not None and self.basic is not None:
            raise _error_at("", "give either bearer_token or basic, not both")
        return self

    @property
    def kind(self) -> Literal["bearer_token", "basic"]:
        """Which of the two methods is configured, for summaries and logs."""
        return "bearer_token" if self.bearer_token is not None else "basic"


# Tags of the union below; pydantic puts them into error locations, which _path() drops.
_AUTH_MAPPING_TAG = "auth:mapping"
_AUTH_NONE_TAG = "auth:none"
_UNION_TAGS = frozenset({_AUTH_MAPPING_TAG, _AUTH_NONE_TAG})
_AUTH_SHAPE = "must be a mapping with bearer_token or basic, or the word none"


def _auth_kind(value: Any) -> str | None:
    if value == "none":
        return _AUTH_NONE_TAG
    if isinstance(value, dict | WebhookAuthConfig):
        return _AUTH_MAPPING_TAG
    return None


WebhookAuthSetting = Annotated[
    Annotated[WebhookAuthConfig, Tag(_AUTH_MAPPING_TAG)]
    | Annotated[Literal["none"], Tag(_AUTH_NONE_TAG)],
    Discriminator(_auth_kind, custom_error_type="auth_shape", custom_error_message=_AUTH_SHAPE),
]


class RemediationConfig(_Model):
    """Whether and how Alertmanager alerts may restart listeners, and the guards around it."""

    enabled: bool = False
    dry_run: bool = True
    # "none" must be written out: an open webhook that restarts things is never a default.
    auth: WebhookAuthSetting | None = None
    allowed_actions: list[RemediationAction] = Field(default=["restart"], min_length=1)
    restart_when: list[ListenerState] = Field(default=["errored"], min_length=1)
    cooldown_seconds: float = Field(default=900.0, ge=0)
    max_actions_per_hour: int = Field(default=10, ge=0)
    verify_timeout_seconds: float = Field(default=180.0, gt=0)
    max_body_bytes: int = Field(default=1048576, gt=0)

    @field_validator("allowed_actions", "restart_when")
    @classmethod
    def _check_no_repeats(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("must not list the same value twice")
        return values

    @model_validator(mode="after")
    def _check_auth_when_enabled(self) -> RemediationConfig:
        if self.enabled and self.auth is None:
            raise _error_at(
                "auth",
                "required when remediation is enabled (bearer_token, basic, or the word none)",
            )
        return self


class Config(_Model):
    """The whole exporter configuration."""

    accounts: list[AccountConfig] = Field(min_length=1)
    poll: PollConfig = PollConfig()
    names: NamesConfig = NamesConfig()
    web: WebConfig = WebConfig()
    remediation: RemediationConfig = RemediationConfig()

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_are_defaults(cls, data: Any) -> Any:
        # "poll:" with every option commented out parses as null; it means "all defaults".
        if isinstance(data, dict):
            return {
                key: {}
                if value is None and key in ("poll", "names", "web", "remediation")
                else value
                for key, value in data.items()
            }
        return data

    @model_validator(mode="after")
    def _check_unique_ids(self) -> Config:
        account_paths: dict[str, str] = {}
        container_paths: dict[str, str] = {}
        for account_index, account in enumerate(self.accounts):
            path = f"accounts[{account_index}].account_id"
            if account.account_id in account_paths:
                raise _error_at(
                    path, f"duplicate account id, also at {account_paths[account.account_id]}"
                )
            account_paths[account.account_id] = path
            for container_index, container in enumerate(account.containers):
                path = f"accounts[{account_index}].containers[{container_index}].id"
                if container.id in container_paths:
                    raise _error_at(
                        path, f"duplicate container id, also at {container_paths[container.id]}"
                    )
                container_paths[container.id] = path
        return self


# --- ${ENV} expansion -----------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_REFERENCE_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


class _ExpansionError(Exception):
    pass


def _expand_string(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group("body")
        reference = _REFERENCE_BODY.fullmatch(body) if body is not None else None
        if reference is None:
            raise _ExpansionError(
                "malformed ${...} reference: write ${NAME} or ${NAME:-default},"
                " or $${ for a literal ${"
            )
        name, default = reference.group("name"), reference.group("default")
        found = env.get(name)
        if default is not None and not found:
            return default
        if found is None:
            raise _ExpansionError(f"environment variable {name} is not set")
        return found

    return _REFERENCE.sub(replace, value)


# YAML aliases share one object however often they are used; the expanded copy does not, so a
# small file of nested aliases ("billion laughs") would expand without bound. No real config
# comes near this many values.
_MAX_CONFIG_NODES = 100_000


def _expand_tree(
    node: object,
    location: tuple[str | int, ...],
    env: Mapping[str, str],
    problems: list[str],
    budget: list[int],
) -> object:
    """Copy a parsed YAML tree with references in string values expanded and keys made strings."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(
            f"the config has more than {_MAX_CONFIG_NODES} values (are YAML aliases nested?)"
        )
    if isinstance(node, str):
        try:
            return _expand_string(node, env)
        except _ExpansionError as exc:
            problems.append(f"{_path(location)}: {exc}")
            return node
    if isinstance(node, dict):
        return {
            str(key): _expand_tree(value, (*location, str(key)), env, problems, budget)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            _expand_tree(item, (*location, index), env, problems, budget)
            for index, item in enumerate(node)
        ]
    return node


# --- error messages ---------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keys that may instead be given as "<key>_file", for the "required" message.
_FILE_ALTERNATIVES = frozenset({"password", "bearer_token"})
_PLAIN_MESSAGES = {
    "extra_forbidden": "unknown key",
    "string_type": "must be a string (quote it if it looks like a number)",
    "string_unicode": "must be valid text",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "dict_type": "must be a mapping of keys to values",
}


def _path(location: Sequence[str | int]) -> str:
    """Render an error location the way a user would write it: ``accounts[0].containers[2].id``."""
    rendered = ""
    for position, item in enumerate(location):
        if isinstance(item, int):
            rendered += f"[{item}]"
        elif item in _UNION_TAGS and position > 0 and location[position - 1] == "auth":
            continue
        elif _IDENTIFIER.fullmatch(item):
            rendered += f".{item}" if rendered else item
        else:
            rendered += f"[{item!r}]"
    return rendered


def _join(base: str, relative: str) -> str:
    if not base or not relative:
        return base or relative
    return base + relative if relative.startswith("[") else f"{base}.{relative}"


def _number(limit: object) -> str:
    return f"{limit:g}" if isinstance(limit, float) else str(limit)


def _plain_message(error: ErrorDetails) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "missing":
        field = error["loc"][-1] if error["loc"] else ""
        return f"required (or {field}_file)" if field in _FILE_ALTERNATIVES else "required"
    if kind in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[kind]
    if kind == "greater_than":
        return f"must be greater than {_number(context['gt'])}"
    if kind == "greater_than_equal":
        return f"must be {_number(context['ge'])} or more"
    if kind == "less_than":
        return f"must be less than {_number(context['lt'])}"
    if kind == "less_than_equal":
        return f"must be at most {_number(context['le'])}"
    if kind in ("string_too_short", "too_short"):
        minimum = context.get("min_length", 1)
        if minimum == 1:
            return "must not be empty"
        unit = "characters" if kind == "string_too_short" else "items"
        return f"must have at least {minimum} {unit}"
    if kind == "literal_error":
        return "must be one of: " + ", ".join(re.findall(r"'([^']*)'", str(context["expected"])))
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    # Pydantic's own messages describe the expected shape, never the input.
    return error["msg"]


def _describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        path = _path(error["loc"])
        if error["type"] == _PATH_ERROR:
            context = error.get("ctx") or {}
            path = _join(path, str(context.get("path", "")))
            message = str(context.get("message", error["msg"]))
        else:
            message = _plain_message(error)
        lines.append(f"{path}: {message}" if path else message)
    return _limit(lines)


def _limit(lines: list[str]) -> str:
    if len(lines) > _MAX_ERROR_LINES:
        hidden = len(lines) - _MAX_ERROR_LINES + 1
        lines = [*lines[: _MAX_ERROR_LINES - 1], f"... and {hidden} more problems"]
    return "\n".join(lines)


def _without_quoted_text(problem: str) -> str:
    # PyYAML quotes pieces of the document (alias names, tags) in its messages; a password such as
    # "*abc" or "!abc" written without quotes would show up there. Single characters and token
    # names like '<scalar>' are kept because they say what is wrong.
    def keep_or_drop(match: re.Match[str]) -> str:
        inner = match.group(0)[1:-1]
        return match.group(0) if len(inner) <= 2 or re.fullmatch(r"<[a-z ]+>", inner) else "..."

    return re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", keep_or_drop, problem)


def _describe_yaml_error(exc: yaml.YAMLError, text: str) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = _without_quoted_text(exc.problem or exc.context or "syntax error")
        if mark is not None:
            return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        return f"invalid YAML: {problem}"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        return f"invalid YAML at line {line}: a character that YAML does not allow"
    return "invalid YAML"


_TYPE_NAMES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    list: "a list",
}


# --- public functions -------------------------------------------------------------------------


def parse_config(
    text: str, *, env: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Parse, expand and validate config text; relative ``*_file`` paths resolve against base_dir.

    ``env`` (default ``os.environ``) supplies ``${VAR}`` references. Raises ConfigError.
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    try:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(_describe_yaml_error(exc, text)) from None
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # PyYAML's constructors raise these for tagged or odd scalars (`!!int abc`,
            # `2020-13-45`); their message may quote the value, which may be a secret.
            raise ConfigError(
                "invalid YAML: a value does not fit its type (check !! tags, dates and numbers)"
            ) from None
        if document is None:
            document = {}
        if not isinstance(document, dict):
            kind = _TYPE_NAMES.get(type(document), "a single value")
            raise ConfigError(
                "the config must be a mapping of keys (accounts, poll, web, remediation),"
                f" not {kind}"
            )
        problems: list[str] = []
        expanded = _expand_tree(document, (), environment, problems, [_MAX_CONFIG_NODES])
        if problems:
            raise ConfigError(_limit(problems))
        try:
            return Config.model_validate(expanded, context={"base_dir": base_dir})
        except ValidationError as exc:
            raise ConfigError(_describe_validation_error(exc)) from None
    except RecursionError:
        raise ConfigError("the config is nested too deeply") from None


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path``; ``*_file`` paths are relative to it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or 'read error'}"
        ) from None
    return parse_config(text, env=env, base_dir=path.parent)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def summarize(config: Config) -> str:
    """Describe a valid config for ``--check-config``, one setting per line, without any secret."""
    container_count = sum(len(account.containers) for account in config.accounts)
    lines = [f"accounts: {len(config.accounts)}, containers: {container_count}"]
    for account in config.accounts:
        lines += [
            f"  account {account.account_id}",
            f"    base_url: {account.base_url}",
            f"    username: {account.username}",
            f"    rate budget: {account.max_requests_per_second:g} requests/s",
            "    after rejected credentials: no calls for"
            f" {_seconds(account.auth_failure_backoff_seconds)}",
            f"    containers: {len(account.containers)}",
        ]
        for container in account.containers:
            name = f" ({container.name})" if container.name else ""
            lines.append(f"      {container.id}{name}")
        discovery = account.discovery
        if discovery.enabled:
            lines.append(
                f"    discovery: every {_seconds(discovery.interval_seconds)}, types"
                f" {', '.join(discovery.types)}, statuses {', '.join(discovery.statuses)},"
                f" names matching {discovery.name_pattern!r}"
            )
    poll = config.poll
    lines.append(
        f"poll: every {_seconds(poll.interval_seconds)},"
        f" result timeout {_seconds(poll.result_timeout_seconds)},"
        f" request timeout {_seconds(poll.request_timeout_seconds)}"
    )
    names = config.names
    lines.append(
        f"process names: refreshed every {_seconds(names.refresh_seconds)}"
        if names.enabled
        else "process names: disabled"
    )
    lines.append(f"web: listen on {config.web.listen_address}")
    remediation = config.remediation
    if not remediation.enabled:
        lines.append("remediation: disabled")
        return "\n".join(lines)
    auth = remediation.auth
    auth_kind = "none (no authentication)" if auth == "none" or auth is None else auth.kind
    mode = (
        "dry run (log and count only)"
        if remediation.dry_run
        else "live (calls changeListenerStatus)"
    )
    lines += [
        f"remediation: enabled, {mode}",
        f"  webhook auth: {auth_kind}",
        f"  allowed actions: {', '.join(remediation.allowed_actions)}",
        f"  restart when: {', '.join(remediation.restart_when)}",
        f"  cooldown per listener: {_seconds(remediation.cooldown_seconds)}",
        f"  at most {remediation.max_actions_per_hour} actions per hour",
        f"  verify timeout: {_seconds(remediation.verify_timeout_seconds)}",
        f"  max webhook body: {remediation.max_body_bytes} bytes",
    ]
    return "\n".join(lines)
