"""Reading the remediation ledger over HTTP: `GET /api/v1/actions`, and the landing page's
table of the last decisions.

Both only read the ledger (through its worker thread, never on the event loop) and show the
fields of its entries, which hold nothing secret. With remediation never enabled there is no
ledger: the API answers 404 and the page shows no table.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from exporter.ledger import RECENT_DEFAULT, RECENT_MAX, Entry, Ledger, LedgerError

log = logging.getLogger(__name__)

LedgerSource = Callable[[], Ledger | None]
LEDGER_KEY: web.AppKey[LedgerSource] = web.AppKey("ledger")
PAGE_DECISIONS = 20
_DIGITS = re.compile(r"[0-9]{1,12}")


def parse_limit(text: str | None) -> int:
    """The `limit` query parameter: RECENT_DEFAULT when absent, at most RECENT_MAX."""
    if text is None:
        return RECENT_DEFAULT
    if not _DIGITS.fullmatch(text) or int(text) < 1:
        raise ValueError(f"limit must be a positive whole number (at most {RECENT_MAX} are sent)")
    return min(int(text), RECENT_MAX)


async def actions_handler(request: web.Request) -> web.Response:
    """`GET /api/v1/actions?limit=N`: the newest ledger entries first, as JSON."""
    ledger = request.app[LEDGER_KEY]()
    if ledger is None:
        return web.json_response(
            {"error": "remediation is not enabled: there is no ledger"}, status=404
        )
    try:
        limit = parse_limit(request.query.get("limit"))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    try:
        entries = await ledger.recent(limit)
    except LedgerError as exc:
        log.warning("GET /api/v1/actions: %s", exc)
        # A read can fail while an operator holds a lock on the file; a retry may help.
        return web.json_response({"error": "the ledger cannot be read now"}, status=503)
    return web.json_response({"actions": entries})


def decisions_table(entries: Sequence[Entry], process_names: Mapping[tuple[str, str], str]) -> str:
    """The landing page's table of decisions: time, listener (process name), action, outcome,
    reason; every value escaped."""
    if not entries:
        return "<p>No remediation decisions yet.</p>"
    rows = []
    for entry in entries:
        name = process_names.get((entry["account_id"], entry["listener_id"]), "")
        listener = html.escape(entry["listener_id"] or "?")
        where = f"{html.escape(name)}<br><small>{listener}</small>" if name else listener
        action = html.escape(entry["action"] or "?") + (" (dry run)" if entry["dry_run"] else "")
        source = " <small>(restart command)</small>" if entry["source"] == "cli" else ""
        rows.append(
            f"<tr><td>{html.escape(entry['received_at'])}</td><td>{where}</td>"
            f"<td>{action}{source}</td><td class='{html.escape(entry['outcome'])}'>"
            f"{html.escape(entry['outcome'])}</td><td>{html.escape(entry['reason'])}</td></tr>"
        )
    return (
        "<table><tr><th>Time (UTC)</th><th>Listener</th><th>Action</th><th>Outcome</th>"
        f"<th>Reason</th></tr>{''.join(rows)}</table>"
    )


async def recent_decisions_section(
    ledger: Ledger | None, process_names: Mapping[tuple[str, str], str]
) -> str:
    """The landing page's section on remediation: the last PAGE_DECISIONS decisions."""
    if ledger is None:
        return ""
    try:
        entries = await ledger.recent(PAGE_DECISIONS)
    except LedgerError as exc:
        log.warning("landing page: %s", exc)
        body = "<p>The remediation ledger cannot be read now.</p>"
    else:
        body = decisions_table(entries, process_names)
    return (
        f"<h2>Last {PAGE_DECISIONS} remediation decisions</h2>\n{body}\n"
        "<p><a href='/api/v1/actions'>All recorded decisions (JSON)</a></p>"
    )


def add_actions(app: web.Application, ledger: LedgerSource) -> None:
    """Mount `GET /api/v1/actions`; `ledger` gives the open ledger, or None."""
    app[LEDGER_KEY] = ledger
    app.router.add_get("/api/v1/actions", actions_handler)
