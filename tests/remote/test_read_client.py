"""RemoteReadClient against a real aiohttp server that answers with our own encoders.

``FakeRemoteRead`` behaves like Prometheus where it matters here: it picks the
first response type it supports, streams whole 4-sample XOR chunks (so they
reach outside the query window), splits a series over frames, and refuses
SAMPLES answers over its sample limit with 400 ``exceeded sample limit``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tsf_adapter._pb import remote_pb2, types_pb2
from tsf_adapter.config import BasicAuth, RemoteReadConfig
from tsf_adapter.core.errors import RecoverableError, RemoteError
from tsf_adapter.core.selector import Matcher, MatchOp, Selector
from tsf_adapter.core.series import STALE_NAN, SeriesSamples, make_labels
from tsf_adapter.remote.read_client import RemoteReadClient, split_range
from tsf_adapter.remote.read_codec import (
    SAMPLES_CONTENT_TYPE,
    STREAMED_CONTENT_TYPE,
    ReadQuery,
    ResponseType,
    decode_read_request,
    encode_frame,
    encode_samples_response,
)
from tsf_adapter.remote.xor import encode_xor_chunk

ServerFactory = Callable[..., Awaitable[TestServer]]

SELECTOR = Selector((Matcher("__name__", MatchOp.EQ, "load"),))
CHUNK_SAMPLES = 4


def _series(job: str, n: int, step: int = 1000, start: int = 10_000) -> SeriesSamples:
    values = np.arange(n, dtype=np.float64) + 0.5
    values[1::7] = -0.0
    values[3::11] = STALE_NAN
    return SeriesSamples(make_labels({"__name__": "load", "job": job}), start + step * np.arange(n), values)


DATA = [_series("a", 60), _series("b", 45, step=1500, start=12_345)]
OTHER = SeriesSamples(make_labels({"__name__": "other"}), [10_000], [1.0])


@dataclass
class FakeRemoteRead:
    series: list[SeriesSamples]
    streamed: bool = True
    chunk_encoding: int = 1
    sample_limit: int | None = None
    fail_status: int | None = None
    fail_body: str = "boom\nsecond line"
    retry_after: str = "7"
    streamed_status: int | None = None
    hang: bool = False
    truncate: bool = False
    corrupt: bool = False
    requests: list[tuple[list[ReadQuery], list[ResponseType]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        queries, types = decode_read_request(await request.read())
        self.requests.append((queries, types))
        self.headers.append(dict(request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # let other requests arrive while this one is "in flight"
            if self.hang:
                await asyncio.Event().wait()
            if self.fail_status is not None:
                return web.Response(
                    status=self.fail_status, text=self.fail_body, headers={"Retry-After": self.retry_after}
                )
            streamed = (
                self.streamed and (types or [ResponseType.SAMPLES])[0] is ResponseType.STREAMED_XOR_CHUNKS
            )
            if streamed and self.streamed_status is not None:
                return web.Response(status=self.streamed_status, text="no streaming for you\n")
            if streamed:
                return await self._stream(request, queries)
            return self._samples(queries)
        finally:
            self.in_flight -= 1

    def _matching(self, query: ReadQuery) -> list[SeriesSamples]:
        selector = Selector(query.matchers)
        return [s for s in self.series if selector.matches(s.labels)]

    def _samples(self, queries: list[ReadQuery]) -> web.Response:
        results = []
        for q in queries:
            found = []
            for s in self._matching(q):
                keep = (s.timestamps >= q.start_ms) & (s.timestamps <= q.end_ms)
                if keep.any():
                    found.append(SeriesSamples(s.labels, s.timestamps[keep], s.values[keep]))
            results.append(found)
        total = sum(len(s) for r in results for s in r)
        if self.sample_limit is not None and total > self.sample_limit:
            return web.Response(status=400, text=f"exceeded sample limit ({self.sample_limit})\n")
        return web.Response(
            body=encode_samples_response(results),
            headers={"Content-Type": SAMPLES_CONTENT_TYPE, "Content-Encoding": "snappy"},
        )

    async def _stream(self, request: web.Request, queries: list[ReadQuery]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": STREAMED_CONTENT_TYPE})
        await resp.prepare(request)
        for index, q in enumerate(queries):
            for s in self._matching(q):
                chunks = []
                for i in range(0, len(s), CHUNK_SAMPLES):
                    ts, vs = s.timestamps[i : i + CHUNK_SAMPLES], s.values[i : i + CHUNK_SAMPLES]
                    if ts[-1] >= q.start_ms and ts[0] <= q.end_ms:  # whole chunks, untrimmed
                        chunks.append(
                            types_pb2.Chunk(
                                min_time_ms=int(ts[0]),
                                max_time_ms=int(ts[-1]),
                                type=types_pb2.Chunk.Encoding.ValueType(self.chunk_encoding),
                                data=encode_xor_chunk(ts, vs),
                            )
                        )
                labels = [types_pb2.Label(name=n, value=v) for n, v in s.labels]
                for i in range(0, len(chunks), 3):  # a series continues over several frames
                    frame = remote_pb2.ChunkedReadResponse(
                        chunked_series=[types_pb2.ChunkedSeries(labels=labels, chunks=chunks[i : i + 3])],
                        query_index=index,
                    )
                    await resp.write(encode_frame(frame))
        if self.truncate:
            await resp.write(encode_frame(remote_pb2.ChunkedReadResponse(query_index=7))[:-1])
        if self.corrupt:
            await resp.write(b"\x02" + bytes(4) + b"\x10\x00")
        await resp.write_eof()
        return resp


@pytest.fixture
def serve(aiohttp_server: ServerFactory) -> Callable[[FakeRemoteRead], Awaitable[str]]:
    async def start(fake: FakeRemoteRead) -> str:
        app = web.Application()
        app.router.add_post("/api/v1/read", fake.handle)
        server = await aiohttp_server(app)
        return str(server.make_url("/api/v1/read"))

    return start


async def _read(
    url: str, start: int = 0, end: int = 200_000, **cfg: Any
) -> tuple[list[SeriesSamples], RemoteReadClient]:
    async with aiohttp.ClientSession() as session:
        client = RemoteReadClient(RemoteReadConfig(url=url, **cfg), session)
        return await client.read(SELECTOR, start, end), client


def _expected(start: int, end: int) -> list[SeriesSamples]:
    out = []
    for s in DATA:
        keep = (s.timestamps >= start) & (s.timestamps <= end)
        out.append(SeriesSamples(s.labels, s.timestamps[keep], s.values[keep]))
    return out


async def test_streamed_read_split_into_sub_queries(
    serve: Callable[[FakeRemoteRead], Awaitable[str]],
) -> None:
    fake = FakeRemoteRead([*DATA, OTHER])
    url = await serve(fake)
    got, client = await _read(url, 11_000, 70_000, max_query_range=7.0, concurrency=2)
    assert got == _expected(11_000, 70_000)
    queries = [q for qs, _ in fake.requests for q in qs]
    assert sorted((q.start_ms, q.end_ms) for q in queries) == split_range(11_000, 70_000, 7000)
    assert all(
        types == [ResponseType.STREAMED_XOR_CHUNKS, ResponseType.SAMPLES] for _, types in fake.requests
    )
    assert client.stats.streamed_responses == len(queries) and client.stats.samples_responses == 0
    assert client.stats.frames > len(queries)
    assert fake.max_in_flight <= 2


def test_split_range_is_closed_and_disjoint() -> None:
    assert split_range(5, 5, 1000) == [(5, 5)]
    assert split_range(0, 1999, 1000) == [(0, 999), (1000, 1999)]
    assert split_range(0, 3, 0) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    with pytest.raises(ValueError, match="before start"):
        split_range(10, 9, 1000)


async def test_sends_remote_read_headers_and_basic_auth(
    serve: Callable[[FakeRemoteRead], Awaitable[str]],
) -> None:
    fake = FakeRemoteRead(DATA)
    url = await serve(fake)
    await _read(url, headers={"X-Scope-OrgID": "team-a"}, basic_auth=BasicAuth(username="u", password="p"))
    headers = fake.headers[0]
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["Content-Encoding"] == "snappy"
    assert headers["X-Prometheus-Remote-Read-Version"] == "0.1.0"
    assert headers["User-Agent"].startswith("tsf-adapter/")
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


async def test_bearer_token_file_is_read_per_request(
    serve: Callable[[FakeRemoteRead], Awaitable[str]], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    fake = FakeRemoteRead(DATA)
    url = await serve(fake)
    async with aiohttp.ClientSession() as session:
        client = RemoteReadClient(RemoteReadConfig(url=url, bearer_token_file=str(token)), session)
        await client.read(SELECTOR, 0, 1000)
        token.write_text("rotated")
        await client.read(SELECTOR, 0, 1000)
    assert [h["Authorization"] for h in fake.headers] == ["Bearer first", "Bearer rotated"]


async def test_falls_back_when_server_answers_samples(
    serve: Callable[[FakeRemoteRead], Awaitable[str]],
) -> None:
    fake = FakeRemoteRead(DATA, streamed=False)
    url = await serve(fake)
    got, client = await _read(url, max_query_range=30.0, concurrency=1)
    assert got == _expected(0, 200_000)
    # The first answer shows the server cannot stream; later requests ask for SAMPLES only.
    assert fake.requests[0][1][0] is ResponseType.STREAMED_XOR_CHUNKS
    assert all(types == [ResponseType.SAMPLES] for _, types in fake.requests[1:])
    assert client.stats.fallbacks == 1 and client.stats.requests == len(fake.requests)


async def test_falls_back_when_streamed_request_gets_400(
    serve: Callable[[FakeRemoteRead], Awaitable[str]],
) -> None:
    fake = FakeRemoteRead(DATA, streamed_status=400)
    url = await serve(fake)
    got, client = await _read(url)
    assert got == _expected(0, 200_000)
    assert [types[0] for _, types in fake.requests] == [
        ResponseType.STREAMED_XOR_CHUNKS,
        ResponseType.SAMPLES,
    ]
    assert client.stats.samples_responses == 1


async def test_falls_back_on_a_chunk_encoding_we_cannot_decode(
    serve: Callable[[FakeRemoteRead], Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeRemoteRead(DATA, chunk_encoding=4)  # XOR2, sent by Prometheus 3.11+
    url = await serve(fake)
    with caplog.at_level(logging.WARNING, logger="tsf_adapter.remote.read"):
        got, client = await _read(url)
    assert got == _expected(0, 200_000)
    assert client.stats.fallbacks == 1
    assert "unsupported chunk encoding 4" in caplog.text


async def test_halves_sub_ranges_over_the_sample_limit(
    serve: Callable[[FakeRemoteRead], Awaitable[str]],
) -> None:
    fake = FakeRemoteRead(DATA, sample_limit=20)
    url = await serve(fake)
    got, client = await _read(url, prefer_streamed=False, concurrency=3)
    assert got == _expected(0, 200_000)
    assert client.stats.halvings > 0
    answered = sorted((q.start_ms, q.end_ms) for qs, _ in fake.requests for q in qs)
    assert answered[0][0] == 0 and answered[-1][1] == 200_000
    # Each retried half starts right after the other ends: no sample is read twice.
    served = [r for r in answered if not any(o != r and o[0] <= r[0] and r[1] <= o[1] for o in answered)]
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(served))


async def test_sample_limit_below_one_millisecond_is_an_error(
    serve: Callable[[FakeRemoteRead], Awaitable[str]],
) -> None:
    fake = FakeRemoteRead([SeriesSamples(make_labels({"__name__": "load"}), [5], [1.0])], sample_limit=0)
    url = await serve(fake)
    with pytest.raises(RemoteError, match="single millisecond 5"):
        await _read(url, 0, 10, prefer_streamed=False)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_recoverable(
    serve: Callable[[FakeRemoteRead], Awaitable[str]], status: int
) -> None:
    url = await serve(FakeRemoteRead(DATA, fail_status=status))
    with pytest.raises(RecoverableError) as info:
        await _read(url)
    assert info.value.status == status and info.value.retry_after == 7.0
    assert str(info.value) == f"remote read: HTTP {status}: boom"


async def test_retry_after_as_an_http_date_is_honoured(
    serve: Callable[[FakeRemoteRead], Awaitable[str]],
) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    url = await serve(FakeRemoteRead(DATA, fail_status=503, retry_after=when))
    with pytest.raises(RecoverableError) as info:
        await _read(url)
    assert info.value.retry_after is not None and 110 <= info.value.retry_after <= 121


@pytest.mark.parametrize("status", [401, 404, 422])
async def test_client_errors_are_not_recoverable(
    serve: Callable[[FakeRemoteRead], Awaitable[str]], status: int
) -> None:
    url = await serve(FakeRemoteRead(DATA, fail_status=status, fail_body="  denied: bad token \n more"))
    with pytest.raises(RemoteError) as info:
        await _read(url)
    assert not isinstance(info.value, RecoverableError)
    assert info.value.status == status and info.value.url == url
    assert str(info.value) == f"remote read: HTTP {status}: denied: bad token"


async def test_other_400_on_samples_is_not_split(serve: Callable[[FakeRemoteRead], Awaitable[str]]) -> None:
    fake = FakeRemoteRead(DATA, fail_status=400, fail_body="bad matcher")
    url = await serve(fake)
    with pytest.raises(RemoteError, match="HTTP 400: bad matcher"):
        await _read(url, prefer_streamed=False)
    assert len(fake.requests) == 1


async def test_connection_refused_is_recoverable(unused_tcp_port: int) -> None:
    with pytest.raises(RecoverableError, match="ClientConnectorError"):
        await _read(f"http://127.0.0.1:{unused_tcp_port}/api/v1/read")


async def test_timeout_is_recoverable(serve: Callable[[FakeRemoteRead], Awaitable[str]]) -> None:
    url = await serve(FakeRemoteRead(DATA, hang=True))
    with pytest.raises(RecoverableError):
        await _read(url, timeout=0.05)


async def test_stream_cut_mid_frame_is_recoverable(serve: Callable[[FakeRemoteRead], Awaitable[str]]) -> None:
    url = await serve(FakeRemoteRead(DATA, truncate=True))
    with pytest.raises(RecoverableError, match="truncated"):
        await _read(url)


async def test_corrupt_stream_is_a_remote_error(serve: Callable[[FakeRemoteRead], Awaitable[str]]) -> None:
    url = await serve(FakeRemoteRead(DATA, corrupt=True))
    with pytest.raises(RemoteError, match="CRC32C mismatch") as info:
        await _read(url)
    assert not isinstance(info.value, RecoverableError)


async def test_failure_in_one_sub_query_cancels_the_rest(
    serve: Callable[[FakeRemoteRead], Awaitable[str]],
) -> None:
    fake = FakeRemoteRead(DATA, fail_status=500)
    url = await serve(fake)
    with pytest.raises(RecoverableError):
        await _read(url, max_query_range=1.0, concurrency=2)
    assert len(fake.requests) < len(split_range(0, 200_000, 1000))


async def test_progress_is_logged_for_split_reads(
    serve: Callable[[FakeRemoteRead], Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    url = await serve(FakeRemoteRead(DATA))
    with caplog.at_level(logging.INFO, logger="tsf_adapter.remote.read"):
        await _read(url, 0, 99_999, max_query_range=50.0)
    assert "2 sub-queries" in caplog.text
    assert "done, 2 series, 105 samples" in caplog.text


def test_concurrency_must_be_positive() -> None:
    async def make() -> None:
        async with aiohttp.ClientSession() as session:
            RemoteReadClient(RemoteReadConfig(concurrency=0), session)

    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(make())
