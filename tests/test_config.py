"""Tests for exporter.config: loading, ${ENV} expansion, *_file secrets, validation messages."""

from __future__ import annotations

import contextlib
import copy
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from exporter.config import (
    AccountConfig,
    BasicAuthConfig,
    Config,
    ConfigError,
    ContainerConfig,
    DiscoveryConfig,
    NamesConfig,
    PollConfig,
    RemediationConfig,
    StorageConfig,
    TLSClientConfig,
    WebConfig,
    WebhookAuthConfig,
    load_config,
    parse_config,
    parse_listen_address,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-Hunter2-value"
CONTAINER_ID = "1045759d-7f6c-4108-bd0e-7b71541d6a2d"

VALID: dict[str, Any] = {
    "accounts": [
        {
            "account_id": "acme-AB12CD",
            "username": "BOOMI_TOKEN.ops@acme.example",
            "password": "pw",
            "containers": [{"id": CONTAINER_ID, "name": "prod-molecule"}],
        }
    ]
}


def config_text(*changes: tuple[str, Any]) -> str:
    """VALID as YAML after applying (dotted path, value) changes; the value ... deletes the key."""
    document = copy.deepcopy(VALID)
    for path, value in changes:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is ...:
            del node[last]
        elif isinstance(node, list) and int(last) == len(node):
            node.append(value)
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return yaml.safe_dump(document, sort_keys=False)


def error_lines(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=env or {})
    return str(caught.value).splitlines()


CONTAINERS_3 = [{"id": "c1"}, {"id": "c2"}, {"name": "no id"}]
SECOND_ACCOUNT = {
    "account_id": "other",
    "username": "u",
    "password": "p",
    "containers": [{"id": "x"}, {"id": CONTAINER_ID}],
}
ENABLED = ("remediation.enabled", True)
AUTH_REQUIRED = (
    "remediation.auth: required when remediation is enabled (bearer_token, basic, or the word none)"
)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # unknown keys, at every level
        ([("pol", {})], "pol: unknown key"),
        ([("accounts.0.user", "x")], "accounts[0].user: unknown key"),
        ([("accounts.0.containers.0.ident", "x")], "accounts[0].containers[0].ident: unknown key"),
        ([("poll.intervall_seconds", 5)], "poll.intervall_seconds: unknown key"),
        ([("web.listen", ":1")], "web.listen: unknown key"),
        ([("remediation.enable", True)], "remediation.enable: unknown key"),
        ([("remediation.auth", {"token": "t"})], "remediation.auth.token: unknown key"),
        (
            [("remediation.auth", {"basic": {"user": "u", "password": "p"}})],
            "remediation.auth.basic.user: unknown key",
        ),
        # wrong types
        ([("accounts", "acme")], "accounts: must be a list"),
        ([("accounts.0.containers", {"id": "x"})], "accounts[0].containers: must be a list"),
        ([("poll", [1])], "poll: must be a mapping of keys to values"),
        ([("poll.interval_seconds", "soon")], "poll.interval_seconds: must be a number"),
        ([("remediation.enabled", "maybe")], "remediation.enabled: must be true or false"),
        (
            [("remediation.max_actions_per_hour", 1.5)],
            "remediation.max_actions_per_hour: must be a whole number",
        ),
        (
            [("accounts.0.username", 1234)],
            "accounts[0].username: must be a string (quote it if it looks like a number)",
        ),
        # ranges
        ([("poll.interval_seconds", 0)], "poll.interval_seconds: must be greater than 0"),
        (
            [("poll.result_timeout_seconds", float("inf"))],
            "poll.result_timeout_seconds: must be a finite number",
        ),
        (
            [("accounts.0.max_requests_per_second", 0)],
            "accounts[0].max_requests_per_second: must be greater than 0",
        ),
        (
            [("accounts.0.max_requests_per_second", 101)],
            "accounts[0].max_requests_per_second: must be at most 100",
        ),
        (
            [("accounts.0.auth_failure_backoff_seconds", -1)],
            "accounts[0].auth_failure_backoff_seconds: must be 0 or more",
        ),
        ([("remediation.cooldown_seconds", -1)], "remediation.cooldown_seconds: must be 0 or more"),
        ([("remediation.max_body_bytes", 0)], "remediation.max_body_bytes: must be greater than 0"),
        # required values
        ([("accounts.0.password", ...)], "accounts[0].password: required (or password_file)"),
        ([("accounts.0.username", ...)], "accounts[0].username: required"),
        ([("accounts.0.account_id", "")], "accounts[0].account_id: must not be empty"),
        ([("accounts.0.password", "")], "accounts[0].password: must not be empty"),
        (
            [("accounts.0.password_file", "secret.txt")],
            "accounts[0].password_file: cannot be used together with password; give only one",
        ),
        ([("accounts.0.containers", CONTAINERS_3)], "accounts[0].containers[2].id: required"),
        ([("accounts", [])], "accounts: must not be empty"),
        (
            [("accounts.0.containers", [])],
            "accounts[0].containers: required (at least one), unless discovery is enabled",
        ),
        (
            [("accounts.0.discovery", {"enabled": True, "name_pattern": "("})],
            "accounts[0].discovery.name_pattern: is not a valid regular expression:"
            " missing ), unterminated subpattern",
        ),
        (
            [("accounts.0.discovery", {"types": ["ATOM", "ROBOT"]})],
            "accounts[0].discovery.types[1]: must be one of: ATOM, MOLECULE, CLOUD",
        ),
        ([("names", {"refresh_seconds": 0})], "names.refresh_seconds: must be greater than 0"),
        # identifiers and URLs
        (
            [("accounts.0.account_id", "acme/x")],
            "accounts[0].account_id: must not contain spaces or any of / ? # %",
        ),
        (
            [("accounts.0.base_url", "ftp://api.boomi.com")],
            "accounts[0].base_url: must be an http:// or https:// URL",
        ),
        (
            [("accounts.0.base_url", "https://")],
            "accounts[0].base_url: must be an http:// or https:// URL",
        ),
        (
            [("accounts.0.base_url", "https://h:99999/")],
            "accounts[0].base_url: must be an http:// or https:// URL",
        ),
        (
            [("accounts.0.base_url", "https://u:p@api.boomi.com")],
            "accounts[0].base_url: must not contain credentials; use username and password",
        ),
        (
            [("accounts.0.base_url", "https://h/x?a=1")],
            "accounts[0].base_url: must not have a query or a fragment",
        ),
        # listen address
        (
            [("web.listen_address", "localhost")],
            "web.listen_address: must be HOST:PORT, e.g. 0.0.0.0:9877",
        ),
        (
            [("web.listen_address", "localhost:http")],
            "web.listen_address: must end with a port number from 0 to 65535",
        ),
        (
            [("web.listen_address", "0.0.0.0:65536")],
            "web.listen_address: must end with a port number from 0 to 65535",
        ),
        (
            [("web.listen_address", "0.0.0.0:-1")],
            "web.listen_address: must end with a port number from 0 to 65535",
        ),
        (
            [("web.listen_address", "::1:9877")],
            "web.listen_address: must put an IPv6 address in brackets, e.g. [::]:9877",
        ),
        (
            [("web.listen_address", "[nope]:9877")],
            "web.listen_address: must have an IPv6 address inside the brackets",
        ),
        (
            [("web.listen_address", "a b:9877")],
            "web.listen_address: must have a host name or IP address before the ':'",
        ),
        # uniqueness
        (
            [("accounts.0.containers", [{"id": "c1"}, {"id": "c2"}, {"id": "c1"}])],
            "accounts[0].containers[2].id: duplicate container id,"
            " also at accounts[0].containers[0].id",
        ),
        (
            [("accounts.1", SECOND_ACCOUNT)],
            "accounts[1].containers[1].id: duplicate container id,"
            " also at accounts[0].containers[0].id",
        ),
        (
            [
                (
                    "accounts.1",
                    {**SECOND_ACCOUNT, "account_id": "acme-AB12CD", "containers": [{"id": "y"}]},
                )
            ],
            "accounts[1].account_id: duplicate account id, also at accounts[0].account_id",
        ),
        # remediation
        (
            [ENABLED],
            AUTH_REQUIRED,
        ),
        (
            [ENABLED, ("remediation.auth", None)],
            AUTH_REQUIRED,
        ),
        (
            [("remediation.auth", "None")],
            "remediation.auth: must be a mapping with bearer_token or basic, or the word none",
        ),
        (
            [("remediation.auth", False)],
            "remediation.auth: must be a mapping with bearer_token or basic, or the word none",
        ),
        (
            [("remediation.auth", {})],
            "remediation.auth: needs bearer_token (or bearer_token_file) or basic",
        ),
        (
            [
                (
                    "remediation.auth",
                    {"bearer_token": "t", "basic": {"username": "u", "password": "p"}},
                )
            ],
            "remediation.auth: give either bearer_token or basic, not both",
        ),
        (
            [("remediation.auth", {"basic": {"username": "u"}})],
            "remediation.auth.basic.password: required (or password_file)",
        ),
        (
            [("remediation.auth", {"bearer_token": ""})],
            "remediation.auth.bearer_token: must not be empty",
        ),
        (
            [("remediation.allowed_actions", ["restart_all"])],
            "remediation.allowed_actions[0]: must be one of: restart, pause, resume",
        ),
        (
            [("remediation.allowed_actions", ["restart", "resume_all"])],
            "remediation.allowed_actions[1]: must be one of: restart, pause, resume",
        ),
        ([("remediation.allowed_actions", [])], "remediation.allowed_actions: must not be empty"),
        (
            [("remediation.allowed_actions", ["pause", "pause"])],
            "remediation.allowed_actions: must not list the same value twice",
        ),
        (
            [("remediation.restart_when", ["stopped"])],
            "remediation.restart_when[0]: must be one of: listening, paused, errored, unknown",
        ),
        ([("storage.pth", "x")], "storage.pth: unknown key"),
        ([("storage.path", "")], "storage.path: must not be empty"),
        ([("storage.retention_days", 0)], "storage.retention_days: must be greater than 0"),
        ([("storage.retention_days", "a month")], "storage.retention_days: must be a number"),
    ],
)
def test_bad_config_names_the_key(changes: list[tuple[str, Any]], expected: str) -> None:
    assert expected in error_lines(config_text(*changes))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "accounts: required"),
        ("# only a comment\n", "accounts: required"),
        ("poll: {}\n", "accounts: required"),
        (
            "accounts: [\n",
            "invalid YAML at line 2, column 1: expected the node content, but found '<stream end>'",
        ),
        (
            "accounts:\n  - a: 1\n b: 2\n",
            "invalid YAML at line 3, column 2:"
            " expected <block end>, but found '<block mapping start>'",
        ),
        (
            "accounts:\n\t- a\n",
            "invalid YAML at line 2, column 1: found character '\\t' that cannot start any token",
        ),
        ("accounts: *nope\n", "invalid YAML at line 1, column 11: found undefined alias ..."),
        (
            "- accounts\n",
            "the config must be a mapping of keys (accounts, poll, web, remediation), not a list",
        ),
        (
            "just a string\n",
            "the config must be a mapping of keys (accounts, poll, web, remediation), not a string",
        ),
    ],
)
def test_bad_yaml_and_empty_file(text: str, expected: str) -> None:
    assert error_lines(text) == [expected]


