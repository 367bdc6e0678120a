"""The web configuration file (``--web.config.file``): TLS, basic auth and response headers for the
daemon's own HTTP server, in the format Prometheus and its exporters read (exporter-toolkit's).

One file format for every Prometheus-side server means one set of certificates, hashes and
habits for an operator; a file written for node_exporter works here, as long as it uses only the
keys below. Unknown keys are refused, as everywhere in our config, so a key we do not implement
is an error at start rather than a protection silently missing::

    tls_server_config:
      cert_file: server.crt            # relative paths: from this file's directory
      key_file: server.key
      client_ca_file: ca.crt           # with client_auth_type: verify client certificates
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12               # TLS12 (default) or TLS13
      max_version: TLS13
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2b$10$...           # bcrypt hashes only, never passwords
    bearer_token_file: token           # tsf-adapter's own key (see the README's Security section)

An empty file is plain HTTP without authentication, as it is for exporter-toolkit. Every failure
is a ``ConfigError`` naming the file, the dotted key and what was expected, one line each.

>>> plain = load_web_config(None)
>>> plain.tls_server_config, plain.auth_required
(None, False)
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

from tsf_adapter.config import FilePath, Problems, decode_section, read_yaml
from tsf_adapter.config.fields import show
from tsf_adapter.core.errors import ConfigError

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersion = Literal["TLS12", "TLS13"]

_VERSIONS: Final = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's crypto/tls can ask for a client certificate and not verify it; Python's ssl module cannot
# (it has no verify callback), and an unverified certificate proves nothing about the client.
_UNVERIFIED: Final = frozenset({"RequestClientCert", "RequireAnyClientCert"})
_VERIFYING: Final = {
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit's list of response headers, and the values it accepts where the header has few.
# Anything else (Content-Type, Set-Cookie...) would fight with what the handlers send.
ALLOWED_HEADERS: Final[Mapping[str, frozenset[str] | None]] = MappingProxyType(
    {
        "Strict-Transport-Security": None,
        "X-Content-Type-Options": frozenset({"nosniff"}),
        "X-Frame-Options": frozenset({"deny", "sameorigin"}),
        "X-XSS-Protection": None,
        "Content-Security-Policy": None,
    }
)
_HEADER_CASE: Final = {name.lower(): name for name in ALLOWED_HEADERS}  # header names ignore case
# $2a$/$2b$/$2y$, a two-digit cost, then 22 characters of salt and 31 of hash (bcrypt's base64).
_BCRYPT: Final = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_MIN_COST, _MAX_COST = 4, 31


def _no_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSServerConfig:
    """HTTPS, and who may connect: ``client_auth_type`` with ``client_ca_file`` is mutual TLS."""

    cert_file: FilePath
    key_file: FilePath
    client_ca_file: FilePath | None = None
    # exporter-toolkit's default: anyone may connect; authentication is left to basic auth.
    client_auth_type: ClientAuthType = "NoClientCert"
    # exporter-toolkit's default too: TLS 1.0 and 1.1 are broken and refused by current clients.
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion | None = None

    def problems(self) -> Problems:
        if self.client_auth_type in _UNVERIFIED:
            yield (
                "client_auth_type",
                (
                    f"{self.client_auth_type} accepts a client certificate without verifying it, which"
                    " Python's ssl module cannot do; use VerifyClientCertIfGiven or"
                    " RequireAndVerifyClientCert with client_ca_file"
                ),
            )
        elif self.client_auth_type in _VERIFYING and self.client_ca_file is None:
            yield "client_ca_file", f"required with client_auth_type: {self.client_auth_type}"
        elif self.client_auth_type == "NoClientCert" and self.client_ca_file is not None:
            yield (
                "client_auth_type",
                (
                    "client_ca_file is set but no client certificate is asked for; set"
                    " VerifyClientCertIfGiven or RequireAndVerifyClientCert (got NoClientCert)"
                ),
            )
        if self.max_version is not None and _VERSIONS[self.max_version] < _VERSIONS[self.min_version]:
            got = f"{self.max_version} < {self.min_version}"
            yield "max_version", f"must not be below min_version (got {got})"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpServerConfig:
    """Response headers added to every answer, 401s and 404s included."""

    headers: Mapping[str, str] = field(default_factory=_no_mapping)

    def problems(self) -> Problems:
        for name, value in self.headers.items():
            known = _HEADER_CASE.get(name.lower())
            if known is None:
                expected = ", ".join(ALLOWED_HEADERS)
                yield f"headers.{name}", f"not an allowed header (expected one of {expected})"
                continue
            allowed = ALLOWED_HEADERS[known]
            if "\r" in value or "\n" in value:
                yield f"headers.{name}", f"must not contain line breaks (got {show(value)})"
            elif allowed is not None and value.lower() not in allowed:
                yield f"headers.{name}", f"must be one of {', '.join(sorted(allowed))} (got {show(value)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """The whole file; ``basic_auth_users`` maps a user name to a bcrypt hash of its password."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HttpServerConfig = field(default_factory=HttpServerConfig)
    # Hashes stay out of repr(), so that no log line or traceback ever carries one.
    basic_auth_users: Mapping[str, str] = field(default_factory=_no_mapping, repr=False)
    # tsf-adapter's own key: a file holding one token, accepted as "Authorization: Bearer <token>".
    bearer_token_file: FilePath | None = None

    @property
    def auth_required(self) -> bool:
        """Whether every request must authenticate: any credential configured turns it on."""
        return bool(self.basic_auth_users) or self.bearer_token_file is not None

    def problems(self) -> Problems:
        for user, hashed in self.basic_auth_users.items():
            if not user or ":" in user:
                yield f"basic_auth_users.{user}", "a user name must be non-empty and without ':'"
            match = _BCRYPT.fullmatch(hashed)
            # The value is never shown: a hash is a secret too (it can be attacked offline).
            if match is None:
                yield (
                    f"basic_auth_users.{user}",
                    (
                        "not a bcrypt hash (expected $2b$ or $2y$, a cost, then 53 characters, as"
                        " htpasswd -nB or bcrypt.hashpw make; see the README)"
                    ),
                )
            elif not _MIN_COST <= int(match[1]) <= _MAX_COST:
                yield f"basic_auth_users.{user}", f"bcrypt cost must be {_MIN_COST} to {_MAX_COST}"


