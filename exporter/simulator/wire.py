"""The simulator's wire helpers: QueryFilter bodies, Basic auth, JSON bodies and Boomi's XML.

Pure functions, no aiohttp: what a request body or header means, and how an answer looks when
rendered as XML. The shapes follow docs/boomi-api.md, as the simulator reads it on its own.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Final
from xml.sax.saxutils import escape, quoteattr

LISTENER_STATUS_PROPERTIES: Final = frozenset({"containerId", "listenerId"})

_XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
_BNS_NAMESPACE: Final = "http://api.platform.boomi.com/"
_XSI_NAMESPACE: Final = "http://www.w3.org/2001/XMLSchema-instance"


class BadRequest(ValueError):
    """A request body the API rejects with 400; the message is what the client is told."""


def decode_json_body(body: bytes) -> object:
    """The JSON document in a request body, or None for an empty body."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc


def parse_query_filter(document: object, properties: Collection[str]) -> list[tuple[str, str]]:
    """The EQUALS conditions of a ``{"QueryFilter": {"expression": ...}}`` body.

    Every returned (property, value) pair must hold. Supports EQUALS and "and" with
    ``nestedExpression``, nested to any depth, which is all this project's client sends.
    No body, no QueryFilter or no expression means no condition. Unknown keys are ignored
    (the official SDK sends "@type"); an unknown property or operator raises BadRequest.
    """
    expression = _expression_of(document)
    return [] if expression is None else _equals_conditions(expression, properties)


def _expression_of(document: object) -> object:
    """The QueryFilter's expression of a query body; None for no body, filter or expression."""
    if document is None:
        return None
    if not isinstance(document, dict):
        raise BadRequest("The request body must be a JSON object.")
    query_filter = document.get("QueryFilter")
    if query_filter is None:
        return None
    if not isinstance(query_filter, dict):
        raise BadRequest("QueryFilter must be an object.")
    return query_filter.get("expression")


def _equals_conditions(expression: object, properties: Collection[str]) -> list[tuple[str, str]]:
    if not isinstance(expression, dict):
        raise BadRequest("A filter expression must be an object.")
    operator = expression.get("operator")
    if not isinstance(operator, str):
        raise BadRequest("A filter expression needs an operator.")
    if operator.lower() == "and":
        nested = expression.get("nestedExpression")
        # A lone nested expression sometimes arrives as an object rather than a list when
        # clients convert from XML; both mean the same.
        if isinstance(nested, dict):
            nested = [nested]
        if not isinstance(nested, list) or not nested:
            raise BadRequest("An 'and' expression needs a non-empty nestedExpression list.")
        return [condition for item in nested for condition in _equals_conditions(item, properties)]
    if operator.upper() != "EQUALS":
        raise BadRequest(f"Operator {operator!r} is not supported here; use EQUALS or and.")
    name = expression.get("property")
    if not isinstance(name, str) or name not in properties:
        expected = ", ".join(sorted(properties))
        raise BadRequest(f"Unknown filter property {name!r}; expected one of: {expected}.")
    argument = expression.get("argument")
    if not (isinstance(argument, list) and len(argument) == 1 and isinstance(argument[0], str)):
        raise BadRequest(f"EQUALS on {name} takes exactly one string argument.")
    return [(name, argument[0])]


Fields = Mapping[str, str | None]  # an object's filterable fields; None: the field is absent
Predicate = Callable[[Fields], bool]

_COMPARISONS: Final[dict[str, Callable[[str | None, list[str]], bool]]] = {
    "EQUALS": lambda value, args: value is not None and value == args[0],
    "NOT_EQUALS": lambda value, args: value != args[0],
    "LIKE": lambda value, args: value is not None and _like(args[0]).fullmatch(value) is not None,
    "IS_NULL": lambda value, args: not value,
    "IS_NOT_NULL": lambda value, args: bool(value),
}
_ARGUMENTS: Final = {"EQUALS": 1, "NOT_EQUALS": 1, "LIKE": 1, "IS_NULL": 0, "IS_NOT_NULL": 0}


