"""A stand-in for the Dockerfile's python:3.11-slim base image, made from Debian packages.

Docker Hub is not reachable from the development machines or CI, so tests/test_image.py builds
the image on a base made here: `debootstrap --variant=minbase` of Debian bookworm with python3,
python3-pip, python3-venv and ca-certificates, from the Debian mirror apt on this machine uses,
finished so that it behaves like python:slim where the Dockerfile relies on it, and loaded with
`docker import`. It is tagged with a hash of everything that goes into it (the debootstrap
arguments, the CA bundle, the pip settings, the finishing code), so it is made once per machine
and reused until one of those changes.

The base carries this machine's CA bundle and the parts of its pip configuration that work inside
a container (http(s) indexes, timeouts), so that pip in the build reaches the package index the
way pip on this machine does. It is a local test fixture: never push it anywhere.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
REPOSITORY = "ble-base"

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's path, on the host and in the base
# What python:slim's image configuration sets and `docker import` would otherwise leave out.
IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)

# pip settings carried from this machine into the base. Anything else may name a local path
# (find-links folders, constraints, file:// indexes) that does not exist in a container.
PIP_SETTINGS = (
    "index-url",
    "extra-index-url",
    "find-links",
    "trusted-host",
    "proxy",
    "timeout",
    "default-timeout",
    "retries",
    "disable-pip-version-check",
)
PIP_URL_SETTINGS = ("index-url", "extra-index-url", "find-links")


class BaseUnavailable(Exception):
    """The stand-in base is not cached and cannot be made here (not root, no debootstrap)."""


# -- what goes into the base ------------------------------------------------------------------


def apt_sources() -> list[Path]:
    """The files apt reads its sources from, in apt's order."""
    folder = Path("/etc/apt/sources.list.d")
    parts = [*folder.glob("*.list"), *folder.glob("*.sources")]
    main = Path("/etc/apt/sources.list")
    return ([main] if main.is_file() else []) + sorted(parts, key=lambda path: path.name)


def _deb822_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str], str | None]]:
    """(URIs, suites, components, Signed-By path) of each enabled `deb` stanza."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:  # a continuation line (an inline key, say)
                fields[key] += "\n" + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        signed_by = fields.get("signed-by")
        keyring = signed_by if signed_by and signed_by.startswith("/") else None
        yield (
            fields.get("uris", "").split(),
            fields.get("suites", "").split(),
            fields.get("components", "").split(),
            keyring,
        )


def _one_line_entries(text: str) -> Iterator[tuple[list[str], list[str], list[str], str | None]]:
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        options: dict[str, str] = {}
        rest = words[1:]
        if rest and rest[0].startswith("["):
            end = next((i for i, word in enumerate(rest) if word.endswith("]")), len(rest))
            for option in " ".join(rest[: end + 1]).strip("[]").split():
                name, _, value = option.partition("=")
                options[name] = value
            rest = rest[end + 1 :]
        if len(rest) >= 3:
            yield [rest[0]], [rest[1]], rest[2:], options.get("signed-by")


def debian_mirror() -> tuple[str, str | None]:
    """(mirror URL, keyring or None) of the first apt source that serves bookworm's main
    component: the Debian mirror this machine installs its packages from."""
    for path in apt_sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for uris, suites, components, keyring in entries:
            if SUITE in suites and "main" in components:
                for uri in uris:
                    if uri.startswith(("http://", "https://")):
                        return uri, keyring
    return DEFAULT_MIRROR, None


def host_pip_settings() -> dict[str, str]:
    """pip's effective global settings on this machine, config files and PIP_* variables
    merged (the variables win), as `pip config list` shows them."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    output = result.stdout if result.returncode == 0 else ""  # no pip beside the tests: none
    from_files: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in output.splitlines():
        name, separator, raw = line.partition("=")
        section, _, key = name.partition(".")
        if not separator or section not in ("global", ":env:"):
            continue
        value = ast.literal_eval(raw)
        (from_env if section == ":env:" else from_files)[key] = str(value)
    return from_files | from_env


