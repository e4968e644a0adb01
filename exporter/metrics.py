"""Every metric the exporter publishes, named in one place, and the `/metrics` renderer.

Listener and container values come from `SnapshotStore`: no I/O and no awaiting at scrape time,
and series that vanish from Boomi vanish from `/metrics`. What is published per container is
defined once, in `listener_samples` and `container_samples` (`snapshot_samples` is both); each
sample names its family, so the order of a family tuple is exposition order and nothing else. Two
things read them:
- `SnapshotCollector`, a prometheus_client collector (the usual way, for a registry);
- `SnapshotRenderer`, which `/metrics` uses, with caches so that a scrape of 10,000 listeners
  costs a few milliseconds even though the store changes with every poll.
The exporter's own instrumentation (API calls, remediation outcomes, reloads) uses ordinary
prometheus_client metrics in a small registry rendered on every scrape.

The body is three parts, each kept until something it shows changes:
- head: `boomi_listener_status` and `boomi_listener_info`, nine tenths of the body. Kept per
  `store.listeners_version`, which changes with the set of containers, a container's listeners
  or a process name, but not with a poll that finds the same listeners. It is joined from
  per-container pieces kept while the container's `snapshot.listeners` is the same object and
  its listeners' process names are the same, so a status flip or a new name renders one
  container again.
- middle: the container families and the build info, about 5 lines per container. Kept per
  `store.version`, which every poll changes; joined from per-container lines kept while the
  container's snapshot is the same object. A poll's new snapshot has its 5 lines formatted at
  once (the store's `on_update`), on the poll path, so a scrape only joins them.
- tail: the exporter's own registry, rendered on every scrape in the format asked for.
Every piece keeps, beside its text, its own raw deflate segment ending in a sync flush; such
segments may follow one another, so a gzip body is the cached segments, the compressed tail and
a trailer whose CRC is continued over the three parts. The middle's segment is stored (level 0),
which is cheaper than compressing what changes with every poll. A part's text is joined only when
a text scrape comes, and then kept with its version like its segments. Once a part's text or
segments are joined, each piece holds a view into them rather than its own copy, so the
listener families are held once, not twice (10 MB at 10,000 listeners). A body is served as
its chunks (`Exposition`): the cached parts and the fresh tail, never copied into one per scrape.
Caches of containers that are no longer tracked are dropped.

Over 500 lines: the metric names and the renderer's caches of their text are one contract;
the body's chunks (exposition.py) and content negotiation (negotiation.py) are out already.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, exposition, openmetrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.boomi import LISTENER_STATUSES, ListenerStatus
from exporter.exposition import Chunk, Exposition
from exporter.negotiation import accepts_openmetrics
from exporter.state import ContainerSnapshot, SnapshotStore

CACHED = "Values come from a background poll of the Boomi API, not from this scrape."

API_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The formats this renderer writes, by hand for the snapshot families. client_python's
# CONTENT_TYPE_LATEST follows its own newest format (text version 1.0.0 since 0.22), which is not
# a promise about what this module writes.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


# eq=False: a family is one object, compared and hashed by identity, which keeps the lookup per
# sample in `_container_lines` cheap.
@dataclass(frozen=True, eq=False)
class Family:
    """One gauge family published from the snapshot store."""

    name: str
    help: str
    labels: tuple[str, ...]


IDS = ("account_id", "container_id")  # the first labels of every family of a container

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
    "A monitored Boomi runtime, its name and type (ATOM, MOLECULE, CLOUD; '' until known), and "
    "the environment it is attached to (classification PROD or TEST; all three '' while not "
    "known or not attached). The environment comes from a background query.",
    (
        *IDS,
        "container_name",
        "container_type",
        "environment_id",
        "environment_name",
        "environment_classification",
    ),
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
LISTENER_FAMILIES = (LISTENER_STATUS, LISTENER_INFO)
CONTAINER_FAMILIES = (CONTAINER_INFO, CONTAINER_ONLINE, CONTAINER_UP, LAST_SUCCESS, POLL_DURATION)
SNAPSHOT_FAMILIES = (*LISTENER_FAMILIES, *CONTAINER_FAMILIES)
BUILD_INFO = Family(
    "boomi_exporter_build_info", "Version of boomi-listener-exporter; always 1.", ("version",)
)

Sample = tuple[Family, tuple[str, ...], float]  # (its family, label values, value)


def listener_samples(
    snapshot: ContainerSnapshot, names: dict[tuple[str, str], str]
) -> Iterator[Sample]:
    """What is published about a container's listeners, in LISTENER_FAMILIES."""
    ids = (snapshot.account_id, snapshot.container_id)
    for listener in snapshot.listeners:
        labels = (*ids, listener.listener_id, listener.connector_type)
        for status in LISTENER_STATUSES:
            yield LISTENER_STATUS, (*labels, status), 1.0 if listener.status == status else 0.0
    for listener in snapshot.listeners:
        name = names.get((snapshot.account_id, listener.listener_id))
        if name:
            yield LISTENER_INFO, (*ids, listener.listener_id, name), 1.0


