"""The /metrics renderer: same samples as the prometheus_client collector, valid text,
OpenMetrics and gzip, and caches that follow every change of the store."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from exporter import metrics as metrics_module
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
    store.set_container_status("acc", "c1", container_type="MOLECULE", online=True)
    store.set_container_status("acc", "c2", container_type="ATOM", online=False)
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


@pytest.mark.parametrize(
    "families", ["LISTENER_FAMILIES", "CONTAINER_FAMILIES", "SNAPSHOT_FAMILIES"]
)
def test_reordering_a_family_tuple_changes_no_value(
    monkeypatch: pytest.MonkeyPatch, families: str
) -> None:
    """The family tuples give the exposition order only; every value stays in its family."""
    store = store_with_odd_values()
    expected = reference(store)
    assert samples(ExporterMetrics(store).render(None)[0].decode()) == expected
    original = getattr(metrics_module, families)
    reordered = (*original[1:], original[0])
    monkeypatch.setattr(metrics_module, families, reordered)
    body = ExporterMetrics(store).render(None)[0].decode()
    assert samples(body) == expected
    assert reference(store) == expected  # the collector too
    if families != "SNAPSHOT_FAMILIES":  # the renderer writes the other two in their order
        positions = [body.index(f"# HELP {family.name} ") for family in reordered]
        assert positions == sorted(positions)


def test_content_types_name_the_formats_written() -> None:
    metrics = ExporterMetrics(store_with_odd_values())
    assert metrics.render(None)[1] == "text/plain; version=0.0.4; charset=utf-8"
    assert metrics.render(OM_ACCEPT)[1] == (
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )


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


# Values that need escaping in label values: quotes, backslashes, newlines.
ODD = ('a "quoted" one', "back\\slash", "line\nbreak")


def listener(listener_id: str, status: str, connector_type: str = "wss") -> ListenerStatus:
    return ListenerStatus(listener_id, status, connector_type, status.upper())


def reference_body(store: SnapshotStore, metrics: ExporterMetrics, accept: str | None) -> bytes:
    """What /metrics must serve, built without any cache: SnapshotCollector's families in order,
    labels in their declared order, values as repr(), then the exporter's own registry as
    prometheus_client renders it (with `# EOF` for OpenMetrics)."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    lines = []
    for family in SnapshotCollector(store).collect():
        lines.append(f"# HELP {family.name} {escape(family.documentation)}\n")
        lines.append(f"# TYPE {family.name} gauge\n")
        for sample in family.samples:
            pairs = ",".join(f'{name}="{escape(value)}"' for name, value in sample.labels.items())
            lines.append(f"{sample.name}{{{pairs}}} {float(sample.value)!r}\n")
    own = openmetrics_latest(metrics.registry) if accept else generate_latest(metrics.registry)
    return "".join(lines).encode() + own


def assert_serves_reference(store: SnapshotStore, metrics: ExporterMetrics, step: str) -> None:
    for accept in (None, OM_ACCEPT):
        expected = reference_body(store, metrics, accept)
        # gzip first, then text: each must be right whichever format filled the caches.
        zipped, _ = metrics.render(accept, gzip=True)
        assert gzip.decompress(zipped) == expected, (step, accept)
        assert metrics.render(accept)[0] == expected, (step, accept)
        assert gzip.decompress(metrics.render(accept, gzip=True)[0]) == expected, (step, accept)
    # And the same samples as prometheus_client's own encoder finds in the collector.
    assert samples(metrics.render(None)[0].decode()) == reference(store), step


