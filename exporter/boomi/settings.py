"""One account's client settings: the single value that builds a `BoomiClient` and, compared
with the running one on reload, decides whether the client (and its session) must be replaced."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from exporter.boomi.client import BoomiClient, RequestObserver
from exporter.boomi.credentials import CredentialGates, SecretSource
from exporter.boomi.transport import Transport, tls_files_digest
from exporter.config import AccountConfig, Config

log = logging.getLogger(__name__)


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
    transport: Transport = field(default_factory=Transport)

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
            transport=transport_of(account),
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
        client = BoomiClient(
            self.account_id,
            base_url=self.base_url,
            username=self.username,
            password=self.password if password is None else password,
            max_requests_per_second=self.max_requests_per_second,
            request_timeout_seconds=self.request_timeout_seconds,
            max_auth_failures=self.max_auth_failures,
            auth_failure_backoff_seconds=self.auth_failure_backoff_seconds,
            gates=gates,
            transport=self.transport,
            on_request=on_request,
        )
        log.info("account %s: requests to Boomi go %s", self.account_id, client.route.describe())
        return client


def transport_of(account: AccountConfig) -> Transport:
    """The account's proxy and TLS settings (http_config names) as the client's value."""
    tls = account.tls_config.client_tls()
    return Transport(
        proxy_url=account.proxy_url.get_secret_value() if account.proxy_url else None,
        no_proxy=account.no_proxy or "",
        proxy_from_environment=account.proxy_from_environment,
        tls=tls,
        files_digest=tls_files_digest(tls),
    )