def container_samples(snapshot: ContainerSnapshot) -> Iterator[Sample]:
    """What is published about a container itself, in CONTAINER_FAMILIES."""
    ids = (snapshot.account_id, snapshot.container_id)
    name = snapshot.container_name or snapshot.container_id
    environment = snapshot.environment
    yield (
        CONTAINER_INFO,
        (
            *ids,
            name,
            snapshot.container_type,
            environment.environment_id if environment else "",
            environment.name if environment else "",
            environment.classification if environment else "",
        ),
        1.0,
    )
    if snapshot.online is not None:
        yield CONTAINER_ONLINE, ids, 1.0 if snapshot.online else 0.0
    if snapshot.polled:
        yield CONTAINER_UP, ids, 1.0 if snapshot.up else 0.0
    if snapshot.last_success_time is not None:
        yield LAST_SUCCESS, ids, snapshot.last_success_time
    if snapshot.poll_duration_seconds is not None:
        yield POLL_DURATION, ids, snapshot.poll_duration_seconds


def snapshot_samples(
    snapshot: ContainerSnapshot, names: dict[tuple[str, str], str]
) -> Iterator[Sample]:
    """Everything published about one container and its listeners, in SNAPSHOT_FAMILIES."""
    yield from listener_samples(snapshot, names)
    yield from container_samples(snapshot)


class SnapshotCollector(Collector):
    """The snapshot store as prometheus_client metric families, rebuilt on every collect()."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        """Build the metric families from the store."""
        families = {
            family: GaugeMetricFamily(family.name, family.help, labels=list(family.labels))
            for family in SNAPSHOT_FAMILIES
        }
        for snapshot in self._store.containers():
            for family, labels, value in snapshot_samples(snapshot, self._store.process_names):
                families[family].add_metric(list(labels), value)
        build = GaugeMetricFamily(BUILD_INFO.name, BUILD_INFO.help, labels=list(BUILD_INFO.labels))
        build.add_metric([__version__], 1)
        yield from (*families.values(), build)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_pairs(names: Iterable[str], values: Iterable[str]) -> str:
    return ",".join(
        f'{name}="{_escape_label(value)}"' for name, value in zip(names, values, strict=True)
    )


def _line(family: Family, labels: tuple[str, ...], value: float) -> str:
    return f"{family.name}{{{_label_pairs(family.labels, labels)}}} {value!r}\n"


def _header(family: Family) -> str:
    # Identical in the text format and OpenMetrics for a gauge whose HELP has no quotes.
    return f"# HELP {family.name} {_escape_help(family.help)}\n# TYPE {family.name} gauge\n"


def _container_lines(
    samples: Iterable[Sample], families: tuple[Family, ...], ids: str
) -> tuple[str, ...]:
    """One container's samples as exposition lines, one string per family of `families`.

    `ids` is the container's IDS label pairs, escaped once: every line starts with them. This
    runs for every container a poll refreshed, so it avoids per-line generators.
    """
    lines: dict[Family, list[str]] = {family: [] for family in families}
    for family, labels, value in samples:
        pairs = ids
        if len(labels) > len(IDS):
            for name, label in zip(family.labels[len(IDS) :], labels[len(IDS) :], strict=True):
                pairs += f',{name}="{_escape_label(label)}"'
        lines[family].append(f"{family.name}{{{pairs}}} {value!r}\n")
    return tuple(map("".join, lines.values()))


@dataclass(slots=True)
class _Piece:
    """Exposition text and its raw deflate segment.

    The segment ends in a sync flush, so any other such segment may follow it in one stream.
    Either may be swapped for a view of the same bytes in its part's joined ones (`_Part`).
    """

    text: Chunk
    deflated: Chunk


_NOTHING = _Piece(b"", b"")


def _piece(text: str, level: int = 1) -> _Piece:
    if not text:
        return _NOTHING
    data = text.encode()
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return _Piece(data, compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))


def _views(joined: bytes, sizes: list[int]) -> Iterator[memoryview | None]:
    """Consecutive views of `joined`, one per size (None for an empty one).

    Empty pieces are shared (`_NOTHING`); a view would tie them to one part's bytes.
    """
    view, offset = memoryview(joined), 0
    for size in sizes:
        yield view[offset : offset + size] if size else None
        offset += size


class _Part:
    """A part of the body (head or middle) rendered for one version of the store, as pieces.

    Joining the pieces' segments (now) or texts (on first use) leaves each piece with a view
    into the joined bytes instead of its own copy: a piece that the next version reuses is
    then copied from that view into the next part, and the old bytes go with the last view.
    """

    def __init__(self, version: int, pieces: list[_Piece]) -> None:
        self.version = version
        self._pieces = pieces
        self.size = sum(len(piece.text) for piece in pieces)
        self.deflated = b"".join(piece.deflated for piece in pieces)
        sizes = [len(piece.deflated) for piece in pieces]
        for piece, view in zip(pieces, _views(self.deflated, sizes), strict=True):
            if view is not None:
                piece.deflated = view

    @cached_property
    def text(self) -> bytes:
        """The part's exposition text, joined on first use (gzip scrapes never need it)."""
        text = b"".join(piece.text for piece in self._pieces)
        sizes = [len(piece.text) for piece in self._pieces]
        for piece, view in zip(self._pieces, _views(text, sizes), strict=True):
            if view is not None:
                piece.text = view
        return text

    @cached_property
    def crc(self) -> int:
        """CRC-32 of the text, computed piece by piece without joining it."""
        crc = 0
        for piece in self._pieces:
            crc = zlib.crc32(piece.text, crc)
        return crc


