"""A PROTOTYPE of the change proposed in bench/RESULTS.md to `exporter.metrics.SnapshotRenderer`.

Not used by the exporter. It measures one idea on top of the committed renderer, so the change
can be made in exporter/ with numbers to compare against, and it must produce exactly the bytes
`ExporterMetrics.render` produces (`python -m bench.run scrape` checks that and reports
`proposed_output_identical`; false means exporter/metrics.py changed since this was written).

The committed renderer caches the whole body (and its deflate segment) per `store.version`,
which every `record_success` bumps: with 1,000 containers polled every 60 s the store changes
17 times a second, so a Prometheus scraping every 15 s misses the cache on every scrape and
pays a full rebuild (joining 7,000 chunks, deflating 10.5 MB, CRC) each time.

The proposal splits the body where its cost is:
- head: `boomi_listener_status` and `boomi_listener_info` (50,000 of the 54,000 lines for
  10,000 listeners), cached with its raw-deflate segment (sync flush) and CRC per a new
  `store.listeners_version`, bumped only when some container's listener tuple really changes,
  containers are added or removed, or process names change. `record_success` keeps the old
  tuple object when the poll returned equal listeners, so per-container chunks stay valid too;
- middle: the container families and build info (about 5,000 short lines, 0.6 MB), cached per
  `store.version` like today: rebuilt from the per-container chunks and deflated (a few ms);
- tail: the exporter's own registry, rendered on every scrape as today.
gzip = header + head.deflated + middle.deflated + deflate(tail) + CRC/size trailer, with the CRC
continued over the three parts (`zlib.crc32(data, previous)`), one valid gzip member.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from prometheus_client import exposition, openmetrics

from exporter import __version__
from exporter.boomi import ListenerStatus
from exporter.metrics import (
    BUILD_INFO,
    CONTAINER_FAMILIES,
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    ExporterMetrics,
    _escape_label,
    _header,
    _line,
    container_samples,
)
from exporter.state import ContainerSnapshot, SnapshotStore

_V = TypeVar("_V")

HEAD_FAMILIES = 2  # boomi_listener_status, boomi_listener_info: the first two families


@dataclass
class VersionedStore(SnapshotStore):
    """SnapshotStore plus the counter the proposal adds: `listeners_version`."""

    listeners_version: int = 0

    def set_containers(self, containers: Iterable[tuple[str, str, str]]) -> None:
        super().set_containers(containers)
        self.listeners_version += 1

    def set_process_names(self, account_id: str, names: dict[str, str]) -> None:
        before = self.names_version
        super().set_process_names(account_id, names)
        self.listeners_version += self.names_version != before

    def forget_process_names(self, account_id: str, listener_ids: Iterable[str]) -> None:
        before = self.names_version
        super().forget_process_names(account_id, listener_ids)
        self.listeners_version += self.names_version != before

    def record_success(
        self,
        account_id: str,
        container_id: str,
        listeners: Iterable[ListenerStatus],
        *,
        duration_seconds: float,
        now: float,
    ) -> None:
        old = self.get(account_id, container_id)
        super().record_success(
            account_id, container_id, listeners, duration_seconds=duration_seconds, now=now
        )
        new = self.get(account_id, container_id)
        if old is None or new is None:
            return
        if new.listeners == old.listeners:
            # Same listeners: keep the old tuple, so identity means "unchanged" to readers.
            self._containers[(account_id, container_id)] = replace(new, listeners=old.listeners)
        else:
            self.listeners_version += 1


def _deflate(data: bytes, level: int = 1) -> bytes:
    """Raw deflate of `data` ending in a sync flush: any other such segment may follow it."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@dataclass
class _Part:
    """Exposition text kept as pieces, each with its deflate segment; one cache entry."""

    key: int
    pieces: list[tuple[bytes, bytes]]  # (text, deflated), in exposition order
    crc: int = 0
    size: int = 0
    deflated: bytes = b""
    _text: bytes | None = None

    def __post_init__(self) -> None:
        crc = 0
        for text, _ in self.pieces:
            crc = zlib.crc32(text, crc)
        self.crc = crc
        self.size = sum(len(text) for text, _ in self.pieces)
        self.deflated = b"".join(deflated for _, deflated in self.pieces)

    @property
    def text(self) -> bytes:
        if self._text is None:
            self._text = b"".join(text for text, _ in self.pieces)
        return self._text


def _piece(text: str, level: int = 1) -> tuple[bytes, bytes]:
    data = text.encode()
    return data, _deflate(data, level)


