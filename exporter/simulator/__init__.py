"""A faithful fake of the Boomi Platform API, for the demo, the tests and the benchmarks.

It serves the parts of the API described in docs/boomi-api.md, with injectable faults from a
seeded generator and a control API under ``/__simulator/``. Its modules, one job each:
``world`` (accounts, containers, listeners, environments, effects of actions; no HTTP), ``faults``,
``wire`` (QueryFilter, Basic auth, XML), ``api`` (the Boomi handlers and their route table),
``control`` (the control API), ``requestlog`` (every API request in arrival order, on the
simulator's clock) and ``server`` (the Simulator: clock, rng, request pipeline, ``serve``,
``describe``).

Nothing here imports the rest of ``exporter``: the fake must not share the client's beliefs
about the protocol, so it keeps its own copy of the actions and statuses.
"""

from .faults import Faults
from .requestlog import LoggedRequest, RequestLog
from .server import Simulator, describe, serve
from .wire import (
    BadRequest,
    parse_basic_auth,
    parse_filter_predicate,
    parse_listener_status_filter,
    parse_query_filter,
    render_xml,
)
from .world import SimAccount, SimContainer, SimEnvironment, SimListener, SimUser

__all__ = [
    "BadRequest",
    "Faults",
    "LoggedRequest",
    "RequestLog",
    "SimAccount",
    "SimContainer",
    "SimEnvironment",
    "SimListener",
    "SimUser",
    "Simulator",
    "describe",
    "parse_basic_auth",
    "parse_filter_predicate",
    "parse_listener_status_filter",
    "parse_query_filter",
    "render_xml",
    "serve",
]
