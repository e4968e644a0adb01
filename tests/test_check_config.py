"""The ``--check-config`` summary: every setting a user would check, and never a secret."""

from __future__ import annotations

from pathlib import Path

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