def test_body_matches_an_uncached_rendering_after_every_kind_of_change() -> None:
    store = SnapshotStore.for_containers(
        [("acc", "c1", ODD[0]), ("acc", 'c"2', ODD[1]), ("other", "c3", ODD[2]), ("acc", "c4", "")]
    )
    metrics = ExporterMetrics(store)
    first_poll = {
        "c1": [listener("l1", "listening"), listener('l"2', "errored", ODD[1])],
        'c"2': [listener("l\\3", "paused", "")],
        "c3": [listener("l4", "listening", ODD[2]), listener("l5", "unknown")],
    }
    # Times below 1e6, where repr() and prometheus_client's float formatting agree.
    clock = iter(range(1000, 2000))

    def poll(container_id: str, listeners: list[ListenerStatus]) -> None:
        account_id = "other" if container_id == "c3" else "acc"
        store.record_success(
            account_id, container_id, listeners, duration_seconds=0.25, now=next(clock) + 0.5
        )

    def flip() -> None:
        first_poll["c1"][0] = listener("l1", "errored")
        poll("c1", first_poll["c1"])

    steps = {
        "nothing polled yet": lambda: None,
        "first polls": lambda: [poll(cid, rows) for cid, rows in first_poll.items()],
        "a poll with the same listeners, reversed": lambda: poll("c1", first_poll["c1"][::-1]),
        "a status flip": flip,
        "a failed poll": lambda: store.record_failure("acc", "c1", "boom", duration_seconds=3.0),
        "names added": lambda: store.set_process_names(
            "acc", {"l1": ODD[0], 'l"2': ODD[2], "l\\3": ODD[1]}
        ),
        "names of another account": lambda: store.set_process_names("other", {"l5": "Orders"}),
        "a name forgotten": lambda: store.forget_process_names("acc", ['l"2']),
        "a container going OFFLINE": lambda: store.set_container_status(
            "acc", "c1", container_type="MOLECULE", online=False
        ),
        "a container online": lambda: store.set_container_status(
            "other", "c3", container_type="ATOM", online=True
        ),
        "a listener vanishing": lambda: poll("c3", first_poll["c3"][:1]),
        "a container removed": lambda: store.set_containers(
            [("acc", "c1", ODD[0]), ("other", "c3", ODD[2]), ("acc", "c4", "")]
        ),
        "containers reordered, renamed and one back": lambda: store.set_containers(
            [("acc", "c4", "four"), ("acc", 'c"2', "back"), ("acc", "c1", ODD[1])]
        ),
        "the returning container polled": lambda: poll('c"2', first_poll['c"2']),
    }
    for step, change in steps.items():
        change()
        assert_serves_reference(store, metrics, step)
    # The steps above really reached the body.
    body = metrics.render(None)[0].decode()
    assert (
        'boomi_listener_status{account_id="acc",container_id="c1",listener_id="l1",'
        'connector_type="wss",status="errored"} 1.0\n'
    ) in body
    assert (
        'boomi_listener_info{account_id="acc",container_id="c\\"2",listener_id="l\\\\3",'
        'process_name="back\\\\slash"} 1.0\n'
    ) in body
    assert 'boomi_container_online{account_id="acc",container_id="c1"} 0.0\n' in body
    assert 'boomi_container_up{account_id="acc",container_id="c1"} 0.0\n' in body
    assert 'container_id="c3"' not in body
    assert 'container_name="back"' in body


def test_gzip_body_is_the_text_body_under_polling() -> None:
    store = SnapshotStore.for_containers([("acc", f"c{n}", f"molecule {n}") for n in range(20)])
    metrics = ExporterMetrics(store)
    for round_ in range(3):
        for n in range(20):
            status = "errored" if (n + round_) % 7 == 0 else "listening"
            rows = [listener(f"l{n}-{m}", status if m == 0 else "listening") for m in range(5)]
            store.record_success("acc", f"c{n}", rows, duration_seconds=1.5, now=1.7e9 + n)
            if n % 5 == 0:
                metrics.observe_request("acc", "listener_status_query", "200", 0.1)
                for accept in (None, OM_ACCEPT):
                    text, _ = metrics.render(accept)
                    assert gzip.decompress(metrics.render(accept, gzip=True)[0]) == text
                    polled = n + 1 if round_ == 0 else 20
                    assert text.count(b"\nboomi_listener_status{") == polled * 5 * 4


