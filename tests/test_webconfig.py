"""The --web.config.file format: exporter-toolkit's keys, values and errors that name the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import bcrypt
import pytest

from exporter.webconfig import (
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_web_config,
    summarize_web_config,
)

# A real bcrypt hash (cost 4 keeps the tests fast); its password is "secret".
HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
BASE = Path("/etc/exporter")


def parse(text: str, base_dir: Path = BASE) -> WebConfig:
    return parse_web_config(textwrap.dedent(text), base_dir=base_dir)


def error_of(text: str) -> str:
    with pytest.raises(WebConfigError) as caught:
        parse(text)
    return str(caught.value)


def test_an_empty_file_means_plain_http_without_auth() -> None:
    for text in ["", "{}", "tls_server_config:\nhttp_server_config:\nbasic_auth_users:\n"]:
        config = parse(text)
        assert not config.tls_enabled
        assert config.basic_auth_users == {}
        assert config.http_server_config.headers == {}


def test_the_documented_example_parses_with_the_toolkit_defaults() -> None:
    config = parse(
        f"""
        tls_server_config:
          cert_file: server.crt
          key_file: /abs/server.key
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: clients-ca.pem
        http_server_config:
          headers:
            X-Content-Type-Options: nosniff
            X-Frame-Options: deny
            Strict-Transport-Security: max-age=31536000
        basic_auth_users:
          prometheus: {HASH}
        """
    )
    tls = config.tls_server_config
    assert tls is not None
    # Relative names resolve against the web config file's directory, as the toolkit does.
    assert tls.cert_file == BASE / "server.crt"
    assert tls.key_file == Path("/abs/server.key")
    assert tls.client_ca_file == BASE / "clients-ca.pem"
    assert (tls.min_version, tls.max_version) == ("TLS12", "TLS13")
    assert config.http_server_config.headers == {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "deny",
        "Strict-Transport-Security": "max-age=31536000",
    }
    assert config.basic_auth_users == {"prometheus": HASH}


def test_load_web_config_resolves_against_the_files_directory(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config: {cert_file: a.crt, key_file: a.key}\n")
    tls = load_web_config(path).tls_server_config
    assert tls is not None and tls.cert_file == tmp_path / "a.crt"


def test_an_unreadable_web_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"cannot read web config file .*missing\.yml"):
        load_web_config(tmp_path / "missing.yml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_configs: {}", "tls_server_configs: unknown key"),
        (
            "tls_server_config: {cert_file: a, key_file: b, certfile: c}",
            "tls_server_config.certfile: unknown key",
        ),
        ("http_server_config: {header: {}}", "http_server_config.header: unknown key"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(text: str, expected: str) -> None:
    assert error_of(text) == expected


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_AES_128_GCM_SHA256]}",
            "tls_server_config.cipher_suites",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, curve_preferences: [X25519]}",
            "tls_server_config.curve_preferences",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, prefer_server_cipher_suites: true}",
            "tls_server_config.prefer_server_cipher_suites",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}",
            "tls_server_config.client_allowed_sans",
        ),
        ("http_server_config: {http2: true}", "http_server_config.http2"),
        ("rate_limit: {interval: 1s, burst: 5}", "rate_limit"),
        ("tls_server_config: {cert: '-----BEGIN', key_file: b}", "tls_server_config.cert"),
    ],
)
def test_go_only_toolkit_keys_are_errors_naming_the_key(text: str, key: str) -> None:
    message = error_of(text)
    assert message.startswith(f"{key}: ")
    assert "unknown key" not in message  # they are known; the message says they are unsupported
    assert "remove it" in message or "use " in message


def test_go_only_keys_left_empty_are_accepted() -> None:
    config = parse("tls_server_config: {cert_file: a, key_file: b, cipher_suites: []}")
    assert config.tls_enabled


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config: {cert_file: a}", "tls_server_config.key_file: required"),
        ("tls_server_config: {min_version: TLS13}", "tls_server_config.cert_file: required"),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS9}",
            "tls_server_config.min_version: must be one of: TLS10, TLS11, TLS12, TLS13",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, max_version: TLS12}",
            "tls_server_config.max_version: must not be lower than min_version",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Always}",
            "tls_server_config.client_auth_type: must be one of: NoClientCert,",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b,"
            " client_auth_type: RequireAndVerifyClientCert}",
            "tls_server_config.client_ca_file: required with RequireAndVerifyClientCert",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: ca.pem}",
            "tls_server_config.client_auth_type: must be set when client_ca_file is given",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert}",
            "tls_server_config.client_auth_type: RequireAnyClientCert (a certificate without",
        ),
    ],
)
def test_tls_settings_are_checked(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


@pytest.mark.parametrize(
    "client_auth_type",
    ["NoClientCert", "RequestClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"],
)
def test_the_toolkits_client_auth_types_are_accepted(client_auth_type: str) -> None:
    ca = "" if client_auth_type == "NoClientCert" else ", client_ca_file: ca.pem"
    config = parse(
        f"tls_server_config: {{cert_file: a, key_file: b, client_auth_type: {client_auth_type}{ca}}}"
    )
    assert config.tls_server_config is not None
    assert config.tls_server_config.client_auth_type == client_auth_type


def test_empty_strings_mean_not_set_as_in_the_toolkit() -> None:
    assert not parse("tls_server_config: {cert_file: '', key_file: ''}").tls_enabled
    config = parse("tls_server_config: {cert_file: a, key_file: b, client_ca_file: ''}")
    assert config.tls_server_config is not None
    assert config.tls_server_config.client_ca_file is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            "{X-Powered-By: me}",
            "http_server_config.headers.X-Powered-By: this header cannot be set; allowed:"
            " Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options,"
            " X-XSS-Protection, Content-Security-Policy",
        ),
        (
            "{X-Content-Type-Options: sniff}",
            "http_server_config.headers.X-Content-Type-Options: must be one of: nosniff",
        ),
        (
            "{X-Frame-Options: allow}",
            "http_server_config.headers.X-Frame-Options: must be one of: deny, sameorigin",
        ),
        (
            '{Content-Security-Policy: "a\\r\\nSet-Cookie: x"}',
            "http_server_config.headers.Content-Security-Policy: must be one line",
        ),
    ],
)
def test_only_the_toolkits_headers_and_values_are_allowed(headers: str, expected: str) -> None:
    assert error_of(f"http_server_config: {{headers: {headers}}}").startswith(expected)


def test_a_blank_header_is_left_unset() -> None:
    config = parse("http_server_config: {headers: {X-XSS-Protection: '', X-Frame-Options: deny}}")
    assert config.http_server_config.headers == {"X-Frame-Options": "deny"}


@pytest.mark.parametrize(
    "hashed",
    [
        "secret",  # a password instead of its hash
        "$2y$10$tooShort",
        "$2y$03$" + "a" * 53,  # cost below bcrypt's minimum
        "$1$abc$" + "a" * 53,
        "12345",
    ],
)
def test_basic_auth_users_need_bcrypt_hashes_and_the_value_is_never_shown(hashed: str) -> None:
    message = error_of(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    assert message.startswith("basic_auth_users.prometheus: must be a bcrypt hash")
    assert hashed not in message


@pytest.mark.parametrize("prefix", ["$2y$", "$2b$", "$2a$"])
def test_bcrypt_hash_variants_are_accepted(prefix: str) -> None:
    hashed = prefix + HASH[4:]
    assert parse(f"basic_auth_users: {{prometheus: '{hashed}'}}").basic_auth_users == {
        "prometheus": hashed
    }


def test_a_user_name_with_a_colon_is_refused() -> None:
    assert error_of(f"basic_auth_users: {{'a:b': '{HASH}'}}").startswith(
        "basic_auth_users['a:b']: a user name cannot contain ':'"
    )


def test_yaml_errors_give_the_position_without_quoting_the_document() -> None:
    message = error_of(f"basic_auth_users:\n  prometheus: '{HASH}\n  other: [\n")
    assert message.startswith("invalid YAML at line")
    assert HASH not in message


def test_a_document_that_is_not_a_mapping_is_refused() -> None:
    assert "must be a mapping" in error_of("- tls_server_config")


def test_several_problems_are_one_line_each() -> None:
    assert sorted(error_of("foo: 1\nbar: 2\n").splitlines()) == [
        "bar: unknown key",
        "foo: unknown key",
    ]


EXAMPLE = Path(__file__).resolve().parent.parent / "web-config.example.yml"


def test_the_shipped_example_is_valid_and_its_hash_is_of_the_documented_password() -> None:
    config = load_web_config(EXAMPLE)
    assert config.tls_server_config is not None
    assert config.tls_server_config.cert_file == EXAMPLE.parent / "tls.crt"
    assert config.http_server_config.headers["X-Content-Type-Options"] == "nosniff"
    hashed = config.basic_auth_users["prometheus"]
    assert bcrypt.checkpw(b"change-me", hashed.encode())
    assert '"change-me"' in EXAMPLE.read_text()


def test_the_summary_names_settings_but_no_hash() -> None:
    config = parse(
        f"""
        tls_server_config:
          cert_file: server.crt
          key_file: server.key
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: ca.pem
        http_server_config: {{headers: {{X-Frame-Options: deny}}}}
        basic_auth_users: {{prometheus: '{HASH}'}}
        """
    )
    summary = summarize_web_config(config)
    assert "web TLS: on, TLS12 to TLS13" in summary
    assert "RequireAndVerifyClientCert, trusted CAs in /etc/exporter/ca.pem" in summary
    assert "web basic auth: 1 user(s): prometheus" in summary
    assert "web headers: X-Frame-Options" in summary
    assert HASH not in summary
    assert summarize_web_config(parse("")) == "web TLS: off (plain HTTP)\nweb basic auth: off"