def pip_conf(settings: dict[str, str]) -> str:
    """The base's /etc/pip.conf: the machine's settings that work inside a container, and the
    copied CA bundle for verifying the index."""
    lines = [
        "# Made by tests/image_base.py from the pip settings of the machine that built this",
        "# stand-in base; local paths and file:// indexes are left out.",
        "[global]",
        f"cert = {CA_BUNDLE}",
    ]
    for key in PIP_SETTINGS:
        value = settings.get(key)
        if value is None:
            continue
        if key in PIP_URL_SETTINGS:
            value = " ".join(
                url for url in value.split() if url.startswith(("http://", "https://"))
            )
            if not value:
                continue
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def host_ca_bundle(settings: dict[str, str]) -> bytes:
    """The CA bundle pip verifies the index with on this machine."""
    candidates = [
        settings.get("cert"),
        os.environ.get("SSL_CERT_FILE"),
        ssl.get_default_verify_paths().cafile,
        CA_BUNDLE,
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    raise BaseUnavailable("no CA bundle on this machine to copy into the stand-in base")


def finish_root(root: Path, ca_bundle: bytes, pip_config: str) -> None:
    """Make a debootstrapped tree behave like python:slim where the Dockerfile relies on it.

    Its source is part of the base's tag, so changing it makes a new base."""

    def replace(relative: str) -> Path:
        # Never write through a symlink of the new tree: it would resolve on the host.
        path = root / relative
        if path.is_symlink() or path.exists():
            path.unlink()
        return path

    # python:slim's interpreter is its own, so pip installs into it; Debian marks its python3 as
    # externally managed (PEP 668), and the final stage's `pip install` would be refused.
    for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    # The HEALTHCHECK runs `python`, as python:slim calls it; Debian only has python3.
    replace("usr/local/bin/python").symlink_to("/usr/bin/python3")
    # The index may be reached through this machine's own CA.
    replace(CA_BUNDLE.lstrip("/")).write_bytes(ca_bundle)
    replace("etc/pip.conf").write_text(pip_config, encoding="utf-8")
    # What slim images leave out: downloaded packages, package lists, documentation and
    # translations (302 MB debootstrapped, 157 MB without them).
    for pattern in (
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
    ):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def architecture() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


class Recipe:
    """Everything the stand-in base is made from; its hash is the image tag."""

    def __init__(self) -> None:
        settings = host_pip_settings()
        self.mirror, self.keyring = debian_mirror()
        self.ca_bundle = host_ca_bundle(settings)
        self.pip_config = pip_conf(settings)
        self.debootstrap_args = [
            f"--variant={VARIANT}",
            f"--include={','.join(PACKAGES)}",
            f"--arch={architecture()}",
            *([f"--keyring={self.keyring}"] if self.keyring else []),
        ]

    @property
    def tag(self) -> str:
        inputs = {
            "suite": SUITE,
            "mirror": self.mirror,
            "debootstrap": self.debootstrap_args,
            "keyring": _sha256_of_file(self.keyring),
            "ca_bundle": hashlib.sha256(self.ca_bundle).hexdigest(),
            "pip_conf": self.pip_config,
            "finish": inspect.getsource(finish_root),
            "import": IMPORT_CHANGES,
        }
        digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
        return f"{REPOSITORY}:{digest[:16]}"


def _sha256_of_file(path: str | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


# -- making it --------------------------------------------------------------------------------


@contextlib.contextmanager
def _machine_lock(tag: str) -> Iterator[None]:
    """One maker per machine: a second test run waits and then finds the base made."""
    lock_path = Path(tempfile.gettempdir()) / f"{tag.replace(':', '-')}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def image_exists(docker: list[str], tag: str) -> bool:
    result = subprocess.run(
        [*docker, "image", "inspect", tag], capture_output=True, check=False, timeout=60
    )
    return result.returncode == 0


def _mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def ensure_base_image(docker: list[str]) -> tuple[str, float | None]:
    """The stand-in base's tag, made if it is not there yet; and the seconds making it took
    (None when it was cached)."""
    recipe = Recipe()
    tag = recipe.tag
    if image_exists(docker, tag):
        return tag, None
    with _machine_lock(tag):
        if image_exists(docker, tag):
            return tag, None
        debootstrap = shutil.which("debootstrap") or (
            "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").is_file() else None
        )
        if debootstrap is None:
            raise BaseUnavailable(f"{tag} is not built and debootstrap is not installed")
        if os.geteuid() != 0:
            raise BaseUnavailable(f"{tag} is not built and debootstrap needs root")
        started = time.monotonic()
        workdir = Path(tempfile.mkdtemp(prefix="ble-base-"))
        root = workdir / "root"
        try:
            _run(
                [debootstrap, *recipe.debootstrap_args, SUITE, str(root), recipe.mirror],
                what="debootstrap",
                timeout=1200,
            )
            finish_root(root, recipe.ca_bundle, recipe.pip_config)
            _import(docker, root, tag)
        finally:
            left_mounted = _mounts_below(root) if root.exists() else []
            if left_mounted:
                # Removing the tree would reach into the host's /proc or /sys.
                raise BaseUnavailable(f"left {workdir} in place: still mounted {left_mounted}")
            shutil.rmtree(workdir, ignore_errors=True)
        return tag, time.monotonic() - started


def _import(docker: list[str], root: Path, tag: str) -> None:
    changes = [word for change in IMPORT_CHANGES for word in ("--change", change)]
    tar = subprocess.Popen(
        ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
    )
    assert tar.stdout is not None
    try:
        _run([*docker, "import", *changes, "-", tag], what="docker import", stdin=tar.stdout)
    finally:
        tar.stdout.close()
        if tar.wait(timeout=60) != 0:
            raise RuntimeError(f"tar of {root} exited {tar.returncode}")


def _run(
    argv: list[str], *, what: str, timeout: float = 300, stdin: IO[bytes] | None = None
) -> None:
    result = subprocess.run(
        argv,
        stdin=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"{what} exited {result.returncode}:\n{tail}")
