"""The exporter's own port with a web config file, end to end: the daemon serving HTTPS with
Basic auth and mutual TLS, certificate renewals picked up by its watcher, the lifecycle API,
and the command line refusing a bad web config file.

Certificates come from ``trustme``; clients verify the server against the test CA, as
Prometheus does with ``tls_config.ca_file``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
import yaml
from cryptography import x509

from exporter.check_config import summarize
from exporter.config import Config, load_config
from exporter.daemon import Exporter
from exporter.secretfile import DEFAULT_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS
from exporter.simulator import serve
from exporter.web import LIFECYCLE_DISABLED
from exporter.webconfig import summarize_web_config
from exporter.websecurity import WebSecurity
from tests.conftest import ACCOUNT, SimServer, config_for
from tests.network_helpers import Certificates, serve_with_peers, tinyproxy
from tests.test_cli import read_until, run_cli, write_config

PASSWORD = "Scr4pe-P4ss-81c2"
WRONG = "Wr0ng-P4ss-07d9"
# Cost 4 keeps the suite fast; the cost does not change what is tested.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
WEBHOOK_TOKEN = "hook-T0ken-3f1a"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


RIGHT = basic("prometheus", PASSWORD)


class Site:
    """Certificates and a web config file in a directory, and clients that trust the CA."""

    def __init__(self, directory: Path) -> None:
        self.certs = Certificates(directory)
        self.cert_file, self.key_file = self.certs.leaf_files(self.certs.server, "tls")
        self.web_config = directory / "web-config.yml"

    def write(self, document: dict[str, Any]) -> Path:
        self.web_config.write_text(yaml.safe_dump(document), encoding="utf-8")
        return self.web_config

    def tls_and_users(self, **tls: str) -> Path:
        return self.write(
            {
                "tls_server_config": {"cert_file": "tls.crt", "key_file": "tls.key", **tls},
                "basic_auth_users": {"prometheus": HASH},
                "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
            }
        )

    def client(self, leaf: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.certs.ca.configure_trust(context)
        if leaf is not None:
            leaf.configure_cert(context)
        return context

    def renew(self, leaf: trustme.LeafCert, *, key_of: trustme.LeafCert | None = None) -> None:
        """Replace the files as cert-manager does: new files renamed into place."""
        for path, blob in [
            (self.cert_file, b"".join(pem.bytes() for pem in leaf.cert_chain_pems)),
            (self.key_file, (key_of or leaf).private_key_pem.bytes()),
        ]:
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_bytes(blob)
            os.replace(temporary, path)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "web")


@asynccontextmanager
async def serving(exporter: Exporter) -> AsyncIterator[int]:
    port = await exporter.start("127.0.0.1", 0)
    try:
        yield port
    finally:
        await exporter.stop()


async def fetch(
    url: str,
    context: ssl.SSLContext | bool,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    **kwargs: Any,
) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.request(method, url, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


async def served_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial number of the certificate a new connection is shown."""
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        return int(writer.get_extra_info("peercert")["serialNumber"], 16)
    finally:
        writer.close()
        await writer.wait_closed()


