"""The web config applied to a running server: authentication, response headers and TLS.

``WebGuard.install(app)`` adds one middleware and one response hook, and the server passes
``guard.ssl_context`` to ``web.TCPSite``; nothing else in the application knows about them.

Authentication covers **every** request, as exporter-toolkit's does: every path and method,
the probes, ``/metrics``, unknown paths (401, not 404) and any route added later, so a new
mutating endpoint cannot be left open by forgetting a list. There is no list of exempt paths on
purpose. Probes authenticate like any client (see the README's Security section).

A reload (``update``) swaps the users, token and headers at once for the next request, and
reloads the certificate files into the live TLS context, so a renewed certificate is served
without a restart; a changed ``tls_server_config`` itself needs a restart, as ``server`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from tsf_adapter.server.auth import Authenticator
from tsf_adapter.server.web_config import (
    WebConfig,
    load_certificates,
    load_web_config,
    read_bearer_token,
    ssl_context,
)

logger = logging.getLogger("tsf_adapter.web")


# The same answer to every failure: it never says whether the user, the password or the token
# was wrong, or whether any was sent at all.
UNAUTHORIZED_BODY = "Unauthorized\n"


class WebGuard:
    """One server's web config: build it with :meth:`from_file`, ``install`` it, ``update`` it.

    >>> guard = WebGuard.from_file(None)  # no --web.config.file: plain HTTP, no authentication
    >>> guard.ssl_context is None, guard.config.auth_required
    (True, False)
    """

    def __init__(self, config: WebConfig, source: str) -> None:
        self.source = source
        self.config = config
        self.ssl_context = ssl_context(config, source)
        self._authenticator = _authenticator(config, source)
        self._headers: Mapping[str, str] = config.http_server_config.headers

    @classmethod
    def from_file(cls, path: Path | None) -> WebGuard:
        """The guard for ``--web.config.file``; raises ``ConfigError`` for a bad file."""
        return cls(load_web_config(path), str(path) if path is not None else "<no web config>")

    def install(self, app: web.Application) -> None:
        """Guard every request of ``app`` (before it is started; aiohttp freezes the list then)."""
        app.middlewares.append(self._middleware)
        app.on_response_prepare.append(self._add_headers)

    def update(self, config: WebConfig) -> None:
        """Apply a reloaded (already validated) web config to the requests that follow."""
        old_tls, new_tls = self.config.tls_server_config, config.tls_server_config
        if new_tls != old_tls:
            logger.warning("reload: tls_server_config changed; restart to apply it")
        elif new_tls is not None and self.ssl_context is not None:
            load_certificates(self.ssl_context, new_tls, self.source)
        self._authenticator = _authenticator(config, self.source)
        self._headers = config.http_server_config.headers
        self.config = config

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        authenticator = self._authenticator
        if authenticator is None or await authenticator.check(request.headers.get("Authorization")):
            return await handler(request)
        # Never the header itself: it carries the secret that failed.
        logger.debug("unauthorized: %s %s from %s", request.method, request.path, request.remote)
        response = web.Response(status=401, text=UNAUTHORIZED_BODY)
        for scheme in authenticator.schemes:
            response.headers.add("WWW-Authenticate", f'{scheme} realm="tsf-adapter"')
        return response

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(self._headers)


def _authenticator(config: WebConfig, source: str) -> Authenticator | None:
    if not config.auth_required:
        return None
    return Authenticator(config.basic_auth_users, read_bearer_token(config, source))
