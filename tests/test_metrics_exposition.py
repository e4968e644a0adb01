"""/metrics bodies served from the renderer's cached parts: reused while the store is unchanged,
replaced when it changes, never copied per scrape, and the listener families held once."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import aiohttp
import pytest

from exporter.boomi import ListenerStatus
from exporter.metrics import ExporterMetrics
from exporter.state import SnapshotStore
from exporter.web import WRITE_SLICE_BYTES, create_app, start_server
from tests.test_metrics import OM_ACCEPT, reference_body

LISTENERS = 8


def listeners(container: int, errored: int | None = None) -> list[ListenerStatus]:
    return [
        ListenerStatus(f"c{container}-l{n}", status, "wss", status.upper())
        for n in range(LISTENERS)
        for status in ["errored" if n == errored else "listening"]
    ]


def polled_store(containers: int) -> SnapshotStore:
    store = SnapshotStore.for_containers([("acc", f"c{n}", f"molecule {n}") for n in range(containers)])  # fmt: skip
    for n in range(containers):
        store.record_success("acc", f"c{n}", listeners(n), duration_seconds=1.0, now=1.7e9)
    store.set_process_names("acc", {f"c{n}-l0": f"Orders {n}" for n in range(containers)})
    return store


def test_body_is_the_cached_parts_reused_until_the_store_changes() -> None:
    store = polled_store(3)
    metrics = ExporterMetrics(store)
    first = metrics.exposition(None)
    head, middle, own = first.chunks
    assert first.join() == reference_body(store, metrics, None)
    # Unchanged store: the same cached objects again, for text and OpenMetrics alike; only the
    # exporter's own registry is rendered afresh.
    again = metrics.exposition(None)
    assert again.chunks[0] is head and again.chunks[1] is middle
    openmetrics = metrics.exposition(OM_ACCEPT)
    assert openmetrics.chunks[0] is head and openmetrics.chunks[1] is middle
    assert openmetrics.join() == reference_body(store, metrics, OM_ACCEPT)
    metrics.observe_request("acc", "atom_query", "200", 0.1)
    counted = metrics.exposition(None)
    assert counted.chunks[0] is head and counted.chunks[2] != own
    assert b'operation="atom_query"' in counted.chunks[2]

    # A poll that finds the same listeners: new timestamps (middle), same listener families.
    store.record_success("acc", "c1", listeners(1), duration_seconds=2.0, now=1.8e9)
    polled = metrics.exposition(None)
    assert polled.chunks[0] is head and polled.chunks[1] is not middle
    assert b'container_id="c1"} 1800000000.0' in polled.chunks[1]
    assert polled.join() == reference_body(store, metrics, None)

    # A status change: the listener families are rendered again.
    store.record_success("acc", "c2", listeners(2, errored=3), duration_seconds=1.0, now=1.9e9)
    flipped = metrics.exposition(None)
    assert flipped.chunks[0] is not head
    assert b'listener_id="c2-l3",connector_type="wss",status="errored"} 1.0' in flipped.chunks[0]
    assert flipped.join() == reference_body(store, metrics, None)
    assert gzip.decompress(metrics.exposition(None, gzip=True).join()) == flipped.join()


def test_listener_text_and_segments_are_held_once_as_views_into_their_part() -> None:
    store = polled_store(4)
    metrics = ExporterMetrics(store)
    renderer = metrics.snapshot
    head_text = metrics.exposition(None).chunks[0]
    assert isinstance(head_text, bytes)
    deflated = renderer.head().deflated
    caches = list(renderer._containers.values())
    pieces = [piece for cache in caches for piece in cache.head]
    # Each container's listener lines are a slice of the joined text, not a copy of their own.
    assert all(isinstance(piece.text, memoryview) and piece.text.obj is head_text for piece in pieces)  # fmt: skip
    assert all(
        isinstance(piece.deflated, memoryview) and piece.deflated.obj is deflated
        for piece in pieces
    )
    # After a change, the containers that did not change point into the new part's bytes, so
    # nothing keeps the old ones.
    store.record_success("acc", "c0", listeners(0, errored=1), duration_seconds=1.0, now=1.9e9)
    new_text = metrics.exposition(None).chunks[0]
    assert new_text is not head_text
    for cache in caches[1:]:
        for piece in cache.head:
            assert isinstance(piece.text, memoryview) and piece.text.obj is new_text
            assert isinstance(piece.deflated, memoryview)
            assert piece.deflated.obj is renderer.head().deflated
    assert metrics.render(None)[0] == reference_body(store, metrics, None)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, ExporterMetrics, SnapshotStore]]:
    # About 3.5 MB of text: the body leaves in several slices.
    store = polled_store(800)
    metrics = ExporterMetrics(store)
    runner, port = await start_server(create_app(store, metrics), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/metrics", metrics, store
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("accept", "encoding"),
    [(None, "identity"), (OM_ACCEPT, "identity"), (None, "gzip"), (OM_ACCEPT, "gzip")],
)
async def test_metrics_serves_the_whole_body_with_its_length(
    served: tuple[str, ExporterMetrics, SnapshotStore], accept: str | None, encoding: str
) -> None:
    url, metrics, store = served
    headers = {"Accept-Encoding": encoding} | ({"Accept": accept} if accept else {})
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(url, headers=headers) as response,
    ):
        body = await response.read()
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(body)
        expected_type = metrics.exposition(accept).content_type
        assert response.headers["Content-Type"] == expected_type
        assert response.headers.get("Content-Encoding") == ("gzip" if encoding == "gzip" else None)
    text = gzip.decompress(body) if encoding == "gzip" else body
    if encoding == "identity":
        assert len(body) > 2 * WRITE_SLICE_BYTES
    # The exporter's own counters are the same as long as nothing is observed in between.
    assert text == reference_body(store, metrics, accept)


async def test_head_gets_the_length_and_no_body(
    served: tuple[str, ExporterMetrics, SnapshotStore],
) -> None:
    url, metrics, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.head(url, headers={"Accept-Encoding": "identity"}) as response:
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == metrics.exposition(None).size
            assert await response.read() == b""
        # The connection is still good for the next scrape.
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
            assert len(await response.read()) == metrics.exposition(None).size
