"""What the remote-read and remote-write clients share: per-request settings and reading an error answer.

Secrets are read from their files at every request so that rotated tokens and
passwords take effect without a restart, as Prometheus does. An error answer is
read the same way on both sides: its one-line reason (``response_reason``) and
its ``Retry-After`` (``retry_after``: delta-seconds or an HTTP date).
"""

from __future__ import annotations

import base64
import email.utils
import math
import ssl
from datetime import UTC
from pathlib import Path
from typing import Final

import aiohttp

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


# Enough of a receiver's error text to explain a drop in one log line, not enough to flood it.
MAX_REASON_CHARS: Final = 256


# Bytes of an error body read at most: the reason is its first line, the rest is never needed.
_MAX_ERROR_BODY: Final = 4096


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``now`` is the wall-clock time (Unix seconds) a date is measured from. A date
    in the past gives 0; anything unparseable gives None (no hint), because a
    bad header must not stop the normal backoff.

    >>> parse_retry_after("120", now=0.0)
    120.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=30.0)
    30.0
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def first_line(body: bytes, limit: int = MAX_REASON_CHARS) -> str:
    """The first non-empty line of a response body, decoded leniently and truncated.

    >>> first_line(b"out of order sample\\nmore detail")
    'out of order sample'
    """
    text = body.decode("utf-8", errors="replace").strip()
    line = text.splitlines()[0].strip() if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


async def response_reason(resp: aiohttp.ClientResponse) -> str:
    """An error answer's reason as one short line: the body's first line, else the HTTP reason phrase.

    Reads at most ``_MAX_ERROR_BODY`` bytes, so a huge error page costs nothing; a body that
    fails to arrive gives the reason phrase rather than an exception.
    """
    try:
        body = await resp.content.read(_MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    return first_line(body) or first_line((resp.reason or "").encode())


def retry_after(resp: aiohttp.ClientResponse, *, now: float) -> float | None:
    """The answer's ``Retry-After`` in seconds from ``now`` (Unix seconds), or None without a usable one."""
    return parse_retry_after(resp.headers.get("Retry-After"), now=now)
