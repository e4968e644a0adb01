"""The HTTPS server's ``ssl.SSLContext``, with its certificate re-loaded when the files change.

aiohttp's ``TCPSite`` takes one context at start, so a renewed certificate (cert-manager, certbot)
is loaded into that same context: ``load_cert_chain`` again, which every later handshake uses,
while connections already open keep theirs. A renewal is first loaded into a scratch context; only
when that works is it loaded into the live one, from the very same bytes (staged in an anonymous
in-memory file, so a file replaced in between cannot slip in unchecked). An invalid renewal
therefore keeps the old certificate in use and says why, once, in the log and in
:attr:`ServerTLS.problem`.

``client_auth_type`` maps to OpenSSL as follows. ``NoClientCert``: no certificate asked for.
``RequestClientCert``: also none asked for; the toolkit asks but never verifies nor uses it, so
both admit every client. ``VerifyClientCertIfGiven``: optional, verified against
``client_ca_file`` when given. ``RequireAndVerifyClientCert``: required and verified.
A changed ``client_ca_file`` adds its certificates to the trusted ones; OpenSSL cannot forget a
trusted CA, so one removed from the file stays trusted until the exporter restarts (logged).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import ssl
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from exporter.secretfile import FileStamp, file_stamp
from exporter.webconfig import TLSServerConfig, TLSVersionName, WebConfigError

__all__ = ["ServerTLS"]

_log = logging.getLogger(__name__)

_VERSIONS: dict[TLSVersionName, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN (RSA |EC |)PRIVATE KEY-----")
_PEM_ENCRYPTED_KEY = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")
_SECTION = "tls_server_config"


class _TLSFileError(Exception):
    """One certificate, key or CA file cannot be used; the message names the key."""


class _EncryptedKey(Exception):
    """Raised by the password callback: OpenSSL must never prompt on the terminal."""


def _refuse_password() -> bytes:
    raise _EncryptedKey


def _read_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@contextmanager
def _staged(data: bytes) -> Iterator[str]:
    """A file name holding ``data``: an anonymous in-memory file where Linux has one."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("exporter-tls", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            path = f"/proc/self/fd/{fd}"
            if os.path.exists(path):
                yield path
                return
        finally:
            os.close(fd)
    # Elsewhere a private temporary directory, removed as soon as OpenSSL has read the file.
    with tempfile.TemporaryDirectory(prefix="exporter-tls-") as directory:
        path = os.path.join(directory, "pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(data)
        yield path


class ServerTLS:
    """The server's SSLContext for ``tls_server_config``; :meth:`refresh` reloads renewals.

    Construction reads every file and raises WebConfigError (naming the key) when one cannot be
    used, which is what start and ``--check-config`` want. Later problems never raise: they keep
    the certificate in use and show in :attr:`problem`. ``read`` reads a file's bytes.
    """

    label = "web TLS certificate"

    def __init__(
        self, config: TLSServerConfig, *, read: Callable[[Path], bytes] = _read_bytes
    ) -> None:
        if config.cert_file is None or config.key_file is None:
            raise WebConfigError(f"{_SECTION}.cert_file: required to serve TLS")
        self.config = config
        self._read = read
        self._files: dict[str, Path] = {"cert_file": config.cert_file, "key_file": config.key_file}
        self._verify_mode = _VERIFY_MODES[config.client_auth_type]
        if config.client_ca_file is not None and self._verify_mode != ssl.CERT_NONE:
            self._files["client_ca_file"] = config.client_ca_file
        self._problem: str | None = None
        self.reloads = 0
        try:
            self._stamps = self._stat()
            contents = self._read_all()
            self.context = self._new_context()
            self._load(self.context, contents, set(contents))
        except _TLSFileError as exc:
            raise WebConfigError(str(exc)) from None
        self._digests = {key: _digest(data) for key, data in contents.items()}

    @property
    def problem(self) -> str | None:
        """Why a changed certificate, key or CA file is not in use (one sentence), or None."""
        return self._problem

    def refresh(self) -> bool:
        """Stat the files; reload when they changed and are valid. True when a reload happened."""
        try:
            stamps = self._stat()
        except _TLSFileError as exc:
            self._set_problem(str(exc))
            return False
        if stamps == self._stamps:
            return False
        # Remember the attempt: an invalid renewal is retried when a file changes again, not on
        # every check (cert and key written one after the other heal on the second write).
        self._stamps = stamps
        try:
            contents = self._read_all()
            changed = {
                key: data
                for key, data in contents.items()
                if _digest(data) != self._digests.get(key)
            }
            if not changed:
                self._clear_problem()
                return False
            # A rehearsal on a scratch context; the live one is touched only when it worked.
            self._load(self._new_context(), contents, set(contents))
        except _TLSFileError as exc:
            self._set_problem(str(exc))
            return False
        try:
            self._load(self.context, contents, set(changed))
        except _TLSFileError as exc:  # only if the rehearsal's environment failed in between
            self._set_problem(str(exc))
            return False
        self._digests = {key: _digest(data) for key, data in contents.items()}
        self.reloads += 1
        _log.info("%s: reloaded %s", _SECTION, " and ".join(sorted(changed)))
        if "client_ca_file" in changed:
            _log.info(
                "%s.client_ca_file changed: its certificates are trusted from now on; a CA"
                " removed from the file stays trusted until the exporter restarts",
                _SECTION,
            )
        self._clear_problem()
        return True

    def _stat(self) -> dict[str, FileStamp]:
        stamps = {}
        for key, path in self._files.items():
            try:
                stamps[key] = file_stamp(path)
            except OSError as exc:
                raise _TLSFileError(
                    f"{_SECTION}.{key}: cannot read {path}: {exc.strerror or 'stat failed'}"
                ) from None
            except ValueError:
                raise _TLSFileError(f"{_SECTION}.{key}: not a valid file name") from None
        return stamps

    def _read_all(self) -> dict[str, bytes]:
        contents = {}
        for key, path in self._files.items():
            try:
                contents[key] = self._read(path)
            except OSError as exc:
                raise _TLSFileError(
                    f"{_SECTION}.{key}: cannot read {path}: {exc.strerror or 'read error'}"
                ) from None
        return contents

    def _new_context(self) -> ssl.SSLContext:
        # Not ssl.create_default_context(CLIENT_AUTH): that trusts the system store for client
        # certificates, and mutual TLS must trust client_ca_file only.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            # TLS10/TLS11 are the toolkit's values; Python deprecates setting them.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = _VERSIONS[self.config.min_version]
            context.maximum_version = _VERSIONS[self.config.max_version]
        context.verify_mode = self._verify_mode
        # aiohttp speaks HTTP/1.1 only; saying so spares clients offering h2 a guess.
        context.set_alpn_protocols(["http/1.1"])
        return context

    def _load(self, context: ssl.SSLContext, contents: dict[str, bytes], parts: set[str]) -> None:
        """Load ``parts`` of ``contents`` into ``context``; raise _TLSFileError."""
        if "client_ca_file" in parts:
            self._load_client_ca(context, contents["client_ca_file"])
        if parts & {"cert_file", "key_file"}:
            # The pair is always loaded together, even when only one of the files changed.
            self._load_pair(context, contents["cert_file"], contents["key_file"])

    def _load_client_ca(self, context: ssl.SSLContext, data: bytes) -> None:
        where = f"{_SECTION}.client_ca_file ({self._files['client_ca_file']})"
        if _PEM_CERTIFICATE not in data:
            raise _TLSFileError(f"{where}: no PEM certificate in the file")
        try:
            context.load_verify_locations(cadata=data.decode("ascii"))
        except (UnicodeDecodeError, ValueError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or "not valid PEM certificates"
            raise _TLSFileError(f"{where}: {reason}") from None

    def _load_pair(self, context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
        cert_where = f"{_SECTION}.cert_file ({self._files['cert_file']})"
        key_where = f"{_SECTION}.key_file ({self._files['key_file']})"
        if _PEM_CERTIFICATE not in cert:
            raise _TLSFileError(f"{cert_where}: no PEM certificate in the file")
        if _PEM_ENCRYPTED_KEY.search(key):
            raise _TLSFileError(f"{key_where}: the key is encrypted; give an unencrypted key")
        if not _PEM_PRIVATE_KEY.search(key):
            raise _TLSFileError(f"{key_where}: no PEM private key in the file")
        try:
            with _staged(cert) as cert_path, _staged(key) as key_path:
                context.load_cert_chain(cert_path, key_path, password=_refuse_password)
        except _EncryptedKey:
            raise _TLSFileError(
                f"{key_where}: the key is encrypted; give an unencrypted key"
            ) from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise _TLSFileError(
                    f"{key_where}: does not belong to the certificate in {_SECTION}.cert_file"
                ) from None
            raise _TLSFileError(
                f"{cert_where} and key_file: cannot be loaded ({exc.reason or 'not valid PEM'})"
            ) from None
        except OSError as exc:  # staging the bytes for OpenSSL failed
            raise _TLSFileError(
                f"{cert_where}: cannot be loaded: {exc.strerror or 'I/O error'}"
            ) from None

    def _set_problem(self, problem: str) -> None:
        problem += "; the certificate loaded before stays in use"
        if problem != self._problem:
            self._problem = problem
            _log.warning("%s", problem)

    def _clear_problem(self) -> None:
        if self._problem is not None:
            _log.info("%s: the files can be used again", _SECTION)
            self._problem = None