def test_errors_are_listed_one_per_line_and_capped() -> None:
    poll = {f"unknown_{number}": 1 for number in range(15)}
    lines = error_lines(config_text(("poll", poll), ("web.listen_address", "nope")))
    assert len(lines) == 10
    assert lines[0] == "poll.unknown_0: unknown key"
    assert lines[-1] == "... and 7 more problems"


def test_env_reference_that_is_not_set_names_key_and_variable() -> None:
    text = config_text(("accounts.0.password", "${BOOMI_API_TOKEN}"))
    assert error_lines(text, env={}) == [
        "accounts[0].password: environment variable BOOMI_API_TOKEN is not set"
    ]


def test_malformed_env_reference_is_an_error() -> None:
    text = config_text(("accounts.0.username", "a${not a name}"))
    assert error_lines(text) == [
        "accounts[0].username: malformed ${...} reference: write ${NAME} or ${NAME:-default},"
        " or $${ for a literal ${"
    ]


def test_env_expansion_forms() -> None:
    text = config_text(
        ("accounts.0.username", "${USER_NAME}"),
        ("accounts.0.password", "pre-${TOKEN}-post"),
        ("accounts.0.base_url", "${BASE_URL:-https://example.test/api/}"),
        ("accounts.0.containers.0.name", "$${LITERAL} and ${EMPTY:-fallback}"),
        ("accounts.0.max_requests_per_second", "${RPS}"),
        ("remediation.enabled", "${REMEDIATE:-false}"),
    )
    env = {"USER_NAME": "ops", "TOKEN": "abc", "EMPTY": "", "RPS": "2.5"}
    config = parse_config(text, env=env)
    account = config.accounts[0]
    assert account.username == "ops"
    assert account.password.get_secret_value() == "pre-abc-post"
    assert account.base_url == "https://example.test/api"
    assert account.containers[0].name == "${LITERAL} and fallback"
    assert account.max_requests_per_second == 2.5
    assert config.remediation.enabled is False


