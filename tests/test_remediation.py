"""Remediation: pure decisions table-driven, then the webhook and worker over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from exporter.config import BasicAuthConfig, WebhookAuthConfig
from exporter.ledger import Decision, GuardLimits, LedgerFile
from exporter.remediation import (
    PayloadError,
    WebhookAlert,
    authorized,
    parse_payload,
    precondition_met,
    triage,
)
from tests.conftest import ACCOUNT, Running, SimServer, StartExporter, config_for

TOKEN = "webhook-token-for-tests-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# -- pure parts ------------------------------------------------------------------------------

CONTAINERS = {"acc": frozenset({"c1", "c2"})}


def known(account_id: str, container_id: str) -> frozenset[str]:
    return frozenset({"l1", "l2"}) if (account_id, container_id) == ("acc", "c1") else frozenset()


def alert(status: str = "firing", fingerprint: str = "fp", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "BoomiListenerErrored", **labels},
        "annotations": {},
        "startsAt": "2026-11-22T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }


@pytest.mark.parametrize(
    ("labels", "status", "outcome", "counted"),
    [
        ({"account_id": "acc", "container_id": "c1", "listener_id": "l1"}, "firing", "queued",
         ("acc", "c1", "l1", "restart")),
        # No account_id, one account configured: that one.
        ({"container_id": "c1", "listener_id": "l2"}, "firing", "queued", ("acc", "c1", "l2", "restart")),
        ({"account_id": "acc", "container_id": "c1", "listener_id": "l1"}, "resolved",
         "ignored_resolved", ("", "", "", "restart")),
        ({"account_id": "other", "container_id": "c1", "listener_id": "l1"}, "firing", "rejected",
         ("", "", "", "restart")),
        ({"account_id": "acc", "container_id": "evil", "listener_id": "l1"}, "firing", "rejected",
         ("acc", "", "", "restart")),
        ({"account_id": "acc", "container_id": "c1", "listener_id": "evil"}, "firing", "rejected",
         ("acc", "c1", "", "restart")),
        ({"account_id": "acc", "container_id": "c2", "listener_id": "l1"}, "firing", "rejected",
         ("acc", "c2", "", "restart")),
        ({"account_id": "acc", "listener_id": "l1"}, "firing", "rejected", ("", "", "", "restart")),
        ({"account_id": "acc", "container_id": "c1"}, "firing", "rejected", ("", "", "", "restart")),
        ({"account_id": "acc", "container_id": "c1", "listener_id": "l1", "boomi_action": "pause"},
         "firing", "rejected", ("acc", "c1", "l1", "pause")),
        ({"account_id": "acc", "container_id": "c1", "listener_id": "l1",
          "boomi_action": "restart_all"}, "firing", "rejected", ("acc", "c1", "l1", "")),
        ({"account_id": "acc", "container_id": "c1", "listener_id": "l1", "boomi_action": "x" * 500},
         "firing", "rejected", ("acc", "c1", "l1", "")),
    ],
)  # fmt: skip
def test_triage(
    labels: dict[str, str], status: str, outcome: str, counted: tuple[str, ...]
) -> None:
    verdict = triage(
        WebhookAlert.model_validate(alert(status, **labels)),
        allowed_actions=frozenset({"restart"}),
        containers=CONTAINERS,
        known_listeners=known,
    )
    assert (verdict.outcome, verdict.labels) == (outcome, counted)
    assert (verdict.request is not None) == (outcome == "queued")


def test_triage_without_account_label_and_several_accounts_is_rejected() -> None:
    verdict = triage(
        WebhookAlert.model_validate(alert(container_id="c1", listener_id="l1")),
        allowed_actions=frozenset({"restart"}),
        containers={"acc": frozenset({"c1"}), "acc2": frozenset({"c9"})},
        known_listeners=known,
    )
    assert verdict.outcome == "rejected"


@pytest.mark.parametrize(
    ("action", "status", "expected"),
    [
        ("restart", "errored", True), ("restart", "listening", False), ("restart", "paused", False),
        ("restart", "unknown", False), ("pause", "listening", True), ("pause", "paused", False),
        ("resume", "paused", True), ("resume", "errored", False),
    ],
)  # fmt: skip
def test_precondition(action: str, status: str, expected: bool) -> None:
    assert precondition_met(action, status, frozenset({"errored"})) is expected


def test_guards_duplicate_cooldown_budget_with_a_fake_clock(tmp_path: Path) -> None:
    # The guards live in the ledger now; "acted" is the entry's start, "finished" its end.
    now = [0.0]
    ledger = LedgerFile.open(tmp_path, retention_days=30, clock=lambda: now[0])
    limits = GuardLimits(cooldown_seconds=60, max_actions_per_hour=2)

    def admit(listener_id: str) -> tuple[str, int]:
        decision = Decision("alertmanager", "fp", "a", "c", listener_id, "restart", "queued")
        (entry,) = ledger.record([decision], limits)
        return entry.outcome, entry.id

    try:
        outcome, first = admit("l1")
        assert outcome == "queued"
        assert admit("l1")[0] == "skipped_duplicate"
        ledger.mark_started(first)
        ledger.finish(first, "recovered")
        assert admit("l1")[0] == "skipped_cooldown"
        now[0] = 61
        outcome, second = admit("l2")
        assert outcome == "queued"  # one started + one queued = budget of 2
        assert admit("l3")[0] == "skipped_budget"
        ledger.finish(second, "skipped_not_needed")  # ended without acting: its place is free
        outcome, third = admit("l3")
        assert outcome == "queued"
        ledger.mark_started(third)
        ledger.finish(third, "recovered")
        assert admit("l1")[0] == "skipped_budget"  # 2 actions in the last hour
        now[0] = 3601
        assert admit("l1")[0] == "queued"  # the first action left the window
    finally:
        ledger.close()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {TOKEN}", True),
        (f"Bearer {TOKEN}x", False),
        # The scheme is case-insensitive (RFC 9110, 11.1; issue 19).
        (f"bearer {TOKEN}", True),
        (f"BEARER {TOKEN}", True),
        (f"Bearer{TOKEN}", False),
        (f"Basic {TOKEN}", False),
        ("Bearer", False),
        (TOKEN, False),
        ("", False),
        (None, False),
        ("Bearer ☃", False),
    ],
)
def test_bearer_authorization(header: str | None, expected: bool) -> None:
    assert authorized(header, WebhookAuthConfig(bearer_token=SecretStr(TOKEN))) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("am", "pw"), True),
        (basic("am", "wrong"), False),
        (basic("other", "pw"), False),
        ("Basic !!!", False),
        (f"Bearer {TOKEN}", False),
        (None, False),
    ],
)
def test_basic_authorization(header: str | None, expected: bool) -> None:
    auth = WebhookAuthConfig(basic=BasicAuthConfig(username="am", password=SecretStr("pw")))
    assert authorized(header, auth) is expected


def test_auth_none_lets_everyone_in() -> None:
    assert authorized(None, "none")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"version": "3", "status": "firing", "alerts": []}',
        b'{"version": 4, "status": "firing", "alerts": []}',
        b'{"version": "4", "status": "burning", "alerts": []}',
        b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"a": 1}}]}',
        b'{"version": "4", "status": "firing", "alerts": {}}',
        b"[" * 100000,
    ],
)
def test_parse_payload_rejects(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_payload(body)


def test_parse_payload_ignores_unknown_fields() -> None:
    payload = parse_payload(
        json.dumps(
            {"version": "4", "status": "firing", "alerts": [alert()], "newField": {"x": 1}}
        ).encode()
    )
    assert payload.alerts[0].fingerprint == "fp"


# -- over real sockets -------------------------------------------------------------------------

REMEDIATION: dict[str, Any] = {
    "enabled": True,
    "dry_run": False,
    "auth": {"bearer_token": TOKEN},
    "cooldown_seconds": 900,
    "max_actions_per_hour": 10,
    "verify_timeout_seconds": 2,
}


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="BoomiListenerErrored"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "boomi-remediation",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "alerts": list(alerts),
    }


async def post(
    running: Running, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with running.session.post(
        running.url + "/webhook/alertmanager",
        data=data,
        headers=AUTH if headers is None else headers,
    ) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def outcomes(samples: dict[Any, float]) -> dict[tuple[str, str], float]:
    """{(listener_id, outcome): count} from boomi_remediation_actions_total."""
    return {
        (dict(labels)["listener_id"], dict(labels)["outcome"]): value
        for (name, labels), value in samples.items()
        if name == "boomi_remediation_actions_total"
    }


async def started(
    sim_server: SimServer, start_exporter: StartExporter, **overrides: Any
) -> tuple[Running, str, str]:
    """An exporter with remediation that has polled once; returns it and an errored listener."""
    running = await start_exporter(config_for(sim_server, remediation=REMEDIATION | overrides))
    container = sim_server.container_ids()[0]
    listener = next(iter(sim_server.listeners_of(container)))
    sim_server.sim.set_status(ACCOUNT, listener, "errored")
    await running.wait_for(
        lambda s: (
            s.get(
                (
                    "boomi_listener_status",
                    (
                        ("account_id", ACCOUNT),
                        (
                            "connector_type",
                            sim_server.account.listeners[listener].connector_type or "",
                        ),
                        ("container_id", container),
                        ("listener_id", listener),
                        ("status", "errored"),
                    ),
                )
            )
            == 1
        )
    )
    return running, container, listener


def errored_alert(container: str, listener: str, **extra: str) -> dict[str, Any]:
    return alert(
        fingerprint=f"fp-{listener[:8]}",
        account_id=ACCOUNT,
        container_id=container,
        listener_id=listener,
        **extra,
    )


async def test_firing_alert_restarts_the_errored_listener_once(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    status, answer = await post(running, payload(errored_alert(container, listener)))
    assert status == 200
    assert answer == {"alerts": [{"fingerprint": f"fp-{listener[:8]}", "outcome": "queued"}]}
    samples = await running.wait_for(lambda s: (listener, "recovered") in outcomes(s))
    assert outcomes(samples)[(listener, "recovered")] == 1
    assert [
        {k: v for k, v in entry.items() if k != "time"} for entry in sim_server.sim.change_log
    ] == [
        {
            "account_id": ACCOUNT,
            "container_id": container,
            "listener_id": listener,
            "action": "restart",
        }
    ]
    assert sim_server.account.listeners[listener].status == "listening"


async def test_resolved_alert_is_ignored(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    resolved = errored_alert(container, listener) | {"status": "resolved"}
    status, answer = await post(running, payload(resolved) | {"status": "resolved"})
    assert (status, answer["alerts"][0]["outcome"]) == (200, "ignored_resolved")
    await asyncio.sleep(0.3)
    assert sim_server.sim.change_log == []


@pytest.mark.parametrize(
    ("labels", "expected_listener_label"),
    [
        ({"container_id": "not-a-configured-container"}, ""),
        ({"listener_id": "never-seen-listener"}, ""),
        ({"account_id": "someone-else"}, ""),
        ({"boomi_action": "pause"}, "same"),
        ({"boomi_action": "restart_all"}, "same"),
    ],
)
async def test_refused_alerts_are_rejected_without_a_call(
    sim_server: SimServer,
    start_exporter: StartExporter,
    labels: dict[str, str],
    expected_listener_label: str,
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    status, answer = await post(running, payload(errored_alert(container, listener) | {
        "labels": errored_alert(container, listener)["labels"] | labels}))  # fmt: skip
    assert (status, answer["alerts"][0]["outcome"]) == (200, "rejected")
    samples = await running.samples()
    counted = listener if expected_listener_label == "same" else expected_listener_label
    assert outcomes(samples) == {(counted, "rejected"): 1}
    await asyncio.sleep(0.3)
    assert sim_server.sim.change_log == []


async def test_listener_no_longer_errored_is_not_restarted(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    sim_server.sim.set_status(ACCOUNT, listener, "listening")  # recovered since the alert
    _, answer = await post(running, payload(errored_alert(container, listener)))
    assert answer["alerts"][0]["outcome"] == "queued"
    await running.wait_for(lambda s: (listener, "skipped_not_needed") in outcomes(s))
    assert sim_server.sim.change_log == []


async def test_cooldown_skips_a_second_restart(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    await post(running, payload(errored_alert(container, listener)))
    await running.wait_for(lambda s: (listener, "recovered") in outcomes(s))
    sim_server.sim.set_status(ACCOUNT, listener, "errored")
    _, answer = await post(running, payload(errored_alert(container, listener)))
    assert answer["alerts"][0]["outcome"] == "skipped_cooldown"
    assert len(sim_server.sim.change_log) == 1


async def test_budget_caps_actions_per_hour(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter, max_actions_per_hour=1)
    other = list(sim_server.listeners_of(container))[1]
    sim_server.sim.set_status(ACCOUNT, other, "errored")
    _, answer = await post(
        running, payload(errored_alert(container, listener), errored_alert(container, other))
    )
    assert [a["outcome"] for a in answer["alerts"]] == ["queued", "skipped_budget"]
    await running.wait_for(lambda s: (listener, "recovered") in outcomes(s))
    assert [entry["listener_id"] for entry in sim_server.sim.change_log] == [listener]


async def test_dry_run_counts_and_changes_nothing(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter, dry_run=True)
    await post(running, payload(errored_alert(container, listener)))
    await running.wait_for(lambda s: (listener, "dry_run") in outcomes(s))
    assert sim_server.sim.change_log == []
    assert sim_server.account.listeners[listener].status == "errored"


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Authorization": "Bearer wrong-token"}, None, 401),
        ({}, None, 401),
        (AUTH, b"{not json", 400),
        (AUTH, b'{"version": "4", "status": "firing"}', 400),
        (AUTH, b'{"version": "4", "status": "firing", "alerts": [' + b" " * 70000 + b"]}", 413),
    ],
)
async def test_bad_requests_get_4xx_and_no_action(
    sim_server: SimServer,
    start_exporter: StartExporter,
    headers: dict[str, str],
    body: bytes | None,
    expected: int,
) -> None:
    running, container, listener = await started(sim_server, start_exporter, max_body_bytes=65536)
    status, _ = await post(
        running, body if body is not None else payload(errored_alert(container, listener)), headers
    )
    assert status == expected
    await asyncio.sleep(0.3)
    assert sim_server.sim.change_log == []
    assert not outcomes(await running.samples())


async def test_webhook_is_404_when_remediation_is_disabled(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running = await start_exporter(config_for(sim_server))
    status, _ = await post(running, payload())
    assert status == 404


async def test_storm_of_200_duplicate_deliveries_restarts_once(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    body = payload(errored_alert(container, listener))
    answers = await asyncio.gather(*(post(running, body) for _ in range(200)))
    assert {status for status, _ in answers} == {200}
    results = [answer["alerts"][0]["outcome"] for _, answer in answers]
    assert results.count("queued") == 1
    assert set(results) <= {"queued", "skipped_duplicate", "skipped_cooldown"}
    await running.wait_for(lambda s: (listener, "recovered") in outcomes(s))
    assert len(sim_server.sim.change_log) == 1


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 30}], indirect=True)
async def test_listener_that_does_not_come_back_is_not_recovered(
    sim_server: SimServer, start_exporter: StartExporter
) -> None:
    running, container, listener = await started(sim_server, start_exporter)
    started_at = time.monotonic()
    await post(running, payload(errored_alert(container, listener)))
    # The cap only ends a hang: the outcome comes about 2 s after the alert.
    await running.wait_for(lambda s: (listener, "not_recovered") in outcomes(s), timeout=30)
    # The verification went on for verify_timeout_seconds. A lower bound, which a busy machine
    # can only make easier to meet (the remediator's deadline is on the event loop's clock).
    assert time.monotonic() - started_at >= 2  # lower bound: a busy machine only adds
    assert len(sim_server.sim.change_log) == 1


async def test_auth_none_is_accepted_and_warned_about_at_start(
    sim_server: SimServer, start_exporter: StartExporter, caplog: pytest.LogCaptureFixture
) -> None:
    running, container, listener = await started(sim_server, start_exporter, auth="none")
    assert any(
        record.levelname == "WARNING" and "WITHOUT authentication" in record.getMessage()
        for record in caplog.records
    )
    status, answer = await post(running, payload(errored_alert(container, listener)), headers={})
    assert (status, answer["alerts"][0]["outcome"]) == (200, "queued")