def _like(pattern: str) -> re.Pattern[str]:
    """A LIKE pattern as a regex: % is any run of characters, _ is one character."""
    parts = ("." if c == "_" else ".*" if c == "%" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def parse_filter_predicate(document: object, properties: Collection[str]) -> Predicate:
    """A ``{"QueryFilter": {"expression": ...}}`` body as a test of an object's fields.

    Supports EQUALS, NOT_EQUALS, LIKE (``%`` any run, ``_`` one character), IS_NULL and
    IS_NOT_NULL, grouped with "and" and "or" to any depth. No body, no QueryFilter or no
    expression matches everything: Boomi's CLI sends ``{"QueryFilter": {}}`` to list all.
    An unknown property or operator, or a wrong number of arguments, raises BadRequest.
    """
    expression = _expression_of(document)
    if expression is None:
        return lambda fields: True
    return _predicate(expression, properties)


def _predicate(expression: object, properties: Collection[str]) -> Predicate:
    if not isinstance(expression, dict):
        raise BadRequest("A filter expression must be an object.")
    operator = expression.get("operator")
    if not isinstance(operator, str):
        raise BadRequest("A filter expression needs an operator.")
    if operator.lower() in ("and", "or"):
        nested = expression.get("nestedExpression")
        if isinstance(nested, dict):
            nested = [nested]
        if not isinstance(nested, list) or not nested:
            raise BadRequest(f"An '{operator}' expression needs a non-empty nestedExpression list.")
        parts = [_predicate(item, properties) for item in nested]
        combine = all if operator.lower() == "and" else any
        return lambda fields: combine(part(fields) for part in parts)
    comparison = _COMPARISONS.get(operator.upper())
    if comparison is None:
        supported = ", ".join([*_COMPARISONS, "and", "or"])
        raise BadRequest(f"Operator {operator!r} is not supported here; use one of {supported}.")
    name = expression.get("property")
    if not isinstance(name, str) or name not in properties:
        expected = ", ".join(sorted(properties))
        raise BadRequest(f"Unknown filter property {name!r}; expected one of: {expected}.")
    argument = expression.get("argument", [])
    count = _ARGUMENTS[operator.upper()]
    if not (
        isinstance(argument, list)
        and len(argument) == count
        and all(isinstance(item, str) for item in argument)
    ):
        raise BadRequest(f"{operator.upper()} on {name} takes {count} string argument(s).")
    return lambda fields: comparison(fields.get(name), argument)


def parse_listener_status_filter(document: object) -> tuple[str, str | None]:
    """The (containerId, listenerId or None) a ListenerStatus query asks for."""
    conditions = parse_query_filter(document, LISTENER_STATUS_PROPERTIES)
    container_ids = [value for name, value in conditions if name == "containerId"]
    listener_ids = [value for name, value in conditions if name == "listenerId"]
    if len(container_ids) != 1:
        raise BadRequest("A ListenerStatus query needs exactly one containerId EQUALS condition.")
    if len(listener_ids) > 1:
        raise BadRequest("A ListenerStatus query takes at most one listenerId condition.")
    return container_ids[0], listener_ids[0] if listener_ids else None


def parse_basic_auth(header: str) -> tuple[str, str] | None:
    """The (username, password) of an HTTP Basic Authorization header, or None if it is not one."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def wants_json(accept: str) -> bool:
    """Whether an Accept header asks for JSON; anything else gets Boomi's default, XML."""
    return "application/json" in accept.lower()


def render_xml(document: Mapping[str, object]) -> str:
    """Render an API object the way Boomi's XML answers look.

    The root element is ``bns:<@type>``; scalar fields become attributes, objects and list
    items become child elements named after their key, typed with ``xsi:type``.
    """
    root_type = document.get("@type")
    tag = f"bns:{root_type if isinstance(root_type, str) else 'Result'}"
    namespaces = f' xmlns:bns="{_BNS_NAMESPACE}" xmlns:xsi="{_XSI_NAMESPACE}"'
    return _XML_DECLARATION + _xml_element(tag, document, namespaces)


def _xml_element(tag: str, document: Mapping[str, object], extra_attributes: str = "") -> str:
    attributes = [extra_attributes] if extra_attributes else []
    children: list[str] = []
    for key, value in document.items():
        if key == "@type" or value is None:
            continue
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list | dict):
            children.extend(_xml_child(key, item) for item in items)
        else:
            attributes.append(f" {key}={quoteattr(_xml_scalar(value))}")
    opening = f"<{tag}{''.join(attributes)}"
    if not children:
        return opening + "/>"
    return f"{opening}>{''.join(children)}</{tag}>"


def _xml_child(key: str, value: object) -> str:
    tag = f"bns:{key}"
    if isinstance(value, dict):
        typed = value.get("@type")
        type_attribute = f' xsi:type="bns:{escape(typed)}"' if isinstance(typed, str) else ""
        return _xml_element(tag, value, type_attribute)
    return f"<{tag}>{escape(_xml_scalar(value))}</{tag}>"


def _xml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