def test_env_values_cannot_inject_yaml() -> None:
    text = config_text(("accounts.0.containers.0.name", "${NAME}"))
    config = parse_config(text, env={"NAME": "x\npoll: {interval_seconds: 1}"})
    assert config.accounts[0].containers[0].name == "x\npoll: {interval_seconds: 1}"
    assert config.poll.interval_seconds == 60.0


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOMI_TEST_PASSWORD", "from-env")
    config = parse_config(config_text(("accounts.0.password", "${BOOMI_TEST_PASSWORD}")))
    assert config.accounts[0].password.get_secret_value() == "from-env"


def test_defaults_are_applied() -> None:
    config = parse_config(config_text())
    account = config.accounts[0]
    assert account.base_url == "https://api.boomi.com/api/rest/v1"
    assert account.max_requests_per_second == 5.0
    assert account.auth_failure_backoff_seconds == 300.0
    assert account.containers[0].name == "prod-molecule"
    assert config.poll.interval_seconds == 60.0
    assert config.poll.result_timeout_seconds == 120.0
    assert config.poll.request_timeout_seconds == 30.0
    assert (config.web.host, config.web.port) == ("0.0.0.0", 9877)
    remediation = config.remediation
    assert (remediation.enabled, remediation.dry_run, remediation.auth) == (False, True, None)
    assert remediation.allowed_actions == ["restart"]
    assert remediation.restart_when == ["errored"]
    assert remediation.cooldown_seconds == 900.0
    assert remediation.max_actions_per_hour == 10
    assert remediation.verify_timeout_seconds == 180.0
    assert remediation.max_body_bytes == 1048576


