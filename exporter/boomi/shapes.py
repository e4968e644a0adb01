"""What goes over the Boomi wire: names, vocabularies, request bodies and response parsers.

Everything here is pure (no I/O), so each response shape is tested table-driven without a
network. The shapes are those of docs/boomi-api.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from exporter.boomi.errors import ApiError, malformed
from exporter.boomi.ratelimit import PRIORITY_STATUS

# The vocabularies, each spelt once: the Literal types it, the tuple is derived for run time.
ListenerStatusName = Literal["listening", "paused", "errored", "unknown"]
LISTENER_STATUSES: tuple[ListenerStatusName, ...] = get_args(ListenerStatusName)
# What remediation may ask for: one listener at a time.
RemediationAction = Literal["restart", "pause", "resume"]
REMEDIATION_ACTIONS: tuple[RemediationAction, ...] = get_args(RemediationAction)
ChangeAction = Literal[RemediationAction, "restart_all", "pause_all", "resume_all"]
CHANGE_ACTIONS: tuple[ChangeAction, ...] = get_args(ChangeAction)

# Operation names used in metrics and errors (the contract in docs/architecture.md).
OP_QUERY = "listener_status_query"
OP_RESULT = "listener_status_result"
OP_CHANGE = "change_listener_status"
OP_ATOM = "atom_query"
OP_PROCESS = "process_query"
OP_ENVIRONMENT = "environment_query"
OP_ATTACHMENT = "environment_attachment_query"

# Boomi's limit on the ids of one Process/bulk call.
PROCESS_BULK_IDS = 100

_STATUS_BY_NAME: dict[str, ListenerStatusName] = {status: status for status in LISTENER_STATUSES}


@dataclass(frozen=True, slots=True)
class ListenerStatus:
    """One listener's status as Boomi reported it, normalised."""

    listener_id: str
    status: str  # one of LISTENER_STATUSES
    connector_type: str  # Boomi's raw value, "" when Boomi omits it
    raw_status: str  # as Boomi sent it, kept for logs when it normalises to "unknown"


@dataclass(frozen=True, slots=True)
class AsyncResult:
    """One answer of the ListenerStatus result endpoint: complete ("settled") or in progress."""

    settled: bool
    listeners: tuple[ListenerStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class Atom:
    """A Boomi runtime ("container"): Atom, Molecule or Cloud."""

    container_id: str
    name: str
    status: str
    type: str
    host_name: str


# ---------------------------------------------------------------------------------------------
# Requests.


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One logical call to Boomi: what is sent, how it is named, and how it is treated."""

    method: str
    path: str  # below the account's URL
    operation: str  # an OP_* name, for metrics and errors
    container_id: str = ""
    json_body: object = None
    text_body: str | None = None  # sent as text/plain instead of JSON (Atom/queryMore)
    # Error statuses returned (without a body) instead of raised.
    answer_statuses: tuple[int, ...] = ()
    # False where a retry after a server error could repeat an action; 503 is always retried.
    retry_server_errors: bool = True
    priority: int = PRIORITY_STATUS

    @property
    def where(self) -> str:
        """The ' for container X' of messages; '' when the call concerns no container."""
        return f" for container {self.container_id}" if self.container_id else ""


def listener_status_filter(container_id: str, listener_id: str | None = None) -> dict[str, Any]:
    """The QueryFilter body for a ListenerStatus query of one container (or one listener)."""
    container = {"argument": [container_id], "operator": "EQUALS", "property": "containerId"}
    if listener_id is None:
        return {"QueryFilter": {"expression": container}}
    listener = {"argument": [listener_id], "operator": "EQUALS", "property": "listenerId"}
    return {
        "QueryFilter": {
            "expression": {"operator": "and", "nestedExpression": [container, listener]}
        }
    }


def change_listener_status_body(
    container_id: str, action: str, listener_id: str | None = None
) -> dict[str, str]:
    """The changeListenerStatus body; ValueError for an unknown action or a missing listener."""
    if action not in CHANGE_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if action.endswith("_all") != (listener_id is None):
        raise ValueError(
            f"action {action!r} {'must not name' if listener_id else 'needs'} a listener"
        )
    body: dict[str, str] = {"containerId": container_id, "action": action}
    if listener_id is not None:
        body["listenerId"] = listener_id
    return body


# Atom.status as the spec enumerates it: "status is one of these" selects every runtime.
ATOM_STATUSES = ("ONLINE", "WARNING", "OFFLINE", "UNKNOWN")


def every_atom_expression() -> dict[str, Any]:
    """A filter every runtime matches, for Atom/query.

    Boomi's tools list runtimes with an empty body, which the spec does not allow (every
    `*QueryConfig` requires `QueryFilter.expression`). This is the schema-valid form: status
    EQUALS each of the four documented statuses, joined by "or", using only the property and
    operators of the spec's own Atom example, so no server can read it as anything narrower.
    """
    return {
        "operator": "or",
        "nestedExpression": [
            {"argument": [status], "operator": "EQUALS", "property": "status"}
            for status in ATOM_STATUSES
        ],
    }


def atom_query_body(expression: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Atom query body: every runtime, or those matching `expression`."""
    return {"QueryFilter": {"expression": expression or every_atom_expression()}}


