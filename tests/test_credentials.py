"""Never lock the Boomi user out, and let secrets rotate without a restart (issue 20), and a
start-up during a Boomi outage (issue 19, item 4).

Every test runs the exporter against the simulator over real sockets, with Boomi's lockout on:
the simulator locks a user after six rejected sign-ins, so a lockout fails the test instead of
being a silent count. Each test prints the rejected sign-ins it measured at the simulator.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import load_config
from exporter.daemon import Exporter
from exporter.simulator import Faults, Simulator, serve

USER = "shared@example.com"
LOGIN = f"BOOMI_TOKEN.{USER}"
RIGHT_TOKEN = "Rt-7a1c-right-token"
WRONG_TOKEN = "Wt-93fe-wrong-token"
ACCOUNTS = ("acct-a", "acct-b")  # a parent and a sub-account: one Boomi user for both
WEBHOOK_TOKEN = "Wh-51d0-webhook-token"


@dataclass
class Boomi:
    """The simulator, where it is, and what it counted."""

    sim: Simulator
    base_url: str

    @property
    def control_url(self) -> str:
        return self.base_url.removesuffix("/api/rest/v1") + "/__simulator"

    def rejected(self, user: str = USER) -> int:
        """Rejected sign-ins of the user, as the simulator counts them (lockout at six)."""
        return self.sim.users[user].rejected_sign_ins

    def locked(self, user: str = USER) -> bool:
        return self.sim.users[user].locked

    def count(self, prefix: str) -> int:
        return sum(n for key, n in self.sim.request_counts.items() if key.startswith(prefix))

    def requests(self) -> int:
        return sum(self.sim.request_counts.values())

    async def control(self, method: str, path: str, body: object = None) -> Any:
        url = f"{self.control_url}/{path}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, json=body) as reply,
        ):
            assert reply.status == 200, await reply.text()
            return await reply.json()


@pytest.fixture
async def boomi() -> AsyncIterator[Boomi]:
    sim = Simulator(seed=3, result_delay_seconds=0.02, restart_delay_seconds=0.05)
    for account_id in ACCOUNTS:
        sim.add_account(
            account_id, username=USER, password="pw", api_token=RIGHT_TOKEN, rate_limit_rps=200
        )
        for number in range(2):
            container_id = f"{account_id}-c{number}"
            sim.add_container(account_id, container_id, f"{account_id}-molecule-{number}")
            sim.add_listener(
                account_id,
                container_id,
                f"{container_id}-l0",
                status="errored",
                process_name=f"Orders {account_id} {number}",
            )
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    try:
        yield Boomi(sim, base_url)
    finally:
        await runner.cleanup()


def write(path: Path, text: str) -> None:
    path.write_text(text)


def remove(path: Path) -> None:
    path.unlink()


def write_atomically(path: Path, text: str) -> None:
    """As Kubernetes updates a mounted secret: a new file renamed over the old one."""
    new = path.with_name(f".{path.name}.new")
    new.write_text(text)
    os.replace(new, path)


class Daemon:
    """An exporter started from a config file, and what it serves."""

    def __init__(self, exporter: Exporter, url: str, config_path: Path) -> None:
        self.exporter = exporter
        self.url = url
        self.config_path = config_path
        self.session = aiohttp.ClientSession()

    async def get(self, path: str) -> str:
        async with self.session.get(self.url + path) as response:
            assert response.status == 200, path
            return await response.text()

    async def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        found = {}
        for family in text_string_to_metric_families(await self.get("/metrics")):
            for sample in family.samples:
                if sample.name == name:
                    found[tuple(sorted(sample.labels.items()))] = sample.value
        return found

    async def rejected_gauge(self) -> dict[str, float]:
        samples = await self.samples("boomi_account_credentials_rejected")
        return {dict(labels)["account_id"]: value for labels, value in samples.items()}

    def up(self, account_id: str | None = None) -> list[bool]:
        return [
            snapshot.up
            for snapshot in self.exporter.store.containers()
            if account_id is None or snapshot.account_id == account_id
        ]

    async def webhook(self, alert_labels: dict[str, str]) -> tuple[int, Any]:
        payload = {
            "version": "4",
            "status": "firing",
            "alerts": [{"status": "firing", "labels": alert_labels, "fingerprint": "fp-1"}],
        }
        async with self.session.post(
            self.url + "/webhook/alertmanager",
            json=payload,
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        ) as response:
            return response.status, await response.json()


def config_document(
    boomi: Boomi, secret: Path, *, accounts: tuple[str, ...] = ACCOUNTS, **overrides: Any
) -> dict[str, Any]:
    account_extra = overrides.pop("account", {})
    document: dict[str, Any] = {
        "accounts": [
            {
                "account_id": account_id,
                "base_url": boomi.base_url,
                "username": LOGIN,
                "password_file": str(secret),
                "max_requests_per_second": 40,
                "auth_failure_backoff_seconds": 0.5,
                "containers": [{"id": f"{account_id}-c{n}"} for n in range(2)],
            }
            | account_extra
            for account_id in accounts
        ],
        # "Polling every second", ten times faster.
        "poll": {
            "interval_seconds": 0.1,
            "result_timeout_seconds": 2,
            "request_timeout_seconds": 2,
        },
        "names": {"enabled": False},
    }
    document.update(overrides)
    return document


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Daemon] = []

    async def start(document: dict[str, Any]) -> Daemon:
        path = tmp_path / "config.yaml"
        # The remediation ledger under tmp_path, never in the working directory.
        document = {"storage": {"path": str(tmp_path / "data")}} | document
        path.write_text(yaml.safe_dump(document))
        exporter = Exporter(load_config(path), config_path=path, secret_check_seconds=0.1)
        port = await exporter.start("127.0.0.1", 0)
        daemon = Daemon(exporter, f"http://127.0.0.1:{port}", path)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await daemon.session.close()
        await daemon.exporter.stop()


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    return folder / "boomi-token"


# -- the wrong secret, then the right one by atomic rename ------------------------------------


async def test_two_accounts_of_one_user_with_a_wrong_secret_stop_then_resume_on_rename(
    boomi: Boomi, secret: Path, start_daemon: Any, caplog: pytest.LogCaptureFixture
) -> None:
    write(secret, WRONG_TOKEN + "\n")
    daemon = await start_daemon(config_document(boomi, secret))
    # Thirty polls of each of the four containers (every 0.1 s for 3 s).
    await asyncio.sleep(3.0)
    rejected = boomi.rejected()
    print(f"wrong secret, two accounts, 30 polls each: {rejected} rejected sign-ins")
    assert rejected <= 2  # max_auth_failures, for both accounts together
    assert not boomi.locked()
    assert await daemon.rejected_gauge() == {"acct-a": 1.0, "acct-b": 1.0}
    assert not any(daemon.up())
    page = await daemon.get("/")
    assert "calls to Boomi stopped for accounts acct-a, acct-b" in page
    assert f"write the new password or token into {secret} or reload" in page
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # one line for the user, not one per container or account
    assert "acct-a, acct-b" in errors[0] and USER in errors[0]

    write_atomically(secret, RIGHT_TOKEN + "\n")
    await wait_until(lambda: all(daemon.up()) and len(daemon.up()) == 4)
    assert await daemon.rejected_gauge() == {"acct-a": 0.0, "acct-b": 0.0}
    assert boomi.rejected() == rejected  # the new value cost nothing
    print(f"after the rename: both accounts resumed, {boomi.rejected()} rejected in all")
    assert RIGHT_TOKEN not in caplog.text and WRONG_TOKEN not in caplog.text
    assert RIGHT_TOKEN not in page and WRONG_TOKEN not in page


async def test_revoking_the_token_costs_at_most_two_more_rejections(
    boomi: Boomi, secret: Path, start_daemon: Any
) -> None:
    write(secret, RIGHT_TOKEN)
    daemon = await start_daemon(config_document(boomi, secret))
    await wait_until(lambda: all(daemon.up()) and len(daemon.up()) == 4)
    before = boomi.rejected()
    await boomi.control("PUT", f"users/{USER}", {"api_token": "the-next-token"})
    await wait_until(lambda: all(c.calls_stopped for c in daemon.exporter.clients.values()))
    await asyncio.sleep(1.0)  # ten more intervals: nothing more goes out
    more = boomi.rejected() - before
    print(f"token revoked while polling: {more} more rejected sign-ins")
    assert more <= 2
    assert not boomi.locked()
    assert await daemon.rejected_gauge() == {"acct-a": 1.0, "acct-b": 1.0}
    # A reload with the same secret changes nothing: only a new value is tried.
    ok, message = await daemon.exporter.reload()
    assert ok, message
    await asyncio.sleep(0.5)
    assert boomi.rejected() - before == more
    assert await daemon.rejected_gauge() == {"acct-a": 1.0, "acct-b": 1.0}
    # The new token, written into the file, is tried at once and works.
    write_atomically(secret, "the-next-token")
    await wait_until(lambda: all(daemon.up()))
    assert boomi.rejected() - before == more


async def test_a_token_revoked_while_background_calls_are_due(
    boomi: Boomi, secret: Path, start_daemon: Any
) -> None:
    """Discovery every 0.1 s and status polls every 5 s: after the revoke the first call to go
    out is an Atom query, whose 403 could be a missing privilege; the next status call tells."""
    write(secret, RIGHT_TOKEN)
    document = config_document(
        boomi,
        secret,
        account={"discovery": {"enabled": True, "interval_seconds": 0.1}},
        names={"enabled": True, "refresh_seconds": 0.1},
    )
    document["poll"]["interval_seconds"] = 5
    daemon = await start_daemon(document)
    await wait_until(lambda: all(daemon.up()) and len(daemon.up()) == 4)
    await wait_until(lambda: boomi.count("POST atom_query 200") >= 4)
    before = boomi.rejected()
    await boomi.control("PUT", f"users/{USER}", {"api_token": "the-next-token"})
    await wait_until(
        lambda: all(c.calls_stopped for c in daemon.exporter.clients.values()), timeout=15
    )
    await asyncio.sleep(0.5)
    more = boomi.rejected() - before
    print(
        f"token revoked with background calls due: {more} more rejected sign-ins"
        f" ({boomi.count('POST atom_query 403')} on Atom, {boomi.count('POST process_bulk 403')}"
        f" on Process, {boomi.count('POST listener_status_query 403')} on ListenerStatus)"
    )
    assert boomi.count("POST atom_query 403") + boomi.count("POST process_bulk 403") >= 1
    assert more <= 2  # max_auth_failures
    assert not boomi.locked()


# -- a missing privilege ----------------------------------------------------------------------


async def test_without_the_process_privilege_names_stop_and_polling_goes_on(
    boomi: Boomi, secret: Path, start_daemon: Any
) -> None:
    write(secret, RIGHT_TOKEN)
    await boomi.control("PUT", f"users/{USER}", {"denied_routes": ["process_bulk"]})
    document = config_document(
        boomi, secret, accounts=("acct-a",), names={"enabled": True, "refresh_seconds": 3600}
    )
    daemon = await start_daemon(document)
    await wait_until(lambda: boomi.count("POST process_bulk 403") == 1)
    results_then = boomi.count("GET listener_status_result 200")
    await asyncio.sleep(1.0)  # ten intervals
    # The next status calls succeed; names stop; no further Process call.
    assert boomi.count("GET listener_status_result 200") >= results_then + 2 * 5
    assert all(daemon.up("acct-a"))
    assert boomi.count("POST process_bulk") == 1
    assert await daemon.samples("boomi_listener_info") == {}
    assert await daemon.rejected_gauge() == {"acct-a": 0.0}
    assert boomi.rejected() == 0
    print(f"no Process privilege: {boomi.count('POST process_bulk')} Process call, 0 rejected")

    # Granted again, and a reload: the names come.
    await boomi.control("PUT", f"users/{USER}", {"denied_routes": []})
    document["names"]["refresh_seconds"] = 7200
    daemon.config_path.write_text(yaml.safe_dump(document))
    ok, message = await daemon.exporter.reload()
    assert ok, message
    await wait_until(lambda: boomi.count("POST process_bulk 200") >= 1)
    names = await daemon.samples("boomi_listener_info")
    assert len(names) == 2


# -- remediation while calls are stopped -------------------------------------------------------


async def test_a_webhook_alert_while_calls_are_stopped_fails_without_a_request(
    boomi: Boomi, secret: Path, start_daemon: Any
) -> None:
    write(secret, RIGHT_TOKEN)
    document = config_document(
        boomi,
        secret,
        remediation={"enabled": True, "dry_run": False, "auth": {"bearer_token": WEBHOOK_TOKEN}},
    )
    daemon = await start_daemon(document)
    await wait_until(lambda: all(daemon.up()) and len(daemon.up()) == 4)
    await boomi.control("PUT", f"users/{USER}", {"api_token": "the-next-token"})
    await wait_until(lambda: all(c.calls_stopped for c in daemon.exporter.clients.values()))
    requests = boomi.requests()
    status, answer = await daemon.webhook(
        {"account_id": "acct-a", "container_id": "acct-a-c0", "listener_id": "acct-a-c0-l0"}
    )
    assert status == 200
    (alert,) = answer["alerts"]
    assert alert["outcome"] == "failed"
    assert "calls to Boomi stopped" in alert["reason"]
    await asyncio.sleep(0.3)
    assert boomi.requests() == requests  # no request at all: no sign-in, no restart
    assert boomi.sim.change_log == []


# -- other secret files ------------------------------------------------------------------------


async def test_a_password_file_that_vanishes_or_empties_keeps_the_last_good_value(
    boomi: Boomi, secret: Path, start_daemon: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    write(secret, RIGHT_TOKEN)
    daemon = await start_daemon(config_document(boomi, secret, accounts=("acct-a",)))
    await wait_until(lambda: all(daemon.up()) and len(daemon.up()) == 2)
    remove(secret)
    await wait_until(lambda: "cannot read" in caplog.text)
    page = await daemon.get("/")
    assert f"cannot read {secret}" in page and "the last good value stays in use" in page
    results = boomi.count("GET listener_status_result 200")
    await asyncio.sleep(0.5)
    assert boomi.count("GET listener_status_result 200") > results  # still polling
    write(secret, "")
    await wait_until(lambda: "is empty" in caplog.text)
    await asyncio.sleep(0.5)
    assert all(daemon.up()) and boomi.rejected() == 0  # never a sign-in with an empty password
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "secret" in r.name]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]  # once per problem
    write_atomically(secret, RIGHT_TOKEN)
    await wait_until(lambda: "readable again" in caplog.text)
    assert "cannot read" not in await daemon.get("/")


@pytest.mark.parametrize("kind", ["bearer_token_file", "basic.password_file"])
async def test_the_webhook_secret_file_rotates_without_a_restart(
    boomi: Boomi, secret: Path, start_daemon: Any, tmp_path: Path, kind: str
) -> None:
    write(secret, RIGHT_TOKEN)
    hook_secret = tmp_path / "secrets" / "webhook"
    write(hook_secret, "old-hook-secret\n")
    if kind == "bearer_token_file":
        auth: dict[str, Any] = {"bearer_token_file": str(hook_secret)}

        def header(value: str) -> str:
            return f"Bearer {value}"
    else:
        auth = {"basic": {"username": "am", "password_file": str(hook_secret)}}

        def header(value: str) -> str:
            return "Basic " + base64.b64encode(f"am:{value}".encode()).decode()

    document = config_document(
        boomi, secret, accounts=("acct-a",), remediation={"enabled": True, "auth": auth}
    )
    daemon = await start_daemon(document)

    async def status_with(value: str) -> int:
        payload = {"version": "4", "status": "firing", "alerts": []}
        async with daemon.session.post(
            daemon.url + "/webhook/alertmanager",
            json=payload,
            headers={"Authorization": header(value)},
        ) as response:
            return response.status

    assert await status_with("old-hook-secret") == 200
    write_atomically(hook_secret, "new-hook-secret\n")
    deadline = time.monotonic() + 5
    while await status_with("new-hook-secret") != 200:
        assert time.monotonic() < deadline, "the new webhook secret was never accepted"
        await asyncio.sleep(0.05)
    assert await status_with("old-hook-secret") == 401


# -- issue 19, item 4: a start-up during a Boomi outage ----------------------------------------


async def test_a_start_during_an_outage_shows_every_container_down_within_one_retry_sequence(
    tmp_path: Path, start_daemon: Any
) -> None:
    """20 containers, every answer a 504 after a latency: requests must not queue one by one
    behind the credentials probe and its retries (on main: 20 containers x 4 attempts, one at a
    time, before the last container showed anything)."""
    containers = 20
    sim = Simulator(seed=5)
    sim.add_account("acct-a", username=USER, api_token=RIGHT_TOKEN, rate_limit_rps=500)
    for number in range(containers):
        sim.add_container("acct-a", f"c{number}", f"molecule-{number}")
    # Longer than the retry policy's first back-offs (0.5 s, 1 s), as "a few seconds" is.
    sim.set_faults(Faults(outage_seconds=1.0))
    runner, base_url = await serve(sim, "127.0.0.1", 0)
    boomi = Boomi(sim, base_url)
    try:
        secret = tmp_path / "token"
        secret.write_text(RIGHT_TOKEN)
        document = config_document(boomi, secret, accounts=("acct-a",))
        document["accounts"][0]["containers"] = [{"id": f"c{n}"} for n in range(containers)]
        document["poll"]["interval_seconds"] = 60  # one cycle each in this test
        daemon = await start_daemon(document)
        seen_at_ready = -1
        deadline = time.monotonic() + 60
        while not daemon.exporter.store.ready():
            assert time.monotonic() < deadline, "not every container polled"
            await asyncio.sleep(0.005)
        seen_at_ready = boomi.count("POST listener_status_query 504")
        print(
            f"outage start: all {containers} containers down after {seen_at_ready} requests"
            " (each answered 504 after 1 s)"
        )
        # One retry sequence is 4 attempts: far fewer requests than one per container.
        assert seen_at_ready < containers
        up = await daemon.samples("boomi_container_up")
        assert len(up) == containers and set(up.values()) == {0.0}
        assert await daemon.get("/-/ready") == "Ready.\n"
        assert boomi.rejected() == 0
    finally:
        await runner.cleanup()