def test_empty_sections_mean_defaults() -> None:
    config = parse_config(config_text() + "poll:\nweb:\nstorage:\nremediation:\n")
    assert config.poll.interval_seconds == 60.0
    assert config.web.listen_address == "0.0.0.0:9877"
    assert config.storage == StorageConfig()
    assert config.remediation.enabled is False


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("0.0.0.0:9877", "0.0.0.0", 9877),
        ("localhost:0", "localhost", 0),
        ("[::1]:8080", "::1", 8080),
        ("[::]:65535", "::", 65535),
        (":9877", "", 9877),
    ],
)
def test_listen_address(address: str, host: str, port: int) -> None:
    web = parse_config(config_text(("web.listen_address", address))).web
    assert (web.host, web.port) == (host, port)
    assert parse_listen_address(address) == (host, port)


def test_auth_none_is_accepted_when_enabled() -> None:
    config = parse_config(config_text(ENABLED, ("remediation.auth", "none")))
    assert config.remediation.enabled
    assert config.remediation.auth == "none"


def test_webhook_auth_forms() -> None:
    bearer = parse_config(
        config_text(ENABLED, ("remediation.auth", {"bearer_token": "t"}))
    ).remediation.auth
    assert isinstance(bearer, WebhookAuthConfig)
    assert bearer.bearer_token is not None
    assert bearer.bearer_token.get_secret_value() == "t"
    basic = parse_config(
        config_text(ENABLED, ("remediation.auth", {"basic": {"username": "am", "password": "p"}}))
    ).remediation.auth
    assert isinstance(basic, WebhookAuthConfig)
    assert isinstance(basic.basic, BasicAuthConfig)
    assert (basic.basic.username, basic.basic.password.get_secret_value()) == ("am", "p")


