"""Issue 18, target 3: where the memory of 10,000 listeners goes (tracemalloc), in-process.

The store is filled as the scrape benchmark fills it (`bench.scrape.fill`: 1,000 containers x
10 synthetic listeners, every process name), then put under a scrape load: rounds of 250
container refreshes (what a scrape every 15 s finds with 1,000 containers polled every 60 s),
each followed by one render of every format (text, gzip, OpenMetrics+gzip). tracemalloc runs
from before the fill; its top 10 allocation sites (by line, and by file) are taken after the
fill, after the first render of every format, and after the load. Beside them: this process's
VmRSS at the same marks, so what tracemalloc sees can be told from the interpreter, the imports
and the allocator's own overhead.

tracemalloc costs memory and time itself, so the RSS this benchmark reports is not the target's
number: `scrape` measures the RSS of a real /metrics server process, without tracemalloc.
"""

from __future__ import annotations

import gc
import linecache
import tracemalloc
from typing import Any

from bench.common import REPO, print_table, rss_bytes
from bench.scrape import CHANGED_PER_SCRAPE, PROMETHEUS_ACCEPT, fill, make_fleet, update_one
from exporter.metrics import ExporterMetrics
from exporter.state import SnapshotStore

TOP = 10


def _where(frame: tracemalloc.Frame) -> str:
    path = frame.filename
    if path.startswith(str(REPO)):
        path = path[len(str(REPO)) + 1 :]
    elif "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    return f"{path}:{frame.lineno}"


def _top(snapshot: tracemalloc.Snapshot, key: str) -> list[dict[str, Any]]:
    rows = []
    for stat in snapshot.statistics(key)[:TOP]:
        frame = stat.traceback[0]
        rows.append(
            {
                "where": _where(frame) if key == "lineno" else _where(frame).rsplit(":", 1)[0],
                "code": linecache.getline(frame.filename, frame.lineno).strip()
                if key == "lineno"
                else "",
                "bytes": stat.size,
                "blocks": stat.count,
            }
        )
    return rows


def _mark(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    traced = sum(stat.size for stat in snapshot.statistics("filename"))
    rss = rss_bytes()
    mark = {
        "mark": name,
        "rss_bytes": rss,
        "traced_bytes": traced,
        "top_lines": _top(snapshot, "lineno"),
        "top_files": _top(snapshot, "filename"),
    }
    rows.append(mark)
    print(f"  {name}: RSS {rss / 2**20:.1f} MiB, traced {traced / 2**20:.1f} MiB", flush=True)
    return mark


def _table(mark: dict[str, Any], containers: int, listeners: int) -> str:
    return print_table(
        f"tracemalloc top {TOP} by line, {containers * listeners:,} listeners, {mark['mark']}"
        f" (traced {mark['traced_bytes'] / 2**20:.1f} MiB, RSS {mark['rss_bytes'] / 2**20:.1f}"
        " MiB)",
        ["where", "code", "MiB", "blocks"],
        [
            [row["where"], f"`{row['code'][:70]}`", f"{row['bytes'] / 2**20:.2f}", row["blocks"]]
            for row in mark["top_lines"]
        ],
    )


def run(*, containers: int, listeners: int, rounds: int) -> dict[str, Any]:
    """Fill, render every format, then `rounds` rounds of polls and renders, under tracemalloc."""
    gc.collect()
    before = rss_bytes()
    tracemalloc.start(1)
    marks: list[dict[str, Any]] = []
    fleet = make_fleet(containers, listeners)
    store = SnapshotStore()
    metrics = ExporterMetrics(store)
    fill(store, metrics, fleet)
    after_fill = _mark("after the fill", marks)
    formats = ((None, False), (None, True), (PROMETHEUS_ACCEPT, True))
    bodies = [metrics.exposition(accept, gzip=gz).size for accept, gz in formats]
    after_render = _mark("after one render of every format", marks)
    index = 0
    for _ in range(rounds):
        for _ in range(min(CHANGED_PER_SCRAPE, containers)):
            update_one(store, metrics, fleet, index, flip=False)
            index += 1
        for accept, gz in formats:
            metrics.exposition(accept, gzip=gz)
    after_load = _mark(f"after {rounds} rounds of polls and scrapes", marks)
    tracemalloc.stop()
    marked = (after_fill, after_render, after_load)
    tables = [_table(mark, containers, listeners) for mark in marked]
    files = print_table(
        f"tracemalloc by file, {after_load['mark']}",
        ["file", "MiB", "blocks"],
        [
            [row["where"], f"{row['bytes'] / 2**20:.2f}", row["blocks"]]
            for row in after_load["top_files"]
        ],
    )
    return {
        "parameters": {
            "containers": containers,
            "listeners_per_container": listeners,
            "rounds": rounds,
            "changed_per_round": min(CHANGED_PER_SCRAPE, containers),
            "fill": "bench.scrape.fill (SnapshotStore.record_success, synthetic listeners)",
        },
        "rss_before_fill_bytes": before,
        "body_bytes": {"text": bodies[0], "gzip": bodies[1], "openmetrics_gzip": bodies[2]},
        "marks": marks,
        "tables": [*tables, files],
    }
