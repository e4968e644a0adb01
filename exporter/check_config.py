"""The ``--check-config`` summary: a valid config described one setting a line, without secrets."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.boomi.transport import split_proxy_url
from exporter.config import AccountConfig, Config
from exporter.textsafe import printable


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _environments(classifications: Sequence[str]) -> str:
    return ", ".join(classifications) if classifications else "any (also none)"


def _http_lines(account: AccountConfig) -> list[str]:
    """How the account reaches Boomi: the proxy (never its credentials) and the TLS checks."""
    if account.proxy_url is not None:
        proxy = split_proxy_url(account.proxy_url.get_secret_value(), source="proxy_url")
        credentials = " with credentials" if proxy.authorization else ""
        route = f"through the proxy {proxy.url}{credentials}"
        if account.no_proxy:
            route += f", except for no_proxy {account.no_proxy}"
    elif account.proxy_from_environment:
        route = "through the proxy of HTTPS_PROXY/HTTP_PROXY, except for NO_PROXY"
    else:
        route = "directly (no proxy)"
    tls = account.tls_config
    if tls.insecure_skip_verify:
        trust = "NOT VERIFIED (insecure_skip_verify)"
    else:
        trust = "the system CAs" + (f" and {tls.ca_file}" if tls.ca_file else "")
    lines = [f"    reaches Boomi {route}", f"    TLS: at least {tls.min_version}, trusting {trust}"]
    if tls.server_name:
        lines.append(f"      verifying the name {tls.server_name}")
    if tls.cert_file:
        lines.append(f"      client certificate {tls.cert_file}, key {tls.key_file}")
    return lines


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
            f"    password: {f'from {account.password_file}' if account.password_file else 'set'}",
            f"    after rejected credentials: no calls for"
            f" {_seconds(account.auth_failure_backoff_seconds)}, then none at all after"
            f" {account.max_auth_failures} until the secret changes",
            *_http_lines(account),
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
