"""The shipped TLS and basic-auth setups: the compose override (deploy/docker-compose.tls.yml
and deploy/compose/tls/) and the Kubernetes overlay (deploy/kubernetes/tls).

No Docker engine runs here, so the compose files are checked piece by piece: the override
against the Compose specification, the files it mounts, make-certs.sh run with the local
openssl, the configs against the plain ones they extend and against promtool and amtool, and
the override's health check run against an exporter serving with its certificate. The real
Prometheus and Alertmanager run the same setup in tests/test_e2e_stack.py.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import bcrypt
import kubernetes_validate
import pytest
import yaml

from exporter.daemon import Exporter
from exporter.webconfig import load_web_config, parse_web_config
from exporter.websecurity import WebSecurity
from tests.conftest import SimServer, config_for
from tests.e2e_helpers import (
    MAKE_CERTS,
    TLS_DIR,
    demo_scrape_password,
    make_certificates,
    require_binary,
    write_tls_web_config,
)
from tests.test_packaging import K8S_DIR, check_jsonschema, find_tool, load_yaml, run

DEPLOY = TLS_DIR.parent.parent
OVERRIDE = DEPLOY / "docker-compose.tls.yml"
K8S_TLS = K8S_DIR / "tls"
# Where the override mounts the tls volume in each service.
TLS_MOUNTS = {
    "exporter": "/etc/boomi-listener-exporter/tls",
    "prometheus": "/etc/prometheus/tls",
    "alertmanager": "/etc/alertmanager/tls",
}


def override() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(OVERRIDE)
    return document


def mounts(name: str) -> dict[str, str]:
    """{container path: source} of a service in the override; bind sources as repo paths."""
    found: dict[str, str] = {}
    for volume in override()["services"][name].get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = str((DEPLOY / source).resolve()) if source.startswith(".") else source
    return found


# --- the compose override ---------------------------------------------------------------------


def test_the_override_follows_the_compose_specification() -> None:
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", OVERRIDE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_override_mounts_files_that_exist_and_shares_the_tls_volume() -> None:
    services = override()["services"]
    assert set(services) == {"tls-certs", *TLS_MOUNTS}
    assert "tls" in override()["volumes"]
    assert mounts("tls-certs")["/tls"] == "tls"
    for name, target in TLS_MOUNTS.items():
        assert mounts(name)[target] == "tls", name
    for name in services:
        for target, source in mounts(name).items():
            if source.startswith("/"):
                assert Path(source).is_file(), f"{name}: {target} from missing {source}"
    (command,) = [services["tls-certs"]["entrypoint"]]
    assert Path(mounts("tls-certs")[command[1]]) == MAKE_CERTS.resolve()
    exporter = services["exporter"]
    flag = exporter["command"].index("--web.config.file")
    web_config = exporter["command"][flag + 1]
    assert Path(mounts("exporter")[web_config]) == (TLS_DIR / "web-config.yml").resolve()
    assert exporter["depends_on"]["tls-certs"]["condition"] == "service_completed_successfully"


def test_the_tls_configs_differ_from_the_plain_ones_only_in_their_tls_keys() -> None:
    plain = load_yaml(DEPLOY / "compose" / "prometheus.yml")
    tls = load_yaml(TLS_DIR / "prometheus.yml")
    (job,) = tls["scrape_configs"]
    added = {key: job.pop(key) for key in ("scheme", "tls_config", "basic_auth")}
    assert tls == plain
    assert added["scheme"] == "https"
    assert PurePosixPath(added["tls_config"]["ca_file"]).parent == PurePosixPath(
        TLS_MOUNTS["prometheus"]
    )
    password_file = added["basic_auth"]["password_file"]
    assert Path(mounts("prometheus")[password_file]) == (TLS_DIR / "prometheus-password").resolve()

    plain = load_yaml(DEPLOY / "compose" / "alertmanager.yml")
    tls = load_yaml(TLS_DIR / "alertmanager.yml")
    webhooks = [w for r in tls["receivers"] for w in r.get("webhook_configs", [])]
    for webhook in webhooks:
        tls_config = webhook["http_config"].pop("tls_config")
        assert PurePosixPath(tls_config["ca_file"]).parent == PurePosixPath(
            TLS_MOUNTS["alertmanager"]
        )
        assert webhook["url"].startswith("https://")
        webhook["url"] = "http://" + webhook["url"].removeprefix("https://")
    assert tls == plain


def test_the_tls_configs_pass_promtool_and_amtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool", package="prometheus")
    amtool = require_binary("amtool", package="prometheus-alertmanager")
    certificates = make_certificates(tmp_path / "tls")
    prometheus = load_yaml(TLS_DIR / "prometheus.yml")
    (job,) = prometheus["scrape_configs"]
    job["tls_config"]["ca_file"] = str(certificates / "ca.crt")
    job["basic_auth"]["password_file"] = str(TLS_DIR / "prometheus-password")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus), encoding="utf-8")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    run(promtool, "check", "config", tmp_path / "prometheus.yml")
    run(amtool, "check-config", TLS_DIR / "alertmanager.yml")


def test_make_certs_makes_a_certificate_for_every_name_the_services_use(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path / "tls")
    key = certificates / "exporter.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (certificates / "ca.key").exists()  # nothing more can be issued under the CA
    context = ssl.create_default_context(cafile=str(certificates / "ca.crt"))
    assert context.cert_store_stats()["x509_ca"] == 1  # the demo CA alone
    openssl = require_binary("openssl", package="openssl")
    for name in ("exporter", "localhost", "127.0.0.1"):
        flag = "-verify_ip" if name[0].isdigit() else "-verify_hostname"
        result = subprocess.run(
            [openssl, "verify", "-CAfile", str(certificates / "ca.crt"), flag, name,
             str(certificates / "exporter.crt")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, (name, result.stdout, result.stderr)
    before = (certificates / "exporter.crt").read_bytes()
    make_certificates(certificates)  # a second `up` keeps the valid certificate
    assert (certificates / "exporter.crt").read_bytes() == before


def test_the_web_config_is_valid_and_its_user_is_the_demo_password(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path / "tls")
    config = load_web_config(TLS_DIR / "web-config.yml")
    assert config.tls_server_config is not None
    assert PurePosixPath(str(config.tls_server_config.cert_file)).parent == PurePosixPath(
        TLS_MOUNTS["exporter"]
    )
    security = WebSecurity(write_tls_web_config(tmp_path / "web-config.yml", certificates))
    assert security.tls is not None
    (hashed,) = config.basic_auth_users.values()
    assert bcrypt.checkpw(demo_scrape_password().encode(), hashed.encode())


@pytest.fixture
async def tls_exporter(sim_server: SimServer, tmp_path: Path) -> AsyncIterator[tuple[Path, int]]:
    certificates = make_certificates(tmp_path / "tls")
    security = WebSecurity(write_tls_web_config(tmp_path / "web-config.yml", certificates))
    exporter = Exporter(config_for(sim_server), security=security)
    port = await exporter.start("127.0.0.1", 0)
    try:
        yield certificates, port
    finally:
        await exporter.stop()


async def test_the_override_health_check_works_over_tls_without_credentials(
    tls_exporter: tuple[Path, int],
) -> None:
    certificates, port = tls_exporter
    (_, python, flag, code) = override()["services"]["exporter"]["healthcheck"]["test"][:4]
    assert (python, flag) == ("python", "-c")
    code = code.replace(TLS_MOUNTS["exporter"], str(certificates))
    code = code.replace("localhost:9877", f"localhost:{port}")
    # In a thread: the exporter answering it runs in this event loop.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    # The image's own HEALTHCHECK (plain http) does not work on a TLS port: hence the override.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get(f"http://127.0.0.1:{port}/-/healthy")


# --- the Kubernetes overlay -------------------------------------------------------------------


def kustomized() -> list[dict[str, Any]]:
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    return [doc for doc in yaml.safe_load_all(run(kubectl, "kustomize", K8S_TLS)) if doc]


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_the_kubernetes_overlay_builds_and_validates(version: str) -> None:
    documents = kustomized()
    assert sorted(doc["kind"] for doc in documents) == [
        "ConfigMap",
        "Deployment",
        "Secret",
        "Service",
    ]
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_kubernetes_overlay_serves_tls_with_https_probes() -> None:
    documents = kustomized()
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (secret,) = [d for d in documents if d["kind"] == "Secret"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    web_config = PurePosixPath(args[args.index("--web.config.file") + 1])
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounted = {PurePosixPath(m["mountPath"]): volumes[m["name"]] for m in container["volumeMounts"]}
    # The web config comes from the generated Secret (its name carries kustomize's hash).
    assert mounted[web_config.parent]["secret"]["secretName"] == secret["metadata"]["name"]
    assert secret["metadata"]["name"].startswith("boomi-listener-exporter-web-")
    text = (K8S_TLS / web_config.name).read_text(encoding="utf-8")
    config = parse_web_config(text, base_dir=Path("/"))
    tls = config.tls_server_config
    assert tls is not None
    cert, key = PurePosixPath(str(tls.cert_file)), PurePosixPath(str(tls.key_file))
    assert cert.parent == key.parent
    # A kubernetes.io/tls Secret's keys, as cert-manager writes them.
    assert (cert.name, key.name) == ("tls.crt", "tls.key")
    assert mounted[cert.parent]["secret"]["secretName"] == "boomi-listener-exporter-tls"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
        assert container[probe]["httpGet"]["path"] in ("/-/healthy", "/-/ready")
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scheme"] == (
        "https"
    )
    assert pod["securityContext"]["fsGroup"] == container["securityContext"]["runAsGroup"]
    assert config.basic_auth_users, "the overlay shows basic auth"
