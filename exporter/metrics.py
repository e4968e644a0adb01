"""Every metric the exporter publishes, named in one place.

Listener and container values come from `SnapshotStore` through a custom collector: no I/O and
no awaiting at scrape time, and series that vanish from Boomi vanish from `/metrics`. The
exporter's own instrumentation (API calls, remediation outcomes) uses ordinary counters.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.boomi import LISTENER_STATUSES
from exporter.state import SnapshotStore

CACHED = "Values come from a background poll of the Boomi API, not from this scrape."

API_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SnapshotCollector(Collector):
    """Yields listener and container metrics from the snapshot store's current contents."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        """Build the metric families from the store; called on every scrape."""
        status = GaugeMetricFamily(
            "boomi_listener_status",
            "Listener status: 1 for the current one of listening, paused, errored, unknown. "
            + CACHED,
            labels=["account_id", "container_id", "listener_id", "connector_type", "status"],
        )
        listener_info = GaugeMetricFamily(
            "boomi_listener_info",
            "Process name of a listener (a listener is a process). " + CACHED,
            labels=["account_id", "container_id", "listener_id", "process_name"],
        )
        container_info = GaugeMetricFamily(
            "boomi_container_info",
            "A monitored Boomi runtime, its name and type (ATOM, MOLECULE, CLOUD; '' until known).",
            labels=["account_id", "container_id", "container_name", "container_type"],
        )
        online = GaugeMetricFamily(
            "boomi_container_online",
            "0 if Boomi reports the runtime OFFLINE (its listeners are then not polled), else 1. "
            "From a background Atom query; absent until that has answered.",
            labels=["account_id", "container_id"],
        )
        up = GaugeMetricFamily(
            "boomi_container_up",
            "1 if the last background poll of this container's listeners succeeded.",
            labels=["account_id", "container_id"],
        )
        last_success = GaugeMetricFamily(
            "boomi_container_last_success_timestamp_seconds",
            "Unix time of the last successful background poll of this container.",
            labels=["account_id", "container_id"],
        )
        duration = GaugeMetricFamily(
            "boomi_container_poll_duration_seconds",
            "Duration of the last finished background poll cycle of this container.",
            labels=["account_id", "container_id"],
        )
        names = self._store.process_names
        for snapshot in self._store.containers():
            ids = [snapshot.account_id, snapshot.container_id]
            container_info.add_metric(
                [*ids, snapshot.container_name or snapshot.container_id, snapshot.container_type], 1
            )
            if snapshot.online is not None:
                online.add_metric(ids, 1 if snapshot.online else 0)
            if snapshot.polled:
                up.add_metric(ids, 1 if snapshot.up else 0)
            if snapshot.last_success_time is not None:
                last_success.add_metric(ids, snapshot.last_success_time)
            if snapshot.poll_duration_seconds is not None:
                duration.add_metric(ids, snapshot.poll_duration_seconds)
            for listener in snapshot.listeners:
                labels = [*ids, listener.listener_id, listener.connector_type]
                for value in LISTENER_STATUSES:
                    status.add_metric([*labels, value], 1 if listener.status == value else 0)
                name = names.get((snapshot.account_id, listener.listener_id))
                if name:
                    listener_info.add_metric([*ids, listener.listener_id, name], 1)
        build = GaugeMetricFamily(
            "boomi_exporter_build_info",
            "Version of boomi-listener-exporter; always 1.",
            labels=["version"],
        )
        build.add_metric([__version__], 1)
        yield from (
            status,
            listener_info,
            container_info,
            online,
            up,
            last_success,
            duration,
            build,
        )


class ExporterMetrics:
    """The exporter's registry: the snapshot collector plus its own instrumentation."""

    def __init__(self, store: SnapshotStore) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(store))
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

    def render(self, accept_header: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for, with its content type."""
        encoder, content_type = choose_encoder(accept_header or "")
        return encoder(self.registry), content_type
