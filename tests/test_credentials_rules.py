"""The credentials rules of exporter.boomi.credentials, without a network: a fake clock, and the
answers Boomi would give fed in by hand."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from exporter.boomi import OP_ATOM, OP_CHANGE, OP_PROCESS, OP_QUERY, OP_RESULT, AuthError
from exporter.boomi.credentials import (
    AccountCredentials,
    CredentialGates,
    ProbeFailed,
    ProbeFailure,
    StaticSecret,
    Ticket,
    UserKey,
)
from exporter.config import ConfigError, parse_config

URL = "https://api.boomi.com/api/rest/v1"
WRONG = "wr0ng-Secret-1"
RIGHT = "r1ght-Secret-2"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Secret:
    """A secret whose value the test changes, as a password_file would."""

    remedy = "write the new token into /run/secrets/boomi or reload"

    def __init__(self, value: str) -> None:
        self.value = value


def account(
    gates: CredentialGates,
    clock: Clock,
    secret: Secret | StaticSecret,
    *,
    account_id: str = "acct-a",
    username: str = "BOOMI_TOKEN.ops@acme.example",
    base_url: str = URL,
    max_auth_failures: int = 2,
    backoff: float = 300.0,
) -> AccountCredentials:
    return AccountCredentials(
        account_id,
        gates.gate(base_url, username),
        username,
        secret,
        max_auth_failures=max_auth_failures,
        backoff_seconds=backoff,
        clock=clock,
    )


def reject(credentials: AccountCredentials, operation: str = OP_QUERY, status: int = 403) -> None:
    ticket = credentials.admit(operation)
    error = credentials.rejected(operation, ticket, status)
    assert isinstance(error, AuthError)


def accept(credentials: AccountCredentials, operation: str = OP_QUERY) -> None:
    credentials.accepted(operation, credentials.admit(operation))


def refused(credentials: AccountCredentials, operation: str = OP_QUERY) -> str:
    with pytest.raises(AuthError) as caught:
        credentials.admit(operation)
    return str(caught.value)


@pytest.mark.parametrize(
    ("base_url", "username", "same_user"),
    [
        (URL, "ops@acme.example", True),  # the API token user is the same user
        ("https://API.boomi.com/api/rest/v1/", "BOOMI_TOKEN.OPS@acme.example", True),
        ("https://api.boomi.com:443/api/rest/v1", "ops@acme.example", False),  # another port
        ("https://platform.boomi.com/api/rest/v1", "ops@acme.example", False),
        (URL, "other@acme.example", False),
    ],
)
def test_a_user_is_the_host_and_the_username(base_url: str, username: str, same_user: bool) -> None:
    key = UserKey.of(URL, "BOOMI_TOKEN.ops@acme.example")
    assert (UserKey.of(base_url, username) == key) is same_user


def test_after_max_auth_failures_rejections_nothing_goes_out_until_the_secret_changes() -> None:
    clock, secret = Clock(), Secret(WRONG)
    credentials = account(CredentialGates(), clock, secret)
    reject(credentials)
    # The back-off: no sign-in for 300 s, then one more.
    assert "back-off of 300 s" in refused(credentials)
    clock.now += 299
    refused(credentials)
    clock.now += 1
    reject(credentials)
    assert credentials.calls_stopped
    for operation in (OP_QUERY, OP_RESULT, OP_ATOM, OP_PROCESS, OP_CHANGE):
        message = refused(credentials, operation)
        assert "calls to Boomi stopped" in message
        assert "write the new token into /run/secrets/boomi or reload" in message
        assert WRONG not in message
    clock.now += 10**6  # waiting does not help: only a new value does
    assert credentials.calls_stopped
    secret.value = RIGHT
    assert not credentials.calls_stopped
    accept(credentials)  # tried at once, no back-off for a new value
    # Back to the old value (a rollback of the secret): still stopped, it was rejected twice.
    secret.value = WRONG
    assert credentials.calls_stopped


def test_a_success_resets_the_count_of_that_value() -> None:
    clock = Clock()
    credentials = account(CredentialGates(), clock, Secret(RIGHT), max_auth_failures=3, backoff=0)
    for _ in range(2):
        reject(credentials)
    accept(credentials)
    for _ in range(2):
        reject(credentials)
    assert not credentials.calls_stopped  # 2 since the success, not 4
    reject(credentials)
    assert credentials.calls_stopped


def test_accounts_of_one_user_share_the_count_and_others_do_not() -> None:
    clock, gates = Clock(), CredentialGates()
    first = account(gates, clock, Secret(WRONG), account_id="acct-a", backoff=0)
    sub_account = account(
        gates, clock, Secret(WRONG), account_id="acct-b", username="ops@acme.example", backoff=0
    )
    with_right_secret = account(gates, clock, Secret(RIGHT), account_id="acct-c", backoff=0)
    other_user = account(
        gates, clock, Secret(WRONG), account_id="acct-d", username="x@acme.example", backoff=0
    )
    reject(first)
    reject(sub_account)
    assert first.calls_stopped and sub_account.calls_stopped
    message = refused(first)
    assert "accounts acct-a, acct-b" in message and "ops@acme.example" in message
    # Counted per secret value: the account with the right one goes on; another user too.
    accept(with_right_secret)
    assert not with_right_secret.calls_stopped and not other_user.calls_stopped
    assert first.calls_stopped  # a success with another value resets nothing of this one


def test_one_error_line_when_calls_stop_and_no_secret_in_any(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    credentials = account(CredentialGates(), clock, Secret(WRONG), backoff=0)
    reject(credentials, status=401)
    reject(credentials, status=401)
    for _ in range(5):
        refused(credentials)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(errors) == 1 and len(warnings) == 1, (errors, warnings)
    assert "acct-a" in errors[0] and "ops@acme.example at api.boomi.com" in errors[0]
    assert "write the new token into /run/secrets/boomi or reload" in errors[0]
    assert "rejection 1 of 2" in warnings[0]
    assert WRONG not in caplog.text


def test_a_403_on_a_background_call_is_settled_by_the_next_status_call() -> None:
    """A missing Process privilege: one 403, the status call succeeds, Process is not called
    again until a reload, and nothing else stops."""
    clock = Clock()
    credentials = account(CredentialGates(), clock, Secret(RIGHT))
    accept(credentials)
    reject(credentials, OP_PROCESS)
    # The account's other calls wait for a status answer; a status call goes at once (no back-off).
    assert "the next ListenerStatus call tells" in refused(credentials, OP_ATOM)
    ticket = credentials.admit(OP_QUERY)
    assert not ticket.proven  # a probe: one at a time
    credentials.accepted(OP_QUERY, ticket)
    assert "lacks the privilege for process_query" in refused(credentials, OP_PROCESS)
    accept(credentials, OP_ATOM)
    # More status rejections would be needed to stop: the count was reset by the success.
    reject(credentials)
    assert not credentials.calls_stopped
    clock.now += 300
    accept(credentials)
    credentials.reset_privileges()  # a reload
    assert credentials.admit(OP_PROCESS).proven


def test_a_403_on_a_background_call_then_a_rejected_status_call_stops_calls() -> None:
    """A revoked token while background calls are due: max_auth_failures rejections in all."""
    clock = Clock()
    credentials = account(CredentialGates(), clock, Secret(RIGHT))
    accept(credentials)
    reject(credentials, OP_ATOM)
    reject(credentials, OP_QUERY)
    assert credentials.calls_stopped


@pytest.mark.parametrize(
    ("proven", "operation", "status", "back_off"),
    [
        (True, OP_QUERY, 403, True),
        (True, OP_RESULT, 401, True),
        (True, OP_PROCESS, 401, True),  # 401 is never a missing privilege
        (True, OP_PROCESS, 403, False),  # ambiguous: settled by the next status call
        (True, OP_CHANGE, 403, False),
        (False, OP_ATOM, 403, True),  # not proven yet: any 403 is a rejected sign-in
    ],
)
def test_which_rejections_start_the_back_off(
    proven: bool, operation: str, status: int, back_off: bool
) -> None:
    clock = Clock()
    credentials = account(CredentialGates(), clock, Secret(RIGHT), max_auth_failures=5)
    if proven:
        accept(credentials)
    reject(credentials, operation, status)
    try:
        credentials.admit(OP_QUERY)
    except AuthError as exc:
        assert back_off, exc
        assert "back-off" in str(exc)
    else:
        assert not back_off


async def test_requests_waiting_for_a_probe_share_its_5xx_instead_of_queueing() -> None:
    credentials = account(CredentialGates(), Clock(), Secret(RIGHT))
    release = asyncio.Event()
    sent: list[str] = []

    async def probe(ticket: Ticket) -> str:
        sent.append("probe")
        await release.wait()
        credentials.unanswered(ticket, ProbeFailure("504", "HTTP 504"))
        raise RuntimeError("HTTP 504")

    async def never(ticket: Ticket) -> str:
        sent.append("waiter")
        return "sent"

    first = asyncio.create_task(credentials.send(OP_QUERY, "c-0", probe))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(credentials.send(OP_QUERY, f"c-{n}", never)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert sent == ["probe"]  # one at a time while the secret is not proven
    release.set()
    with pytest.raises(RuntimeError):
        await first
    for waiter in waiters:
        with pytest.raises(ProbeFailed, match="HTTP 504") as caught:
            await waiter
        assert caught.value.failure.code == "504"
    assert sent == ["probe"]
    # A request that comes after the failed probe is the next probe.
    assert await credentials.send(OP_QUERY, "c-9", never) == "sent"


async def test_a_probe_rejected_holds_the_waiters_without_a_request() -> None:
    credentials = account(CredentialGates(), Clock(), Secret(WRONG))
    release = asyncio.Event()
    sent: list[str] = []

    async def probe(ticket: Ticket) -> str:
        sent.append("probe")
        await release.wait()
        raise credentials.rejected(OP_QUERY, ticket, 401)

    async def waiter(ticket: Ticket) -> str:
        sent.append("waiter")
        return "sent"

    first = asyncio.create_task(credentials.send(OP_QUERY, "c-0", probe))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(credentials.send(OP_QUERY, f"c-{n}", waiter)) for n in range(5)]
    await asyncio.sleep(0.01)
    release.set()
    for task in (first, *waiters):
        with pytest.raises(AuthError):
            await task
    assert sent == ["probe"]


async def test_with_status_probes_a_background_call_waits_for_the_status_answer() -> None:
    """At start, a missing Atom privilege must not pass for a wrong password: the Atom query
    waits until a ListenerStatus call has proven the secret."""
    credentials = account(CredentialGates(), Clock(), Secret(RIGHT), backoff=30)
    credentials.status_probes = True
    order: list[str] = []

    async def send(ticket: Ticket) -> str:
        order.append(f"sent, proven={ticket.proven}")
        credentials.accepted(OP_QUERY if len(order) == 1 else OP_ATOM, ticket)
        return "ok"

    atom = asyncio.create_task(credentials.send(OP_ATOM, "", send))
    await asyncio.sleep(0.01)
    assert order == []
    assert await credentials.send(OP_QUERY, "c-1", send) == "ok"
    assert await atom == "ok"
    assert order == ["sent, proven=False", "sent, proven=True"]


async def test_with_status_probes_a_background_call_goes_alone_after_one_back_off() -> None:
    credentials = account(CredentialGates(), Clock(), Secret(RIGHT), backoff=0.05)
    credentials.status_probes = True

    async def send(ticket: Ticket) -> bool:
        return ticket.proven

    assert await credentials.send(OP_ATOM, "", send) is False  # the probe, after the wait


# -- the configuration ------------------------------------------------------------------------


def account_yaml(extra: str) -> str:
    return (
        "accounts:\n"
        "  - account_id: acme\n"
        "    username: BOOMI_TOKEN.ops@acme.example\n"
        f"{extra}"
        "    containers: [{id: c-1}]\n"
    )


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("max_auth_failures: 0", "accounts[0].max_auth_failures: must be 1 or more"),
        ("max_auth_failures: 6", "accounts[0].max_auth_failures: must be at most 5"),
        ("max_auth_failures: 2.5", "accounts[0].max_auth_failures: must be a whole number"),
        ("auth_failure_backoff_seconds: -1", "auth_failure_backoff_seconds: must be 0 or more"),
    ],
)
def test_max_auth_failures_is_1_to_5(line: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(account_yaml(f"    password: p\n    {line}\n"))
    assert str(caught.value).endswith(error), str(caught.value)


def test_the_defaults_and_the_password_file_path_kept_to_be_watched(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    config = parse_config(account_yaml("    password_file: token\n"), base_dir=tmp_path)
    account = config.accounts[0]
    assert (account.max_auth_failures, account.auth_failure_backoff_seconds) == (2, 300.0)
    assert account.password.get_secret_value() == "s3cret"
    assert account.password_file == str(tmp_path / "token")
    assert "password_file" not in account.model_dump()  # a dump is loadable as it is
    inline = parse_config(account_yaml("    password: p\n")).accounts[0]
    assert inline.password_file is None
