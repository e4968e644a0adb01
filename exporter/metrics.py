"""Every metric the exporter publishes, named in one place, and the `/metrics` renderer.

Listener and container values come from `SnapshotStore`: no I/O and no awaiting at scrape time,
and series that vanish from Boomi vanish from `/metrics`. What is published per container is
defined once, in `container_samples`; two things read it:
- `SnapshotCollector`, a prometheus_client collector (the usual way, for a registry);
- `SnapshotRenderer`, which `/metrics` uses: it keeps each container's rendered lines until that
  container's snapshot changes, and the whole rendered body (text, OpenMetrics, gzip) until the
  store changes, so a scrape of 10,000 listeners costs a lookup rather than a rebuild.
The exporter's own instrumentation (API calls, remediation outcomes, reloads) uses ordinary
prometheus_client metrics in a small registry rendered on every scrape.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, exposition, openmetrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.boomi import LISTENER_STATUSES
from exporter.state import ContainerSnapshot, SnapshotStore

CACHED = "Values come from a background poll of the Boomi API, not from this scrape."

API_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

TEXT_CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST
OPENMETRICS_CONTENT_TYPE = openmetrics.exposition.CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Family:
    """One gauge family published from the snapshot store."""

    name: str
    help: str
    labels: tuple[str, ...]


IDS = ("account_id", "container_id")

# The families of one container, in exposition order; build info comes after them.
LISTENER_STATUS = Family(
    "boomi_listener_status",
    "Listener status: 1 for the current one of listening, paused, errored, unknown. " + CACHED,
    (*IDS, "listener_id", "connector_type", "status"),
)
LISTENER_INFO = Family(
    "boomi_listener_info",
    "Process name of a listener (a listener is a process). " + CACHED,
    (*IDS, "listener_id", "process_name"),
)
CONTAINER_INFO = Family(
    "boomi_container_info",
    "A monitored Boomi runtime, its name and type (ATOM, MOLECULE, CLOUD; '' until known).",
    (*IDS, "container_name", "container_type"),
)
CONTAINER_ONLINE = Family(
    "boomi_container_online",
    "0 if Boomi reports the runtime OFFLINE (its listeners are then not polled), else 1. "
    "From a background Atom query; absent until that has answered.",
    IDS,
)
CONTAINER_UP = Family(
    "boomi_container_up",
    "1 if the last background poll of this container's listeners succeeded.",
    IDS,
)
LAST_SUCCESS = Family(
    "boomi_container_last_success_timestamp_seconds",
    "Unix time of the last successful background poll of this container.",
    IDS,
)
POLL_DURATION = Family(
    "boomi_container_poll_duration_seconds",
    "Duration of the last finished background poll cycle of this container.",
    IDS,
)
CONTAINER_FAMILIES = (
    LISTENER_STATUS,
    LISTENER_INFO,
    CONTAINER_INFO,
    CONTAINER_ONLINE,
    CONTAINER_UP,
    LAST_SUCCESS,
    POLL_DURATION,
)
BUILD_INFO = Family(
    "boomi_exporter_build_info", "Version of boomi-listener-exporter; always 1.", ("version",)
)

Sample = tuple[int, tuple[str, ...], float]  # (index in CONTAINER_FAMILIES, label values, value)


def container_samples(
    snapshot: ContainerSnapshot, names: dict[tuple[str, str], str]
) -> Iterator[Sample]:
    """Everything published about one container, as (family index, label values, value)."""
    ids = (snapshot.account_id, snapshot.container_id)
    for listener in snapshot.listeners:
        labels = (*ids, listener.listener_id, listener.connector_type)
        for status in LISTENER_STATUSES:
            yield 0, (*labels, status), 1.0 if listener.status == status else 0.0
    for listener in snapshot.listeners:
        name = names.get((snapshot.account_id, listener.listener_id))
        if name:
            yield 1, (*ids, listener.listener_id, name), 1.0
    yield 2, (*ids, snapshot.container_name or snapshot.container_id, snapshot.container_type), 1.0
    if snapshot.online is not None:
        yield 3, ids, 1.0 if snapshot.online else 0.0
    if snapshot.polled:
        yield 4, ids, 1.0 if snapshot.up else 0.0
    if snapshot.last_success_time is not None:
        yield 5, ids, snapshot.last_success_time
    if snapshot.poll_duration_seconds is not None:
        yield 6, ids, snapshot.poll_duration_seconds


class SnapshotCollector(Collector):
    """The snapshot store as prometheus_client metric families, rebuilt on every collect()."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        """Build the metric families from the store."""
        families = [
            GaugeMetricFamily(family.name, family.help, labels=list(family.labels))
            for family in CONTAINER_FAMILIES
        ]
        for snapshot in self._store.containers():
            for index, labels, value in container_samples(snapshot, self._store.process_names):
                families[index].add_metric(list(labels), value)
        build = GaugeMetricFamily(BUILD_INFO.name, BUILD_INFO.help, labels=list(BUILD_INFO.labels))
        build.add_metric([__version__], 1)
        yield from (*families, build)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _line(family: Family, labels: tuple[str, ...], value: float) -> str:
    pairs = ",".join(
        f'{name}="{_escape_label(label)}"'
        for name, label in zip(family.labels, labels, strict=True)
    )
    return f"{family.name}{{{pairs}}} {value!r}\n"


def _header(family: Family) -> str:
    # Identical in the text format and OpenMetrics for a gauge whose HELP has no quotes.
    return f"# HELP {family.name} {_escape_help(family.help)}\n# TYPE {family.name} gauge\n"


@dataclass
class _Rendered:
    """One rendering of the snapshot families: text, and its raw-deflate segment for gzip."""

    version: int
    text: bytes
    deflated: bytes | None = None  # compressed with a sync flush, so more data can follow
    crc: int = 0


class SnapshotRenderer:
    """Renders the snapshot families, caching per container and per store version."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store
        # (account, container) -> (the snapshot rendered, names version, lines per family)
        self._chunks: dict[tuple[str, str], tuple[ContainerSnapshot, int, tuple[str, ...]]] = {}
        self._rendered: _Rendered | None = None

    def _container_chunks(self, snapshot: ContainerSnapshot) -> tuple[str, ...]:
        key = (snapshot.account_id, snapshot.container_id)
        cached = self._chunks.get(key)
        names_version = self._store.names_version
        # Snapshots are replaced, never changed: the same object means the same lines.
        if cached is not None and cached[0] is snapshot and cached[1] == names_version:
            return cached[2]
        lines: list[list[str]] = [[] for _ in CONTAINER_FAMILIES]
        for index, labels, value in container_samples(snapshot, self._store.process_names):
            lines[index].append(_line(CONTAINER_FAMILIES[index], labels, value))
        chunks = tuple("".join(family_lines) for family_lines in lines)
        self._chunks[key] = (snapshot, names_version, chunks)
        return chunks

    def current(self) -> _Rendered:
        """The snapshot families as exposition text, rebuilt only when the store changed."""
        rendered = self._rendered
        if rendered is not None and rendered.version == self._store.version:
            return rendered
        snapshots = self._store.containers()
        chunks = [self._container_chunks(snapshot) for snapshot in snapshots]
        live = {(s.account_id, s.container_id) for s in snapshots}
        for key in [key for key in self._chunks if key not in live]:
            del self._chunks[key]
        parts: list[str] = []
        for index, family in enumerate(CONTAINER_FAMILIES):
            parts.append(_header(family))
            parts.extend(container[index] for container in chunks)
        parts.append(_header(BUILD_INFO))
        parts.append(_line(BUILD_INFO, (__version__,), 1.0))
        rendered = _Rendered(self._store.version, "".join(parts).encode())
        self._rendered = rendered
        return rendered

    def gzip_segment(self) -> _Rendered:
        """The current rendering with its compressed form (computed once per store version)."""
        rendered = self.current()
        if rendered.deflated is None:
            compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
            rendered.deflated = compressor.compress(rendered.text) + compressor.flush(
                zlib.Z_SYNC_FLUSH
            )
            rendered.crc = zlib.crc32(rendered.text)
        return rendered