def _names_of(
    snapshot: ContainerSnapshot, names: dict[tuple[str, str], str]
) -> tuple[str | None, ...]:
    return tuple(names.get((snapshot.account_id, item.listener_id)) for item in snapshot.listeners)


@dataclass
class _ContainerCache:
    """What the renderer keeps of one container between scrapes."""

    ids: str  # the container's IDS label pairs, escaped
    listeners: tuple[ListenerStatus, ...] | None = None  # the tuple `head` was rendered from
    names_version: int = -1  # and the store's names_version then
    names: tuple[str | None, ...] = ()  # and the process names of those listeners
    head: tuple[_Piece, ...] = ()  # one per LISTENER_FAMILIES
    snapshot: ContainerSnapshot | None = None  # the snapshot `middle` was rendered from
    middle: tuple[str, ...] = ()  # lines, one string per CONTAINER_FAMILIES


class SnapshotRenderer:
    """Renders the snapshot families as head and middle parts (see the module docstring)."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store
        store.on_update = self.prepare  # one renderer per store
        self._containers: dict[tuple[str, str], _ContainerCache] = {}
        self._head_headers = [_piece(_header(family)) for family in LISTENER_FAMILIES]
        self._middle_headers = [_header(family) for family in CONTAINER_FAMILIES]
        self._build_info = _header(BUILD_INFO) + _line(BUILD_INFO, (__version__,), 1.0)
        self._head: _Part | None = None
        self._middle: _Part | None = None

    def _caches(self, snapshots: list[ContainerSnapshot]) -> list[_ContainerCache]:
        """The cache entry of each snapshot's container; those of untracked containers go."""
        caches = []
        for snapshot in snapshots:
            key = (snapshot.account_id, snapshot.container_id)
            cache = self._containers.get(key)
            if cache is None:
                cache = self._containers[key] = _ContainerCache(_label_pairs(IDS, key))
            caches.append(cache)
        # Every tracked container has an entry now, so more entries means some are stale.
        if len(self._containers) > len(snapshots):
            live = {(snapshot.account_id, snapshot.container_id) for snapshot in snapshots}
            for key in [key for key in self._containers if key not in live]:
                del self._containers[key]
        return caches

    def head(self) -> _Part:
        """The listener families, rebuilt only when `store.listeners_version` changed."""
        version = self._store.listeners_version
        if self._head is not None and self._head.version == version:
            return self._head
        snapshots = self._store.containers()
        names, names_version = self._store.process_names, self._store.names_version
        caches = self._caches(snapshots)
        for snapshot, cache in zip(snapshots, caches, strict=True):
            # A tuple kept by the store for an unchanged poll is the same object.
            same = cache.listeners is snapshot.listeners
            if same and cache.names_version != names_version:
                # Names changed somewhere: only containers whose own names changed render again.
                own = _names_of(snapshot, names)
                same, cache.names, cache.names_version = own == cache.names, own, names_version
            if not same:
                lines = _container_lines(
                    listener_samples(snapshot, names), LISTENER_FAMILIES, cache.ids
                )
                # Deflated per container, so a changed container costs its own compression.
                cache.head = tuple(_piece(text) for text in lines)
                cache.listeners, cache.names_version = snapshot.listeners, names_version
                cache.names = _names_of(snapshot, names)
        pieces: list[_Piece] = []
        for index, header in enumerate(self._head_headers):
            pieces.append(header)
            pieces.extend(cache.head[index] for cache in caches)
        self._head = _Part(version, pieces)
        return self._head

    @staticmethod
    def _format_middle(snapshot: ContainerSnapshot, cache: _ContainerCache) -> None:
        cache.middle = _container_lines(container_samples(snapshot), CONTAINER_FAMILIES, cache.ids)
        cache.snapshot = snapshot

    def prepare(self, snapshot: ContainerSnapshot) -> None:
        """Format a freshly polled container's lines now (the store's `on_update`).

        Polls are spread over the interval while scrapes come all at once: doing this work on
        the poll path takes it off the scrape's latency. Containers never rendered are left to
        the next scrape, which also drops what removed containers left.
        """
        cache = self._containers.get((snapshot.account_id, snapshot.container_id))
        if cache is not None:
            self._format_middle(snapshot, cache)

    def middle(self) -> _Part:
        """The container families and build info, rebuilt only when `store.version` changed."""
        version = self._store.version
        if self._middle is not None and self._middle.version == version:
            return self._middle
        snapshots = self._store.containers()
        caches = self._caches(snapshots)
        for snapshot, cache in zip(snapshots, caches, strict=True):
            if cache.snapshot is not snapshot:  # snapshots are replaced, never changed
                self._format_middle(snapshot, cache)
        texts: list[str] = []
        for index, header in enumerate(self._middle_headers):
            texts.append(header)
            texts.extend(cache.middle[index] for cache in caches)
        texts.append(self._build_info)
        # Stored, not compressed (level 0): the middle changes with every poll, and deflating
        # it on each scrape costs more than sending its 0.6 MB for 10,000 listeners as it is.
        self._middle = _Part(version, [_piece("".join(texts), level=0)])
        return self._middle


