"""What goes over the wire for environments: the Environment and EnvironmentAtomAttachment shapes.

The classification vocabulary, the two query bodies and the pure parsers of their pages, as
docs/boomi-api.md ("Environments") describes them. No I/O; the calls are in `client`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from exporter.boomi.errors import malformed
from exporter.boomi.shapes import OP_ATTACHMENT, OP_ENVIRONMENT

EnvironmentClassification = Literal["PROD", "TEST"]
ENVIRONMENT_CLASSIFICATIONS: tuple[EnvironmentClassification, ...] = get_args(
    EnvironmentClassification
)


@dataclass(frozen=True, slots=True)
class Environment:
    """A Boomi environment that runtimes are attached to."""

    environment_id: str
    name: str
    classification: str  # PROD or TEST as Boomi sent it; "" when Boomi omits it


@dataclass(frozen=True, slots=True)
class EnvironmentAttachment:
    """One runtime attached to one environment (a runtime has at most one)."""

    attachment_id: str  # Boomi's synthesized id: a long string, not a UUID
    container_id: str  # the Atom's id
    environment_id: str


def environment_query_body() -> dict[str, Any]:
    """The Environment/query body that lists every environment of the account.

    The schema requires `QueryFilter.expression`, so Boomi's CLI's empty `{"QueryFilter": {}}`
    is out, and `classification EQUALS PROD or TEST` would miss the environments of accounts
    with basic environment support, which have no classification. Every environment has a
    name, and `%` matches any.
    """
    return {
        "QueryFilter": {"expression": {"argument": ["%"], "operator": "LIKE", "property": "name"}}
    }


def attachment_query_body(environment_id: str) -> dict[str, Any]:
    """The EnvironmentAtomAttachment/query body for the runtimes of one environment."""
    return {
        "QueryFilter": {
            "expression": {
                "argument": [environment_id],
                "operator": "EQUALS",
                "property": "environmentId",
            }
        }
    }


def _page_rows(body: object, operation: str) -> tuple[list[object], str | None]:
    """The rows of one query page and the token of the next one, if any."""
    if not isinstance(body, Mapping):
        raise malformed(operation, "", f"a JSON {type(body).__name__}, not an object")
    rows = body.get("result", [])
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise malformed(operation, "", "a 'result' that is not a list")
    token = body.get("queryToken")
    return rows, token if isinstance(token, str) and token else None


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def parse_environment_page(body: object) -> tuple[list[Environment], str | None]:
    """Read one page of an Environment query: the environments and the next page's token."""
    rows, token = _page_rows(body, OP_ENVIRONMENT)
    environments: list[Environment] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not _text(row, "id"):
            raise malformed(OP_ENVIRONMENT, "", f"result[{index}] without an id")
        environments.append(
            Environment(
                environment_id=_text(row, "id"),
                name=_text(row, "name"),
                # Upper case, as documented; a value other than PROD or TEST is kept as sent.
                classification=_text(row, "classification").upper(),
            )
        )
    return environments, token


def parse_attachment_page(body: object) -> tuple[list[EnvironmentAttachment], str | None]:
    """Read one page of an EnvironmentAtomAttachment query: attachments and the next token."""
    rows, token = _page_rows(body, OP_ATTACHMENT)
    attachments: list[EnvironmentAttachment] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not _text(row, "atomId"):
            raise malformed(OP_ATTACHMENT, "", f"result[{index}] without an atomId")
        if not _text(row, "environmentId"):
            raise malformed(OP_ATTACHMENT, "", f"result[{index}] without an environmentId")
        attachments.append(
            EnvironmentAttachment(
                attachment_id=_text(row, "id"),
                container_id=_text(row, "atomId"),
                environment_id=_text(row, "environmentId"),
            )
        )
    return attachments, token


def environments_by_container(
    environments: list[Environment], attachments: list[EnvironmentAttachment]
) -> dict[str, Environment]:
    """Each attached runtime's environment; runtimes that are not attached are absent.

    An attachment to an environment that is not in `environments` is left out: its name and
    classification are unknown. Should Boomi list a runtime twice, the last attachment wins
    (attaching a runtime again moves it).
    """
    by_id = {environment.environment_id: environment for environment in environments}
    return {
        attachment.container_id: by_id[attachment.environment_id]
        for attachment in attachments
        if attachment.environment_id in by_id
    }
