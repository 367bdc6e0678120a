"""RemoteWriteClient against a real aiohttp server acting as the receiver.

Each test scripts the receiver's answers and checks what the client sent and
which error type it turned the answer into (the queue's only input).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from tests.prometheus import free_port
from tsf_adapter.config import BasicAuth, QueueConfig, RemoteWriteConfig
from tsf_adapter.core.errors import RecoverableError, WriteRejected
from tsf_adapter.core.protocol import RW2_MESSAGE
from tsf_adapter.remote.http import MAX_REASON_CHARS, USER_AGENT, first_line, parse_retry_after
from tsf_adapter.remote.write_client import SAMPLES_WRITTEN_HEADER, RemoteWriteClient


@dataclass
class Reply:
    status: int = 204
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds before answering, in real time: the client's timeout is real. A client that gives
    # up first closes the connection, and the test server cancels the handler.
    delay: float = 0.0


@dataclass
class FakeReceiver:
    """A scripted remote-write endpoint: answers ``replies`` in turn, records requests."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    hang: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.hang is not None:
            await self.hang.wait()
        reply = self.replies.pop(0) if self.replies else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


Serve = Callable[..., Awaitable[tuple[FakeReceiver, str]]]


@pytest.fixture
async def serve(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> AsyncIterator[Serve]:
    async def start(*replies: Reply) -> tuple[FakeReceiver, str]:
        receiver = FakeReceiver(list(replies))
        app = web.Application()
        app.router.add_post("/api/v1/write", receiver.handle)
        server = await aiohttp_server(app)
        return receiver, str(server.make_url("/api/v1/write"))

    yield start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def rw_config(url: str, **kwargs: object) -> RemoteWriteConfig:
    queue = kwargs.pop("queue", QueueConfig())
    return RemoteWriteConfig(url=url, queue=queue, **kwargs)  # type: ignore[arg-type]


async def test_rw1_headers_and_body(serve: Serve, session: aiohttp.ClientSession) -> None:
    receiver, url = await serve(Reply(204))
    await RemoteWriteClient(rw_config(url), session).store(b"\x00payload", samples=1)
    [(headers, body)] = receiver.requests
    assert body == b"\x00payload"
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["User-Agent"] == USER_AGENT


async def test_rw2_headers_and_written_header(serve: Serve, session: aiohttp.ClientSession) -> None:
    receiver, url = await serve(Reply(204, headers={SAMPLES_WRITTEN_HEADER: "3"}))
    client = RemoteWriteClient(rw_config(url, protobuf_message=RW2_MESSAGE), session)
    await client.store(b"x", samples=3)
    [(headers, _)] = receiver.requests
    assert headers["Content-Type"] == "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    assert headers["X-Prometheus-Remote-Write-Version"] == "2.0.0"
    assert headers["Content-Encoding"] == "snappy"


async def test_rw2_success_without_written_header_is_rejected(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    # What Prometheus 2.42 does with an RW2 body: 204, nothing written.
    _, url = await serve(Reply(204))
    client = RemoteWriteClient(rw_config(url, protobuf_message=RW2_MESSAGE), session)
    with pytest.raises(WriteRejected, match=r"does not support remote write 2\.0") as info:
        await client.store(b"x", samples=3)
    assert info.value.status == 415
    assert info.value.url == url


async def test_user_headers_cannot_override_protocol_headers(
    serve: Serve, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    receiver, url = await serve(Reply(204))
    cfg = rw_config(
        url,
        headers={"Content-Type": "text/plain", "X-Tenant": "t1"},
        bearer_token_file=str(token),
    )
    await RemoteWriteClient(cfg, session).store(b"x", samples=1)
    [(headers, _)] = receiver.requests
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Tenant"] == "t1"
    assert headers["Authorization"] == "Bearer s3cret"


async def test_basic_auth(serve: Serve, session: aiohttp.ClientSession) -> None:
    receiver, url = await serve(Reply(200))
    cfg = rw_config(url, basic_auth=BasicAuth(username="u", password="p"))
    await RemoteWriteClient(cfg, session).store(b"x", samples=1)
    assert receiver.requests[0][0]["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_recoverable(serve: Serve, session: aiohttp.ClientSession, status: int) -> None:
    _, url = await serve(Reply(status, b"storage is sad\nstack trace"))
    with pytest.raises(RecoverableError) as info:
        await RemoteWriteClient(rw_config(url), session).store(b"x", samples=1)
    assert info.value.status == status
    assert info.value.retry_after is None
    assert str(info.value).endswith(": storage is sad")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("Thu, 01 Jan 1970 00:02:00 GMT", 20.0),  # wall clock fixed at t=100s
        ("Thu, 01 Jan 1970 00:00:30 GMT", 0.0),  # a date in the past: retry now
        ("soon", None),
    ],
)
async def test_retry_after(
    serve: Serve, session: aiohttp.ClientSession, header: str, expected: float | None
) -> None:
    _, url = await serve(Reply(503, headers={"Retry-After": header}))
    client = RemoteWriteClient(rw_config(url), session, wall_clock=lambda: 100.0)
    with pytest.raises(RecoverableError) as info:
        await client.store(b"x", samples=1)
    assert info.value.retry_after == expected


async def test_429_dropped_by_default(serve: Serve, session: aiohttp.ClientSession) -> None:
    _, url = await serve(Reply(429, b"slow down", {"Retry-After": "3"}))
    with pytest.raises(WriteRejected) as info:
        await RemoteWriteClient(rw_config(url), session).store(b"x", samples=1)
    assert info.value.status == 429
    assert not isinstance(info.value, RecoverableError)


async def test_429_retried_when_configured(serve: Serve, session: aiohttp.ClientSession) -> None:
    _, url = await serve(Reply(429, b"slow down", {"Retry-After": "3"}))
    cfg = rw_config(url, queue=QueueConfig(retry_on_http_429=True))
    with pytest.raises(RecoverableError) as info:
        await RemoteWriteClient(cfg, session).store(b"x", samples=1)
    assert (info.value.status, info.value.retry_after) == (429, 3.0)


@pytest.mark.parametrize("status", [400, 401, 404, 413, 415])
async def test_other_4xx_rejected_with_reason(
    serve: Serve, session: aiohttp.ClientSession, status: int
) -> None:
    _, url = await serve(Reply(status, b"\nout of order sample\nsecond line"))
    with pytest.raises(WriteRejected) as info:
        await RemoteWriteClient(rw_config(url), session).store(b"x", samples=1)
    assert info.value.status == status
    assert str(info.value).startswith(f"server returned HTTP status {status} ")
    assert str(info.value).endswith(": out of order sample")


async def test_long_reason_is_truncated(serve: Serve, session: aiohttp.ClientSession) -> None:
    _, url = await serve(Reply(400, b"e" * 100_000))
    with pytest.raises(WriteRejected) as info:
        await RemoteWriteClient(rw_config(url), session).store(b"x", samples=1)
    reason = str(info.value).rsplit(": ", 1)[1]
    assert len(reason) == MAX_REASON_CHARS
    assert reason.endswith("…")


async def test_connection_refused_is_recoverable(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/write"
    with pytest.raises(RecoverableError) as info:
        await RemoteWriteClient(rw_config(url), session).store(b"x", samples=1)
    assert info.value.status is None
    assert info.value.url == url


async def test_timeout_is_recoverable(serve: Serve, session: aiohttp.ClientSession) -> None:
    receiver, url = await serve()
    receiver.hang = asyncio.Event()  # never set: the receiver never answers
    with pytest.raises(RecoverableError, match="timed out"):
        await RemoteWriteClient(rw_config(url, timeout=0.05), session).store(b"x", samples=1)
    receiver.hang.set()


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_retry_after_seconds(seconds: int) -> None:
    assert parse_retry_after(f" {seconds} ", now=12345.0) == float(seconds)


@given(st.integers(min_value=0, max_value=4_000_000_000), st.integers(min_value=0, max_value=10**6))
def test_parse_retry_after_http_date(when: int, delay: int) -> None:
    header = email.utils.formatdate(when + delay, usegmt=True)
    assert parse_retry_after(header, now=float(when)) == float(delay)


@pytest.mark.parametrize("value", [None, "", "  ", "nan", "inf", "-", "Mon, 99 Foo 2024"])
def test_parse_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value, now=0.0) is None


def test_parse_retry_after_negative_is_zero() -> None:
    assert parse_retry_after("-5", now=0.0) == 0.0


@given(st.binary(max_size=600))
def test_first_line_is_one_short_line(body: bytes) -> None:
    line = first_line(body)
    assert "\n" not in line and "\r" not in line
    assert len(line) <= MAX_REASON_CHARS
    assert line == line.strip()