def test_listeners_version_moves_only_when_published_listeners_change() -> None:
    store = SnapshotStore.for_containers([("acc", "c1", "one"), ("acc", "c2", "two")])
    rows = [listener("l2", "listening"), listener("l1", "errored")]

    def poll(listeners: list[ListenerStatus]) -> None:
        store.record_success("acc", "c1", listeners, duration_seconds=1.0, now=time.time())

    def listeners_of_c1() -> tuple[ListenerStatus, ...]:
        snapshot = store.get("acc", "c1")
        assert snapshot is not None
        return snapshot.listeners

    def moves(change: Callable[[], object]) -> tuple[int, int]:
        """(listeners_version, version) deltas of one change."""
        before = (store.listeners_version, store.version)
        change()
        return store.listeners_version - before[0], store.version - before[1]

    assert moves(lambda: poll(rows)) == (1, 1)
    kept = listeners_of_c1()
    assert [item.listener_id for item in kept] == ["l1", "l2"]  # sorted
    # Equal listeners, new objects in another order: nothing published about them changed.
    assert moves(lambda: poll([listener("l1", "errored"), listener("l2", "listening")])) == (0, 1)
    assert listeners_of_c1() is kept
    assert moves(lambda: poll([listener("l1", "listening"), listener("l2", "listening")])) == (1, 1)
    assert listeners_of_c1() is not kept
    assert listeners_of_c1()[0].status == "listening"
    assert moves(lambda: poll([listener("l1", "listening")])) == (1, 1)  # l2 vanished
    kept = listeners_of_c1()
    assert moves(lambda: store.record_failure("acc", "c1", "boom", duration_seconds=1)) == (0, 1)

    def offline() -> None:
        store.set_container_status("acc", "c1", container_type="ATOM", online=False)

    assert moves(offline) == (0, 1)
    assert listeners_of_c1() is kept
    assert moves(offline) == (0, 0)  # nothing new
    assert moves(lambda: store.set_process_names("acc", {"l1": "Orders"})) == (1, 1)
    assert moves(lambda: store.set_process_names("acc", {"l1": "Orders"})) == (0, 0)
    assert moves(lambda: store.forget_process_names("acc", ["l1"])) == (1, 1)
    assert moves(lambda: store.forget_process_names("acc", ["l1"])) == (0, 0)
    assert moves(lambda: store.set_containers([("acc", "c1", "renamed")])) == (1, 1)
    assert listeners_of_c1() is kept  # a rename keeps the listeners


def test_renderer_forgets_containers_that_went_away() -> None:
    store = SnapshotStore()
    metrics = ExporterMetrics(store)
    for generation in range(30):
        tracked = [("acc", f"g{generation}-c{n}", "") for n in range(5)]
        store.set_containers(tracked)
        for _, container_id, _ in tracked:
            store.record_success(
                "acc", container_id, [listener("l", "listening")], duration_seconds=1, now=1.0
            )
        assert gzip.decompress(metrics.render(None, gzip=True)[0]).count(b"container_up{") == 5
        # What the renderer keeps between scrapes is bounded by what is tracked now.
        assert len(metrics.snapshot._containers) == 5


def test_a_poll_formats_its_container_lines_before_the_scrape() -> None:
    """The store's on_update hands each new snapshot to the renderer, off the scrape path."""
    store = SnapshotStore.for_containers([("acc", "c1", "one"), ("acc", "c2", "two")])
    metrics = ExporterMetrics(store)
    metrics.render(None)  # the containers are known to the renderer from now on
    store.record_success("acc", "c1", [listener("l1", "listening")], duration_seconds=0.5, now=7.0)
    cache = metrics.snapshot._containers[("acc", "c1")]
    assert cache.snapshot is store.get("acc", "c1")
    assert (
        'boomi_container_last_success_timestamp_seconds{account_id="acc",container_id="c1"} 7.0'
        in "".join(cache.middle)
    )
    store.record_failure("acc", "c2", "boom", duration_seconds=1.0)
    assert 'boomi_container_up{account_id="acc",container_id="c2"} 0.0' in "".join(
        metrics.snapshot._containers[("acc", "c2")].middle
    )
    assert (
        b'boomi_container_up{account_id="acc",container_id="c2"} 0.0\n' in metrics.render(None)[0]
    )
