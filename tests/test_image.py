"""The container image, built from the checkout and run for real.

The image is built by Debian's docker.io client (/usr/bin/docker, 20.10) with its built-in
BuildKit (DOCKER_BUILDKIT=1), on a stand-in for python:3.11-slim made from Debian packages
(tests/image_base.py), since Docker Hub is not reachable here. Then it runs as deployed: a
read-only root filesystem, no capabilities, no-new-privileges, on the host's network so it can
reach a simulator on the host's loopback. Without a Docker engine these tests are skipped;
BLE_REQUIRE_IMAGE=1 (set by .ci/run) turns that into a failure.

Durations are printed (pytest -s shows them) and never asserted, except the one generous,
commented bound on `docker stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import image_base
from tests.conftest import SimServer

pytestmark = pytest.mark.image

REPO_ROOT = Path(__file__).resolve().parent.parent
# Debian's docker.io client, named explicitly: a newer client earlier on PATH refuses to build
# without the buildx plugin, which Debian does not package.
DOCKER = ["/usr/bin/docker"]
DOCKER_ENV = os.environ | {"DOCKER_BUILDKIT": "1"}
REQUIRE_ENV = "BLE_REQUIRE_IMAGE"

IMAGE_UID = 10001
DEFAULT_PORT = 9877
CONFIG_PATH = "/etc/boomi-listener-exporter/config.yaml"  # the image's CMD
SECRET_PATH = "/run/secrets/boomi-password"
LOCKED_DOWN = (
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "host",
)
# Docker's predefined build arguments: a proxy this machine reaches the index through is passed
# on to the build without becoming part of the image.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


def unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}, and {REQUIRE_ENV} is set")
    pytest.skip(reason)


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*DOCKER, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=DOCKER_ENV,
    )
    if check:
        assert result.returncode == 0, (
            f"docker {shlex.join(args)} exited {result.returncode}\n{result.stdout}{result.stderr}"
        )
    return result


def inspect(container: str) -> dict[str, Any]:
    document: list[dict[str, Any]] = json.loads(docker("inspect", container).stdout)
    return document[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> str:
    # No proxy handler: an HTTP_PROXY of this machine must not carry a loopback request.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def container_up(metrics_text: str) -> dict[str, float]:
    """{container id: value} of boomi_container_up."""
    return {
        sample.labels["container_id"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "boomi_container_up"
    }


@contextlib.contextmanager
def running(image: str, options: Sequence[str] = (), command: Sequence[str] = ()) -> Iterator[str]:
    """A detached container of the image, locked down as deployed; removed at the end."""
    run = docker("run", "--detach", *LOCKED_DOWN, *options, image, *command)
    container = run.stdout.strip()
    try:
        yield container
    finally:
        docker("rm", "--force", container, check=False)


def wait_until_running_and(container: str, condition: Any, what: str, timeout: float) -> Any:
    """Poll condition() until it returns something truthy; fail with the container's log if
    the container exits or the timeout passes first."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            value = condition()
            if value:
                return value
        state = inspect(container)["State"]
        if not state["Running"] or time.monotonic() > deadline:
            logs = docker("logs", container, check=False)
            pytest.fail(
                f"{what}: not reached (container {state['Status']}, exit {state['ExitCode']})\n"
                f"{logs.stdout}{logs.stderr}"
            )
        time.sleep(0.5)


def stop_gracefully(container: str) -> None:
    """`docker stop` sends SIGTERM; the exporter must exit 0 on its own, well before Docker's
    grace period ends and it would be killed."""
    started = time.monotonic()
    docker("stop", "--time", "30", container, timeout=60)
    stopped_after = time.monotonic() - started
    print(f"image: docker stop took {stopped_after:.1f} s")
    # A generous process-level bound: the exporter stops within about a second (0.3 to 1.1 s
    # seen, `docker stop` included, on a busy 2-core machine); 10 s is Docker's default grace
    # period, after which a real deployment would kill it.
    assert stopped_after < 10
    state = inspect(container)["State"]
    assert (state["ExitCode"], state["OOMKilled"]) == (0, False)


# -- building ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> str:
    """The Docker engine's version; skips (fails under BLE_REQUIRE_IMAGE) without one."""
    if not Path(DOCKER[0]).is_file():
        unavailable(f"{DOCKER[0]} not installed (Debian package docker.io)")
    result = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30)
    if result.returncode != 0:
        unavailable(f"no Docker engine answers ({result.stderr.strip()}); start dockerd")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def base_image(engine: str) -> str:
    try:
        tag, seconds = image_base.ensure_base_image(DOCKER)
    except image_base.BaseUnavailable as exc:
        unavailable(str(exc))
    made = "cached" if seconds is None else f"made in {seconds:.1f} s"
    print(f"image: stand-in base {tag} ({made}) on Docker {engine}")
    return tag


