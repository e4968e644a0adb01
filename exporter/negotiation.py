"""What a scraper accepts on /metrics: Accept and Accept-Encoding read by token, with q-values.

As client_python's `choose_encoder` and `gzip_accepted` do, a header is split into its
comma-separated items and each item's token is compared whole (so `x-gzip` is not gzip); unlike
them, an item with `q=0` (or an unreadable q) is a refusal, as RFC 9110 says. OpenMetrics is
served whenever it is acceptable at all, which is what every Prometheus that asks for it wants.
"""

from __future__ import annotations

from collections.abc import Iterator

OPENMETRICS = "application/openmetrics-text"
GZIP = "gzip"


def _acceptable(header: str | None) -> Iterator[tuple[str, dict[str, str]]]:
    """Each item of the header with q > 0: its lower-cased token and its other parameters."""
    for item in (header or "").split(","):
        token, *parameters = (part.strip() for part in item.split(";"))
        named = {}
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            named[name.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(named.pop("q", "1"))
        except ValueError:
            continue
        if quality > 0:  # also False for NaN
            yield token.lower(), named


def accepts_openmetrics(accept: str | None) -> bool:
    """Whether `Accept` allows OpenMetrics 1.x (the version this exporter writes)."""
    return any(
        token == OPENMETRICS and parameters.get("version", "1").split(".")[0] == "1"
        for token, parameters in _acceptable(accept)
    )


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether `Accept-Encoding` names gzip with a q above 0."""
    return any(token == GZIP for token, _ in _acceptable(accept_encoding))
