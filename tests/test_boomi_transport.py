"""The way out to Boomi: a real forward proxy (tinyproxy) and TLS with certificates made here.

The simulator is served over HTTPS and counts each request by the address it came from;
tinyproxy sends from 127.0.0.2, so "every request went through the proxy" is checked at the
server, and the tunnels and requests are also counted in the proxy's own log.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.boomi.transport import (
    bypasses_proxy,
    choose_proxy,
    client_ssl_context,
    split_proxy_url,
)
from exporter.config import Config, ConfigError, parse_config
from exporter.daemon import poll_once
from exporter.simulator import Simulator
from exporter.state import SnapshotStore
from tests.conftest import ACCOUNT
from tests.network_helpers import (
    PROXY_BIND,
    Certificates,
    PeerSimulator,
    recording_proxy,
    serve_with_peers,
    tinyproxy,
)

PROXY_USER, PROXY_PASSWORD = "exporter", "Pr0xyP4ss-5e1d"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
UNKNOWN_CA = "certificate verify failed for 127.0.0.1: unknown CA; set tls_config.ca_file"
HANDSHAKE_CLOSED = (
    "127.0.0.1 closed the connection during the TLS handshake; check tls_config.min_version,"
    " and cert_file and key_file if it wants a client certificate"
)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the proxy variables they need; none leak in from the machine."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def config_of(server: PeerSimulator, **http: Any) -> Config:
    """One account with every container of the simulator, and the given http_config keys."""
    account = server.sim.accounts[ACCOUNT]
    return Config.model_validate(
        {
            "accounts": [
                {
                    "account_id": ACCOUNT,
                    "base_url": server.base_url,
                    "username": account.username,
                    "password": account.password,
                    "max_requests_per_second": 40,
                    "containers": [{"id": c} for c in account.containers],
                    **http,
                }
            ],
            "poll": {"result_timeout_seconds": 3, "request_timeout_seconds": 3},
        }
    )


def errors(store: SnapshotStore) -> set[str | None]:
    return {snapshot.last_error for snapshot in store.containers()}


def all_up(store: SnapshotStore) -> bool:
    containers = store.containers()
    return bool(containers) and all(snapshot.up for snapshot in containers)


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("api.boomi.com", 443, "", False),
        ("api.boomi.com", 443, "*", True),
        ("api.boomi.com", 443, "boomi.com", True),
        ("boomi.com", 443, "boomi.com", True),
        ("boomi.com", 443, ".boomi.com", False),
        ("api.boomi.com", 443, ".boomi.com", True),
        ("api.boomi.com", 443, "*.boomi.com", True),
        ("notboomi.com", 443, "boomi.com", False),
        ("API.Boomi.COM", 443, "api.boomi.com", True),
        ("api.boomi.com", 443, "localhost, api.boomi.com ,", True),
        ("api.boomi.com", 443, "api.boomi.com:8443", False),
        ("api.boomi.com", 8443, "api.boomi.com:8443", True),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("11.1.2.3", 443, "10.0.0.0/8", False),
        ("127.0.0.1", 9878, "127.0.0.1", True),
        ("127.0.0.1", 9878, "127.0.0.2", False),
        ("::1", 443, "::1", True),
        ("::1", 443, "[::1]:443", True),
        ("fd00::5", 443, "fd00::/8", True),
        ("api.boomi.com", 443, "10.0.0.0/8,not a network/99", False),
    ],
)
def test_no_proxy_reads_like_prometheus(
    host: str, port: int, no_proxy: str, bypassed: bool
) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypassed


def test_credentials_are_split_from_the_proxy_url() -> None:
    proxy = split_proxy_url("http://us%40er:p%3Ass@proxy.corp.example:3128", source="proxy_url")
    assert proxy.url == "http://proxy.corp.example:3128"
    # base64("us@er:p:ss")
    assert proxy.authorization == "Basic dXNAZXI6cDpzcw=="
    assert "p%3Ass" not in repr(proxy) and "dXNA" not in repr(proxy)
    assert split_proxy_url("proxy:3128", source="HTTPS_PROXY").url == "http://proxy:3128"
    assert split_proxy_url("http://[fd00::1]:3128", source="x").url == "http://[fd00::1]:3128"


def test_the_environment_is_read_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    target = "https://api.boomi.com/api/rest/v1/acct"
    assert choose_proxy(target, proxy_url=None, no_proxy="", from_environment=False) is None
    chosen = choose_proxy(target, proxy_url=None, no_proxy="", from_environment=True)
    assert chosen is not None
    assert (chosen.url, chosen.source) == ("http://env-proxy:3128", "HTTPS_PROXY")
    # HTTP_PROXY is for http URLs only, as with aiohttp's trust_env.
    assert (
        choose_proxy("http://api.boomi.com/x", proxy_url=None, no_proxy="", from_environment=True)
        is None
    )
    monkeypatch.setenv("NO_PROXY", ".boomi.com")
    assert choose_proxy(target, proxy_url=None, no_proxy="", from_environment=True) is None


# --- config -------------------------------------------------------------------------------------


ACCOUNT_YAML = """
accounts:
  - account_id: acct
    username: u
    password: p
    containers: [{id: c1}]