@pytest.fixture(scope="module")
def image(base_image: str) -> Iterator[str]:
    """The image built from the checkout on the stand-in base."""
    tag = f"boomi-listener-exporter:test-{os.getpid()}"
    proxies = [
        arg
        for name in PROXY_VARIABLES
        for value in (os.environ.get(name) or os.environ.get(name.lower()),)
        if value
        for arg in ("--build-arg", f"{name}={value}")
    ]
    started = time.monotonic()
    # The host's network, so that the build reaches the package index exactly as pip on this
    # machine does (its DNS, a proxy on loopback).
    docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"PYTHON_IMAGE={base_image}",
        *proxies,
        "--tag",
        tag,
        str(REPO_ROOT),
        timeout=900,
    )
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    print(f"image: built {tag} in {time.monotonic() - started:.1f} s, {size / 1e6:.0f} MB")
    try:
        yield tag
    finally:
        # The layers stay in the build cache, so the next build is quick.
        docker("rmi", tag, check=False)


def python_in(image: str, code: str, *user: str) -> Any:
    """What a Python snippet prints as JSON, run in a throwaway container of the image (as its
    own user, unless `--user`, ID is given)."""
    output = docker(
        "run", "--rm", "--read-only", "--network", "none", *user, "--entrypoint", "python3",
        image, "-c", code,
    ).stdout  # fmt: skip
    return json.loads(output)


# Every wheel file and every file of the build stage's folders, anywhere in an image.
BUILD_FILES = (
    "import json, pathlib\n"
    "tops = [p for p in pathlib.Path('/').iterdir() if p.name not in ('proc', 'sys', 'dev')]\n"
    "found = {str(p) for top in tops for p in top.rglob('*.whl')}\n"
    "found |= {str(p) for top in ('/wheels', '/src', '/root/.cache')"
    " for p in pathlib.Path(top).rglob('*')}\n"
    "print(json.dumps(sorted(found)))"
)


def test_image_holds_every_module_of_the_package_and_nothing_of_the_build(
    image: str, base_image: str
) -> None:
    """The whole exporter/ tree reaches the image (subpackages too), the image's user is
    10001, and no wheel or build file stays behind (the base's own, Debian's
    /usr/share/python-wheels, aside)."""
    installed = python_in(
        image,
        "import json, os, pathlib, exporter\n"
        "package = pathlib.Path(exporter.__file__).parent\n"
        "print(json.dumps({'modules': sorted(str(p.relative_to(package))"
        " for p in package.rglob('*.py')), 'uid': os.getuid()}))",
    )
    package = REPO_ROOT / "exporter"
    expected = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "__pycache__" not in path.parts
    )
    assert installed["modules"] == expected
    assert installed["uid"] == IMAGE_UID
    # As root, to see into every folder. /wheels itself remains as the bind mount's empty mount
    # point; nothing is in it.
    as_root = ("--user", "0")
    assert python_in(image, BUILD_FILES, *as_root) == python_in(base_image, BUILD_FILES, *as_root)


# -- the demo, locked down --------------------------------------------------------------------


