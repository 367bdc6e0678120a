"""Per-request HTTP settings shared by the remote-read and remote-write clients.

Secrets are read from their files at every request so that rotated tokens and
passwords take effect without a restart, as Prometheus does.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

from tsf_adapter import __version__
from tsf_adapter.config import HttpClientConfig

USER_AGENT = f"tsf-adapter/{__version__}"


def auth_headers(cfg: HttpClientConfig) -> dict[str, str]:
    """Configured headers plus ``Authorization`` from basic auth or a bearer token file."""
    headers = {"User-Agent": USER_AGENT, **cfg.headers}
    if cfg.basic_auth is not None:
        auth = cfg.basic_auth
        password = auth.password
        if auth.password_file is not None:
            password = Path(auth.password_file).read_text().strip()
        token = base64.b64encode(f"{auth.username}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif cfg.bearer_token_file is not None:
        headers["Authorization"] = f"Bearer {Path(cfg.bearer_token_file).read_text().strip()}"
    return headers


def ssl_context(cfg: HttpClientConfig) -> ssl.SSLContext | None:
    """An SSL context for https URLs, or None to let aiohttp use its default."""
    tls = cfg.tls_config
    if not cfg.url.startswith("https://"):
        return None
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def server_hostname(cfg: HttpClientConfig) -> str | None:
    """The TLS server name to verify, when it differs from the URL's host."""
    return cfg.tls_config.server_name
