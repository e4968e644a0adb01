"""Boomi's published schemas as the judge: validate a body against its schema by name.

The schemas are the reduced copy in tests/schemas/boomi-openapi-reduced.json (made by
scripts/reduce_openapi.py from Boomi's published OpenAPI document; see its "note"). OpenAPI
3.0 schema objects are JSON Schema with a few extra words, none of which this document uses
for validation, so `jsonschema` reads them as they are.

    validate_response("ListenerStatusAsyncResponse", body)   # an answer Boomi (or the simulator) gave
    validate_request("ListenerStatusQueryConfig", body)       # a body the client sent
    schemas_of("POST", "/async/ListenerStatus/query")         # which schemas a call uses
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema

REDUCED = Path(__file__).parent / "schemas" / "boomi-openapi-reduced.json"


@functools.cache
def document() -> dict[str, Any]:
    """The reduced copy of Boomi's OpenAPI document."""
    loaded: dict[str, Any] = json.loads(REDUCED.read_text(encoding="utf-8"))
    return loaded


def _names(kind: str) -> set[str]:
    names: set[str] = set()
    for operations in document()["paths"].values():
        for call in operations.values():
            if kind == "request":
                names.add(call["request"])
            else:
                names.update(call["responses"].values())
    names.discard(None)  # type: ignore[arg-type]
    return names


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document()["components"]}
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    return validator_class(schema)  # type: ignore[no-any-return]


def _validate(name: str, body: object, what: str) -> None:
    errors = sorted(_validator(name).iter_errors(body), key=lambda error: list(error.path))
    if errors:
        lines = [
            f"{'/'.join(map(str, error.path)) or '(top)'}: {error.message}" for error in errors
        ]
        raise AssertionError(f"{what} is not a valid {name}:\n  " + "\n  ".join(lines))


def validate_response(schema_name: str, body: object) -> None:
    """Assert that `body`, an answer, is valid against Boomi's response schema `schema_name`
    ("Error" for an error answer)."""
    assert schema_name in _names("response"), f"{schema_name} is no response schema of a path"
    _validate(schema_name, body, "the answer")


def validate_request(schema_name: str, body: object) -> None:
    """Assert that `body`, a request body, is valid against Boomi's request schema
    `schema_name`."""
    assert schema_name in _names("request"), f"{schema_name} is no request schema of a path"
    _validate(schema_name, body, "the request body")


def schemas_of(method: str, path: str) -> tuple[str | None, dict[str, str | None]]:
    """(request schema, {HTTP status: response schema}) of a call, by its path below the
    account ("/async/ListenerStatus/response/ListenerStatus-..." matches its template)."""
    for template, operations in document()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.upper() in operations:
            call = operations[method.upper()]
            return call["request"], call["responses"]
    raise KeyError(f"{method} {path} is not a call of Boomi's document")