def gzip_join(head: _Rendered, tail: bytes) -> bytes:
    """One gzip member of `head.text + tail`, reusing head's cached compressed segment.

    A raw deflate stream that ended with a sync flush may be followed by any other raw deflate
    stream; the gzip trailer's CRC continues over both parts.
    """
    assert head.deflated is not None
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", int(time.time())) + b"\x00\xff"
    size = (len(head.text) + len(tail)) & 0xFFFFFFFF
    trailer = struct.pack("<II", zlib.crc32(tail, head.crc), size)
    return header + head.deflated + body + trailer


class ExporterMetrics:
    """The snapshot renderer plus the exporter's own instrumentation in a small registry."""

    def __init__(self, store: SnapshotStore) -> None:
        self.snapshot = SnapshotRenderer(store)
        self.registry = CollectorRegistry(auto_describe=False)
        self.api_requests = Counter(
            "boomi_api_requests",
            "HTTP calls to the Boomi API by operation and HTTP status ('error': no answer).",
            ["account_id", "operation", "code"],
            registry=self.registry,
        )
        self.api_request_duration = Histogram(
            "boomi_api_request_duration_seconds",
            "Latency of HTTP calls to the Boomi API.",
            ["account_id", "operation"],
            buckets=API_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.config_reload_successful = Gauge(
            "boomi_exporter_config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none was tried), 0 if it failed.",
            registry=self.registry,
        )
        self.config_reload_successful.set(1)
        self.config_reload_time = Gauge(
            "boomi_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            registry=self.registry,
        )
        self.config_reload_time.set_to_current_time()
        self.remediation_actions = Counter(
            "boomi_remediation_actions",
            "Remediation requests by outcome (queued ones end as exactly one other outcome).",
            ["account_id", "container_id", "listener_id", "action", "outcome"],
            registry=self.registry,
        )

    def observe_request(self, account_id: str, operation: str, code: str, seconds: float) -> None:
        """Record one HTTP attempt to Boomi (the client's `on_request` hook)."""
        self.api_requests.labels(account_id, operation, code).inc()
        self.api_request_duration.labels(account_id, operation).observe(seconds)

    def count_remediation(self, labels: tuple[str, str, str, str], outcome: str) -> None:
        """Count one remediation outcome; labels are (account, container, listener, action)."""
        self.remediation_actions.labels(*labels, outcome).inc()

    def render(self, accept_header: str | None, *, gzip: bool = False) -> tuple[bytes, str]:
        """The whole exposition in the format asked for (gzip-compressed if `gzip`)."""
        if "application/openmetrics-text" in (accept_header or ""):
            own = openmetrics.exposition.generate_latest(self.registry)  # type: ignore[no-untyped-call]
            content_type = OPENMETRICS_CONTENT_TYPE
        else:
            own = exposition.generate_latest(self.registry)
            content_type = TEXT_CONTENT_TYPE
        if gzip:
            return gzip_join(self.snapshot.gzip_segment(), own), content_type
        return self.snapshot.current().text + own, content_type
