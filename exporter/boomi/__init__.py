"""The async Boomi Platform API client, one module per job.

`errors`: what a call can fail with. `shapes`: operation names, vocabularies, request bodies and
pure response parsers; `environments`: the same for Environment and EnvironmentAtomAttachment.
`ratelimit`: the priority rate limiter of an account's request budget. `delays`: when to look
for a ListenerStatus result, learnt. `credentials`: rejected sign-ins counted per Boomi user and
secret, so the user is never locked out. `client`: sessions, retries, one method per call.
`settings`: the one value a client is
built from and compared by on reload (import it from `exporter.boomi.settings`: it depends on
`exporter.config`, which may itself use `shapes`).

The names below are re-exported so that `from exporter.boomi import ...` keeps working.
"""

from exporter.boomi.client import MAX_ATOM_PAGES, BoomiClient, RequestObserver, RetryPolicy
from exporter.boomi.delays import AccountResultDelays, Plan, ResultDelay, ResultLooks
from exporter.boomi.environments import (
    ENVIRONMENT_CLASSIFICATIONS,
    Environment,
    EnvironmentAttachment,
    EnvironmentClassification,
    environments_by_container,
)
from exporter.boomi.errors import (
    ApiError,
    AuthError,
    BoomiError,
    MalformedResponse,
    RateLimited,
    ResultTimeout,
    TokenExpired,
)
from exporter.boomi.ratelimit import (
    PRIORITY_BACKGROUND,
    PRIORITY_REMEDIATION,
    PRIORITY_RESULT,
    PRIORITY_STATUS,
    Clock,
    RateLimiter,
    Sleep,
)
from exporter.boomi.shapes import (
    CHANGE_ACTIONS,
    LISTENER_STATUSES,
    OP_ATOM,
    OP_ATTACHMENT,
    OP_CHANGE,
    OP_ENVIRONMENT,
    OP_PROCESS,
    OP_QUERY,
    OP_RESULT,
    REMEDIATION_ACTIONS,
    AsyncResult,
    Atom,
    ChangeAction,
    ListenerStatus,
    ListenerStatusName,
    RemediationAction,
    listener_status_filter,
    normalize_status,
    parse_atom_page,
    parse_listener_status_result,
    parse_process_bulk,
    parse_query_token,
    retry_after_seconds,
)

__all__ = [
    "CHANGE_ACTIONS",
    "ENVIRONMENT_CLASSIFICATIONS",
    "LISTENER_STATUSES",
    "MAX_ATOM_PAGES",
    "OP_ATOM",
    "OP_ATTACHMENT",
    "OP_CHANGE",
    "OP_ENVIRONMENT",
    "OP_PROCESS",
    "OP_QUERY",
    "OP_RESULT",
    "PRIORITY_BACKGROUND",
    "PRIORITY_REMEDIATION",
    "PRIORITY_RESULT",
    "PRIORITY_STATUS",
    "REMEDIATION_ACTIONS",
    "AccountResultDelays",
    "ApiError",
    "AsyncResult",
    "Atom",
    "AuthError",
    "BoomiClient",
    "BoomiError",
    "ChangeAction",
    "Clock",
    "Environment",
    "EnvironmentAttachment",
    "EnvironmentClassification",
    "ListenerStatus",
    "ListenerStatusName",
    "MalformedResponse",
    "Plan",
    "RateLimited",
    "RateLimiter",
    "RemediationAction",
    "RequestObserver",
    "ResultDelay",
    "ResultLooks",
    "ResultTimeout",
    "RetryPolicy",
    "Sleep",
    "TokenExpired",
    "environments_by_container",
    "listener_status_filter",
    "normalize_status",
    "parse_atom_page",
    "parse_listener_status_result",
    "parse_process_bulk",
    "parse_query_token",
    "retry_after_seconds",
]
