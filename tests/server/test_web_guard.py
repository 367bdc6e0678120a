"""The web config on a real aiohttp server: who gets in, what every answer carries, and TLS.

Each test serves a small application guarded as the daemon guards its own, with routes like
the daemon's (a probe, ``/metrics``, ``POST /-/reload``) and one added after the guard, as a
future endpoint would be.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from tests.tls import Certificates, make_certificates
from tsf_adapter.server.auth import Authenticator
from tsf_adapter.server.web_config import load_web_config
from tsf_adapter.server.web_guard import UNAUTHORIZED_BODY, WebGuard

ServerFactory = Callable[..., Awaitable[TestServer]]

# Cost 4, bcrypt's least: the tests check behaviour, not bcrypt's slowness.
PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
TOKEN = "tok-3f9a2c"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def guard_for(tmp_path: Path, text: str) -> WebGuard:
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = tmp_path / "web.yml"
    path.write_text(text)
    return WebGuard.from_file(path)


def guarded_app(guard: WebGuard) -> tuple[web.Application, list[str]]:
    """The daemon's kinds of routes; ``calls`` records which handlers ran."""
    calls: list[str] = []

    def route(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            calls.append(name)
            return web.Response(text=f"{name}\n")

        return handler

    app = web.Application()
    app.router.add_get("/-/healthy", route("healthy"))
    app.router.add_get("/metrics", route("metrics"))
    app.router.add_post("/-/reload", route("reload"))
    guard.install(app)
    app.router.add_post("/api/v1/future", route("future"))  # added after the guard
    return app, calls


async def fetch(
    server: TestServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, CIMultiDictProxy[str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.make_url(path), headers=headers) as resp,
    ):
        return resp.status, await resp.text(), resp.headers


AUTH_YAML = f"""
basic_auth_users:
  prometheus: {HASH}
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
    X-Frame-Options: deny
"""


async def test_basic_auth_lets_the_right_user_in_and_tells_nothing_to_others(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    app, calls = guarded_app(guard_for(tmp_path, AUTH_YAML))
    server = await aiohttp_server(app)

    status, body, _ = await fetch(server, "GET", "/metrics", basic("prometheus", PASSWORD))
    assert (status, body) == (200, "metrics\n")

    refused = {
        "wrong user": basic("grafana", PASSWORD),
        "wrong password": basic("prometheus", "wrong"),
        "missing": {},
        "empty password": basic("prometheus", ""),
        "not base64": {"Authorization": "Basic !!!"},
        "no colon": {"Authorization": "Basic " + base64.b64encode(b"prometheus").decode()},
        "a bearer token when none is set": {"Authorization": f"Bearer {TOKEN}"},
        "over bcrypt's 72 bytes": basic("prometheus", PASSWORD + "x" * 80),
    }
    answers = set()
    for headers in refused.values():
        status, body, response_headers = await fetch(server, "GET", "/metrics", headers)
        answers.add((status, body, response_headers.get("WWW-Authenticate")))
    assert answers == {(401, UNAUTHORIZED_BODY, 'Basic realm="tsf-adapter"')}
    assert calls == ["metrics"]


async def test_every_endpoint_needs_auth_reload_and_routes_added_later_included(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    app, calls = guarded_app(guard_for(tmp_path, AUTH_YAML))
    server = await aiohttp_server(app)
    for method, path in [
        ("POST", "/-/reload"),
        ("PUT", "/-/reload"),
        ("POST", "/api/v1/future"),
        ("GET", "/-/healthy"),
        ("GET", "/no/such/path"),
    ]:
        status, _, _ = await fetch(server, method, path)
        assert status == 401, (method, path)
    assert calls == []  # no handler ran for a stranger

    ok = basic("prometheus", PASSWORD)
    assert (await fetch(server, "POST", "/-/reload", ok))[0] == 200
    assert (await fetch(server, "POST", "/api/v1/future", ok))[0] == 200
    assert (await fetch(server, "GET", "/no/such/path", ok))[0] == 404
    assert calls == ["reload", "future"]


async def test_bearer_token(tmp_path: Path, aiohttp_server: ServerFactory) -> None:
    guard = guard_for(tmp_path, f"bearer_token_file: token\nbasic_auth_users: {{prometheus: {HASH}}}\n")
    app, _ = guarded_app(guard)
    server = await aiohttp_server(app)
    assert (await fetch(server, "POST", "/-/reload", {"Authorization": f"Bearer {TOKEN}"}))[0] == 200
    assert (await fetch(server, "POST", "/-/reload", {"Authorization": f"bearer {TOKEN}"}))[0] == 200
    for wrong in (TOKEN[:-1], TOKEN + "x", "", "ünïcode"):
        status, body, headers = await fetch(server, "POST", "/-/reload", {"Authorization": f"Bearer {wrong}"})
        assert (status, body) == (401, UNAUTHORIZED_BODY)
        assert headers.getall("WWW-Authenticate") == [
            'Basic realm="tsf-adapter"',
            'Bearer realm="tsf-adapter"',
        ]
    # Either kind of credential is accepted when both are configured.
    assert (await fetch(server, "GET", "/metrics", basic("prometheus", PASSWORD)))[0] == 200


async def test_configured_headers_are_on_every_answer(tmp_path: Path, aiohttp_server: ServerFactory) -> None:
    app, _ = guarded_app(guard_for(tmp_path, AUTH_YAML))
    server = await aiohttp_server(app)
    ok = basic("prometheus", PASSWORD)
    for headers, path, status in [(ok, "/metrics", 200), ({}, "/metrics", 401), (ok, "/nothing", 404)]:
        got, _, response_headers = await fetch(server, "GET", path, headers)
        assert got == status
        assert response_headers["X-Content-Type-Options"] == "nosniff"
        assert response_headers["X-Frame-Options"] == "deny"


async def test_without_a_web_config_nothing_changes(aiohttp_server: ServerFactory) -> None:
    app, calls = guarded_app(WebGuard.from_file(None))
    server = await aiohttp_server(app)
    assert (await fetch(server, "POST", "/-/reload"))[0] == 200
    assert calls == ["reload"]


async def test_update_swaps_the_users_for_the_next_request(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    guard = guard_for(tmp_path, AUTH_YAML)
    app, _ = guarded_app(guard)
    server = await aiohttp_server(app)
    other = bcrypt.hashpw(b"new password", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(f"basic_auth_users: {{prometheus: {other}}}\n")
    guard.update(load_web_config(tmp_path / "web.yml"))
    assert (await fetch(server, "GET", "/metrics", basic("prometheus", PASSWORD)))[0] == 401
    assert (await fetch(server, "GET", "/metrics", basic("prometheus", "new password")))[0] == 200


# --- the verification cache ------------------------------------------------------------------


@pytest.fixture
def checkpw_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every password bcrypt is asked to check."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)  # auth.py looks it up at each call
    return calls


def header(user: str, password: str) -> str:
    return basic(user, password)["Authorization"]


async def test_a_verified_pair_is_checked_by_bcrypt_once(checkpw_calls: list[bytes]) -> None:
    auth = Authenticator({"prometheus": HASH}, None)
    first = await asyncio.gather(*(auth.check(header("prometheus", PASSWORD)) for _ in range(20)))
    later = [await auth.check(header("prometheus", PASSWORD)) for _ in range(20)]
    assert all(first) and all(later)
    assert checkpw_calls == [PASSWORD.encode()]  # 20 at once shared one check; later ones none


async def test_failures_are_not_remembered_and_unknown_users_cost_a_check(checkpw_calls: list[bytes]) -> None:
    auth = Authenticator({"prometheus": HASH}, None)
    for _ in range(3):
        assert not await auth.check(header("prometheus", "wrong"))
    # An unknown user with a configured user's password: bcrypt runs, and the answer is still no.
    assert not await auth.check(header("nobody", PASSWORD))
    assert len(checkpw_calls) == 4


async def test_the_cache_is_bounded(checkpw_calls: list[bytes]) -> None:
    users = {f"u{i}": bcrypt.hashpw(f"p{i}".encode(), bcrypt.gensalt(rounds=4)).decode() for i in range(3)}
    auth = Authenticator(users, None, cache_size=2)
    for i in (0, 1, 2, 0):
        assert await auth.check(header(f"u{i}", f"p{i}"))
    assert len(auth._verified) == 2
    assert len(checkpw_calls) == 4  # u0 was evicted by u2, so it was checked again


# --- TLS -------------------------------------------------------------------------------------


def tls_yaml(certs: Certificates, client_auth: str = "NoClientCert") -> str:
    ca = f"\n  client_ca_file: {certs.ca_crt}" if client_auth != "NoClientCert" else ""
    return f"""
tls_server_config:
  cert_file: {certs.server_crt}
  key_file: {certs.server_key}
  client_auth_type: {client_auth}{ca}
"""


def client_context(certs: Certificates, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca_crt))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


async def tls_get(server: TestServer, context: ssl.SSLContext | None, scheme: str = "https") -> int:
    url = f"{scheme}://127.0.0.1:{server.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context or False) as resp:
        return resp.status


# Which clients each client_auth_type lets in: none (no certificate), ours (signed by the
# client CA), stranger (signed by a CA the server does not trust).
CLIENT_AUTH = [
    ("NoClientCert", {"none", "ours", "stranger"}),  # no certificate asked for, none checked
    ("VerifyClientCertIfGiven", {"none", "ours"}),
    ("RequireAndVerifyClientCert", {"ours"}),
]


@pytest.mark.parametrize(("client_auth", "accepted"), CLIENT_AUTH)
async def test_https_is_served_plain_http_refused_and_client_certificates_checked(
    tmp_path: Path, certs: Certificates, aiohttp_server: ServerFactory, client_auth: str, accepted: set[str]
) -> None:
    guard = guard_for(tmp_path, tls_yaml(certs, client_auth))
    app, calls = guarded_app(guard)
    server = await aiohttp_server(app, ssl=guard.ssl_context)
    clients = {
        "none": client_context(certs),
        "ours": client_context(certs, certs.client_crt, certs.client_key),
        "stranger": client_context(certs, certs.stranger_crt, certs.stranger_key),
    }
    for name, context in clients.items():
        if name in accepted:
            assert await tls_get(server, context) == 200, name
        else:
            with pytest.raises(aiohttp.ClientError):
                await tls_get(server, context)
    with pytest.raises(aiohttp.ClientError):
        await tls_get(server, None, scheme="http")
    assert len(calls) == len(accepted)


async def test_tls_and_basic_auth_together(
    tmp_path: Path, certs: Certificates, aiohttp_server: ServerFactory
) -> None:
    guard = guard_for(tmp_path, tls_yaml(certs) + f"basic_auth_users: {{prometheus: {HASH}}}\n")
    app, _ = guarded_app(guard)
    server = await aiohttp_server(app, ssl=guard.ssl_context)
    url = f"https://127.0.0.1:{server.port}/metrics"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=client_context(certs)) as resp:
            assert resp.status == 401
        ok = basic("prometheus", PASSWORD)
        async with session.get(url, ssl=client_context(certs), headers=ok) as resp:
            assert resp.status == 200