class SplitRenderer:
    """Head cached per listeners_version, middle per store version (see the module docstring)."""

    def __init__(self, store: VersionedStore, *, middle_level: int = 1) -> None:
        self._store = store
        # Level 0 stores the middle uncompressed in the gzip stream: cheaper, 0.5 MB larger.
        self._middle_level = middle_level
        # (account, container) -> (listeners tuple, names version, one piece per head family)
        self._head_chunks: dict[
            tuple[str, str],
            tuple[tuple[ListenerStatus, ...], int, tuple[tuple[bytes, bytes], ...]],
        ] = {}
        # (account, container) -> (snapshot, middle lines per family)
        self._middle_chunks: dict[tuple[str, str], tuple[ContainerSnapshot, tuple[str, ...]]] = {}
        self._ids: dict[tuple[str, str], str] = {}
        self._head_headers = [_piece(_header(f)) for f in CONTAINER_FAMILIES[:HEAD_FAMILIES]]
        self._head: _Part | None = None
        self._middle: _Part | None = None

    def _chunks(self, snapshot: ContainerSnapshot) -> tuple[str, ...]:
        lines: list[list[str]] = [[] for _ in CONTAINER_FAMILIES]
        for index, labels, value in container_samples(snapshot, self._store.process_names):
            lines[index].append(_line(CONTAINER_FAMILIES[index], labels, value))
        return tuple("".join(family_lines) for family_lines in lines)

    def _head_of(self, snapshot: ContainerSnapshot) -> tuple[tuple[bytes, bytes], ...]:
        key = (snapshot.account_id, snapshot.container_id)
        names_version = self._store.names_version
        cached = self._head_chunks.get(key)
        if cached is not None and cached[0] is snapshot.listeners and cached[1] == names_version:
            return cached[2]
        # Each container's lines of each head family are deflated on their own, once: a
        # status change then costs one container's compression, not the whole head's.
        pieces = tuple(_piece(text) for text in self._chunks(snapshot)[:HEAD_FAMILIES])
        self._head_chunks[key] = (snapshot.listeners, names_version, pieces)
        return pieces

    def _middle_of(self, snapshot: ContainerSnapshot) -> tuple[str, ...]:
        key = (snapshot.account_id, snapshot.container_id)
        cached = self._middle_chunks.get(key)
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        # The container families, formatted directly: the escaped id labels are kept per
        # container, so a refreshed snapshot costs five short f-strings (the families and label
        # order of exporter.metrics.container_samples; the identical-output check guards it).
        ids = self._ids.get(key)
        if ids is None:
            ids = self._ids[key] = (
                f'account_id="{_escape_label(snapshot.account_id)}",'
                f'container_id="{_escape_label(snapshot.container_id)}"'
            )
        name = _escape_label(snapshot.container_name or snapshot.container_id)
        kind = _escape_label(snapshot.container_type)
        chunks = (
            f'boomi_container_info{{{ids},container_name="{name}",container_type="{kind}"}} 1.0\n',
            ""
            if snapshot.online is None
            else f"boomi_container_online{{{ids}}} {1.0 if snapshot.online else 0.0!r}\n",
            f"boomi_container_up{{{ids}}} {1.0 if snapshot.up else 0.0!r}\n"
            if snapshot.polled
            else "",
            ""
            if snapshot.last_success_time is None
            else f"boomi_container_last_success_timestamp_seconds{{{ids}}}"
            f" {snapshot.last_success_time!r}\n",
            ""
            if snapshot.poll_duration_seconds is None
            else f"boomi_container_poll_duration_seconds{{{ids}}}"
            f" {snapshot.poll_duration_seconds!r}\n",
        )
        self._middle_chunks[key] = (snapshot, chunks)
        return chunks

    @staticmethod
    def _prune(cache: dict[tuple[str, str], _V], snapshots: list[ContainerSnapshot]) -> None:
        if len(cache) > len(snapshots):
            live = {(s.account_id, s.container_id) for s in snapshots}
            for key in [key for key in cache if key not in live]:
                del cache[key]

    def head(self) -> _Part:
        version = self._store.listeners_version
        if self._head is not None and self._head.key == version:
            return self._head
        snapshots = self._store.containers()
        chunks = [self._head_of(snapshot) for snapshot in snapshots]
        self._prune(self._head_chunks, snapshots)
        pieces: list[tuple[bytes, bytes]] = []
        for index, header in enumerate(self._head_headers):
            pieces.append(header)
            pieces.extend(container[index] for container in chunks if container[index][0])
        self._head = _Part(version, pieces)
        return self._head

    def middle(self) -> _Part:
        version = self._store.version
        if self._middle is not None and self._middle.key == version:
            return self._middle
        snapshots = self._store.containers()
        chunks = [self._middle_of(snapshot) for snapshot in snapshots]
        self._prune(self._middle_chunks, snapshots)
        parts: list[str] = []
        for index, family in enumerate(CONTAINER_FAMILIES[HEAD_FAMILIES:]):
            parts.append(_header(family))
            parts.extend(container[index] for container in chunks)
        parts.append(_header(BUILD_INFO))
        parts.append(_line(BUILD_INFO, (__version__,), 1.0))
        self._middle = _Part(version, [_piece("".join(parts), self._middle_level)])
        return self._middle


def _gzip(head: _Part, middle: _Part, tail: bytes) -> bytes:
    """One gzip member of head + middle + tail, from the cached deflate segments.

    Python's zlib has no crc32_combine, so the CRC is continued over the middle's text (0.5 MB)
    and the tail per scrape; the head's CRC (9.9 MB) is computed once per listeners_version.
    """
    crc = zlib.crc32(tail, zlib.crc32(middle.text, head.crc))
    size = (head.size + middle.size + len(tail)) & 0xFFFFFFFF
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", int(time.time())) + b"\x00\xff"
    trailer = struct.pack("<II", crc, size)
    return b"".join((header, head.deflated, middle.deflated, body, trailer))


class ProposedMetrics:
    """`ExporterMetrics.render` with the split renderer; the own registry is the exporter's."""

    def __init__(
        self, store: VersionedStore, metrics: ExporterMetrics, *, middle_level: int = 1
    ) -> None:
        self._metrics = metrics
        self._renderer = SplitRenderer(store, middle_level=middle_level)

    def render(self, accept_header: str | None, *, gzip: bool = False) -> tuple[bytes, str]:
        if "application/openmetrics-text" in (accept_header or ""):
            own = openmetrics.exposition.generate_latest(self._metrics.registry)  # type: ignore[no-untyped-call]
            content_type = OPENMETRICS_CONTENT_TYPE
        else:
            own = exposition.generate_latest(self._metrics.registry)
            content_type = TEXT_CONTENT_TYPE
        head, middle = self._renderer.head(), self._renderer.middle()
        if gzip:
            return _gzip(head, middle, own), content_type
        return b"".join((head.text, middle.text, own)), content_type