def test_secret_files_are_read_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "boomi").write_text("boomi-pw\n")
    (tmp_path / "secrets" / "webhook").write_text("token\n\n")  # only one newline is removed
    (tmp_path / "secrets" / "basic").write_text("basic-pw\r\n")
    path = tmp_path / "config.yaml"
    path.write_text(
        config_text(
            ("accounts.0.password", ...),
            ("accounts.0.password_file", "secrets/boomi"),
            ("remediation.auth", {"bearer_token_file": "secrets/webhook"}),
        )
    )
    monkeypatch.chdir(tmp_path / "secrets")  # not the config's folder
    config = load_config(path, env={})
    assert config.accounts[0].password.get_secret_value() == "boomi-pw"
    auth = config.remediation.auth
    assert isinstance(auth, WebhookAuthConfig)
    assert auth.bearer_token is not None
    assert auth.bearer_token.get_secret_value() == "token\n"

    basic = parse_config(
        config_text(
            ("remediation.auth", {"basic": {"username": "am", "password_file": "secrets/basic"}})
        ),
        base_dir=tmp_path,
    ).remediation.auth
    assert isinstance(basic, WebhookAuthConfig)
    assert basic.basic is not None
    assert basic.basic.password.get_secret_value() == "basic-pw"


def test_absolute_secret_file_and_cwd_without_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("abs")
    text = config_text(
        ("accounts.0.password", ...), ("accounts.0.password_file", str(tmp_path / "pw"))
    )
    assert parse_config(text).accounts[0].password.get_secret_value() == "abs"
    monkeypatch.chdir(tmp_path)
    text = config_text(("accounts.0.password", ...), ("accounts.0.password_file", "pw"))
    assert parse_config(text).accounts[0].password.get_secret_value() == "abs"


def test_unreadable_secret_file_names_key_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    text = config_text(("accounts.0.password", ...), ("accounts.0.password_file", str(missing)))
    assert error_lines(text) == [
        f"accounts[0].password_file: cannot read {missing}: No such file or directory"
    ]
    (tmp_path / "folder").mkdir()
    text = config_text(("remediation.auth", {"bearer_token_file": "folder"}))
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base_dir=tmp_path)
    assert str(caught.value) == (
        f"remediation.auth.bearer_token_file: cannot read {tmp_path / 'folder'}: Is a directory"
    )


def test_unreadable_config_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(
        ConfigError, match=f"cannot read config file {missing}: No such file or directory"
    ):
        load_config(missing)


def test_base_url_trailing_slash_is_removed() -> None:
    config = parse_config(
        config_text(("accounts.0.base_url", "http://localhost:8080/api/rest/v1/"))
    )
    assert config.accounts[0].base_url == "http://localhost:8080/api/rest/v1"


# --- secrets never leak -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (config_text(("accounts.0.password", SECRET), ("poll.interval_seconds", "x")), {}),
        (config_text(("accounts.0.password", [SECRET])), {}),
        (config_text(("accounts.0.password", {"value": SECRET})), {}),
        (config_text(("accounts.0.password", SECRET), ("accounts.0.password_file", "f")), {}),
        (config_text(("remediation.auth", {"bearer_token": [SECRET]})), {}),
        (config_text(("remediation.auth", SECRET)), {}),
        (config_text(("remediation.auth", {"basic": {"password": SECRET}})), {}),
        (config_text(("remediation.allowed_actions", [SECRET])), {}),
        (config_text(("web.listen_address", SECRET)), {}),
        (config_text(("accounts.0.base_url", f"https://u:{SECRET}@h")), {}),
        (config_text(("accounts.0.max_requests_per_second", "${TOKEN}")), {"TOKEN": SECRET}),
        (
            config_text(("accounts.0.password", "${TOKEN}"), ("accounts.0.username", 5)),
            {"TOKEN": SECRET},
        ),
        (config_text(("accounts.0.password", f"${{UNSET}}{SECRET}")), {}),
        (f"accounts:\n  - password: *{SECRET}\n", {}),
        (f"accounts:\n  - password: !{SECRET} x\n", {}),
        (f"accounts:\n  - password: {SECRET}\n   bad: indent\n", {}),
        (f"accounts:\n  - password: {SECRET}\n  - [\n", {}),
        (f"{SECRET}\n", {}),
    ],
)
def test_errors_never_contain_a_secret(text: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=env)
    assert SECRET not in str(caught.value)
    # Not in a printed traceback either, e.g. through a chained pydantic ValidationError.
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_secret_file_content_is_not_in_errors(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET)
    text = config_text(
        ("accounts.0.password", ...), ("accounts.0.password_file", "pw"), ("poll", 3)
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base_dir=tmp_path)
    assert str(caught.value) == "poll: must be a mapping of keys to values"


