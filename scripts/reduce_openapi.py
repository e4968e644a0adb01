#!/usr/bin/env python3
"""Make the contract tests' reduced copy of Boomi's published OpenAPI schemas.

The input is Boomi's own OpenAPI document (Platform API 1.0.0), cut to the paths the exporter
calls with every schema they reference; the whole document is public, in the repository
RenEra-ai/boomi-python under `openapi/`. The output, tests/schemas/boomi-openapi-reduced.json,
keeps only what validation needs: each path's request and response schema names, and the
schemas with their descriptions, examples and XML hints stripped. It also derives an `Error`
schema from the examples of the document's shared error answers (403, 410, 503), which carry
examples but no schema. The tests read only the output, never the input.

Usage: python scripts/reduce_openapi.py [INPUT] [OUTPUT]
(defaults: ../shared/boomi-openapi-subset.json, tests/schemas/boomi-openapi-reduced.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT.parent / "shared" / "boomi-openapi-subset.json"
DEFAULT_OUTPUT = ROOT / "tests" / "schemas" / "boomi-openapi-reduced.json"
# Words for people, not for a validator.
DROPPED_KEYS = frozenset({"description", "example", "examples", "summary", "xml", "title"})
NOTE = (
    "A reduced copy of the schemas of Boomi's published OpenAPI document (Platform API 1.0.0, "
    "the paths the exporter calls), made by scripts/reduce_openapi.py. The whole document is "
    "public, in the repository RenEra-ai/boomi-python under openapi/. Descriptions, examples and "
    "XML hints are stripped; nothing else is changed. 'Error' is not Boomi's: the document gives "
    "its shared error answers (403, 410, 503) examples but no schema, and 'Error' is what those "
    "examples have in common."
)


def strip(node: Any) -> Any:
    """`node` without the keywords that only explain (property names are kept, whatever
    they are called)."""
    if isinstance(node, list):
        return [strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    kept: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            kept[key] = {name: strip(schema) for name, schema in value.items()}
        elif key not in DROPPED_KEYS:
            kept[key] = strip(value)
    return kept


def schema_name(content: dict[str, Any] | None) -> str | None:
    """The component name of a JSON body's schema, "text/plain" for a text body, else None."""
    if not content:
        return None
    if "application/json" in content:
        ref = content["application/json"].get("schema", {}).get("$ref", "")
        return ref.rsplit("/", 1)[-1] or None
    if "text/plain" in content:
        return "text/plain"
    return None


def error_schema(responses: dict[str, Any]) -> dict[str, Any]:
    """The schema of the shared error answers' JSON examples: an object with a string message."""
    for status, response in responses.items():
        for example in response["content"]["application/json"]["examples"].values():
            value = example["value"]
            if not (isinstance(value, dict) and isinstance(value.get("message"), str)):
                raise SystemExit(f"the {status} example is not {{'message': ...}}: {value!r}")
    return {
        "type": "object",
        "required": ["message"],
        "properties": {"message": {"type": "string"}},
    }


def reduce(document: dict[str, Any]) -> dict[str, Any]:
    """The reduced copy of an OpenAPI document."""
    paths: dict[str, Any] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = {}
            for status, response in operation.get("responses", {}).items():
                if "$ref" in response:
                    responses[status] = "Error"
                else:
                    responses[status] = schema_name(response.get("content"))
            paths.setdefault(path, {})[method.upper()] = {
                "request": schema_name(operation.get("requestBody", {}).get("content")),
                "responses": responses,
            }
    schemas = strip(document["components"]["schemas"])
    schemas["Error"] = error_schema(document["components"]["responses"])
    return {
        "note": NOTE,
        "source": {
            "title": document["info"]["title"],
            "version": document["info"]["version"],
            "repository": "https://github.com/RenEra-ai/boomi-python (openapi/)",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }


def main(argv: list[str]) -> int:
    """Read INPUT, write OUTPUT."""
    source = Path(argv[0]) if argv else DEFAULT_INPUT
    target = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    if not source.is_file():
        print(
            f"reduce_openapi: no file {source}; give the path of Boomi's document", file=sys.stderr
        )
        return 2
    reduced = reduce(json.loads(source.read_text(encoding="utf-8")))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(reduced, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(reduced['components']['schemas'])} schemas)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
