"""Fault injection for the simulator: which faults are in force, and the draw for one request.

Errors, throttling, garbage, latency, dropped connections, lost tokens, and the hostile kinds
(long Retry-After, lone surrogates in names, path characters in tokens, huge and empty bodies,
redirects) come from the simulator's seeded generator, so a run is reproducible for a given
seed and request order.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final


@dataclass
class Faults:
    """Faults to inject into API answers; every rate is a probability from 0 to 1.

    Draws come from the simulator's seeded generator, once per request and fault kind with a
    non-zero rate, in a fixed order, so a run is reproducible for a seed and request order.
    Dropped, throttled, 5xx and malformed answers replace the request: it is not handled.
    """

    error_5xx_rate: float = 0.0  # 500 or 502 with an Error body
    throttle_rate: float = 0.0  # 503 as if over the rate limit (counted as throttled)
    malformed_rate: float = 0.0  # 200 with a truncated, invalid JSON body
    xml_rate: float = 0.0  # XML although JSON was asked for
    slow_rate: float = 0.0  # delay the answer by slow_seconds (real time)
    slow_seconds: float = 0.0
    never_settle_rate: float = 0.0  # a new ListenerStatus token that never settles
    drop_rate: float = 0.0  # close the connection without an answer
    gone_rate: float = 0.0  # a result GET answers 204 or 410 although the result exists
    retry_after_seconds: float | None = None  # if set, every 503 carries Retry-After
    # If set, an outage: every API request waits this long (real time), then answers 504,
    # before the rate limit and sign-in, whatever container_ids says. Not drawn.
    outage_seconds: float | None = None
    # The variants of Boomi's answers that its published API does not describe but a client
    # must survive (docs/boomi-api.md); by default the simulator answers as the spec says.
    in_progress_empty_rate: float = 0.0  # "in progress" with numberOfResults 0 and result []
    in_progress_status_rows_rate: float = 0.0  # "in progress" with AsyncOperationStatus rows
    in_progress_http_200_rate: float = 0.0  # "in progress" with HTTP 200 instead of 202
    first_get_in_progress_rate: float = 0.0  # a new token's first GET says "in progress"
    runtime_offline_410_rate: float = 0.0  # a result GET answers 410: the runtime is offline
    runtime_unreachable_504_rate: float = 0.0  # a container's call answers 504
    message_error_body_rate: float = 0.0  # an error body is {"message": ...}
    nested_error_body_rate: float = 0.0  # an error body is {"error": {"message": ...}}
    # The next long_retry_after_answers answers are long_retry_after_status (502 or 503) with
    # Retry-After: long_retry_after_seconds, one after the other.
    long_retry_after_status: int | None = None
    long_retry_after_seconds: float = 86400.0
    long_retry_after_answers: int = 1
    error_latency_seconds: float = 0.0  # every 5xx and 503 answer comes this late (real time)
    # Process and Atom names end in a lone UTF-16 surrogate, as if cut inside an emoji.
    surrogate_rate: float = 0.0
    hostile_token_rate: float = 0.0  # a ListenerStatus token such as "../../x?y#z"
    huge_rate: float = 0.0  # the answer is padded with whitespace to huge_bytes (still valid)
    huge_bytes: int = 33 * 2**20
    empty_rate: float = 0.0  # 200 with an empty body
    redirect_rate: float = 0.0  # 302 to redirect_url (relative to the simulator, or absolute)
    redirect_url: str = "/__simulator/state"
    # None: every API request; otherwise only ListenerStatus query/result and
    # changeListenerStatus for these containers.
    container_ids: list[str] | None = None
    # None: every route; otherwise only requests to these route names (the simulator's request
    # counter keys, such as "environment_query").
    routes: list[str] | None = None

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            if spec.name.endswith("_rate"):
                rate = getattr(self, spec.name)
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"{spec.name} must be between 0 and 1, not {rate!r}")
        if self.slow_seconds < 0:
            raise ValueError(f"slow_seconds must not be negative, not {self.slow_seconds!r}")
        for name in ("retry_after_seconds", "outage_seconds"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, not {value!r}")
        if self.long_retry_after_status not in (None, 502, 503):
            raise ValueError(
                f"long_retry_after_status must be 502 or 503, not {self.long_retry_after_status!r}"
            )
        if self.long_retry_after_seconds < 0:
            raise ValueError(
                "long_retry_after_seconds must not be negative,"
                f" not {self.long_retry_after_seconds!r}"
            )
        for name in ("long_retry_after_answers", "huge_bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a whole number, not {getattr(self, name)!r}")
        if self.error_latency_seconds < 0:
            raise ValueError(
                f"error_latency_seconds must not be negative, not {self.error_latency_seconds!r}"
            )

    @classmethod
    def from_json(cls, document: object) -> Faults:
        """Build Faults from a control-API body; raise ValueError naming the bad field."""
        if not isinstance(document, dict):
            raise ValueError("the faults must be a JSON object")
        known = {spec.name for spec in dataclasses.fields(cls)}
        unknown = sorted(set(document) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        for name, value in document.items():
            if name in ("container_ids", "routes"):
                if value is not None and not (
                    isinstance(value, list) and all(isinstance(item, str) for item in value)
                ):
                    raise ValueError(f"{name} must be a list of strings or null")
            elif name == "redirect_url":
                if not isinstance(value, str) or not value:
                    raise ValueError("redirect_url must be a URL or a path")
            elif value is None and name in (
                "retry_after_seconds",
                "outage_seconds",
                "long_retry_after_status",
            ):
                continue
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, not {value!r}")
        return cls(**document)


@dataclass(frozen=True)
class FaultDraw:
    """What the fault generator decided for one request."""

    drop: bool = False
    throttle: bool = False
    error_status: int | None = None
    malformed: bool = False
    delay_seconds: float = 0.0
    xml: bool = False
    never_settle: bool = False
    gone_status: int | None = None
    in_progress_empty: bool = False
    in_progress_status_rows: bool = False
    in_progress_http_200: bool = False
    first_get_in_progress: bool = False
    runtime_offline: bool = False
    runtime_unreachable: bool = False
    error_body: str = "Error"  # "Error", "message" or "error.message": the form of an error body
    # The request is one the faults are limited to (container_ids, routes): the long
    # Retry-After answers are given only to those.
    targeted: bool = False
    surrogates: bool = False
    hostile_token: bool = False
    huge: bool = False
    empty: bool = False
    redirect: bool = False


NO_FAULTS: Final = FaultDraw()
# The calls about one container: what faults limited to some containers apply to.
CONTAINER_ROUTES: Final = frozenset(
    {"listener_status_query", "listener_status_result", "change_listener_status"}
)


def draw_faults(
    faults: Faults,
    rng: random.Random,
    route_name: str,
    container_of: Callable[[], str | None],
) -> FaultDraw:
    """The faults for one request to ``route_name``.

    ``container_of`` tells which container the request is about; it is only asked when the
    faults are limited to some containers.
    """
    if faults.routes is not None and route_name not in faults.routes:
        return NO_FAULTS
    if faults.container_ids is not None:
        container_id = container_of()
        if container_id is None or container_id not in faults.container_ids:
            return NO_FAULTS

    def happens(rate: float) -> bool:
        # No draw at all for a zero rate, so that configuring no faults leaves the
        # sequence of tokens and ids exactly as without fault support.
        return rate > 0 and rng.random() < rate

    drop = happens(faults.drop_rate)
    throttle = happens(faults.throttle_rate)
    error_status = None
    if happens(faults.error_5xx_rate):
        error_status = 500 if rng.random() < 0.5 else 502
    malformed = happens(faults.malformed_rate)
    delay_seconds = faults.slow_seconds if happens(faults.slow_rate) else 0.0
    xml = happens(faults.xml_rate)
    never_settle = route_name == "listener_status_query" and happens(faults.never_settle_rate)
    gone_status = None
    if route_name == "listener_status_result" and happens(faults.gone_rate):
        gone_status = 204 if rng.random() < 0.5 else 410
    result = route_name == "listener_status_result"
    error_body = "Error"
    if happens(faults.message_error_body_rate):
        error_body = "message"
    elif happens(faults.nested_error_body_rate):
        error_body = "error.message"
    # The kinds added later are drawn after the older ones, so that a seed gives the same
    # sequence as before to a run that uses only the older kinds.
    return FaultDraw(
        drop=drop,
        throttle=throttle,
        error_status=error_status,
        malformed=malformed,
        delay_seconds=delay_seconds,
        xml=xml,
        never_settle=never_settle,
        gone_status=gone_status,
        in_progress_empty=result and happens(faults.in_progress_empty_rate),
        in_progress_status_rows=result and happens(faults.in_progress_status_rows_rate),
        in_progress_http_200=result and happens(faults.in_progress_http_200_rate),
        first_get_in_progress=(
            route_name == "listener_status_query" and happens(faults.first_get_in_progress_rate)
        ),
        runtime_offline=result and happens(faults.runtime_offline_410_rate),
        runtime_unreachable=(
            route_name in CONTAINER_ROUTES and happens(faults.runtime_unreachable_504_rate)
        ),
        error_body=error_body,
        targeted=True,
        surrogates=happens(faults.surrogate_rate),
        hostile_token=route_name == "listener_status_query" and happens(faults.hostile_token_rate),
        huge=happens(faults.huge_rate),
        empty=happens(faults.empty_rate),
        redirect=happens(faults.redirect_rate),
    )