# --- the example config -----------------------------------------------------------------------


def test_example_config_loads_with_documented_values() -> None:
    env = {"BOOMI_API_TOKEN": "api-token", "WEBHOOK_TOKEN": "hook-token"}
    config = load_config(REPO_ROOT / "config.example.yaml", env=env)
    (account,) = config.accounts
    assert account.account_id == "acme-AB12CD"
    assert account.base_url == "https://api.boomi.com/api/rest/v1"
    assert account.username == "BOOMI_TOKEN.ops@acme.example"
    assert account.password.get_secret_value() == "api-token"
    assert account.max_requests_per_second == 5
    assert account.auth_failure_backoff_seconds == 300
    assert [(c.id, c.name) for c in account.containers] == [(CONTAINER_ID, "prod-molecule")]
    assert (config.poll.interval_seconds, config.poll.result_timeout_seconds) == (60, 120)
    assert config.poll.request_timeout_seconds == 30
    assert config.web.listen_address == "0.0.0.0:9877"
    assert (config.storage.path, config.storage.retention_days) == ("data/", 30)
    remediation = config.remediation
    assert (remediation.enabled, remediation.dry_run) == (False, True)
    assert isinstance(remediation.auth, WebhookAuthConfig)
    assert remediation.auth.bearer_token is not None
    assert remediation.auth.bearer_token.get_secret_value() == "hook-token"
    assert remediation.allowed_actions == ["restart"]
    assert remediation.restart_when == ["errored"]
    assert remediation.cooldown_seconds == 900
    assert remediation.max_actions_per_hour == 10
    assert remediation.verify_timeout_seconds == 180
    assert remediation.max_body_bytes == 1048576


def test_example_config_documents_every_option() -> None:
    text = (REPO_ROOT / "config.example.yaml").read_text()
    models: list[type[BaseModel]] = [
        Config,
        AccountConfig,
        ContainerConfig,
        PollConfig,
        WebConfig,
        StorageConfig,
        RemediationConfig,
        WebhookAuthConfig,
        BasicAuthConfig,
        DiscoveryConfig,
        NamesConfig,
        TLSClientConfig,
    ]
    names = {"password_file", "bearer_token_file"}
    for model in models:
        names.update(model.model_fields)
    assert sorted(name for name in names if f"{name}:" not in text) == []


# --- robustness -------------------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "accounts",
        "account_id",
        "base_url",
        "username",
        "password",
        "password_file",
        "containers",
        "id",
        "name",
        "poll",
        "web",
        "listen_address",
        "remediation",
        "enabled",
        "auth",
        "bearer_token",
        "bearer_token_file",
        "basic",
        "allowed_actions",
        "restart_when",
        "max_requests_per_second",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["none", "restart", "errored", "${X}", "$${X}", "${X:-1}", "${", "[::1]:1", ":0"]
    )
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
NO_SUCH_DIR = Path(__file__).resolve().parent / "no-such-dir"


# No deadline and no "too slow" health check: both are wall-clock verdicts on a busy machine.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS, wrap=st.booleans())
def test_any_yaml_document_gives_a_config_or_a_config_error(document: Any, wrap: bool) -> None:
    if wrap:
        document = {"accounts": [document]}
    text = yaml.safe_dump(document)
    with contextlib.suppress(ConfigError):
        parse_config(text, env={"X": "5"}, base_dir=NO_SUCH_DIR)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(text, env={}, base_dir=NO_SUCH_DIR)