"""


def account_yaml(extra: str) -> str:
    return ACCOUNT_YAML + "".join(f"    {line}\n" for line in extra.strip().splitlines())


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("proxy_url: socks5://proxy:1080", "accounts[0].proxy_url: must be an http:// or https://"),
        ("proxy_url: http://proxy:99999", "accounts[0].proxy_url: must be an http:// or https://"),
        ("proxy_url: http://proxy:3128/some/path", "accounts[0].proxy_url: must be scheme://"),
        ("no_proxy: localhost", "accounts[0].no_proxy: needs proxy_url"),
        (
            "proxy_url: http://u:Secr3tPw@proxy:3128\nproxy_from_environment: true",
            "accounts[0].proxy_url: cannot be used together with proxy_from_environment",
        ),
        (
            "proxy_from_environment: true\nno_proxy: localhost",
            "accounts[0].no_proxy: cannot be used with proxy_from_environment",
        ),
        ("tls_config: {min_version: TLS11}", "accounts[0].tls_config.min_version: must be one of"),
        ("tls_config: {cert_file: c.pem}", "accounts[0].tls_config.key_file: required"),
        ("tls_config: {key_file: k.pem}", "accounts[0].tls_config.cert_file: required"),
        ("tls_config: {ca_file: missing.pem}", "accounts[0].tls_config.ca_file: cannot read"),
        ("tls_config: {insecure: true}", "accounts[0].tls_config.insecure: unknown key"),
        ("tls_config: {server_name: ''}", "accounts[0].tls_config.server_name: must not be"),
    ],
)
def test_bad_proxy_and_tls_settings_name_the_key_and_never_the_value(
    extra: str, expected: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(account_yaml(extra), base_dir=tmp_path)
    message = str(caught.value)
    assert expected in message
    assert "Secr3tPw" not in message and "\n" not in message


def test_a_ca_file_that_holds_no_certificate_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "corp-ca.pem").write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tls_config\.ca_file: .*no PEM certificate"):
        parse_config(account_yaml("tls_config: {ca_file: corp-ca.pem}"), base_dir=tmp_path)


def test_tls_files_are_relative_to_the_config_file_and_the_defaults_verify(tmp_path: Path) -> None:
    certs = Certificates(tmp_path / "tls")
    client = certs.ca.issue_cert("exporter")
    certs.leaf_files(client, "client")
    config = parse_config(
        account_yaml(
            "tls_config: {ca_file: tls/ca.pem, cert_file: tls/client.crt, key_file: tls/client.key}"
        ),
        base_dir=tmp_path,
    )
    tls = config.accounts[0].tls_config
    assert tls.ca_file == tmp_path / "tls" / "ca.pem"
    assert tls.key_file == tmp_path / "tls" / "client.key"
    defaults = parse_config(ACCOUNT_YAML).accounts[0]
    assert defaults.proxy_url is None and defaults.proxy_from_environment is False
    assert defaults.tls_config.insecure_skip_verify is False
    assert defaults.tls_config.min_version == "TLS12"


def test_a_key_that_does_not_match_the_certificate_names_key_file(tmp_path: Path) -> None:
    certs = Certificates(tmp_path)
    cert_file, _ = certs.leaf_files(certs.ca.issue_cert("a"), "a")
    _, other_key = certs.leaf_files(certs.ca.issue_cert("b"), "b")
    with pytest.raises(ConfigError, match=r"tls_config\.key_file: .*does not belong"):
        parse_config(
            account_yaml(f"tls_config: {{cert_file: {cert_file}, key_file: {other_key}}}"),
            base_dir=tmp_path,
        )


# --- through a real proxy -----------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [False, True], ids=["open proxy", "proxy with BasicAuth"])
async def test_through_the_proxy_every_boomi_request_goes_via_the_proxy(
    tmp_path: Path, make_sim: Callable[..., Simulator], credentials: bool
) -> None:
    certs = Certificates(tmp_path / "tls")
    user, password = (PROXY_USER, PROXY_PASSWORD) if credentials else ("", "")
    async with (
        tinyproxy(tmp_path / "proxy", user=user, password=password) as proxy,
        serve_with_peers(make_sim(), certs.server_context()) as server,
    ):
        proxy_url = f"http://{user}:{password}@127.0.0.1:{proxy.port}" if user else proxy.url
        store = await poll_once(
            config_of(server, proxy_url=proxy_url, tls_config={"ca_file": str(certs.ca_file)})
        )
        tunnels = proxy.requests()
    assert all_up(store), errors(store)
    served = sum(server.sim.request_counts.values())
    # Atom query, a query and a result per container, process names: all of them...
    assert served >= 1 + 2 * len(store.containers())
    # ...and every one came from the proxy's address, none straight from the exporter.
    assert server.peers == {PROXY_BIND: served}
    port = server.base_url.split(":")[2].split("/")[0]
    assert tunnels, "tinyproxy logged no CONNECT"
    assert set(tunnels) == {f"CONNECT 127.0.0.1:{port}"}
    # The proxy's credentials went in the CONNECT only, never through the tunnel to Boomi.
    assert server.proxy_authorization == 0


@pytest.mark.parametrize("proxy_user", ["", PROXY_USER])
async def test_the_boomi_credentials_never_reach_the_proxy(
    tmp_path: Path, make_sim: Callable[..., Simulator], proxy_user: str
) -> None:
    # aiohttp copies a session's default headers into the CONNECT; the Boomi Authorization
    # header must not be one of them, or every proxy would log the Boomi password.
    certs = Certificates(tmp_path / "tls")
    async with (
        recording_proxy() as (proxy, heads),
        serve_with_peers(make_sim(), certs.server_context()) as server,
    ):
        credentials = f"{proxy_user}:{PROXY_PASSWORD}@" if proxy_user else ""
        proxy_url = proxy.replace("http://", f"http://{credentials}")
        store = await poll_once(
            config_of(server, proxy_url=proxy_url, tls_config={"ca_file": str(certs.ca_file)})
        )
    assert heads and all(head.startswith(b"CONNECT 127.0.0.1:") for head in heads)
    account = server.sim.accounts[ACCOUNT]
    boomi = base64.b64encode(f"{account.username}:{account.password}".encode())
    assert not [head for head in heads if boomi in head or b"\nAuthorization:" in head]
    expected_proxy_header = b"Proxy-Authorization: Basic " + base64.b64encode(
        f"{PROXY_USER}:{PROXY_PASSWORD}".encode()
    )
    assert all((expected_proxy_header in head) == bool(proxy_user) for head in heads)
    assert not any(snapshot.up for snapshot in store.containers())


async def test_plain_http_requests_are_each_counted_at_the_proxy(
    tmp_path: Path, make_sim: Callable[..., Simulator]
) -> None:
    async with (
        tinyproxy(tmp_path / "proxy", user=PROXY_USER, password=PROXY_PASSWORD) as proxy,
        serve_with_peers(make_sim()) as server,
    ):
        proxy_url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        store = await poll_once(config_of(server, proxy_url=proxy_url))
        requests = proxy.requests()
    assert all_up(store), errors(store)
    served = sum(server.sim.request_counts.values())
    assert server.peers == {PROXY_BIND: served}
    assert len(requests) == served
    assert all(line.split()[1].startswith(server.base_url) for line in requests)


async def test_no_proxy_bypasses_the_proxy(
    tmp_path: Path, make_sim: Callable[..., Simulator]
) -> None:
    certs = Certificates(tmp_path / "tls")
    async with (
        tinyproxy(tmp_path / "proxy") as proxy,
        serve_with_peers(make_sim(), certs.server_context()) as server,
    ):
        config = config_of(
            server,
            proxy_url=proxy.url,
            no_proxy="localhost,127.0.0.0/8",
            tls_config={"ca_file": str(certs.ca_file)},
        )
        store = await poll_once(config)
        requests = proxy.requests()
    assert all_up(store), errors(store)
    assert server.peers == {"127.0.0.1": sum(server.sim.request_counts.values())}
    assert requests == []


async def test_wrong_proxy_credentials_are_one_clear_line_without_the_password(
    tmp_path: Path, make_sim: Callable[..., Simulator], caplog: pytest.LogCaptureFixture
) -> None:
    certs = Certificates(tmp_path / "tls")
    async with (
        tinyproxy(tmp_path / "proxy", user=PROXY_USER, password=PROXY_PASSWORD) as proxy,
        serve_with_peers(make_sim(), certs.server_context()) as server,
    ):
        proxy_url = f"http://{PROXY_USER}:Wr0ngPw-1@127.0.0.1:{proxy.port}"
        config = config_of(server, proxy_url=proxy_url, tls_config={"ca_file": str(certs.ca_file)})
        with caplog.at_level(logging.DEBUG):
            store = await poll_once(config)
    # tinyproxy answers a wrong password with 401 (a missing one with 407).
    expected = (
        f"{proxy.url} refused the proxy credentials (HTTP 401); check the user and password"
        " in proxy_url"
    )
    assert errors(store) == {expected}
    assert sum(server.peers.values()) == 0
    assert "Wr0ngPw-1" not in caplog.text
    assert not [record for record in caplog.records if record.exc_info]


async def test_proxy_from_environment_works_and_https_proxy_alone_does_nothing(
    tmp_path: Path,
    make_sim: Callable[..., Simulator],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    certs = Certificates(tmp_path / "tls")
    async with (
        tinyproxy(tmp_path / "proxy") as proxy,
        serve_with_peers(make_sim(), certs.server_context()) as server,
    ):
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        tls = {"ca_file": str(certs.ca_file)}
        alone = await poll_once(config_of(server, tls_config=tls))
        assert all_up(alone), errors(alone)
        assert set(server.peers) == {"127.0.0.1"}
        assert proxy.requests() == []
        direct = sum(server.peers.values())

        with caplog.at_level(logging.INFO, logger="exporter.boomi.settings"):
            asked = await poll_once(config_of(server, tls_config=tls, proxy_from_environment=True))
        assert f"through the proxy {proxy.url} (from HTTPS_PROXY)" in caplog.text
        assert all_up(asked), errors(asked)
        assert server.peers["127.0.0.1"] == direct  # nothing more went direct
        assert server.peers[PROXY_BIND] > 0
        assert proxy.requests()


# --- TLS trust ----------------------------------------------------------------------------------


async def test_a_ca_in_ca_file_is_trusted_and_without_it_the_container_is_down_with_the_reason(
    tmp_path: Path, make_sim: Callable[..., Simulator], caplog: pytest.LogCaptureFixture
) -> None:
    certs = Certificates(tmp_path / "tls")
    async with serve_with_peers(make_sim(), certs.server_context()) as server:
        with caplog.at_level(logging.DEBUG):
            untrusted = await poll_once(config_of(server))
        assert errors(untrusted) == {UNKNOWN_CA}
        assert not any(snapshot.up for snapshot in untrusted.containers())
        assert sum(server.peers.values()) == 0
        # One line on the container and in the log, never a traceback.
        assert not [record for record in caplog.records if record.exc_info]
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warned and all("\n" not in line for line in warned)
        assert any(line.endswith(UNKNOWN_CA) for line in warned)

        trusted = await poll_once(config_of(server, tls_config={"ca_file": str(certs.ca_file)}))
    assert all_up(trusted), errors(trusted)


def test_ca_file_adds_to_the_system_store_instead_of_replacing_it(tmp_path: Path) -> None:
    certs = Certificates(tmp_path / "tls")
    config = parse_config(
        account_yaml(f"tls_config: {{ca_file: {certs.ca_file}}}"), base_dir=tmp_path
    )
    with_ca = client_ssl_context(config.accounts[0].tls_config.client_tls())
    system = ssl.create_default_context()
    assert with_ca.cert_store_stats()["x509_ca"] == system.cert_store_stats()["x509_ca"] + 1


async def test_server_name_is_verified_and_sent_as_sni(
    tmp_path: Path, make_sim: Callable[..., Simulator]
) -> None:
    certs = Certificates(tmp_path / "tls")
    named = certs.ca.issue_cert("boomi.example.test")
    async with serve_with_peers(make_sim(), certs.server_context(named)) as server:
        tls: dict[str, Any] = {"ca_file": str(certs.ca_file)}
        mismatch = await poll_once(config_of(server, tls_config=tls))
        assert errors(mismatch) == {
            "certificate verify failed for 127.0.0.1: the certificate is not for 127.0.0.1;"
            " set tls_config.server_name"
        }
        server.server_names.clear()
        matched = await poll_once(
            config_of(server, tls_config=tls | {"server_name": "boomi.example.test"})
        )
    assert all_up(matched), errors(matched)
    assert server.server_names and set(server.server_names) == {"boomi.example.test"}


async def test_a_client_certificate_is_presented_when_configured(
    tmp_path: Path, make_sim: Callable[..., Simulator]
) -> None:
    certs = Certificates(tmp_path / "tls")
    clients_ca = Certificates(tmp_path / "clients")
    cert_file, key_file = clients_ca.leaf_files(clients_ca.ca.issue_cert("exporter"), "exporter")
    context = certs.server_context()
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(clients_ca.ca_file))
    # With TLS 1.2 the refusal comes inside the handshake (TLS 1.3 sends it after, when the
    # client only sees a reset on its first request); Python's server resets without an alert.
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    tls: dict[str, Any] = {"ca_file": str(certs.ca_file)}
    async with serve_with_peers(make_sim(), context) as server:
        refused = await poll_once(config_of(server, tls_config=tls))
        assert not any(snapshot.up for snapshot in refused.containers())
        assert errors(refused) == {HANDSHAKE_CLOSED}
        presented = await poll_once(
            config_of(
                server,
                tls_config=tls | {"cert_file": str(cert_file), "key_file": str(key_file)},
            )
        )
    assert all_up(presented), errors(presented)


async def test_min_version_tls13_refuses_a_tls12_server(
    tmp_path: Path, make_sim: Callable[..., Simulator]
) -> None:
    certs = Certificates(tmp_path / "tls")
    context = certs.server_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    tls: dict[str, Any] = {"ca_file": str(certs.ca_file)}
    async with serve_with_peers(make_sim(), context) as server:
        assert all_up(await poll_once(config_of(server, tls_config=tls)))
        strict = await poll_once(config_of(server, tls_config=tls | {"min_version": "TLS13"}))
    assert errors(strict) == {HANDSHAKE_CLOSED}


async def test_insecure_skip_verify_connects_to_an_unknown_ca(
    tmp_path: Path, make_sim: Callable[..., Simulator]
) -> None:
    certs = Certificates(tmp_path / "tls")
    async with serve_with_peers(make_sim(), certs.server_context()) as server:
        store = await poll_once(config_of(server, tls_config={"insecure_skip_verify": True}))
    assert all_up(store), errors(store)
