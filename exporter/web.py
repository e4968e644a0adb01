"""The exporter's HTTP server: landing page, /metrics, health and readiness, and `start_server`.

Every handler reads the snapshot store, the metrics registry or the remediation ledger; none of
them talks to Boomi, so a scrape costs the same whether Boomi is fast, slow or down.
`start_server` is the one place the server is bound, for the daemon, the demo and the scrape
benchmark alike.
"""

from __future__ import annotations

import html
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter import __version__
from exporter.actions import LEDGER_KEY, LedgerSource, add_actions, recent_decisions_section
from exporter.boomi import LISTENER_STATUSES
from exporter.environments import describe_environment
from exporter.exposition import Exposition
from exporter.metrics import ExporterMetrics
from exporter.negotiation import accepts_gzip
from exporter.serverlog import quiet_client_errors
from exporter.state import SnapshotStore

Reload = Callable[[], Awaitable[tuple[bool, str]]]
Notices = Callable[[], list[str]]

STORE_KEY = web.AppKey("store", SnapshotStore)
RELOAD_KEY: web.AppKey[Reload | None] = web.AppKey("reload")
LIFECYCLE_KEY = web.AppKey("lifecycle", bool)
LIFECYCLE_DISABLED = "Lifecycle API is not enabled."
METRICS_KEY = web.AppKey("metrics", ExporterMetrics)
NOTICES_KEY: web.AppKey[Notices | None] = web.AppKey("notices")

KEEPALIVE_TIMEOUT_SECONDS = 4.0


# asyncio copies whatever the socket does not take at once into its transport's buffer; writing
# a body in slices of this size bounds that copy, where one write of a 10 MB text body copied
# most of it (and, from bytes, copied it twice).
WRITE_SLICE_BYTES = 1 << 20


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    """Serve the metrics in text or OpenMetrics format, gzipped when the scraper accepts it."""
    # A header given twice counts as one list, as RFC 9110 has it.
    gzip = accepts_gzip(",".join(request.headers.getall("Accept-Encoding", [])))
    accept = ",".join(request.headers.getall("Accept", []))
    return await serve_exposition(request, request.app[METRICS_KEY].exposition(accept, gzip=gzip))


async def serve_exposition(request: web.Request, body: Exposition) -> web.StreamResponse:
    """Send a /metrics body from its chunks as they are cached: nothing is joined per scrape."""
    headers = {"Content-Type": body.content_type, "Vary": "Accept, Accept-Encoding"}
    if body.gzip:
        headers["Content-Encoding"] = "gzip"
    response = web.StreamResponse(headers=headers)
    response.content_length = body.size
    await response.prepare(request)
    if request.method != "HEAD":
        for chunk in body.chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), WRITE_SLICE_BYTES):
                await response.write(view[start : start + WRITE_SLICE_BYTES])
    await response.write_eof()
    return response


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
    """Re-read the configuration file: 200 when applied, 400 (with the reason) when refused.

    403 unless the lifecycle API is enabled, as in Prometheus (SIGHUP works regardless).
    """
    if not request.app[LIFECYCLE_KEY]:
        return web.Response(status=403, text=LIFECYCLE_DISABLED + "\n")
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
        environment = describe_environment(snapshot.environment, snapshot.environment_known)
        rows.append(
            "<tr class='container'>"
            f"<td colspan=2><b>{html.escape(snapshot.container_name or snapshot.container_id)}</b>"
            f"{' ' + html.escape(snapshot.container_type) if snapshot.container_type else ''}"
            f" &middot; <span class='environment'>{html.escape(environment)}</span>"
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
    notices = request.app[NOTICES_KEY]
    problems = "".join(
        f"<li class='down'>{html.escape(notice)}</li>" for notice in (notices() if notices else [])
    )
    decisions = await recent_decisions_section(request.app[LEDGER_KEY](), store.process_names)
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
{f"<ul>{problems}</ul>" if problems else ""}
<table><tr><th>Listener</th><th>Connector</th><th>Status</th><th></th></tr>
{"".join(rows)}
</table>
{decisions}
</body></html>
"""
    return web.Response(text=page, content_type="text/html")


def create_app(
    store: SnapshotStore,
    metrics: ExporterMetrics,
    *,
    extra_routes: Callable[[web.Application], None] | None = None,
    reload: Reload | None = None,
    notices: Notices | None = None,
    ledger: LedgerSource = lambda: None,
    lifecycle: bool = False,
) -> web.Application:
    """The exporter's aiohttp application; `extra_routes` adds e.g. the remediation webhook,
    `reload` (re-read the config: ok, message) serves `POST /-/reload` when `lifecycle` is on,
    `notices` are sentences the landing page shows above the containers (secret files, stopped
    calls), `ledger` (the open remediation ledger, or None) serves `GET /api/v1/actions` and the
    page's decisions."""
    app = web.Application()
    app[STORE_KEY] = store
    app[METRICS_KEY] = metrics
    app[RELOAD_KEY] = reload
    app[NOTICES_KEY] = notices
    app[LIFECYCLE_KEY] = lifecycle
    app.router.add_get("/", landing_handler)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/-/healthy", healthy_handler)
    app.router.add_get("/-/ready", ready_handler)
    app.router.add_post("/-/reload", reload_handler)
    add_actions(app, ledger)
    if extra_routes is not None:
        extra_routes(app)
    return app


async def start_server(
    app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (port 0: any free one); the runner and the port really bound.

    With `ssl_context` the port speaks HTTPS only (the web config file's TLS). The caller stops
    the server with `await runner.cleanup()`. Signals are the CLI's business, not aiohttp's.
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
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
