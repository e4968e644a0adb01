"""One account's client settings: the single value that builds a `BoomiClient` and, compared
with the running one on reload, decides whether the client (and its session) must be replaced."""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.boomi.client import BoomiClient, RequestObserver
from exporter.boomi.credentials import CredentialGates, SecretSource
from exporter.config import AccountConfig, Config


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Everything a `BoomiClient` is built from; two are equal when the clients would be."""

    account_id: str
    base_url: str
    username: str
    password: str = field(repr=False)  # as loaded; a password_file is re-read when it changes
    password_file: str | None
    max_requests_per_second: float
    request_timeout_seconds: float
    max_auth_failures: int
    auth_failure_backoff_seconds: float

    @classmethod
    def from_config(cls, account: AccountConfig, config: Config) -> ClientSettings:
        """The settings of one configured account."""
        return cls(
            account_id=account.account_id,
            base_url=account.base_url,
            username=account.username,
            password=account.password.get_secret_value(),
            password_file=account.password_file,
            max_requests_per_second=account.max_requests_per_second,
            request_timeout_seconds=config.poll.request_timeout_seconds,
            max_auth_failures=account.max_auth_failures,
            auth_failure_backoff_seconds=account.auth_failure_backoff_seconds,
        )

    def build(
        self,
        *,
        on_request: RequestObserver | None = None,
        gates: CredentialGates | None = None,
        password: SecretSource | None = None,
    ) -> BoomiClient:
        """A client with these settings, reporting each HTTP attempt to `on_request`.

        `gates` (the daemon's) makes accounts of one Boomi user share its count of rejected
        sign-ins; `password` replaces the loaded one by a source that follows its file.
        """
        return BoomiClient(
            self.account_id,
            base_url=self.base_url,
            username=self.username,
            password=self.password if password is None else password,
            max_requests_per_second=self.max_requests_per_second,
            request_timeout_seconds=self.request_timeout_seconds,
            max_auth_failures=self.max_auth_failures,
            auth_failure_backoff_seconds=self.auth_failure_backoff_seconds,
            gates=gates,
            on_request=on_request,
        )
