"""The web server's security over real sockets: TLS (and its reload), mutual TLS, Basic auth.

Certificates come from ``trustme``; every client verifies the server against the test CA, as
Prometheus does with ``tls_config.ca_file``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exporter.secretfile import SecretWatcher
from exporter.webauth import BasicAuth, add_response_headers, basic_auth_middleware
from exporter.webconfig import TLSServerConfig, WebConfigError, parse_web_config
from exporter.webtls import ServerTLS

PASSWORD = "Sc4rpeP4ss-e1f0"
WRONG = "Wr0ngP4ss-77aa"
# Cost 4 keeps the suite fast; the cost does not change what is tested.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
USERS = {"prometheus": HASH}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Pki:
    """A CA, the server's certificate files in a directory, and clients that trust the CA."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA()
        self.cert_file = directory / "tls.crt"
        self.key_file = directory / "tls.key"
        self.leaf = self.issue()
        self.install(self.leaf)

    def issue(self, name: str = "exporter") -> trustme.LeafCert:
        return self.ca.issue_cert("localhost", "127.0.0.1", common_name=name)

    def install(self, leaf: trustme.LeafCert, *, key_of: trustme.LeafCert | None = None) -> None:
        """Write a certificate and key as cert-manager does: new files renamed into place."""
        for path, blob in [
            (self.cert_file, leaf.cert_chain_pems[0]),
            (self.key_file, (key_of or leaf).private_key_pem),
        ]:
            temporary = path.with_name(path.name + ".tmp")
            blob.write_to_path(str(temporary))
            os.replace(temporary, path)

    def config(self, **overrides: object) -> TLSServerConfig:
        settings: dict[str, object] = {"cert_file": self.cert_file, "key_file": self.key_file}
        settings.update(overrides)
        return TLSServerConfig.model_validate(settings)

    def client_context(self, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if client is not None:
            client.configure_cert(context)
        return context


def serial_of(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


class Handled:
    """Counts the requests that reached a handler (past TLS and auth)."""

    def __init__(self) -> None:
        self.count = 0


def make_app(
    handled: Handled,
    *,
    auth: BasicAuth | None = None,
    headers: dict[str, str] | None = None,
) -> web.Application:
    async def ok(_request: web.Request) -> web.Response:
        handled.count += 1
        return web.Response(text="ok\n")

    middlewares = [basic_auth_middleware(auth)] if auth is not None else []
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/metrics", ok)
    app.router.add_get("/", ok)
    app.router.add_get("/-/healthy", ok)
    app.router.add_get("/-/ready", ok)
    app.router.add_post("/webhook/alertmanager", ok)
    if headers:
        add_response_headers(app, headers)
    return app


@asynccontextmanager
async def serving(app: web.Application, context: ssl.SSLContext | None) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def get(
    url: str, context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers) as response,
    ):
        await response.read()
        return response


async def served_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial number of the certificate a new connection is shown."""
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    try:
        certificate = writer.get_extra_info("peercert")
        return int(certificate["serialNumber"], 16)
    finally:
        writer.close()
        await writer.wait_closed()


# --- TLS --------------------------------------------------------------------------------------


async def test_https_works_and_plain_http_to_the_tls_port_does_not(pki: Pki) -> None:
    tls = ServerTLS(pki.config())
    handled = Handled()
    async with serving(make_app(handled), tls.context) as port:
        response = await get(f"https://localhost:{port}/metrics", pki.client_context())
        assert response.status == 200
        assert handled.count == 1
        with pytest.raises(aiohttp.ClientError):
            await get(f"http://127.0.0.1:{port}/metrics")
        # A client that does not trust the CA is refused, so the test's trust is what passes.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await get(f"https://localhost:{port}/metrics", ssl.create_default_context())
    assert handled.count == 1


async def test_the_configured_tls_versions_are_enforced(pki: Pki) -> None:
    tls = ServerTLS(pki.config(min_version="TLS13"))
    async with serving(make_app(Handled()), tls.context) as port:
        client = pki.client_context()
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(aiohttp.ClientError):
            await get(f"https://localhost:{port}/", client)
        assert (await get(f"https://localhost:{port}/", pki.client_context())).status == 200


def test_old_tls_versions_are_accepted_without_a_deprecation_warning(pki: Pki) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tls = ServerTLS(pki.config(min_version="TLS10"))
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1


async def test_mutual_tls_turns_away_clients_without_a_trusted_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    clients_ca = trustme.CA()
    ca_file = tmp_path / "clients-ca.pem"
    clients_ca.cert_pem.write_to_path(str(ca_file))
    tls = ServerTLS(
        pki.config(client_auth_type="RequireAndVerifyClientCert", client_ca_file=ca_file)
    )
    handled = Handled()
    async with serving(make_app(handled), tls.context) as port:
        url = f"https://localhost:{port}/metrics"
        with pytest.raises(aiohttp.ClientError):
            await get(url, pki.client_context())
        stranger = trustme.CA().issue_cert("prometheus")
        with pytest.raises(aiohttp.ClientError):
            await get(url, pki.client_context(stranger))
        assert handled.count == 0
        prometheus = clients_ca.issue_cert("prometheus")
        assert (await get(url, pki.client_context(prometheus))).status == 200
    assert handled.count == 1


async def test_verify_client_cert_if_given_admits_no_certificate_but_not_a_wrong_one(
    pki: Pki, tmp_path: Path
) -> None:
    clients_ca = trustme.CA()
    ca_file = tmp_path / "clients-ca.pem"
    clients_ca.cert_pem.write_to_path(str(ca_file))
    tls = ServerTLS(pki.config(client_auth_type="VerifyClientCertIfGiven", client_ca_file=ca_file))
    async with serving(make_app(Handled()), tls.context) as port:
        url = f"https://localhost:{port}/"
        assert (await get(url, pki.client_context())).status == 200
        with pytest.raises(aiohttp.ClientError):
            await get(url, pki.client_context(trustme.CA().issue_cert("x")))


async def test_a_renewed_certificate_is_served_after_refresh_by_the_same_context(
    pki: Pki,
) -> None:
    tls = ServerTLS(pki.config())
    context = tls.context
    async with serving(make_app(Handled()), tls.context) as port:
        client = pki.client_context()
        assert await served_serial(port, client) == serial_of(pki.leaf)
        assert tls.refresh() is False  # nothing changed: nothing reloaded
        renewed = pki.issue("renewed")
        pki.install(renewed)
        assert await served_serial(port, client) == serial_of(pki.leaf)  # not before refresh
        assert tls.refresh() is True
        assert tls.context is context  # the site still holds this one
        assert await served_serial(port, client) == serial_of(renewed)
        assert tls.problem is None
        assert tls.reloads == 1


async def test_an_invalid_renewal_keeps_the_old_certificate_and_says_why_once(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    tls = ServerTLS(pki.config())
    async with serving(make_app(Handled()), tls.context) as port:
        client = pki.client_context()
        renewed = pki.issue("renewed")
        # A new certificate with the old key: the pair does not match.
        with caplog.at_level(logging.WARNING, logger="exporter.webtls"):
            pki.install(renewed, key_of=pki.leaf)
            assert tls.refresh() is False
            assert tls.refresh() is False
        assert tls.problem is not None
        assert "tls_server_config.key_file" in tls.problem
        assert "does not belong to the certificate" in tls.problem
        assert "stays in use" in tls.problem
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert await served_serial(port, client) == serial_of(pki.leaf)

        pki.cert_file.write_text("not a certificate\n")
        assert tls.refresh() is False
        assert tls.problem is not None and "no PEM certificate" in tls.problem
        assert await served_serial(port, client) == serial_of(pki.leaf)

        pki.install(renewed)  # the fixed pair
        assert tls.refresh() is True
        assert tls.problem is None
        assert await served_serial(port, client) == serial_of(renewed)


async def test_cert_and_key_written_one_after_the_other_heal_on_the_next_refresh(
    pki: Pki,
) -> None:
    tls = ServerTLS(pki.config())
    async with serving(make_app(Handled()), tls.context) as port:
        renewed = pki.issue("renewed")
        renewed.cert_chain_pems[0].write_to_path(str(pki.cert_file))
        assert tls.refresh() is False  # new cert, old key
        renewed.private_key_pem.write_to_path(str(pki.key_file))
        assert tls.refresh() is True
        assert await served_serial(port, pki.client_context()) == serial_of(renewed)


async def test_a_vanished_key_file_keeps_the_certificate_in_use(pki: Pki) -> None:
    tls = ServerTLS(pki.config())
    async with serving(make_app(Handled()), tls.context) as port:
        pki.key_file.unlink()
        assert tls.refresh() is False
        assert tls.problem is not None and "No such file" in tls.problem
        assert await served_serial(port, pki.client_context()) == serial_of(pki.leaf)


def kubernetes_tls_volume(root: Path, version: str, leaf: trustme.LeafCert) -> None:
    """A kubernetes.io/tls secret volume: tls.crt, tls.key -> ..data/..., ..data -> ..<version>."""
    directory = root / f"..{version}"
    directory.mkdir()
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    data = root / "..data"
    if not data.exists():
        data.symlink_to(directory.name)
        for name in ("tls.crt", "tls.key"):
            (root / name).symlink_to(f"..data/{name}")
        return
    temporary = root / "..data_tmp"
    temporary.symlink_to(directory.name)
    os.replace(temporary, data)


async def test_a_kubernetes_secret_swap_is_picked_up_by_the_watcher(tmp_path: Path) -> None:
    ca = trustme.CA()
    volume = tmp_path / "tls"
    volume.mkdir()
    first = ca.issue_cert("localhost", "127.0.0.1")
    kubernetes_tls_volume(volume, "1", first)
    tls = ServerTLS(TLSServerConfig(cert_file=volume / "tls.crt", key_file=volume / "tls.key"))
    now = [0.0]
    changed: list[object] = []
    watcher = SecretWatcher([tls], on_change=changed.append, clock=lambda: now[0])
    client = ssl.create_default_context()
    ca.configure_trust(client)
    async with serving(make_app(Handled()), tls.context) as port:
        assert watcher.refresh_all() == []
        second = ca.issue_cert("localhost", "127.0.0.1")
        kubernetes_tls_volume(volume, "2", second)
        now[0] += 10
        assert watcher.check() == [tls]
        assert changed == [tls]
        assert await served_serial(port, client) == serial_of(second)


async def test_a_changed_client_ca_file_adds_its_ca(pki: Pki, tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "clients-ca.pem"
    old_ca.cert_pem.write_to_path(str(ca_file))
    tls = ServerTLS(
        pki.config(client_auth_type="RequireAndVerifyClientCert", client_ca_file=ca_file)
    )
    async with serving(make_app(Handled()), tls.context) as port:
        url = f"https://localhost:{port}/"
        new_client = pki.client_context(new_ca.issue_cert("prometheus"))
        with pytest.raises(aiohttp.ClientError):
            await get(url, new_client)
        new_ca.cert_pem.write_to_path(str(ca_file))
        assert tls.refresh() is True
        assert (await get(url, new_client)).status == 200


@pytest.mark.parametrize(
    ("break_files", "expected"),
    [
        (lambda pki: pki.cert_file.unlink(), "tls_server_config.cert_file: cannot read"),
        (
            lambda pki: pki.install(pki.leaf, key_of=pki.issue("other")),
            "tls_server_config.key_file (",
        ),
        (lambda pki: pki.key_file.write_text("junk\n"), "no PEM private key"),
    ],
)
def test_files_that_cannot_be_used_at_start_are_errors_naming_the_key(
    pki: Pki, break_files: Callable[[Pki], None], expected: str
) -> None:
    break_files(pki)
    with pytest.raises(WebConfigError) as caught:
        ServerTLS(pki.config())
    assert expected in str(caught.value)
    assert "BEGIN" not in str(caught.value)


def test_an_encrypted_key_is_an_error_not_a_password_prompt(pki: Pki) -> None:
    key = serialization.load_pem_private_key(pki.leaf.private_key_pem.bytes(), None)
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(WebConfigError, match="the key is encrypted"):
        ServerTLS(pki.config())


def test_the_web_config_file_drives_the_tls_context(pki: Pki) -> None:
    config = parse_web_config(
        "tls_server_config: {cert_file: tls.crt, key_file: tls.key}\n",
        base_dir=pki.directory,
    )
    assert config.tls_server_config is not None
    assert ServerTLS(config.tls_server_config).context.verify_mode == ssl.CERT_NONE


# --- Basic auth -------------------------------------------------------------------------------


async def test_basic_auth_answers_401_401_200_and_leaves_the_probes_open(pki: Pki) -> None:
    auth = BasicAuth(USERS)
    handled = Handled()
    tls = ServerTLS(pki.config())
    async with serving(make_app(handled, auth=auth), tls.context) as port:
        base, client = f"https://localhost:{port}", pki.client_context()
        missing = await get(f"{base}/metrics", client)
        wrong = await get(f"{base}/metrics", client, basic("prometheus", WRONG))
        unknown = await get(f"{base}/metrics", client, basic("nobody", PASSWORD))
        right = await get(f"{base}/metrics", client, basic("prometheus", PASSWORD))
        assert [missing.status, wrong.status, unknown.status, right.status] == [
            401,
            401,
            401,
            200,
        ]
        assert missing.headers["WWW-Authenticate"] == "Basic"
        assert wrong.headers["WWW-Authenticate"] == "Basic"
        assert handled.count == 1
        for path in ("/-/healthy", "/-/ready"):
            assert (await get(base + path, client)).status == 200
        assert (await get(base + "/-/healthy/", client)).status == 401  # exact paths only
        assert (await get(base + "/", client)).status == 401


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Basic",
    ],
)
async def test_malformed_authorization_headers_are_401_without_a_bcrypt_run(
    authorization: str,
) -> None:
    auth = BasicAuth(USERS)
    assert await auth.authenticate(authorization) is None
    assert auth.verifications == 0


async def test_the_cache_spares_bcrypt_but_never_admits_a_wrong_password() -> None:
    auth = BasicAuth(USERS)
    right = basic("prometheus", PASSWORD)["Authorization"]
    wrong = basic("prometheus", WRONG)["Authorization"]
    assert await auth.authenticate(right) == "prometheus"
    assert auth.verifications == 1
    for _ in range(5):
        assert await auth.authenticate(right) == "prometheus"
    assert auth.verifications == 1
    # CVE-2022-46146: once the right password is cached, a wrong one must still be checked.
    assert await auth.authenticate(wrong) is None
    assert await auth.authenticate(wrong) is None
    assert auth.verifications == 3  # failures are not cached
    scheme_case = "basic " + right.split(" ", 1)[1]
    assert await auth.authenticate(scheme_case) == "prometheus"
    assert auth.verifications == 3


async def test_concurrent_first_requests_run_bcrypt_once() -> None:
    auth = BasicAuth(USERS)
    right = basic("prometheus", PASSWORD)["Authorization"]
    results = await asyncio.gather(*(auth.authenticate(right) for _ in range(5)))
    assert results == ["prometheus"] * 5
    assert auth.verifications == 1


async def test_the_cache_is_bounded() -> None:
    users = {f"user{index}": HASH for index in range(3)}
    auth = BasicAuth(users, cache_size=2)
    for index in range(3):
        assert await auth.authenticate(basic(f"user{index}", PASSWORD)["Authorization"])
    assert auth.verifications == 3
    assert await auth.authenticate(basic("user2", PASSWORD)["Authorization"])
    assert auth.verifications == 3  # still cached
    assert await auth.authenticate(basic("user0", PASSWORD)["Authorization"])
    assert auth.verifications == 4  # the oldest was evicted


async def test_an_unknown_user_is_checked_against_a_configured_hash_of_the_highest_cost() -> None:
    cheap = bcrypt.hashpw(b"other", bcrypt.gensalt(4)).decode()
    dear = bcrypt.hashpw(b"other", bcrypt.gensalt(5)).decode()
    checked: list[bytes] = []

    def checkpw(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return bcrypt.checkpw(password, hashed)

    auth = BasicAuth({"cheap": cheap, "dear": dear}, checkpw=checkpw)
    assert await auth.authenticate(basic("nobody", "other")["Authorization"]) is None
    # The decoy's password matched, yet an unknown user is refused, after one full bcrypt run.
    assert checked == [dear.encode()]
    assert await auth.authenticate(basic("nobody", "other")["Authorization"]) is None
    assert checked == [dear.encode()] * 2


async def test_a_password_longer_than_bcrypt_allows_is_refused_after_a_full_check() -> None:
    long_password = "x" * 80
    hashed = bcrypt.hashpw(long_password[:72].encode(), bcrypt.gensalt(4)).decode()
    calls: list[int] = []

    def checkpw(password: bytes, stored: bytes) -> bool:
        calls.append(len(password))
        return bcrypt.checkpw(password, stored)

    auth = BasicAuth({"prometheus": hashed}, checkpw=checkpw)
    assert await auth.authenticate(basic("prometheus", long_password)["Authorization"]) is None
    assert calls == [72]


async def test_bcrypt_runs_off_the_event_loop(pki: Pki) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow_checkpw(password: bytes, hashed: bytes) -> bool:
        started.set()
        # Bounded, so a regression fails the test instead of hanging it.
        release.wait(timeout=10)
        return bcrypt.checkpw(password, hashed)

    auth = BasicAuth(USERS, checkpw=slow_checkpw)
    handled = Handled()
    async with serving(make_app(handled, auth=auth), None) as port:
        base = f"http://127.0.0.1:{port}"
        scrape = asyncio.create_task(get(f"{base}/metrics", headers=basic("prometheus", PASSWORD)))
        assert await asyncio.to_thread(started.wait, 10)
        # bcrypt is busy in its thread; the loop still answers the probe.
        probe = await get(f"{base}/-/healthy")
        assert probe.status == 200
        assert not scrape.done()
        release.set()
        assert (await scrape).status == 200
    assert handled.count == 2


async def test_the_webhook_path_is_left_to_remediation_auth() -> None:
    handled = Handled()
    async with serving(make_app(handled, auth=BasicAuth(USERS)), None) as port:
        connector = aiohttp.TCPConnector()
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(f"http://127.0.0.1:{port}/webhook/alertmanager", json={}) as response,
        ):
            assert response.status == 200
    assert handled.count == 1


def test_a_user_list_is_required() -> None:
    with pytest.raises(ValueError, match="at least one user"):
        BasicAuth({})


# --- headers ----------------------------------------------------------------------------------


async def test_configured_headers_are_on_every_response_including_errors() -> None:
    headers = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "deny"}
    async with serving(make_app(Handled(), auth=BasicAuth(USERS), headers=headers), None) as port:
        base = f"http://127.0.0.1:{port}"
        responses = [
            await get(f"{base}/-/healthy"),
            await get(f"{base}/metrics"),  # 401
            await get(f"{base}/nothing-here", headers=basic("prometheus", PASSWORD)),  # 404
        ]
        assert [response.status for response in responses] == [200, 401, 404]
        for response in responses:
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["X-Frame-Options"] == "deny"
