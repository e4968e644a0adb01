"""Accept and Accept-Encoding on /metrics: read by token, with q-values."""

from __future__ import annotations

import pytest

from exporter.negotiation import accepts_gzip, accepts_openmetrics

PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("text/plain", False),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; version=1.0.0", True),
        ("Application/OpenMetrics-Text;Version=1.0.0", True),
        ("text/plain;q=0.9, application/openmetrics-text;q=0.5", True),
        (PROMETHEUS_2, True),
        (PROMETHEUS_3, True),
        ("application/openmetrics-text;q=0", False),
        ("application/openmetrics-text; version=1.0.0; q=0.0", False),
        ("application/openmetrics-text;q=abc", False),
        ("application/openmetrics-text;version=0.0.1", False),
        ("application/openmetrics-text;version=2.0.0", False),
        ("application/openmetrics-text;version=0.0.1,application/openmetrics-text", True),
        ("application/openmetrics-textual", False),
        ("text/plain; note=application/openmetrics-text", False),
    ],
)
def test_openmetrics_is_served_only_when_accepted(accept: str | None, expected: bool) -> None:
    assert accepts_openmetrics(accept) is expected


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        (None, False),
        ("", False),
        ("identity", False),
        ("*", False),
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("gzip;q=0.001", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0, deflate", False),
        ("gzip;q=nan", False),
        ("x-gzip", False),
        ("br, zstd", False),
    ],
)
def test_gzip_is_used_only_when_accepted(accept_encoding: str | None, expected: bool) -> None:
    assert accepts_gzip(accept_encoding) is expected
