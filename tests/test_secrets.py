"""Secrets never show: run the exporter with known secret values through every path that
writes something (logs at DEBUG, stdout, stderr, HTTP bodies and headers, error messages,
`repr()` of config objects) and look for each secret, its lower-case form and its Basic-auth
base64 encodings. None may appear.

Secrets: a Boomi password, a Boomi API token (read from a password_file), a wrong Boomi
password, the webhook's bearer token and the webhook's Basic-auth password (from a file).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.check_config import summarize
from exporter.config import ConfigError, load_config, parse_config
from tests.conftest import ACCOUNT, SimServer, StartExporter

BOOMI_PASSWORD = "Pw7f3a9cBoomiPassword"
API_TOKEN = "Tk51e0d2BoomiApiToken"
WRONG_PASSWORD = "Wr90bb1eWrongPassword"
WEBHOOK_TOKEN = "Whc4d2aaWebhookBearer"
BASIC_PASSWORD = "Ba77e1f0BasicPassword"
SECRETS = {
    "boomi password": BOOMI_PASSWORD,
    "api token": API_TOKEN,
    "wrong password": WRONG_PASSWORD,
    "webhook token": WEBHOOK_TOKEN,
    "basic password": BASIC_PASSWORD,
}
TOKEN_USER = "tok@example.com"
LOCKED_USER = "locked@example.com"
HOOK_USER = "alertmanager"
SECRET_SIM = {"password": BOOMI_PASSWORD, "api_token": "unused-token"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode().rstrip("=")


def secret_forms(main_user: str = "demo@example.com") -> dict[str, str]:
    """Each secret as it could leak: as is, lower-cased, and base64 (alone and as Basic auth)."""
    forms: dict[str, str] = {}
    for name, value in SECRETS.items():
        forms[name] = value
        forms[f"{name} (lower case)"] = value.lower()
        forms[f"{name} (base64)"] = b64(value)
    for user, name in [
        (main_user, "boomi password"),
        (f"BOOMI_TOKEN.{TOKEN_USER}", "api token"),
        (LOCKED_USER, "wrong password"),
        (HOOK_USER, "basic password"),
    ]:
        forms[f"{name} (Basic {user})"] = b64(f"{user}:{SECRETS[name]}")
    return forms


def assert_no_secret(where: str, text: str, main_user: str = "demo@example.com") -> None:
    found = [name for name, form in secret_forms(main_user).items() if form in text]
    assert not found, f"{where} contains {found}"


# ---------------------------------------------------------------------------------------------
# The daemon in-process with DEBUG logging, over real sockets.


def daemon_yaml(server: SimServer, tmp_path: Path, webhook_auth: str) -> str:
    """Three accounts (password, API token from a file, wrong password) and the webhook."""
    (tmp_path / "boomi-token").write_text(API_TOKEN + "\n")
    (tmp_path / "hook-password").write_text(BASIC_PASSWORD + "\n")
    containers = "\n".join(
        f"      - id: {c.container_id}\n        name: {c.name}"
        for c in server.account.containers.values()
    )
    auth = (
        f"    bearer_token: {WEBHOOK_TOKEN}"
        if webhook_auth == "bearer"
        else f"    basic:\n      username: {HOOK_USER}\n      password_file: hook-password"
    )
    return f"""\
accounts:
  - account_id: {ACCOUNT}
    base_url: {server.base_url}
    username: {server.account.username}
    password: {BOOMI_PASSWORD}
    max_requests_per_second: 50
    containers:
{containers}
  - account_id: token-account
    base_url: {server.base_url}
    username: BOOMI_TOKEN.{TOKEN_USER}
    password_file: boomi-token
    max_requests_per_second: 50
    containers:
      - id: token-container
  - account_id: locked-account
    base_url: {server.base_url}
    username: {LOCKED_USER}
    password: ${{LOCKED_PASSWORD}}
    containers:
      - id: locked-container
poll:
  interval_seconds: 0.3
  result_timeout_seconds: 2
  request_timeout_seconds: 1
storage:
  path: {tmp_path / "data"}
