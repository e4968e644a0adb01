"""The exporter's HTTP server: landing page, /metrics, health and readiness, and `start_server`.

Every handler reads the snapshot store or the metrics registry; none of them talks to Boomi, so
a scrape costs the same whether Boomi is fast, slow or down. `start_server` is the one place the
server is bound, for the daemon, the demo and the scrape benchmark alike.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter import __version__
from exporter.boomi import LISTENER_STATUSES
from exporter.metrics import ExporterMetrics
from exporter.negotiation import accepts_gzip
from exporter.serverlog import quiet_client_errors
from exporter.state import SnapshotStore

Reload = Callable[[], Awaitable[tuple[bool, str]]]

STORE_KEY = web.AppKey("store", SnapshotStore)
RELOAD_KEY: web.AppKey[Reload | None] = web.AppKey("reload")
METRICS_KEY = web.AppKey("metrics", ExporterMetrics)

KEEPALIVE_TIMEOUT_SECONDS = 4.0


async def metrics_handler(request: web.Request) -> web.Response:
    """Serve the metrics in text or OpenMetrics format, gzipped when the scraper accepts it."""
    # A header given twice counts as one list, as RFC 9110 has it.
    gzip = accepts_gzip(",".join(request.headers.getall("Accept-Encoding", [])))
    accept = ",".join(request.headers.getall("Accept", []))
    body, content_type = request.app[METRICS_KEY].render(accept, gzip=gzip)
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


async def healthy_handler(_request: web.Request) -> web.Response:
    """200 while the process runs."""
    return web.Response(text="Healthy.\n")


async def ready_handler(request: web.Request) -> web.Response:
    """200 once every container has finished its first poll, 503 before."""
    if request.app[STORE_KEY].ready():
        return web.Response(text="Ready.\n")
    return web.Response(
        status=503, text="Not ready: waiting for the first poll of every container.\n"
    )


async def reload_handler(request: web.Request) -> web.Response:
    """Re-read the configuration file: 200 when applied, 400 (with the reason) when refused."""
    reload = request.app[RELOAD_KEY]
    if reload is None:
        return web.Response(status=400, text="No configuration file to reload (demo mode).\n")
    ok, message = await reload()
    return web.Response(status=200 if ok else 400, text=message + "\n")


def _age(seconds: float | None, now: float) -> str:
    if seconds is None:
        return "never"
    return f"{max(0.0, now - seconds):.0f} s ago"


async def landing_handler(request: web.Request) -> web.Response:
    """A page for people: links, and every container and listener with its status."""
    store = request.app[STORE_KEY]
    now = time.time()
    rows: list[str] = []
    for snapshot in store.containers():
        if snapshot.online is False:
            state, css = "runtime OFFLINE, not polled", "down"
        elif not snapshot.polled:
            state, css = "waiting for first poll", "waiting"
        else:
            state = css = "up" if snapshot.up else "down"
        error = snapshot.last_error and f"<br><small>{html.escape(snapshot.last_error)}</small>"
        rows.append(
            "<tr class='container'>"
            f"<td colspan=2><b>{html.escape(snapshot.container_name or snapshot.container_id)}</b>"
            f"{' ' + html.escape(snapshot.container_type) if snapshot.container_type else ''}"
            f"<br><small>{html.escape(snapshot.account_id)} / "
            f"{html.escape(snapshot.container_id)}</small></td>"
            f"<td class='{css}'>{state}{error}</td>"
            f"<td>last success {_age(snapshot.last_success_time, now)}</td></tr>"
        )
        for listener in snapshot.listeners:
            name = store.process_names.get((snapshot.account_id, listener.listener_id), "")
            rows.append(
                "<tr>"
                f"<td>{html.escape(name)}<br><small>{html.escape(listener.listener_id)}</small></td>"
                f"<td>{html.escape(listener.connector_type) or '&ndash;'}</td>"
                f"<td class='{listener.status}'>{listener.status}</td><td></td></tr>"
            )
    counts = Counter(
        listener.status for snapshot in store.containers() for listener in snapshot.listeners
    )
    summary = ", ".join(f"{counts[status]} {status}" for status in LISTENER_STATUSES)
    containers = store.containers()
    down = sum(1 for snapshot in containers if snapshot.polled and not snapshot.up)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Boomi listener exporter</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
.container td {{ background: #f4f4f4; }}
.listening, .up {{ color: #1a7f37; }} .paused, .waiting {{ color: #9a6700; }}
.errored, .down, .unknown {{ color: #cf222e; font-weight: bold; }}
</style></head>
<body><h1>Boomi listener exporter</h1>
<p>Version {html.escape(__version__)}.
<a href="/metrics">Metrics</a> &middot; <a href="/-/healthy">Health</a> &middot;
<a href="/-/ready">Readiness</a></p>
<p>{len(containers)} containers ({down} not polled successfully);
{sum(counts.values())} listeners: {summary}.</p>
<table><tr><th>Listener</th><th>Connector</th><th>Status</th><th></th></tr>
{"".join(rows)}
</table></body></html>
"""
    return web.Response(text=page, content_type="text/html")


def create_app(
    store: SnapshotStore,
    metrics: ExporterMetrics,
    *,
    extra_routes: Callable[[web.Application], None] | None = None,
    reload: Reload | None = None,
) -> web.Application:
    """The exporter's aiohttp application; `extra_routes` adds e.g. the remediation webhook,
    `reload` (re-read the config: ok, message) serves `POST /-/reload`."""
    app = web.Application()
    app[STORE_KEY] = store
    app[METRICS_KEY] = metrics
    app[RELOAD_KEY] = reload
    app.router.add_get("/", landing_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/-/healthy", healthy_handler)
    app.router.add_get("/-/ready", ready_handler)
    app.router.add_post("/-/reload", reload_handler)
    if extra_routes is not None:
        extra_routes(app)
    return app


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (port 0: any free one); the runner and the port really bound.

    The caller stops the server with `await runner.cleanup()`. Signals are the CLI's business,
    not aiohttp's.
    """
    quiet_client_errors()
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=1.0,
        # Also closes a connection that has not sent complete headers by then (aiohttp has
        # no other header timeout); scrapers just open a new connection.
        keepalive_timeout=KEEPALIVE_TIMEOUT_SECONDS,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
