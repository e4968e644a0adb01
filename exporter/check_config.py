"""The ``--check-config`` summary: a valid config described one setting a line, without secrets."""

from __future__ import annotations

from exporter.config import Config
from exporter.textsafe import printable


def _seconds(value: float) -> str:
    return f"{value:g}s"


def summarize(config: Config) -> str:
    """Describe a valid config for ``--check-config``, one setting per line, without any secret."""
    container_count = sum(len(account.containers) for account in config.accounts)
    lines = [f"accounts: {len(config.accounts)}, containers: {container_count}"]
    for account in config.accounts:
        lines += [
            f"  account {printable(account.account_id)}",
            f"    base_url: {printable(account.base_url)}",
            f"    username: {printable(account.username)}",
            f"    rate budget: {account.max_requests_per_second:g} requests/s",
            "    after rejected credentials: no calls for"
            f" {_seconds(account.auth_failure_backoff_seconds)}",
            f"    containers: {len(account.containers)}",
        ]
        for container in account.containers:
            # Names may hold anything; a newline or a bidi override must not rewrite the output.
            name = f" ({printable(container.name)})" if container.name else ""
            lines.append(f"      {printable(container.id)}{name}")
        discovery = account.discovery
        if discovery.enabled:
            lines.append(
                f"    discovery: every {_seconds(discovery.interval_seconds)}, types"
                f" {', '.join(discovery.types)}, statuses {', '.join(discovery.statuses)},"
                f" names matching {discovery.name_pattern!r}"
            )
    poll = config.poll
    lines.append(
        f"poll: every {_seconds(poll.interval_seconds)},"
        f" result timeout {_seconds(poll.result_timeout_seconds)},"
        f" request timeout {_seconds(poll.request_timeout_seconds)}"
    )
    names = config.names
    lines.append(
        f"process names: refreshed every {_seconds(names.refresh_seconds)}"
        if names.enabled
        else "process names: disabled"
    )
    lines.append(f"web: listen on {config.web.listen_address}")
    remediation = config.remediation
    if not remediation.enabled:
        lines.append("remediation: disabled")
        return "\n".join(lines)
    auth = remediation.auth
    auth_kind = "none (no authentication)" if auth == "none" or auth is None else auth.kind
    mode = (
        "dry run (log and count only)"
        if remediation.dry_run
        else "live (calls changeListenerStatus)"
    )
    lines += [
        f"remediation: enabled, {mode}",
        f"  webhook auth: {auth_kind}",
        f"  allowed actions: {', '.join(remediation.allowed_actions)}",
        f"  restart when: {', '.join(remediation.restart_when)}",
        f"  cooldown per listener: {_seconds(remediation.cooldown_seconds)}",
        f"  at most {remediation.max_actions_per_hour} actions per hour",
        f"  verify timeout: {_seconds(remediation.verify_timeout_seconds)}",
        f"  max webhook body: {remediation.max_body_bytes} bytes",
    ]
    return "\n".join(lines)