remediation:
  enabled: true
  dry_run: true
  auth:
{auth}
"""


def add_accounts(server: SimServer) -> None:
    sim = server.sim
    sim.add_account("token-account", username=TOKEN_USER, password="x", api_token=API_TOKEN)
    sim.add_container("token-account", "token-container", "token-molecule")
    sim.add_listener("token-account", "token-container", "token-listener")
    sim.add_account("locked-account", username=LOCKED_USER, password="the-right-one")
    sim.add_container("locked-account", "locked-container", "locked-molecule")
    sim.add_listener("locked-account", "locked-container", "locked-listener")


def webhook_headers(kind: str, right: bool) -> dict[str, str]:
    if kind == "bearer":
        return {"Authorization": f"Bearer {WEBHOOK_TOKEN if right else WEBHOOK_TOKEN[:-1]}"}
    password = BASIC_PASSWORD if right else BASIC_PASSWORD + "x"
    return {
        "Authorization": "Basic " + base64.b64encode(f"{HOOK_USER}:{password}".encode()).decode()
    }


@pytest.mark.parametrize("sim_server", [SECRET_SIM], indirect=True)
@pytest.mark.parametrize("webhook_auth", ["bearer", "basic"])
async def test_daemon_with_debug_logging_leaks_nothing(
    sim_server: SimServer,
    start_exporter: StartExporter,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    webhook_auth: str,
) -> None:
    caplog.set_level("DEBUG")
    add_accounts(sim_server)
    config = parse_config(
        daemon_yaml(sim_server, tmp_path, webhook_auth),
        env={"LOCKED_PASSWORD": WRONG_PASSWORD},
        base_dir=tmp_path,
    )
    running = await start_exporter(config)
    store = running.exporter.store
    deadline = time.monotonic() + 10
    while not (
        store.ready()
        and all(s.up for s in store.containers() if s.account_id != "locked-account")
        and any(s.polled and not s.up for s in store.containers())
    ):
        assert time.monotonic() < deadline, [
            (s.container_id, s.last_error) for s in store.containers()
        ]
        await asyncio.sleep(0.05)
    outputs: dict[str, str] = {}
    session = running.session
    for path, headers in [
        ("/", {}),
        ("/metrics", {}),
        ("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}),
        ("/-/ready", {}),
        ("/-/healthy", {}),
        ("/nope", {}),
    ]:
        async with session.get(running.url + path, headers=headers) as response:
            outputs[f"GET {path} {headers}"] = f"{response.headers}\n{await response.text()}"
    hook = running.url + "/webhook/alertmanager"
    alert = {
        "version": "4",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"container_id": "x", "listener_id": "y"}}],
    }
    for name, headers, body in [
        ("no auth", {}, alert),
        ("wrong auth", webhook_headers(webhook_auth, right=False), alert),
        ("other scheme", {"Authorization": f"Token {WEBHOOK_TOKEN}"}, alert),
        ("right auth, bad body", webhook_headers(webhook_auth, right=True), {"version": 3}),
        ("right auth", webhook_headers(webhook_auth, right=True), alert),
    ]:
        async with session.post(hook, json=body, headers=headers) as response:
            expected = 200 if name == "right auth" else 400 if "bad body" in name else 401
            assert response.status == expected, (name, await response.text())
            outputs[f"POST webhook {name}"] = f"{response.headers}\n{await response.text()}"
    assert "Boomi rejected the credentials" in outputs["GET / {}"]
    for snapshot in store.containers():
        outputs[f"snapshot {snapshot.container_id}"] = f"{snapshot!r} {snapshot.last_error}"
    await running.exporter.stop()
    outputs["config objects"] = "\n".join(
        [
            repr(config),
            str(config),
            config.model_dump_json(),
            str(config.model_dump()),
            *(repr(account) for account in config.accounts),
            repr(config.remediation),
            repr(config.remediation.auth),
            summarize(config),
            *(repr(client) for client in running.exporter.clients.values()),
        ]
    )
    captured = capsys.readouterr()
    outputs["stdout"], outputs["stderr"] = captured.out, captured.err
    outputs["log"] = caplog.text + "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    assert "rejected the credentials" in outputs["log"]
    for where, text in outputs.items():
        assert_no_secret(where, text, sim_server.account.username)


# ---------------------------------------------------------------------------------------------
# The command line as a real process: --check-config, --once, the daemon.


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode() + stderr.decode()


def config_text(password_line: str, *, extra: str = "", account_extra: str = "") -> str:
    return (
        textwrap.dedent(
            """\
            accounts:
              - account_id: acme
                username: someone@example.com
            """
        )
        + f"    {password_line}\n"
        + account_extra
        + "    containers:\n      - id: c-1\n"
        + extra
    )


WEBHOOK_BEARER = f"remediation:\n  enabled: true\n  auth:\n    bearer_token: {WEBHOOK_TOKEN}\n"
WEBHOOK_BASIC = (
    "remediation:\n  enabled: true\n  auth:\n    basic:\n"
    f"      username: {HOOK_USER}\n      password: {BASIC_PASSWORD}\n"
)


@pytest.mark.parametrize(
    ("password_line", "extra"),
    [
        (f"password: {BOOMI_PASSWORD}", WEBHOOK_BEARER),
        (f'password: "{BOOMI_PASSWORD}"', WEBHOOK_BASIC),
        ("password: ${BOOMI_PASSWORD}", WEBHOOK_BEARER),
        ("password_file: secret.txt", WEBHOOK_BASIC),
    ],
    ids=["literal", "quoted", "env", "file"],
)
async def test_check_config_valid_prints_no_secret(
    tmp_path: Path, password_line: str, extra: str
) -> None:
    (tmp_path / "secret.txt").write_text(BOOMI_PASSWORD + "\n")
    path = tmp_path / "config.yaml"
    path.write_text(config_text(password_line, extra=extra))
    code, output = await run_cli(
        "--check-config", "--config", str(path), "--log-level", "debug",
        env={"BOOMI_PASSWORD": BOOMI_PASSWORD},
    )  # fmt: skip
    assert code == 0, output
    assert "valid" in output
    assert_no_secret("--check-config output", output, "someone@example.com")


INVALID_CONFIGS = {
    "bad value next to it": (
        f"password: {BOOMI_PASSWORD}",
        "",
        "    max_requests_per_second: fast\n",
    ),
    "password as a list": (f"password: [{BOOMI_PASSWORD}]", "", ""),
    "password as a mapping": (f"password: {{{BOOMI_PASSWORD}: 1}}", "", ""),
    "password and password_file": (
        f"password: {BOOMI_PASSWORD}",
        "",
        "    password_file: secret.txt\n",
    ),
    "misspelt key": (f"passwrd: {BOOMI_PASSWORD}", "", ""),
    "credentials in base_url": (
        f"password: {BOOMI_PASSWORD}",
        "",
        f"    base_url: https://someone:{BOOMI_PASSWORD}@api.example.com/api/rest/v1\n",
    ),
    "unterminated quote": (f'password: "{BOOMI_PASSWORD}', "", ""),
    "colon after it": (f"password: {BOOMI_PASSWORD}: more", "", ""),
    "undefined alias": (f"password: *{BOOMI_PASSWORD}", "", ""),
    "unknown tag": (f"password: !{BOOMI_PASSWORD} x", "", ""),
    "anchored list": (f"password: &{BOOMI_PASSWORD} [x]", "", ""),
    "tab before it": (f"password:\t{BOOMI_PASSWORD}\n\t  x: y", "", ""),
    "flow mapping broken": (f"password: {{a: {BOOMI_PASSWORD}", "", ""),
    "malformed env reference": (f"password: ${{{BOOMI_PASSWORD}", "", ""),
    "zero rate with file": ("password_file: secret.txt", "", "    max_requests_per_second: 0\n"),
    "webhook auth is the token": (
        f"password: {BOOMI_PASSWORD}",
        f"remediation:\n  enabled: true\n  auth: {WEBHOOK_TOKEN}\n",
        "",
    ),
    "webhook bearer and basic": (
        f"password: {BOOMI_PASSWORD}",
        f"remediation:\n  enabled: true\n  auth:\n    bearer_token: {WEBHOOK_TOKEN}\n"
        f"    basic: {{username: u, password: {BASIC_PASSWORD}}}\n",
        "",
    ),
    "webhook bearer as list": (
        f"password: {BOOMI_PASSWORD}",
        f"remediation:\n  enabled: true\n  auth:\n    bearer_token: [{WEBHOOK_TOKEN}]\n",
        "",
    ),
    "webhook basic without user": (
        f"password: {BOOMI_PASSWORD}",
        f"remediation:\n  enabled: true\n  auth:\n    basic: {{password: {BASIC_PASSWORD}}}\n",
        "",
    ),
    "webhook basic misspelt": (
        f"password: {BOOMI_PASSWORD}",
        f"remediation:\n  enabled: yes-please\n  auth:\n    basic: {{username: u,"
        f" pasword: {BASIC_PASSWORD}}}\n",
        "",
    ),
}


@pytest.mark.parametrize(
    ("password_line", "extra", "account_extra"),
    list(INVALID_CONFIGS.values()),
    ids=list(INVALID_CONFIGS),
)
async def test_check_config_invalid_prints_no_secret(
    tmp_path: Path, password_line: str, extra: str, account_extra: str
) -> None:
    (tmp_path / "secret.txt").write_text(BOOMI_PASSWORD + "\n")
    path = tmp_path / "config.yaml"
    text = config_text(password_line, extra=extra, account_extra=account_extra)
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, env={})
    assert_no_secret("ConfigError", str(raised.value))
    code, output = await run_cli("--check-config", "--config", str(path), "--log-level", "debug")
    assert code == 2, output
    assert "bad configuration" in output
    assert "Traceback" not in output
    assert_no_secret("--check-config output", output)


@pytest.mark.parametrize("tag", ["!!int", "!!float", "!!bool"])
async def test_check_config_with_a_tagged_secret_prints_no_secret(tmp_path: Path, tag: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(f"password: {tag} {BOOMI_PASSWORD}"))
    code, output = await run_cli("--check-config", "--config", str(path))
    assert code == 2, output
    assert "Traceback" not in output
    assert_no_secret("--check-config output", output)


def once_config(tmp_path: Path, server: SimServer, password: str) -> Path:
    containers = "\n".join(f"      - id: {c}" for c in server.container_ids())
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""\
accounts:
  - account_id: {ACCOUNT}
    base_url: {server.base_url}
    username: {server.account.username}
    password: {password}
    max_requests_per_second: 50
    containers:
{containers}
poll:
  interval_seconds: 0.3
  result_timeout_seconds: 2
  request_timeout_seconds: 1
"""
    )
    return path


