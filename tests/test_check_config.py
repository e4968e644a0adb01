"""The ``--check-config`` summary: every setting a user would check, and never a secret."""

from __future__ import annotations

from pathlib import Path

import trustme

from exporter.check_config import summarize
from exporter.config import parse_config
from tests.test_config import CONTAINER_ID, ENABLED, SECRET, config_text


def test_summarize_and_repr_show_settings_but_no_secret(tmp_path: Path) -> None:
    (tmp_path / "basic").write_text(SECRET)
    configs = [
        parse_config(
            config_text(
                ("accounts.0.password", SECRET),
                ("remediation.auth", {"bearer_token": SECRET}),
                ENABLED,
            )
        ),
        parse_config(
            config_text(
                ("accounts.0.password", "${TOKEN}"),
                ("remediation.auth", {"basic": {"username": "am", "password_file": "basic"}}),
                ENABLED,
                ("remediation.dry_run", False),
            ),
            env={"TOKEN": SECRET},
            base_dir=tmp_path,
        ),
    ]
    for config in configs:
        summary = summarize(config)
        for shown in [
            "acme-AB12CD",
            "https://api.boomi.com/api/rest/v1",
            "BOOMI_TOKEN.ops@acme.example",
            "5 requests/s",
            f"{CONTAINER_ID} (prod-molecule)",
            "every 60s",
            "0.0.0.0:9877",
            "remediation: enabled",
        ]:
            assert shown in summary
        for text in (summary, repr(config), str(config)):
            assert SECRET not in text
    assert "ledger: data/ (storage.path, unless --storage.path), entries kept 30 days" in (
        summarize(configs[0])
    )
    assert "webhook auth: bearer_token" in summarize(configs[0])
    assert "dry run" in summarize(configs[0])
    assert "webhook auth: basic" in summarize(configs[1])
    assert "live" in summarize(configs[1])
    assert "remediation: disabled" in summarize(parse_config(config_text()))
    none_auth = parse_config(config_text(ENABLED, ("remediation.auth", "none")))
    assert "webhook auth: none" in summarize(none_auth)


def test_the_summary_shows_the_proxy_and_tls_but_never_the_proxy_password(
    tmp_path: Path,
) -> None:
    ca_file = tmp_path / "corp-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    proxied = parse_config(
        config_text(
            ("accounts.0.proxy_url", f"http://ops:{SECRET}@proxy.corp.example:3128"),
            ("accounts.0.no_proxy", ".corp.example"),
            ("accounts.0.tls_config", {"ca_file": str(ca_file), "server_name": "api.boomi.com"}),
        )
    )
    summary = summarize(proxied)
    assert "through the proxy http://proxy.corp.example:3128 with credentials" in summary
    assert "except for no_proxy .corp.example" in summary
    assert f"trusting the system CAs and {ca_file}" in summary
    assert "verifying the name api.boomi.com" in summary
    for text in (summary, repr(proxied), str(proxied)):
        assert SECRET not in text
    insecure = summarize(
        parse_config(config_text(("accounts.0.tls_config", {"insecure_skip_verify": True})))
    )
    assert "NOT VERIFIED (insecure_skip_verify)" in insecure
    assert "directly (no proxy)" in insecure
    environment = summarize(parse_config(config_text(("accounts.0.proxy_from_environment", True))))
    assert "HTTPS_PROXY" in environment
