"""The ``--check-config`` summary: a valid config described one setting a line, without secrets."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.config import Config


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _environments(classifications: Sequence[str]) -> str:
    return ", ".join(classifications) if classifications else "any (also none)"


def summarize(config: Config) -> str:
    """Describe a valid config for ``--check-config``, one setting per line, without any secret."""
    container_count = sum(len(account.containers) for account in config.accounts)
    lines = [f"accounts: {len(config.accounts)}, containers: {container_count}"]
    for account in config.accounts:
        lines += [
            f"  account {account.account_id}",
            f"    base_url: {account.base_url}",
            f"    username: {account.username}",
            f"    rate budget: {account.max_requests_per_second:g} requests/s",
            f"    password: {f'from {account.password_file}' if account.password_file else 'set'}",
            f"    after rejected credentials: no calls for"
            f" {_seconds(account.auth_failure_backoff_seconds)}, then none at all after"
            f" {account.max_auth_failures} until the secret changes",
            f"    containers: {len(account.containers)}",
        ]
        for container in account.containers:
            name = f" ({container.name})" if container.name else ""
            lines.append(f"      {container.id}{name}")
        discovery = account.discovery
        if discovery.enabled:
            lines.append(
                f"    discovery: every {_seconds(discovery.interval_seconds)}, types"
                f" {', '.join(discovery.types)}, statuses {', '.join(discovery.statuses)},"
                f" names matching {discovery.name_pattern!r}, environments"
                f" {_environments(discovery.environment_classifications)} named"
                f" {discovery.environment_name_pattern!r}"
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
        f"  runtimes in environments: {_environments(remediation.environment_classifications)}",
        f"  cooldown per listener: {_seconds(remediation.cooldown_seconds)}",
        f"  at most {remediation.max_actions_per_hour} actions per hour",
        f"  verify timeout: {_seconds(remediation.verify_timeout_seconds)}",
        f"  max webhook body: {remediation.max_body_bytes} bytes",
        f"  ledger: {config.storage.path} (storage.path, unless --storage.path),"
        f" entries kept {config.storage.retention_days:g} days",
    ]
    return "\n".join(lines)
