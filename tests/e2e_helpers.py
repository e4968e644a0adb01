"""Helpers for the deploy/ and grafana/ tests: real Prometheus and Alertmanager processes on
loopback, their HTTP APIs, and the shipped files rewritten for test speed.

The shipped configuration is always the starting point: tests load it, change only what a test
run must (addresses, file paths, durations) and assert the parts they rely on, so a test cannot
keep passing against a configuration that no longer looks like what users get.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULES = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = REPO_ROOT / "grafana" / "dashboards" / "boomi-listeners.json"
# The TLS and basic-auth setup the compose demo ships (deploy/docker-compose.tls.yml).
TLS_DIR = REPO_ROOT / "deploy" / "compose" / "tls"
MAKE_CERTS = TLS_DIR / "make-certs.sh"

JOB = "boomi-listener-exporter"
REMEDIATION_RECEIVER = "boomi-remediation"
PAGING_RECEIVER = "paging"
LOW_URGENCY_RECEIVER = "low-urgency"

# Set in CI: a missing binary is then a failure, not a skip, so the deploy files never go
# untested without anyone noticing.
REQUIRE_ENV = "BLE_REQUIRE_E2E"

T = TypeVar("T")


def require_binary(*names: str, package: str) -> str:
    """The path of the first of `names` on PATH; skip the test (fail under BLE_REQUIRE_E2E)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    reason = f"{' or '.join(names)} not installed (Debian package {package})"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}, and {REQUIRE_ENV} is set")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the child process binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write_yaml(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


# -- the shipped files, rewritten for a test run ---------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    return [
        rule
        for group in load_yaml(ALERT_RULES)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def write_fast_rules(path: Path, for_duration: str = "1s") -> Path:
    """A copy of alerts.yml with every `for:` set to `for_duration`, for a test Prometheus."""
    document = load_yaml(ALERT_RULES)
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_duration
    return write_yaml(path, document)