def process_bulk_body(process_ids: Sequence[str]) -> dict[str, Any]:
    """The Process/bulk GET body for at most PROCESS_BULK_IDS ids."""
    return {"type": "GET", "request": [{"id": process_id} for process_id in process_ids]}


# ---------------------------------------------------------------------------------------------
# Response parsers.


def normalize_status(raw: object) -> ListenerStatusName:
    """Map Boomi's status value to one of LISTENER_STATUSES; anything unexpected is "unknown"."""
    if isinstance(raw, str):
        return _STATUS_BY_NAME.get(raw.strip().lower(), "unknown")
    return "unknown"


# A lone UTF-16 surrogate is legal JSON ("\udc80") but no text encoding can write it, so one
# in a process name took every /metrics scrape down. Raw JSON can only carry one as a \uDxxx
# escape or as the bytes ED A0-BF (json.loads reads those with "surrogatepass"); a body with
# neither is not walked.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so that it can be encoded."""
    return _SURROGATE.sub("\ufffd", text)


def _cleaned(node: object) -> object:
    if isinstance(node, str):
        return clean_text(node)
    if isinstance(node, dict):
        return {clean_text(key): _cleaned(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_cleaned(item) for item in node]
    return node


def decode_json(raw: bytes, operation: str, container_id: str = "") -> object:
    """Parse an answer body; every string in it (keys too) is made encodable (`clean_text`)."""
    try:
        body = json.loads(raw)
        return _cleaned(body) if _MAYBE_SURROGATE.search(raw) else body
    except (ValueError, RecursionError):
        raise malformed(operation, container_id, "a body that is not valid JSON") from None


def _as_mapping(body: object, operation: str, container_id: str) -> Mapping[str, Any]:
    if body is None:
        raise malformed(operation, container_id, "an empty body")
    if not isinstance(body, Mapping):
        raise malformed(operation, container_id, f"a JSON {type(body).__name__}, not an object")
    return body


def parse_query_token(body: object, *, container_id: str = "") -> str:
    """Return the async token from a ListenerStatus query answer."""
    mapping = _as_mapping(body, OP_QUERY, container_id)
    token_obj = mapping.get("asyncToken")
    token = token_obj.get("token") if isinstance(token_obj, Mapping) else None
    if not isinstance(token, str) or not token.strip():
        raise malformed(OP_QUERY, container_id, "no asyncToken.token")
    # The token becomes one URL path segment (quoted by the client); "." and ".." would still
    # move the result GET, with the account's credentials, up the path.
    if token.strip(".") == "":
        raise malformed(OP_QUERY, container_id, "an asyncToken.token that is only dots")
    return token


def parse_listener_status_result(body: object, *, container_id: str = "") -> AsyncResult:
    """Decide from a ListenerStatus result body whether it is complete, and read its listeners.

    The body's `responseStatusCode` decides, not the HTTP status (both come with either). Only
    200 is a result: 202 is "in progress" whatever else the body holds, even `numberOfResults:
    0` and an empty `result`, which a serializer writing every field sends while Boomi works.
    A complete answer without rows is a container without listeners. Rows whose `@type` is not
    `ListenerStatus` ("AsyncOperationStatus" progress notes) are skipped; a row without `@type`
    is read as a ListenerStatus.
    """
    mapping = _as_mapping(body, OP_RESULT, container_id)
    code = mapping.get("responseStatusCode")
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) <= 3:
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int):
        raise malformed(OP_RESULT, container_id, "no numeric responseStatusCode")
    if code == 202:
        return AsyncResult(settled=False)
    rows = mapping.get("result", [])
    if rows is None:
        rows = []
    if not isinstance(rows, list):
        raise malformed(OP_RESULT, container_id, "a 'result' that is not a list")
    if code != 200:
        raise ApiError(
            f"Boomi reported responseStatusCode {code} for the ListenerStatus result"
            f" of container {container_id}",
            operation=OP_RESULT,
            container_id=container_id,
            code=str(code),
        )
    listeners: list[ListenerStatus] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise malformed(OP_RESULT, container_id, f"result[{index}] that is not an object")
        if row.get("@type", "ListenerStatus") != "ListenerStatus":
            continue
        listener_id = row.get("listenerId")
        if not isinstance(listener_id, str) or not listener_id:
            raise malformed(OP_RESULT, container_id, f"result[{index}] without a listenerId")
        raw_status = row.get("status")
        connector_type = row.get("connectorType")
        listeners.append(
            ListenerStatus(
                listener_id=listener_id,
                status=normalize_status(raw_status),
                connector_type=connector_type if isinstance(connector_type, str) else "",
                raw_status=raw_status if isinstance(raw_status, str) else repr(raw_status),
            )
        )
    return AsyncResult(settled=True, listeners=tuple(listeners))


