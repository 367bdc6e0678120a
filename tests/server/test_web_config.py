"""The web config file: what loads, and the exact message for each mistake (file, key, expected)."""

from __future__ import annotations

import ssl
from pathlib import Path

import bcrypt
import pytest

from tests.tls import Certificates, make_certificates
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.server.web_config import load_web_config, ssl_context

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def write(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def test_no_file_and_an_empty_file_mean_plain_http_without_auth(tmp_path: Path) -> None:
    for config in (load_web_config(None), load_web_config(write(tmp_path, "# nothing yet\n"))):
        assert config.tls_server_config is None
        assert not config.auth_required
        assert ssl_context(config, "web.yml") is None


def test_a_full_file_loads_with_paths_from_its_own_directory(tmp_path: Path, certs: Certificates) -> None:
    (tmp_path / "token").write_text("s3cret-token\n")
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_bytes((certs.server_crt.parent / name).read_bytes())
    path = write(
        tmp_path,
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_ca_file: ca.crt
  client_auth_type: RequireAndVerifyClientCert
  min_version: TLS13
http_server_config:
  headers:
    X-Frame-Options: deny
    strict-transport-security: max-age=31536000
basic_auth_users:
  prometheus: {HASH}
bearer_token_file: token
""",
    )
    config = load_web_config(path)
    tls = config.tls_server_config
    assert tls is not None
    assert tls.cert_file == str(tmp_path / "server.crt")
    assert tls.client_ca_file == str(tmp_path / "ca.crt")
    assert config.bearer_token_file == str(tmp_path / "token")
    assert dict(config.basic_auth_users) == {"prometheus": HASH}
    assert config.auth_required
    context = ssl_context(config, str(path))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert HASH not in repr(config)  # a hash is a secret too: never in a log line or traceback


BAD = [
    (
        "tls_server_config: {cert_file: server.crt, key_file: server.key, cipher_suites: [x]}",
        "tls_server_config.cipher_suites: unknown key (expected one of cert_file, key_file,"
        " client_ca_file, client_auth_type, min_version, max_version)",
    ),
    ("tls_server_config: {cert_file: server.crt}", "tls_server_config.key_file: missing required key"),
    (
        "tls_server_config: {cert_file: nope.crt, key_file: server.key}",
        "tls_server_config.cert_file: cannot read file 'nope.crt' (as {dir}/nope.crt):"
        " No such file or directory",
    ),
    (
        "tls_server_config: {cert_file: server.crt, key_file: server.key, min_version: TLS11}",
        "tls_server_config.min_version: must be one of 'TLS12', 'TLS13' (got 'TLS11')",
    ),
    (
        "tls_server_config: {cert_file: server.crt, key_file: server.key, min_version: TLS13,"
        " max_version: TLS12}",
        "tls_server_config.max_version: must not be below min_version (got TLS12 < TLS13)",
    ),
    (
        "tls_server_config: {cert_file: server.crt, key_file: server.key, client_auth_type: Always}",
        "tls_server_config.client_auth_type: must be one of 'NoClientCert', 'RequestClientCert',"
        " 'RequireAnyClientCert', 'VerifyClientCertIfGiven', 'RequireAndVerifyClientCert' (got 'Always')",
    ),
    (
        "tls_server_config: {cert_file: server.crt, key_file: server.key,"
        " client_auth_type: RequireAndVerifyClientCert}",
        "tls_server_config.client_ca_file: required with client_auth_type: RequireAndVerifyClientCert",
    ),
    (
        "tls_server_config: {cert_file: server.crt, key_file: server.key, client_ca_file: ca.crt}",
        "tls_server_config.client_auth_type: client_ca_file is set but no client certificate is asked"
        " for; set VerifyClientCertIfGiven or RequireAndVerifyClientCert (got NoClientCert)",
    ),
    (
        "tls_server_config: {cert_file: server.crt, key_file: server.key, client_ca_file: ca.crt,"
        " client_auth_type: RequireAnyClientCert}",
        "tls_server_config.client_auth_type: RequireAnyClientCert accepts a client certificate without"
        " verifying it, which Python's ssl module cannot do; use VerifyClientCertIfGiven or"
        " RequireAndVerifyClientCert with client_ca_file",
    ),
    (
        "tls_server_config: {cert_file: server.crt, key_file: ca.crt}",
        "tls_server_config.cert_file: cannot load it with key_file {dir}/ca.crt (expected a PEM"
        " certificate and its unencrypted PEM key): PEM lib",
    ),
    (
        "tls_server_config: {cert_file: server.key, key_file: server.key}",
        "tls_server_config.cert_file: cannot load it with key_file {dir}/server.key (expected a PEM"
        " certificate and its unencrypted PEM key): PEM lib",
    ),
    (
        "tls_server_config: {cert_file: server.crt, key_file: server.key, client_ca_file: server.key,"
        " client_auth_type: VerifyClientCertIfGiven}",
        "tls_server_config.client_ca_file: cannot load it (expected PEM CA certificates):"
        " NO_CERTIFICATE_OR_CRL_FOUND",
    ),
    (
        "http_server_config: {headers: {Server: tsf}}",
        "http_server_config.headers.Server: not an allowed header (expected one of"
        " Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection,"
        " Content-Security-Policy)",
    ),
    (
        "http_server_config: {headers: {X-Frame-Options: allow}}",
        "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin (got 'allow')",
    ),
    (
        "http_server_config: {http2: false}",
        "http_server_config.http2: unknown key (expected one of headers)",
    ),
    (
        "basic_auth_users: {prometheus: secret}",
        "basic_auth_users.prometheus: not a bcrypt hash (expected $2b$ or $2y$, a cost, then 53"
        " characters, as htpasswd -nB or bcrypt.hashpw make; see the README)",
    ),
    (
        "basic_auth_users: {prometheus: " + HASH.replace("$04$", "$03$") + "}",
        "basic_auth_users.prometheus: bcrypt cost must be 4 to 31",
    ),
    (
        "basic_auth_users: {prometheus: 42}",
        "basic_auth_users.prometheus: expected a string (got 42); quote it in YAML",
    ),
    ("bearer_token_file: empty", "bearer_token_file: the file is empty (expected one token)"),
    ("bearer_token: abc", "bearer_token: unknown key (did you mean bearer_token_file?)"),
    ("- a list", "expected a mapping (got ['a list'])"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_mistakes_name_the_file_the_key_and_what_was_expected(
    tmp_path: Path, certs: Certificates, text: str, message: str
) -> None:
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_bytes((certs.server_crt.parent / name).read_bytes())
    (tmp_path / "empty").write_text("  \n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    assert str(raised.value) == f"{path}: " + message.format(dir=tmp_path)


def test_every_mistake_is_reported_one_line_each(tmp_path: Path) -> None:
    path = write(
        tmp_path, "basic_auth_users: {a: 42}\nhttp_server_config: {headers: {Server: y}}\nextra: 1\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_web_config(path)
    lines = str(raised.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "basic_auth_users.a",
        "http_server_config.headers.Server",
        "extra",
    ]
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"web\.yml: cannot read config file: No such file"):
        load_web_config(tmp_path / "web.yml")


def test_the_shipped_example_loads(tmp_path: Path, certs: Certificates) -> None:
    """deploy/web-config.example.yml, with its files made real, is a valid web config."""
    example = Path(__file__).resolve().parents[2] / "deploy" / "web-config.example.yml"
    path = tmp_path / "web.yml"
    path.write_bytes(example.read_bytes())
    for mine, theirs in [
        ("server.crt", "tsf-adapter.crt"),
        ("server.key", "tsf-adapter.key"),
        ("ca.crt", "ca.crt"),
    ]:
        (tmp_path / theirs).write_bytes((certs.server_crt.parent / mine).read_bytes())
    (tmp_path / "healthcheck.token").write_text("token\n")
    config = load_web_config(path)
    assert config.auth_required and config.tls_server_config is not None
    assert bcrypt.checkpw(b"change-me", config.basic_auth_users["prometheus"].encode())