def write_prometheus_config(
    path: Path,
    *,
    exporter: str,
    rules: Path,
    alertmanager: str | None,
    scrape_tls: dict[str, Any] | None = None,
) -> Path:
    """prometheus.yml with 1 s scrapes and evaluations, pointed at test addresses; the job
    gets `scrape_tls` (scheme, tls_config, basic_auth) when given."""
    document = load_yaml(PROMETHEUS_CONFIG)
    assert document["rule_files"] == ["alerts.yml"], "prometheus.yml no longer loads alerts.yml"
    document["global"]["scrape_interval"] = "1s"
    document["global"]["evaluation_interval"] = "1s"
    document["rule_files"] = [str(rules)]
    (job,) = [c for c in document["scrape_configs"] if c["job_name"] == JOB]
    job["scrape_timeout"] = "1s"  # may not exceed the interval
    job["static_configs"] = [{"targets": [exporter]}]
    job.update(scrape_tls or {})
    if alertmanager is None:
        del document["alerting"]
    else:
        document["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    return write_yaml(path, document)


def write_alertmanager_config(
    path: Path, *, webhook_url: str, token_file: Path, ca_file: Path | None = None
) -> Path:
    """alertmanager.yml with the webhook at `webhook_url` and notifications after 1 s; with
    `ca_file`, the webhook's tls_config of the shipped TLS setup, trusting that CA."""
    document = load_yaml(ALERTMANAGER_CONFIG)
    (route,) = [r for r in document["route"]["routes"] if r["receiver"] == REMEDIATION_RECEIVER]
    assert route["matchers"] == ['remediate="true"', 'environment_classification!="TEST"'], route
    assert route["group_by"] == ["account_id", "container_id", "listener_id"], route
    # Only the waits shrink; group_by, repeat_interval and the receiver stay as shipped.
    route["group_wait"] = "1s"
    route["group_interval"] = "1s"
    (receiver,) = [r for r in document["receivers"] if r["name"] == REMEDIATION_RECEIVER]
    (webhook,) = receiver["webhook_configs"]
    assert webhook["send_resolved"] is True, webhook
    authorization = webhook["http_config"]["authorization"]
    assert authorization["type"] == "Bearer", authorization
    webhook["url"] = webhook_url
    authorization["credentials_file"] = str(token_file)
    if ca_file is not None:
        (tls_webhook,) = _tls_receiver()["webhook_configs"]
        assert tls_webhook["url"].startswith("https://"), tls_webhook
        tls_config = dict(tls_webhook["http_config"]["tls_config"])
        assert set(tls_config) == {"ca_file"}, tls_config
        webhook["http_config"]["tls_config"] = tls_config | {"ca_file": str(ca_file)}
    return write_yaml(path, document)


# -- the shipped TLS and basic-auth setup ------------------------------------------------------


def _tls_receiver() -> dict[str, Any]:
    document = load_yaml(TLS_DIR / "alertmanager.yml")
    (receiver,) = [r for r in document["receivers"] if r["name"] == REMEDIATION_RECEIVER]
    return dict(receiver)


def make_certificates(directory: Path) -> Path:
    """Run the shipped make-certs.sh (openssl) into `directory`: ca.crt, exporter.crt/.key."""
    require_binary("openssl", package="openssl")
    subprocess.run(["sh", str(MAKE_CERTS), str(directory)], check=True, capture_output=True)
    return directory


def write_tls_web_config(path: Path, certificates: Path) -> Path:
    """The shipped TLS web config, its certificate files in `certificates`."""
    document = load_yaml(TLS_DIR / "web-config.yml")
    tls = document["tls_server_config"]
    tls["cert_file"] = str(certificates / Path(tls["cert_file"]).name)
    tls["key_file"] = str(certificates / Path(tls["key_file"]).name)
    return write_yaml(path, document)


def tls_scrape_settings(ca_file: Path, password_file: Path) -> dict[str, Any]:
    """scheme, tls_config and basic_auth of the shipped TLS scrape job, with test file paths."""
    document = load_yaml(TLS_DIR / "prometheus.yml")
    (job,) = [c for c in document["scrape_configs"] if c["job_name"] == JOB]
    settings = {key: job[key] for key in ("scheme", "tls_config", "basic_auth")}
    assert settings["scheme"] == "https", settings
    settings["tls_config"] = settings["tls_config"] | {"ca_file": str(ca_file)}
    settings["basic_auth"] = settings["basic_auth"] | {"password_file": str(password_file)}
    return settings


def demo_scrape_password() -> str:
    """The demo password of the TLS setup (its hash is in web-config.yml)."""
    return (TLS_DIR / "prometheus-password").read_text(encoding="utf-8").strip()


# -- the dashboard ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardQuery:
    """One PromQL expression of the dashboard and where it is."""

    panel: str
    ref_id: str
    expr: str
    # The result's labels that the panel shows: in the target's legend, or as table columns.
    shows: frozenset[str] = frozenset()


def load_dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def shown_labels(panel: dict[str, Any], target: dict[str, Any]) -> frozenset[str]:
    """Labels of a target's result that a panel displays: {{label}} in its legend, and the
    columns an `organize` transformation orders or renames."""
    shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    for transformation in panel.get("transformations", []):
        if transformation.get("id") == "organize":
            options = transformation.get("options", {})
            excluded = {k for k, v in options.get("excludeByName", {}).items() if v}
            columns = set(options.get("indexByName", {})) | set(options.get("renameByName", {}))
            shown |= columns - excluded - {"Time", "Value"}
    return frozenset(shown)


def dashboard_queries(dashboard: dict[str, Any]) -> list[DashboardQuery]:
    return [
        DashboardQuery(
            panel["title"], target["refId"], target.get("expr", ""), shown_labels(panel, target)
        )
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]


# What Grafana would put in place of its variables when everything is selected.
TEST_VARIABLES = {
    "job": JOB,
    "instance": ".*",
    "account_id": ".*",
    "environment_classification": ".*",
    "environment": ".*",
    "container": ".*",
    "container_id": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


def substitute_variables(expr: str, variables: dict[str, str] = TEST_VARIABLES) -> str:
    """Replace $name, ${name} and [[name]]; fail on a variable the test does not know.

    $1, ${2}: label_replace's references to regex groups, which Grafana leaves as they are
    (it has no variable of that name)."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name.isdigit():
            return match.group(0)
        if name not in variables:
            raise AssertionError(f"dashboard uses an unknown variable ${name}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]", replace, expr)


# -- child processes -------------------------------------------------------------------------


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


class ManagedProcess:
    """A child process whose output goes to a log file, stopped by the owning fixture."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.name = name
        self.process = process
        self._log = log
        self.log_path = Path(log.name)

    @classmethod
    async def start(cls, name: str, argv: list[str], log_path: Path) -> ManagedProcess:
        log = _open_log(log_path)
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        return cls(name, process, log)

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        if self.process.returncode is not None:
            raise AssertionError(
                f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}"
            )

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 10 s."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._log.close()


async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    explain: Callable[[], Awaitable[str]] | None = None,
    interval: float = 0.2,
) -> T:
    """Call `probe` until it returns something other than None; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            details = await explain() if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{details}")
        await asyncio.sleep(interval)


class PromQLError(Exception):
    """Prometheus refused a query (HTTP 400/422), e.g. a parse error."""


class HttpService:
    """A started Prometheus or Alertmanager: its process, base URL and an HTTP session."""

    def __init__(self, process: ManagedProcess, url: str, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.url = url
        self.session = session

    async def get_json(self, path: str, **params: str) -> Any:
        async with self.session.get(self.url + path, params=params) as response:
            return await response.json(content_type=None)

    async def wait_ready(self, timeout: float = 20) -> None:
        async def ready() -> bool | None:
            self.process.check_running()
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.get(self.url + "/-/ready") as response:
                    if response.status == 200:
                        return True
            return None

        await wait_until(ready, timeout=timeout, what=f"{self.process.name} to be ready")


class Prometheus(HttpService):
    """The HTTP API of a test Prometheus."""

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant-query result; PromQLError when Prometheus rejects the expression."""
        async with self.session.get(self.url + "/api/v1/query", params={"query": expr}) as reply:
            body = await reply.json(content_type=None)
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    async def rules(self) -> list[dict[str, Any]]:
        body = await self.get_json("/api/v1/rules")
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]