@pytest.mark.parametrize("sim_server", [SECRET_SIM], indirect=True)
@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
async def test_once_prints_no_secret(tmp_path: Path, sim_server: SimServer, right: bool) -> None:
    path = once_config(tmp_path, sim_server, BOOMI_PASSWORD if right else WRONG_PASSWORD)
    code, output = await run_cli("--once", "--config", str(path), "--log-level", "debug")
    assert code == (0 if right else 1), output
    assert ("rejected the credentials" in output) != right
    assert "Traceback" not in output
    assert_no_secret("--once output", output, sim_server.account.username)


async def read_port(stream: asyncio.StreamReader, seen: list[str]) -> int:
    deadline = time.monotonic() + 15
    while True:
        line = await asyncio.wait_for(stream.readline(), max(0.1, deadline - time.monotonic()))
        assert line, "".join(seen)
        seen.append(line.decode())
        if "serving on http://127.0.0.1:" in seen[-1]:
            return int(seen[-1].split("127.0.0.1:")[1].split("/")[0])


@pytest.mark.parametrize("sim_server", [SECRET_SIM], indirect=True)
@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_daemon_process_prints_no_secret(
    tmp_path: Path, sim_server: SimServer, log_format: str
) -> None:
    add_accounts(sim_server)
    path = tmp_path / "config.yaml"
    path.write_text(
        daemon_yaml(sim_server, tmp_path, "basic") + "web:\n  listen_address: 127.0.0.1:0\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--config", str(path), "--log-level", "debug",
        "--log-format", log_format,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LOCKED_PASSWORD": WRONG_PASSWORD},
    )  # fmt: skip
    assert process.stderr is not None
    seen: list[str] = []
    bodies: list[str] = []
    try:
        port = await read_port(process.stderr, seen)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 10
            while True:
                async with session.get(url + "/") as response:
                    page = await response.text()
                if "Boomi rejected the credentials" in page and "token-listener" in page:
                    break
                assert time.monotonic() < deadline, page
                await asyncio.sleep(0.1)
            bodies.append(page)
            async with session.get(url + "/metrics") as response:
                bodies.append(await response.text())
            for right in (False, True):
                async with session.post(
                    url + "/webhook/alertmanager",
                    data=b"{}",
                    headers=webhook_headers("basic", right),
                ) as response:
                    assert response.status == (400 if right else 401)
                    bodies.append(f"{response.headers}\n{await response.text()}")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    output = "".join(seen) + stdout.decode() + stderr.decode()
    assert "rejected the credentials" in output
    assert "Traceback" not in output
    assert_no_secret("daemon output", output, sim_server.account.username)
    for body in bodies:
        assert_no_secret("HTTP body", body, sim_server.account.username)


def test_config_objects_hide_secrets(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(WEBHOOK_TOKEN)
    text = config_text(f"password: {BOOMI_PASSWORD}") + textwrap.dedent(
        """\
        remediation:
          enabled: true
          auth:
            bearer_token_file: token
        """
    )
    config = parse_config(text, env={}, base_dir=tmp_path)
    assert config.remediation.auth != "none" and config.remediation.auth is not None
    assert config.remediation.auth.bearer_token is not None
    assert config.remediation.auth.bearer_token.get_secret_value() == WEBHOOK_TOKEN
    shown: list[Any] = [
        repr(config),
        str(config),
        config.model_dump_json(),
        str(config.model_dump()),
        repr(config.accounts[0]),
        repr(config.accounts[0].password),
        f"{config.accounts[0].password}",
        repr(config.remediation),
        repr(config.remediation.auth),
        summarize(config),
    ]
    basic = parse_config(config_text(f"password: {BOOMI_PASSWORD}", extra=WEBHOOK_BASIC), env={})
    shown += [repr(basic), repr(basic.remediation.auth), summarize(basic)]
    for text_shown in shown:
        assert_no_secret("config object", str(text_shown), "someone@example.com")