def gzip_chunks(head: _Part, middle: _Part, tail: bytes) -> tuple[Chunk, ...]:
    """One gzip member of `head.text + middle.text + tail`, from the parts' cached segments.

    Python's zlib cannot combine CRCs, so the CRC is continued over the middle and the tail
    from the head's; the head's own is computed once per version.
    """
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", int(time.time())) + b"\x00\xff"
    crc = zlib.crc32(tail, zlib.crc32(middle.text, head.crc))
    size = (head.size + middle.size + len(tail)) & 0xFFFFFFFF
    trailer = struct.pack("<II", crc, size)
    return (header, head.deflated, middle.deflated, body, trailer)


class CredentialsCollector(Collector):
    """`boomi_account_credentials_rejected`, read from the clients at each scrape."""

    def __init__(self) -> None:
        # (account id, calls stopped) for each configured account; set by the daemon.
        self.accounts: Callable[[], Iterable[tuple[str, bool]]] = tuple

    def collect(self) -> Iterator[Metric]:
        """One sample per configured account."""
        family = GaugeMetricFamily(
            "boomi_account_credentials_rejected",
            "1 while no call goes to Boomi for this account because Boomi rejected its"
            " credentials max_auth_failures times, until the secret changes; else 0.",
            labels=["account_id"],
        )
        for account_id, stopped in self.accounts():
            family.add_metric([account_id], 1.0 if stopped else 0.0)
        yield family


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
        self.credentials = CredentialsCollector()
        self.registry.register(self.credentials)

    def observe_request(self, account_id: str, operation: str, code: str, seconds: float) -> None:
        """Record one HTTP attempt to Boomi (the client's `on_request` hook)."""
        self.api_requests.labels(account_id, operation, code).inc()
        self.api_request_duration.labels(account_id, operation).observe(seconds)

    def count_remediation(self, labels: tuple[str, str, str, str], outcome: str) -> None:
        """Count one remediation outcome; labels are (account, container, listener, action)."""
        self.remediation_actions.labels(*labels, outcome).inc()

    def render(self, accept_header: str | None, *, gzip: bool = False) -> tuple[bytes, str]:
        """The whole exposition in the format asked for (gzip-compressed if `gzip`), joined."""
        body = self.exposition(accept_header, gzip=gzip)
        return body.join(), body.content_type

    def exposition(self, accept_header: str | None, *, gzip: bool = False) -> Exposition:
        """The whole exposition in the format asked for, as chunks: what /metrics serves."""
        if accepts_openmetrics(accept_header):
            own = openmetrics.exposition.generate_latest(self.registry)  # type: ignore[no-untyped-call]
            content_type = OPENMETRICS_CONTENT_TYPE
        else:
            own = exposition.generate_latest(self.registry)
            content_type = TEXT_CONTENT_TYPE
        head, middle = self.snapshot.head(), self.snapshot.middle()
        if gzip:
            return Exposition(gzip_chunks(head, middle, own), content_type, gzip=True)
        return Exposition((head.text, middle.text, own), content_type)
