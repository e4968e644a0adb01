"""The daemon's secret files, followed while it runs, so a rotated secret needs no restart.

One `SecretFile` per path (`exporter.secretfile`), refreshed by one `SecretWatcher`: the Boomi
accounts' `password_file`, and the webhook's `bearer_token_file` and `basic.password_file`.
`FileSecret` is a Boomi client's password that follows its file; `current_webhook_auth` is the
webhook's auth with the values now in its files, read at each request. A file that vanishes, is
unreadable or empty keeps its last good value; `problems` says so for the landing page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import SecretStr

from exporter.config import Config, WebhookAuthConfig
from exporter.secretfile import DEFAULT_INTERVAL_SECONDS, Refreshable, SecretFile, SecretWatcher

WebhookAuth = WebhookAuthConfig | Literal["none"] | None


class FileSecret:
    """A Boomi password read from a file: its last good value, else the one loaded at start."""

    def __init__(self, file: SecretFile, loaded: str) -> None:
        self.file = file
        self._loaded = loaded

    @property
    def value(self) -> str:
        """The file's last good value (never empty)."""
        return self.file.value or self._loaded

    @property
    def remedy(self) -> str:
        """What to do when Boomi rejects it."""
        return f"write the new password or token into {self.file.path} or reload"

    def __repr__(self) -> str:
        return f"FileSecret({str(self.file.path)!r})"


def secret_paths(config: Config) -> dict[str, str]:
    """Every secret file the config names, with a label for log lines: {path: label}."""
    paths: dict[str, str] = {}
    for account in config.accounts:
        if account.password_file is not None:
            paths.setdefault(
                account.password_file, f"password_file of account {account.account_id}"
            )
    auth = config.remediation.auth
    if isinstance(auth, WebhookAuthConfig):
        if auth.bearer_token_file is not None:
            paths.setdefault(auth.bearer_token_file, "remediation.auth.bearer_token_file")
        if auth.basic is not None and auth.basic.password_file is not None:
            paths.setdefault(auth.basic.password_file, "remediation.auth.basic.password_file")
    return paths


class WatchedSecrets:
    """The secret files of the running config, each stat-ed every `interval_seconds`, and
    `also` (the web server's certificate files), by one watcher task."""

    def __init__(
        self,
        *,
        on_change: Callable[[SecretFile], None] | None = None,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        also: Iterable[Refreshable] = (),
    ) -> None:
        self._files: dict[str, SecretFile] = {}
        self._also = tuple(also)
        self._on_change = on_change
        self._watcher = SecretWatcher(on_change=self._changed, interval_seconds=interval_seconds)
        self._task: asyncio.Task[None] | None = None

    def file(self, path: str) -> SecretFile:
        """The watched file at `path` (see `follow`)."""
        return self._files[path]

    def follow(self, config: Config) -> None:
        """Watch exactly the files `config` names; a file already watched keeps its state."""
        wanted = secret_paths(config)
        self._files = {
            path: self._files.get(path) or SecretFile(path, label=label)
            for path, label in wanted.items()
        }
        self._watcher.replace([*self._files.values(), *self._also])

    def problems(self) -> list[str]:
        """One sentence per file whose current content is not in use (no values)."""
        return [
            f"{file.label}: {file.problem}"
            for file in self._files.values()
            if file.problem is not None
        ]

    def _changed(self, file: Refreshable) -> None:
        if self._on_change is not None and isinstance(file, SecretFile):
            self._on_change(file)

    def start(self) -> None:
        """Start watching in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._watcher.run(), name="secret files")

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def current_webhook_auth(auth: WebhookAuth, secrets: WatchedSecrets) -> WebhookAuth:
    """The webhook's auth with the values its files hold now (their last good ones)."""
    if not isinstance(auth, WebhookAuthConfig):
        return auth
    if auth.bearer_token_file is not None:
        token = secrets.file(auth.bearer_token_file).value
        if token:
            return auth.model_copy(update={"bearer_token": SecretStr(token)})
    basic = auth.basic
    if basic is not None and basic.password_file is not None:
        password = secrets.file(basic.password_file).value
        if password:
            return auth.model_copy(
                update={"basic": basic.model_copy(update={"password": SecretStr(password)})}
            )
    return auth