def load_web_config(path: str | Path | None) -> WebConfig:
    """Read and validate the web config file, and prove its TLS files load; no file: plain HTTP.

    The bearer token and the certificates are read here too, so that any mistake in them is
    reported at start (or refused at reload), not at the first connection.
    """
    if path is None:
        return WebConfig()
    data = read_yaml(path)
    base_dir = Path(path).absolute().parent
    config = decode_section(WebConfig, data, source=str(path), base_dir=base_dir)
    read_bearer_token(config, str(path))
    ssl_context(config, str(path))
    return config


def read_bearer_token(config: WebConfig, source: str) -> bytes | None:
    """The token in ``bearer_token_file`` (surrounding whitespace dropped), None without one."""
    if config.bearer_token_file is None:
        return None
    try:
        token = Path(config.bearer_token_file).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{source}: bearer_token_file: cannot read file: {exc.strerror or exc}") from None
    if not token:
        raise ConfigError(f"{source}: bearer_token_file: the file is empty (expected one token)")
    return token


def ssl_context(config: WebConfig, source: str) -> ssl.SSLContext | None:
    """A server-side ``SSLContext`` for ``web.TCPSite(ssl_context=...)``, None for plain HTTP.

    Raises ``ConfigError`` naming the key whose file does not load (a key that does not match its
    certificate, a file that is not PEM, a key protected by a passphrase).
    """
    tls = config.tls_server_config
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    if tls.max_version is not None:
        context.maximum_version = _VERSIONS[tls.max_version]
    context.set_alpn_protocols(["http/1.1"])
    load_certificates(context, tls, source)
    context.verify_mode = _VERIFYING.get(tls.client_auth_type, ssl.CERT_NONE)
    return context


def load_certificates(context: ssl.SSLContext, tls: TLSServerConfig, source: str) -> None:
    """(Re)load the certificate, key and client CA into ``context``: new connections use them,
    so a renewed certificate is picked up by a reload without a restart."""
    try:
        # A passphrase-protected key must fail here, not make OpenSSL prompt on the terminal.
        context.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{source}: tls_server_config.cert_file: cannot load it with key_file {tls.key_file}"
            f" (expected a PEM certificate and its unencrypted PEM key): {_reason(exc)}"
        ) from None
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{source}: tls_server_config.client_ca_file: cannot load it"
                f" (expected PEM CA certificates): {_reason(exc)}"
            ) from None


def _reason(exc: ssl.SSLError | OSError) -> str:
    """OpenSSL's words without the ``[SSL]`` prefix and the ``(_ssl.c:3926)`` suffix."""
    text = str(getattr(exc, "reason", None) or exc.strerror or exc)
    return re.sub(r"^\[\w+\] | \(_ssl\.c:\d+\)$", "", text)


def probe_ssl_context(config: WebConfig) -> ssl.SSLContext | None:
    """The client side of ``tsf-adapter healthcheck`` against its own daemon, None for plain HTTP.

    The probe connects to a loopback address, which the certificate rarely names, so it does
    not verify the server (it sends nothing but the bearer token, to this host). Where the
    daemon requires client certificates, it presents the server's own pair, which passes when
    one CA signed both (else probe the port with TCP; see the README).
    """
    tls = config.tls_server_config
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls.client_auth_type != "NoClientCert":
        context.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: b"")
    return context