def test_demo_runs_locked_down_becomes_healthy_as_uid_10001_and_stops_on_docker_stop(
    image: str,
) -> None:
    port = free_port()
    healthcheck = docker("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image)
    shipped = json.loads(healthcheck.stdout)
    assert shipped["Test"][:3] == ["CMD", "python", "-c"]
    code = shipped["Test"][3]
    assert f"127.0.0.1:{DEFAULT_PORT}/-/healthy" in code
    # The image's own check, pointed at the port this run listens on: on the host's network the
    # default port may be taken by anything else on this machine. Docker keeps the image's
    # interval, timeout, start period and retries.
    probe = shlex.join(["python", "-c", code.replace(f":{DEFAULT_PORT}/", f":{port}/")])
    started = time.monotonic()
    demo = ["--demo", "--web.listen-address", f"127.0.0.1:{port}"]
    with running(image, ["--health-cmd", probe], demo) as container:
        health = inspect(container)["Config"]["Healthcheck"]
        assert health["Interval"] == shipped["Interval"]

        def healthy() -> bool:
            status = inspect(container)["State"]["Health"]["Status"]
            assert status != "unhealthy", inspect(container)["State"]["Health"]["Log"]
            return bool(status == "healthy")

        wait_until_running_and(
            container, lambda: get(f"http://127.0.0.1:{port}/-/healthy"), "/-/healthy", 60
        )
        answering = time.monotonic() - started
        # Docker 20.10 runs the first check one interval (30 s) after the start.
        wait_until_running_and(container, healthy, "health status healthy", timeout=120)
        print(
            f"image: /-/healthy answers {answering:.1f} s after docker run, Docker's health"
            f" status is healthy after {time.monotonic() - started:.1f} s"
        )

        metrics = wait_until_running_and(
            container,
            lambda: container_up(get(f"http://127.0.0.1:{port}/metrics")),
            "boomi_container_up on /metrics",
            timeout=30,
        )
        assert set(metrics.values()) <= {0.0, 1.0}

        state = inspect(container)["State"]
        status = Path(f"/proc/{state['Pid']}/status").read_text(encoding="utf-8")
        ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}
        assert ids["Uid"] == [str(IMAGE_UID)] * 4  # real, effective, saved and filesystem
        assert ids["Gid"] == [str(IMAGE_UID)] * 4
        cmdline = Path(f"/proc/{state['Pid']}/cmdline").read_bytes().split(b"\0")
        assert any(arg.endswith(b"/boomi-listener-exporter") for arg in cmdline), cmdline

        stop_gracefully(container)
        logs = docker("logs", container)
        assert "Traceback" not in logs.stdout + logs.stderr


# -- a mounted config and secret, polling the simulator on the host ---------------------------

SECRET = "s3cret-from-a-mounted-file-7Qx"


def write_config(tmp_path: Path, sim_server: SimServer, port: int, **sections: Any) -> Path:
    """A config file for the image (readable by its user) that polls every container of the
    simulator on the host, with the password in SECRET_PATH; `sections` adds e.g. remediation."""
    config = {
        "accounts": [
            {
                "account_id": sim_server.account.account_id,
                "base_url": sim_server.base_url,
                "username": sim_server.account.username,
                "password_file": SECRET_PATH,
                "max_requests_per_second": 20,
                "containers": [{"id": c} for c in sim_server.container_ids()],
            }
        ],
        "poll": {"interval_seconds": 1, "result_timeout_seconds": 5},
        "web": {"listen_address": f"127.0.0.1:{port}"},
    } | sections
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    config_file.chmod(0o644)
    return config_file


@pytest.mark.parametrize("sim_server", [{"password": SECRET}], indirect=True)
async def test_polls_the_simulator_with_a_mounted_config_and_password_file(
    image: str, sim_server: SimServer, tmp_path: Path
) -> None:
    port = free_port()
    containers = sim_server.container_ids()
    config_file = write_config(tmp_path, sim_server, port)
    # As the README asks: the secret is readable by the image's user, and by no one else where
    # the test may chown (as root); otherwise by everyone.
    secret_file = tmp_path / "boomi-password"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    if os.geteuid() == 0:
        os.chown(secret_file, IMAGE_UID, IMAGE_UID)
        secret_file.chmod(0o600)
    else:
        secret_file.chmod(0o644)

    mounts = (
        "--volume",
        f"{config_file}:{CONFIG_PATH}:ro",
        "--volume",
        f"{secret_file}:{SECRET_PATH}:ro",
    )
    # The simulator runs in this event loop: every blocking call goes to a thread.
    with contextlib.ExitStack() as stack:
        container = await asyncio.to_thread(stack.enter_context, running(image, mounts))

        def all_up() -> str | None:
            text = get(f"http://127.0.0.1:{port}/metrics")
            up = container_up(text)
            return text if all(up.get(container_id) == 1 for container_id in containers) else None

        metrics_text = await asyncio.to_thread(
            wait_until_running_and, container, all_up, "every container up", 60
        )
        assert container_up(metrics_text) == dict.fromkeys(containers, 1.0)
        # The exporter logged in with the password from the file and polled over the socket.
        assert sim_server.count("POST listener_status_query 200") >= len(containers)
        assert sim_server.count("POST listener_status_query 401") == 0

        await asyncio.to_thread(stop_gracefully, container)
        logs = await asyncio.to_thread(docker, "logs", container)
        described = await asyncio.to_thread(docker, "inspect", container)
    assert SECRET not in metrics_text
    assert SECRET not in logs.stdout + logs.stderr
    assert SECRET not in described.stdout  # neither in the arguments nor the environment


# -- the ledger across `docker restart` -------------------------------------------------------

LEDGER_VOLUME_TARGET = "/var/lib/boomi-listener-exporter/data"  # the image's VOLUME
HOOK_TOKEN = "image-test-hook-token-5Rw"
CHANGE_CALLS = "POST change_listener_status"


