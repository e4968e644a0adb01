"""Load the exporter's YAML config: expand ``${ENV}`` references, validate, explain errors.

Every problem becomes a :class:`ConfigError` whose lines each name the bad key as a path
(``accounts[0].containers[2].id: required``). No message ever carries a configured value, so a
secret cannot leak through an error, a log line or ``--check-config`` output. ``*_file`` secrets
are read while validating, by the models (``base.secret_from_file``), because only a model
knows which of its keys are secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from exporter.config.base import PATH_ERROR
from exporter.config.remediation import AUTH_UNION_TAGS
from exporter.config.schema import Config

_MAX_ERROR_LINES = 10
# A config listing 10 000 containers is about 1 MiB.
MAX_CONFIG_BYTES = 8 * 2**20


class ConfigError(Exception):
    """The config cannot be used; ``str()`` is one line per problem, each naming the bad key."""


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
        elif item in AUTH_UNION_TAGS and position > 0 and location[position - 1] == "auth":
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
        if error["type"] == PATH_ERROR:
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
        with path.open("rb") as file:
            # At most one byte past the limit: /dev/zero or a runaway file cannot stall startup.
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"cannot read config file {path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB"
            )
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or 'read error'}"
        ) from None
    return parse_config(text, env=env, base_dir=path.parent)
