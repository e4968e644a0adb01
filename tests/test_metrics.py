"""The /metrics renderer: same samples as the prometheus_client collector, valid text,
OpenMetrics and gzip, and caches that follow every change of the store."""

from __future__ import annotations

import gzip
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from exporter.boomi import ListenerStatus
from exporter.metrics import ExporterMetrics, SnapshotCollector
from exporter.state import SnapshotStore

OM_ACCEPT = "application/openmetrics-text; version=1.0.0"
Samples = set[tuple[str, tuple[tuple[str, str], ...], float]]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(("boomi_listener", "boomi_container", "boomi_exporter_build"))
    }


def store_with_odd_values() -> SnapshotStore:
    store = SnapshotStore.for_containers(
        [
            ("acc", "c1", 'name with "quotes" and \\ backslash'),
            ("acc", "c2", "line\nbreak"),
            ("acc", "c3", ""),
        ]
    )
    store.record_success(
        "acc", "c1",
        [ListenerStatus("l1", "errored", "wss", "ERRORED"),
         ListenerStatus("l2", "unknown", "", "UNSUPPORTED")],
        duration_seconds=1.25, now=1763840000.123,
    )  # fmt: skip
    store.record_failure("acc", "c2", "boom", duration_seconds=0.5)
    store.set_runtime("acc", "c1", container_type="MOLECULE", online=True)
    store.set_runtime("acc", "c2", container_type="ATOM", online=False)
    store.set_process_names("acc", {"l1": 'Orders "WSS" \\ Listener'})
    return store


def reference(store: SnapshotStore) -> Samples:
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(store))
    return samples(generate_latest(registry).decode())


def test_renderer_publishes_exactly_what_the_collector_does() -> None:
    store = store_with_odd_values()
    body, content_type = ExporterMetrics(store).render(None)
    assert content_type.startswith("text/plain")
    assert samples(body.decode()) == reference(store)
    rendered = samples(body.decode())
    assert (
        "boomi_container_online",
        (("account_id", "acc"), ("container_id", "c2")),
        0.0,
    ) in rendered
    assert (
        "boomi_listener_info",
        (("account_id", "acc"), ("container_id", "c1"), ("listener_id", "l1"),
         ("process_name", 'Orders "WSS" \\ Listener')),
        1.0,
    ) in rendered  # fmt: skip


def test_openmetrics_and_gzip() -> None:
    store = store_with_odd_values()
    metrics = ExporterMetrics(store)
    text, _ = metrics.render(None)
    zipped, _ = metrics.render(None, gzip=True)
    assert gzip.decompress(zipped) == text
    body, content_type = metrics.render(OM_ACCEPT)
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    names = {family.name for family in om_families(body.decode())}
    assert {"boomi_listener_status", "boomi_api_requests", "boomi_container_up"} <= names
    assert gzip.decompress(metrics.render(OM_ACCEPT, gzip=True)[0]) == body


def test_caches_follow_every_change() -> None:
    store = store_with_odd_values()
    metrics = ExporterMetrics(store)
    first = metrics.render(None)[0]
    assert metrics.render(None)[0] == first
    store.record_success(
        "acc",
        "c3",
        [ListenerStatus("l9", "paused", "jms", "paused")],
        duration_seconds=1,
        now=time.time(),
    )
    second = metrics.render(None)[0]
    assert b'listener_id="l9"' in second and b'listener_id="l9"' not in first
    store.set_process_names("acc", {"l9": "Shipments"})
    third = metrics.render(None, gzip=True)[0]
    assert b'process_name="Shipments"' in gzip.decompress(third)
    store.set_containers([("acc", "c1", "renamed")])  # c2 and c3 go away
    fourth = metrics.render(None)[0].decode()
    assert 'container_id="c2"' not in fourth and 'container_id="c3"' not in fourth
    assert 'container_name="renamed"' in fourth
    assert samples(fourth) == reference(store)
    # The exporter's own counters are fresh on every scrape, cached snapshot or not.
    metrics.observe_request("acc", "atom_query", "200", 0.1)
    assert (
        b'boomi_api_requests_total{account_id="acc",code="200",operation="atom_query"} 1.0'
        in (metrics.render(None)[0])
    )