def post_alert(port: int, container_id: str, listener_id: str) -> str:
    """The outcome the webhook gives one firing alert for this listener."""
    body = {
        "version": "4",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "fingerprint": f"fp-{listener_id[:8]}",
                "labels": {"container_id": container_id, "listener_id": listener_id},
            }
        ],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/alertmanager",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {HOOK_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        outcome: str = json.loads(response.read())["alerts"][0]["outcome"]
    return outcome


def ledger_entries(port: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(get(f"http://127.0.0.1:{port}/api/v1/actions"))[
        "actions"
    ]
    return entries


@pytest.mark.parametrize("sim_server", [{"restart_delay_seconds": 0.1}], indirect=True)
async def test_a_remediation_decision_survives_docker_restart_and_a_new_container(
    image: str, sim_server: SimServer, tmp_path: Path
) -> None:
    """The ledger on the image's volume: a restart recorded by one run of the container is
    still in force after `docker restart`, and in a new container on the same named volume
    (an upgrade): the same alert gets "skipped_cooldown", and Boomi sees one call only."""
    port = free_port()
    listener = next(iter(sim_server.account.listeners.values()))
    container_id, listener_id = listener.container_id, listener.listener_id
    sim_server.sim.set_status(sim_server.account.account_id, listener_id, "errored")
    remediation = {
        "enabled": True,
        "dry_run": False,
        "auth": {"bearer_token": HOOK_TOKEN},
        "cooldown_seconds": 3600,
        "max_actions_per_hour": 10,
        "verify_timeout_seconds": 60,
    }
    config_file = write_config(tmp_path, sim_server, port, remediation=remediation)
    secret_file = tmp_path / "boomi-password"
    secret_file.write_text(sim_server.account.password, encoding="utf-8")
    secret_file.chmod(0o644)
    volume = f"ble-image-test-ledger-{os.getpid()}"
    await asyncio.to_thread(docker, "volume", "create", volume)
    mounts = (
        "--volume",
        f"{config_file}:{CONFIG_PATH}:ro",
        "--volume",
        f"{secret_file}:{SECRET_PATH}:ro",
        "--volume",
        f"{volume}:{LEDGER_VOLUME_TARGET}",
    )

    def ready() -> bool:
        return bool(get(f"http://127.0.0.1:{port}/-/ready"))

    def recorded(outcome: str) -> list[dict[str, Any]]:
        return [
            entry
            for entry in ledger_entries(port)
            if entry["listener_id"] == listener_id and entry["outcome"] == outcome
        ]

    try:
        with contextlib.ExitStack() as stack:
            first = await asyncio.to_thread(stack.enter_context, running(image, mounts))
            await asyncio.to_thread(wait_until_running_and, first, ready, "/-/ready", 60)
            assert await asyncio.to_thread(post_alert, port, container_id, listener_id) == "queued"
            await asyncio.to_thread(
                wait_until_running_and, first, lambda: recorded("recovered"), "recovered", 60
            )
            assert sim_server.count(CHANGE_CALLS) == 1

            await asyncio.to_thread(docker, "restart", "--time", "30", first, timeout=90)
            await asyncio.to_thread(wait_until_running_and, first, ready, "/-/ready again", 60)
            assert inspect(first)["RestartCount"] == 0  # restarted by us, not by a crash
            # The record is read back from the volume, and it is still in force.
            assert await asyncio.to_thread(recorded, "recovered")
            sim_server.sim.set_status(sim_server.account.account_id, listener_id, "errored")
            outcome = await asyncio.to_thread(post_alert, port, container_id, listener_id)
            assert outcome == "skipped_cooldown"
            await asyncio.to_thread(stop_gracefully, first)

        with contextlib.ExitStack() as stack:
            second = await asyncio.to_thread(stack.enter_context, running(image, mounts))
            await asyncio.to_thread(wait_until_running_and, second, ready, "/-/ready", 60)
            outcome = await asyncio.to_thread(post_alert, port, container_id, listener_id)
            assert outcome == "skipped_cooldown"
            await asyncio.to_thread(stop_gracefully, second)
            logs = await asyncio.to_thread(docker, "logs", second)
        # Neither run made a second call, though the listener is errored again.
        assert sim_server.count(CHANGE_CALLS) == 1
        assert sim_server.account.password not in logs.stdout + logs.stderr
        assert HOOK_TOKEN not in logs.stdout + logs.stderr
    finally:
        await asyncio.to_thread(docker, "volume", "rm", "--force", volume, check=False)