def serial_of(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


async def eventually(probe: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    # A bound for a hung test only; what is asserted is that the change happens at all.
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


# --- TLS and basic auth on the daemon's port ---------------------------------------------------


async def test_https_works_and_plain_http_does_not(sim_server: SimServer, site: Site) -> None:
    exporter = Exporter(config_for(sim_server), security=WebSecurity(site.tls_and_users()))
    async with serving(exporter) as port:
        status, body, headers = await fetch(
            f"https://127.0.0.1:{port}/metrics", site.client(), RIGHT
        )
        assert status == 200 and "boomi_exporter_build_info" in body
        assert headers["X-Content-Type-Options"] == "nosniff"
        with pytest.raises(aiohttp.ClientError):
            await fetch(f"http://127.0.0.1:{port}/metrics", False, RIGHT)
        # A client that does not trust the CA is refused: the test's trust is what passes.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch(f"https://127.0.0.1:{port}/metrics", ssl.create_default_context())


@pytest.mark.parametrize(
    "sim_server", [{"containers": 1, "listeners_per_container": 1}], indirect=True
)
async def test_basic_auth_answers_401_401_200_and_the_probes_stay_open(
    sim_server: SimServer, site: Site, tmp_path: Path
) -> None:
    config = config_for(
        sim_server,
        remediation={"enabled": True, "dry_run": True, "auth": {"bearer_token": WEBHOOK_TOKEN}},
    )
    exporter = Exporter(
        config, security=WebSecurity(site.tls_and_users()), storage_path=str(tmp_path / "data")
    )
    async with serving(exporter) as port:
        base, client = f"https://127.0.0.1:{port}", site.client()
        answers = [
            await fetch(f"{base}/metrics", client),
            await fetch(f"{base}/metrics", client, basic("prometheus", WRONG)),
            await fetch(f"{base}/metrics", client, RIGHT),
        ]
        assert [status for status, _, _ in answers] == [401, 401, 200]
        assert answers[0][2]["WWW-Authenticate"] == "Basic"
        assert (await fetch(f"{base}/", client))[0] == 401
        assert (await fetch(f"{base}/api/v1/anything", client))[0] == 401
        assert (await fetch(f"{base}/-/healthy", client))[0] == 200

        async def ready() -> bool:
            return (await fetch(f"{base}/-/ready", client))[0] == 200

        await eventually(ready, "/-/ready answers 200 without credentials")
        # The webhook is guarded by remediation.auth (what Alertmanager sends), not basic auth.
        status, body, _ = await fetch(
            f"{base}/webhook/alertmanager",
            client,
            {"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            method="POST",
            json={"version": "4", "status": "firing", "alerts": []},
        )
        assert status == 200, body
        # Scrapes after the first cost no bcrypt run: the cache holds the verified pair.
        assert exporter.web.auth is not None
        before = exporter.web.auth.verifications
        for _ in range(5):
            assert (await fetch(f"{base}/metrics", client, RIGHT))[0] == 200
        assert exporter.web.auth.verifications == before


async def test_mutual_tls_turns_away_clients_without_a_certificate(
    sim_server: SimServer, site: Site, tmp_path: Path
) -> None:
    clients = Certificates(tmp_path / "clients")
    path = site.write(
        {
            "tls_server_config": {
                "cert_file": "tls.crt",
                "key_file": "tls.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": str(clients.ca_file),
            }
        }
    )
    exporter = Exporter(config_for(sim_server), security=WebSecurity(path))
    async with serving(exporter) as port:
        url = f"https://127.0.0.1:{port}/-/healthy"
        with pytest.raises(aiohttp.ClientError):
            await fetch(url, site.client())
        with pytest.raises(aiohttp.ClientError):
            await fetch(url, site.client(trustme.CA().issue_cert("stranger")))
        assert (await fetch(url, site.client(clients.ca.issue_cert("prometheus"))))[0] == 200


async def test_a_renewed_certificate_is_served_by_the_watcher_and_an_invalid_renewal_is_not(
    sim_server: SimServer, site: Site
) -> None:
    # The daemon's default check interval is within the 30 s promised for a renewal.
    assert DEFAULT_INTERVAL_SECONDS <= MAX_INTERVAL_SECONDS == 30
    exporter = Exporter(
        config_for(sim_server),
        security=WebSecurity(site.tls_and_users()),
        secret_check_seconds=0.05,
    )
    async with serving(exporter) as port:
        client = site.client()
        assert await served_serial(port, client) == serial_of(site.certs.server)
        renewed = site.certs.ca.issue_cert("127.0.0.1", common_name="renewed")
        site.renew(renewed)

        async def serves_renewed() -> bool:
            return await served_serial(port, client) == serial_of(renewed)

        await eventually(serves_renewed, "the renewed certificate is served")
        # A renewal whose key does not match: the watcher refuses it, the last good one stays.
        broken = site.certs.ca.issue_cert("127.0.0.1", common_name="broken")
        site.renew(broken, key_of=renewed)
        tls = exporter.web.tls
        assert tls is not None

        async def refused() -> bool:
            return tls.problem is not None

        await eventually(refused, "the watcher notices the invalid renewal")
        assert "does not belong to the certificate" in (tls.problem or "")
        assert await served_serial(port, client) == serial_of(renewed)
        status, _, _ = await fetch(f"https://127.0.0.1:{port}/metrics", client, RIGHT)
        assert status == 200


# --- the lifecycle API and reloads of the web config -------------------------------------------


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def reloadable(server: SimServer, path: Path, **web: Any) -> Config:
    document = config_for(server).model_dump(mode="json", exclude_none=True)
    document["accounts"][0]["password"] = server.account.password
    document["web"] = {"listen_address": "127.0.0.1:0", **web}
    write_yaml(path, document)
    return load_config(path)


@pytest.mark.parametrize(
    ("flag", "in_config", "expected"),
    [(False, False, 403), (True, False, 200), (False, True, 200)],
    ids=["neither", "--web.enable-lifecycle", "web.enable_lifecycle"],
)
async def test_reload_answers_403_without_the_lifecycle_flag_and_200_with_it(
    sim_server: SimServer, tmp_path: Path, flag: bool, in_config: bool, expected: int
) -> None:
    path = tmp_path / "config.yaml"
    config = reloadable(sim_server, path, enable_lifecycle=in_config)
    exporter = Exporter(config, config_path=path, enable_lifecycle=flag)
    async with serving(exporter) as port:
        status, body, _ = await fetch(f"http://127.0.0.1:{port}/-/reload", False, method="POST")
    assert status == expected, body
    if expected == 403:
        assert body.strip() == LIFECYCLE_DISABLED == "Lifecycle API is not enabled."
    else:
        assert body.strip() == "configuration reloaded"


async def test_a_reload_applies_new_users_and_refuses_a_bad_web_config(
    sim_server: SimServer, site: Site, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    config = reloadable(sim_server, path, enable_lifecycle=True)
    exporter = Exporter(config, config_path=path, security=WebSecurity(site.tls_and_users()))
    async with serving(exporter) as port:
        base, client = f"https://127.0.0.1:{port}", site.client()
        new_password = "N3w-Scr4pe-P4ss"
        document = yaml.safe_load(site.web_config.read_text(encoding="utf-8"))
        document["basic_auth_users"] = {
            "prometheus": bcrypt.hashpw(new_password.encode(), bcrypt.gensalt(4)).decode()
        }
        site.write(document)
        assert (await fetch(f"{base}/-/reload", client, RIGHT, method="POST"))[0] == 200
        new = basic("prometheus", new_password)
        assert (await fetch(f"{base}/metrics", client, RIGHT))[0] == 401
        assert (await fetch(f"{base}/metrics", client, new))[0] == 200

        site.write(document | {"basic_auth_users": {"prometheus": "not-a-hash"}})
        status, body, _ = await fetch(f"{base}/-/reload", client, new, method="POST")
        assert status == 400
        assert "web config file: basic_auth_users.prometheus: must be a bcrypt hash" in body
        assert (await fetch(f"{base}/metrics", client, new))[0] == 200


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("web_config", "expected"),
    [
        ("tls_server_config: {cert_file: tls.crt, key_file: tls.key, certfile: x}",
         "tls_server_config.certfile: unknown key"),
        ("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  cipher_suites: [x]\n",
         "tls_server_config.cipher_suites"),
        ("basic_auth_user: {prometheus: x}\n", "basic_auth_user: unknown key"),
        ("tls_server_config: {cert_file: missing.crt, key_file: tls.key}\n",
         "tls_server_config.cert_file: cannot read"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("mode", ["--check-config", "daemon"])
async def test_unknown_web_config_keys_exit_2_naming_the_key(
    tmp_path: Path, site: Site, web_config: str, expected: str, mode: str
) -> None:
    site.web_config.write_text(web_config, encoding="utf-8")
    config = write_config(tmp_path, None, password="p")
    flags = ["--check-config"] if mode == "--check-config" else []
    code, out, err = await run_cli(
        "--config", str(config), "--web.config.file", str(site.web_config), *flags
    )
    assert code == 2, out + err
    assert f"bad web config file {site.web_config}" in err
    assert expected in err
    assert "Traceback" not in err


async def test_web_config_file_in_the_config_is_relative_to_it_and_checked(
    tmp_path: Path, site: Site
) -> None:
    site.tls_and_users()
    config = write_config(
        tmp_path, None, password="p", extra="web:\n  config_file: web/web-config.yml\n"
    )
    code, out, err = await run_cli("--config", str(config), "--check-config")
    assert code == 0, err
    assert f"Web config file {tmp_path / 'web' / 'web-config.yml'} is valid." in out
    assert "web TLS: on, TLS12 to TLS13" in out
    assert "web basic auth: 1 user(s): prometheus" in out
    assert HASH not in out


async def test_demo_refuses_a_bad_web_config_file(site: Site) -> None:
    site.web_config.write_text("tls_server_config: {http2: true}\n", encoding="utf-8")
    code, _, err = await run_cli("--demo", "--web.config.file", str(site.web_config))
    assert code == 2
    assert "tls_server_config.http2" in err


# --- secrets ------------------------------------------------------------------------------------


async def test_insecure_skip_verify_warns_at_start_and_at_every_reload(
    sim_server: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    config = reloadable(sim_server, path)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["accounts"][0]["tls_config"] = {"insecure_skip_verify": True}
    write_yaml(path, document)
    config = load_config(path)
    exporter = Exporter(config, config_path=path)
    with caplog.at_level(logging.WARNING, logger="exporter.daemon"):
        async with serving(exporter):
            assert (await exporter.reload())[0]
            assert (await exporter.reload())[0]

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "insecure_skip_verify" in r.getMessage()]

    assert len(warnings()) == 3
    assert all("NOT checked" in line and ACCOUNT in line for line in warnings())


async def test_the_proxy_and_basic_auth_passwords_appear_in_no_log_page_or_metric(
    tmp_path: Path,
    site: Site,
    make_sim: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_password = "Pr0xy-S3cret-a7b1"
    sim_certs = Certificates(tmp_path / "boomi")
    path = tmp_path / "config.yaml"
    async with (
        tinyproxy(tmp_path / "proxy", user="exporter", password=proxy_password) as proxy,
        serve_with_peers(make_sim(), sim_certs.server_context()) as sim,
    ):
        account = sim.sim.accounts[ACCOUNT]
        write_yaml(
            path,
            {
                "accounts": [
                    {
                        "account_id": ACCOUNT,
                        "base_url": sim.base_url,
                        "username": account.username,
                        "password": account.password,
                        "proxy_url": f"http://exporter:{proxy_password}@127.0.0.1:{proxy.port}",
                        "tls_config": {"ca_file": str(sim_certs.ca_file)},
                        "max_requests_per_second": 40,
                        "containers": [{"id": c} for c in account.containers],
                    }
                ],
                "poll": {"interval_seconds": 0.3, "result_timeout_seconds": 3},
                "web": {"enable_lifecycle": True, "config_file": str(site.tls_and_users())},
            },
        )
        config = load_config(path)
        exporter = Exporter(config, config_path=path)
        seen: list[str] = [summarize(config), summarize_web_config(exporter.web.config)]
        with caplog.at_level(logging.DEBUG):
            async with serving(exporter) as port:
                base, client = f"https://127.0.0.1:{port}", site.client()

                async def polled() -> bool:
                    return exporter.store.ready() and all(
                        snapshot.up for snapshot in exporter.store.containers()
                    )

                await eventually(polled, "every container polled through the proxy")
                for headers in (basic("prometheus", WRONG), RIGHT, basic("nobody", PASSWORD)):
                    for page in ("/", "/metrics", "/-/ready", "/-/healthy", "/nothing"):
                        seen.append((await fetch(base + page, client, headers))[1])
                seen.append((await fetch(f"{base}/-/reload", client, RIGHT, method="POST"))[1])
        code, out, err = await run_cli("--config", str(path), "--check-config")
        assert code == 0, err
        seen += [out, err]
    assert proxy.requests(), "the poll did not go through the proxy"
    seen.append(caplog.text)
    seen.append(proxy.log())
    for text in seen:
        assert proxy_password not in text
        assert PASSWORD not in text
        assert HASH not in text


# --- HTTPS for the demo and the simulator --------------------------------------------------------


async def test_the_demo_serves_https_with_basic_auth_from_a_web_config_file(
    site: Site, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "--demo", "--web.listen-address", "127.0.0.1:0",
        "--web.config.file", str(site.tls_and_users()), "--storage.path", str(tmp_path / "data"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        match = await read_until(process.stdout, r"metrics:\s+https://localhost:(\d+)/metrics")
        base, client = f"https://127.0.0.1:{match.group(1)}", site.client()

        async def healthy() -> bool:
            try:
                return (await fetch(f"{base}/-/healthy", client))[0] == 200
            except aiohttp.ClientError:
                return False

        await eventually(healthy, "the demo answers /-/healthy over https")
        assert (await fetch(f"{base}/metrics", client))[0] == 401
        assert (await fetch(f"{base}/metrics", client, RIGHT))[0] == 200
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)  # a generous bound for a clean exit
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_simulator_serves_https(make_sim: Callable[..., Any], site: Site) -> None:
    runner, base_url = await serve(make_sim(), ssl_context=site.certs.server_context())
    try:
        assert base_url.startswith("https://127.0.0.1:")
        state = base_url.removesuffix("/api/rest/v1") + "/__simulator/state"
        status, body, _ = await fetch(state, site.client())
        assert status == 200 and '"listener_id"' in body
        with pytest.raises(aiohttp.ClientError):
            await fetch(state.replace("https://", "http://"), False)
    finally:
        await runner.cleanup()


async def test_simulate_takes_a_certificate_and_refuses_half_of_one(site: Site) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "simulate", "--listen", "127.0.0.1:0",
        "--tls-cert", str(site.cert_file), "--tls-key", str(site.key_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        base_url = (await read_until(process.stdout, r"API base URL:\s+(https://\S+)")).group(1)
        state = base_url.removesuffix("/api/rest/v1") + "/__simulator/state"
        assert (await fetch(state, site.client()))[0] == 200
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 10)  # a generous bound for a clean exit
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    code, _, err = await run_cli("simulate", "--tls-cert", str(site.cert_file))
    assert code == 2 and "--tls-cert and --tls-key go together" in err
    code, _, err = await run_cli(
        "simulate", "--tls-cert", str(site.key_file), "--tls-key", str(site.key_file)
    )
    assert code == 2 and "--tls-cert/--tls-key: cannot load them" in err
    assert "Traceback" not in err