def parse_atom_page(body: object) -> tuple[list[Atom], str | None]:
    """Read one page of an Atom query: the runtimes and the token of the next page, if any."""
    mapping = _as_mapping(body, OP_ATOM, "")
    rows = mapping.get("result", [])
    if not isinstance(rows, list):
        raise malformed(OP_ATOM, "", "a 'result' that is not a list")
    atoms: list[Atom] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("id"), str):
            raise malformed(OP_ATOM, "", f"result[{index}] without an id")
        atoms.append(
            Atom(
                container_id=row["id"],
                name=str(row.get("name") or ""),
                status=str(row.get("status") or "UNKNOWN").upper(),
                type=str(row.get("type") or "").upper(),
                host_name=str(row.get("hostName") or ""),
            )
        )
    token = mapping.get("queryToken")
    return atoms, token if isinstance(token, str) and token else None


def parse_process_bulk(body: object) -> dict[str, str]:
    """Read a Process/bulk GET answer into {process id: name}; failed entries are left out."""
    mapping = _as_mapping(body, OP_PROCESS, "")
    rows = mapping.get("response", [])
    if not isinstance(rows, list):
        raise malformed(OP_PROCESS, "", "a 'response' that is not a list")
    names: dict[str, str] = {}
    for row in rows:
        if not isinstance(row, Mapping) or row.get("statusCode") != 200:
            continue
        result = row.get("Result")
        if isinstance(result, Mapping):
            process_id, name = result.get("id"), result.get("name")
            if isinstance(process_id, str) and isinstance(name, str):
                names[process_id] = name
    return names


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header given in seconds; HTTP dates are ignored (not seen from Boomi)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
