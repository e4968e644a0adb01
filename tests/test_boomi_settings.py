"""ClientSettings: the one value a client is built from and compared by on reload."""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import trustme

from exporter.boomi.settings import ClientSettings
from exporter.config import Config

BASE: dict[str, Any] = {
    "accounts": [
        {
            "account_id": "acct-1",
            "base_url": "https://api.boomi.com/api/rest/v1",
            "username": "BOOMI_TOKEN.ops@example.com",
            "password": "s3cret-token",
            "max_requests_per_second": 5,
            "auth_failure_backoff_seconds": 300,
            "containers": [{"id": "c-1", "name": "prod"}],
        }
    ],
    "poll": {"interval_seconds": 60, "request_timeout_seconds": 30},
}

# Stands for a password_file holding the same password: only where it comes from differs.
SAME_PASSWORD_IN_A_FILE = object()

# For each field of ClientSettings: the config key it comes from and another value for it.
CHANGES: dict[str, tuple[tuple[str | int, ...], object]] = {
    "account_id": (("accounts", 0, "account_id"), "acct-2"),
    "base_url": (("accounts", 0, "base_url"), "http://127.0.0.1:8080/api/rest/v1"),
    "username": (("accounts", 0, "username"), "ops@example.com"),
    "password": (("accounts", 0, "password"), "another-token"),
    "password_file": (("accounts", 0, "password_file"), SAME_PASSWORD_IN_A_FILE),
    "max_requests_per_second": (("accounts", 0, "max_requests_per_second"), 7),
    "max_auth_failures": (("accounts", 0, "max_auth_failures"), 3),
    "auth_failure_backoff_seconds": (("accounts", 0, "auth_failure_backoff_seconds"), 60),
    "request_timeout_seconds": (("poll", "request_timeout_seconds"), 9),
    "transport": (("accounts", 0, "proxy_url"), "http://proxy.corp.example:3128"),
}


def settings_of(data: dict[str, Any]) -> ClientSettings:
    config = Config.model_validate(data)
    return ClientSettings.from_config(config.accounts[0], config)


def changed(path: tuple[str | int, ...], value: object, folder: Path) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is SAME_PASSWORD_IN_A_FILE:
        secret = folder / "password"
        secret.write_text(target.pop("password") + "\n")
        value = str(secret)
    target[path[-1]] = value
    return data


def test_every_client_setting_has_a_config_key_in_this_test() -> None:
    # A field added to ClientSettings without a row here fails, so the test below covers it.
    assert set(CHANGES) == {field.name for field in fields(ClientSettings)}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_changed_setting_is_seen_as_a_change(name: str, tmp_path: Path) -> None:
    before = settings_of(BASE)
    after = settings_of(changed(*CHANGES[name], tmp_path))
    assert before != after
    differing = {
        f.name for f in fields(ClientSettings) if getattr(before, f.name) != getattr(after, f.name)
    }
    assert differing == {name}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("poll", "interval_seconds"), 30),
        (("accounts", 0, "containers"), [{"id": "c-2", "name": "test"}]),
    ],
)
def test_settings_the_client_is_not_built_from_are_no_change(
    path: tuple[str | int, ...], value: object, tmp_path: Path
) -> None:
    assert settings_of(BASE) == settings_of(changed(path, value, tmp_path))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("proxy_url", "http://user:pw@proxy.corp.example:3128"),
        ("proxy_from_environment", True),
        ("tls_config", {"insecure_skip_verify": True}),
        ("tls_config", {"server_name": "api.boomi.com"}),
        ("tls_config", {"min_version": "TLS13"}),
    ],
)
def test_every_proxy_and_tls_key_rebuilds_the_client(
    key: str, value: object, tmp_path: Path
) -> None:
    before = settings_of(BASE)
    after = settings_of(changed(("accounts", 0, key), value, tmp_path))
    assert before.transport != after.transport
    assert before != after


def test_a_replaced_ca_file_rebuilds_the_client_on_reload(tmp_path: Path) -> None:
    ca_file = tmp_path / "corp-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    data = changed(("accounts", 0, "tls_config"), {"ca_file": str(ca_file)}, tmp_path)
    before = settings_of(data)
    assert before == settings_of(data)
    trustme.CA().cert_pem.write_to_path(str(ca_file))  # same path, new contents
    assert settings_of(data) != before


def test_the_proxy_password_stays_out_of_the_settings_repr(tmp_path: Path) -> None:
    proxy_url = "http://u:Pr0xyPw@proxy:3128"
    settings = settings_of(changed(("accounts", 0, "proxy_url"), proxy_url, tmp_path))
    assert "Pr0xyPw" not in repr(settings)
    assert settings.transport.proxy_url == "http://u:Pr0xyPw@proxy:3128"


def test_the_password_stays_out_of_the_settings_repr() -> None:
    settings = settings_of(BASE)
    assert "s3cret-token" not in repr(settings)
    assert settings.password == "s3cret-token"


def test_the_built_client_is_the_account_s() -> None:
    client = settings_of(BASE).build()
    assert client.account_id == "acct-1"
    assert client.limiter.capacity == 5
