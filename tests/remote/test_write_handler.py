"""The receiver's status contract, through real HTTP against ``build_app``.

Prometheus decides what to do with a batch from the status code alone (drop on
4xx, resend on 5xx), so each answer is pinned here with its one-line reason,
and the self-metrics are read back with ``registry.get_sample_value`` the way
client_python's own tests do. The sink is the recording one from the ingest
tests; the slow and failing sinks below are the only fakes, at that seam.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from tests.remote.test_ingest import RecordingSink
from tsf_adapter._pb import remote_pb2, types_pb2, write_v2_pb2
from tsf_adapter.config import Config, ServerConfig
from tsf_adapter.core.lifecycle import Readiness
from tsf_adapter.core.protocol import RW1_MESSAGE, RW2_MESSAGE
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.core.series import STALE_NAN, SeriesSamples, make_labels
from tsf_adapter.remote.codec import compress, content_type, encode_write_request
from tsf_adapter.remote.ingest import SampleSink
from tsf_adapter.remote.write_handler import EXEMPLARS_WRITTEN, HISTOGRAMS_WRITTEN, SAMPLES_WRITTEN
from tsf_adapter.server.app import build_app

T0 = 1_700_000_000_000
KEEP = parse_selector('{__name__=~"keep_.+"}')
HANG_GUARD = 30.0  # seconds; only against a hang, never a speed assertion

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[tuple[Client, CollectorRegistry]]]


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(f"tsf_adapter_receiver_{name}", labels)
    return 0.0 if value is None else value


def series(name: str, *values: float, **labels: str) -> SeriesSamples:
    ts = [T0 + 1000 * i for i in range(len(values))]
    return SeriesSamples(make_labels({"__name__": name, **labels}), ts, list(values))


def headers(message: str = RW1_MESSAGE) -> dict[str, str]:
    version = "0.1.0" if message == RW1_MESSAGE else "2.0.0"
    return {
        "Content-Type": content_type(message),
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": version,
    }


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> MakeClient:
    """A client of a fresh app on its own registry; keyword arguments go to ``ServerConfig``."""

    async def make(
        sink: SampleSink | None = None, state: Readiness | None = None, **server: Any
    ) -> tuple[Client, CollectorRegistry]:
        registry = CollectorRegistry()
        config = Config(server=ServerConfig(**server))
        app = build_app(
            config,
            sink if sink is not None else RecordingSink(),
            selectors=[KEEP],
            registry=registry,
            state=state,
        )
        return await aiohttp_client(app), registry

    return make


async def post(client: Client, body: bytes, hdrs: dict[str, str] | None = None) -> tuple[int, str]:
    async with client.post("/api/v1/write", data=body, headers=headers() if hdrs is None else hdrs) as resp:
        return resp.status, await resp.text()


# --- 204 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("message", [RW1_MESSAGE, RW2_MESSAGE])
async def test_selected_samples_reach_the_sink_bit_exact(make_client: MakeClient, message: str) -> None:
    sink = RecordingSink()
    client, registry = await make_client(sink)
    kept = series("keep_a", 1.5, -0.0, STALE_NAN, job="x")
    dropped = series("other", 1.0, 2.0)
    async with client.post(
        "/api/v1/write", data=encode_write_request([kept, dropped], message=message), headers=headers(message)
    ) as resp:
        assert resp.status == 204
        assert await resp.read() == b""
        written = {k: resp.headers.get(k) for k in (SAMPLES_WRITTEN, HISTOGRAMS_WRITTEN, EXEMPLARS_WRITTEN)}
    if message == RW2_MESSAGE:
        # Samples filtered out by design are acknowledged: resending them would not help.
        assert written == {SAMPLES_WRITTEN: "5", HISTOGRAMS_WRITTEN: "0", EXEMPLARS_WRITTEN: "0"}
    else:
        assert written == {SAMPLES_WRITTEN: None, HISTOGRAMS_WRITTEN: None, EXEMPLARS_WRITTEN: None}
    assert sink.rows == [
        (kept.labels, T0, np.float64(1.5).tobytes()),
        (kept.labels, T0 + 1000, np.float64(-0.0).tobytes()),
        (kept.labels, T0 + 2000, np.float64(STALE_NAN).tobytes()),
    ]
    protocol = "v1" if message == RW1_MESSAGE else "v2"
    assert metric(registry, "requests_total", protocol=protocol, code="204") == 1
    assert metric(registry, "samples_received_total") == 3
    assert metric(registry, "samples_dropped_total", reason="unselected") == 2
    assert metric(registry, "series_created_total") == 2
    assert metric(registry, "last_success_timestamp_seconds") > 0


async def test_rw2_histograms_and_exemplars_are_acknowledged_but_not_written(make_client: MakeClient) -> None:
    sink = RecordingSink()
    client, registry = await make_client(sink)
    req = write_v2_pb2.Request(symbols=["", "__name__", "keep_h"])
    ts = req.timeseries.add(labels_refs=[1, 2])
    ts.samples.add(value=2.0, timestamp=T0)
    ts.histograms.add(count_int=3, sum=1.0, timestamp=T0)
    ts.exemplars.add(value=1.0, timestamp=T0)
    async with client.post(
        "/api/v1/write", data=compress(req.SerializeToString()), headers=headers(RW2_MESSAGE)
    ) as resp:
        assert resp.status == 204
        assert resp.headers[SAMPLES_WRITTEN] == "1"
        assert resp.headers[HISTOGRAMS_WRITTEN] == "0"
        assert resp.headers[EXEMPLARS_WRITTEN] == "0"
    assert len(sink.rows) == 1
    assert metric(registry, "samples_dropped_total", reason="histogram") == 1


async def test_metadata_only_requests_are_accepted(make_client: MakeClient) -> None:
    """Prometheus sends these every ``metadata_config.send_interval``: zero series, field 3 only."""
    sink = RecordingSink()
    client, registry = await make_client(sink)
    rw1 = remote_pb2.WriteRequest()
    for name in ("keep_a", "up"):
        rw1.metadata.add(
            type=types_pb2.MetricMetadata.GAUGE, metric_family_name=name, help=f"{name} help", unit=""
        )
    assert await post(client, compress(rw1.SerializeToString())) == (204, "")
    rw2 = write_v2_pb2.Request(symbols=["", "__name__", "keep_a", "help text"])
    rw2.timeseries.add(labels_refs=[1, 2]).metadata.help_ref = 3
    status, _ = await post(client, compress(rw2.SerializeToString()), headers(RW2_MESSAGE))
    assert status == 204
    assert sink.rows == []
    assert metric(registry, "metadata_received_total") == 3


@pytest.mark.parametrize(
    "hdrs",
    [
        {"Content-Type": "application/x-protobuf"},
        {"Content-Type": "Application/X-Protobuf; proto=prometheus.WriteRequest"},
        {"Content-Type": 'application/x-protobuf;charset=utf-8;proto="prometheus.WriteRequest"'},
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "SNAPPY"},
    ],
)
async def test_rw1_content_type_variants(make_client: MakeClient, hdrs: dict[str, str]) -> None:
    sink = RecordingSink()
    client, _ = await make_client(sink)
    assert await post(client, encode_write_request([series("keep_a", 1.0)]), hdrs) == (204, "")
    assert len(sink.rows) == 1


async def test_empty_request_is_ok(make_client: MakeClient) -> None:
    client, _ = await make_client()
    assert await post(client, compress(b"")) == (204, "")


# --- 400 -----------------------------------------------------------------------------------------


def rw1_with_labels(*pairs: tuple[str, str]) -> bytes:
    req = remote_pb2.WriteRequest()
    ts = req.timeseries.add()
    for name, value in pairs:
        ts.labels.add(name=name, value=value)
    ts.samples.add(value=1.0, timestamp=T0)
    return compress(req.SerializeToString())


def rw2_body(symbols: list[str], refs: list[int]) -> bytes:
    req = write_v2_pb2.Request(symbols=symbols)
    req.timeseries.add(labels_refs=refs).samples.add(value=1.0, timestamp=T0)
    return compress(req.SerializeToString())


FRAMED_SNAPPY = b"\xff\x06\x00\x00sNaPpY" + b"\x01\x09\x00\x00\x00\x00\x00\x00" + b"\x00" * 4


@pytest.mark.parametrize(
    ("message", "body", "reason"),
    [
        (RW1_MESSAGE, b"\x05\xff\xff\xff\xff", "snappy: corrupt input"),
        (RW1_MESSAGE, FRAMED_SNAPPY, "snappy: corrupt input"),
        (RW1_MESSAGE, remote_pb2.WriteRequest().SerializeToString() + b"\x0a\x00", "snappy: corrupt input"),
        # A valid block whose header claims one byte more than it holds.
        (RW1_MESSAGE, b"\x04" + compress(b"abc")[1:], "snappy: corrupt input"),
        (RW1_MESSAGE, compress(b"\x0a\x05\x0a\x03"), "protobuf: cannot parse prometheus.WriteRequest"),
        (RW1_MESSAGE, compress(b"\x0a\x02\x0a\x05"), "protobuf: cannot parse prometheus.TimeSeries"),
        (RW1_MESSAGE, compress(b"\x0a\x04\x0a\x02\x0a\xff"), "protobuf: cannot parse a label"),
        (RW1_MESSAGE, rw1_with_labels(("", "x")), "invalid labels: empty label name"),
        (
            RW1_MESSAGE,
            rw1_with_labels(("__name__", "keep_a"), ("x", "1"), ("x", "2")),
            'invalid labels: label name "x" is not unique',
        ),
        (RW2_MESSAGE, compress(b"\x22\x01"), "protobuf: cannot parse io.prometheus.write.v2.Request"),
        (
            RW2_MESSAGE,
            rw2_body(["x", "__name__", "keep_a"], [1, 2]),
            'invalid request: symbols[0] must be ""',
        ),
        (RW2_MESSAGE, rw2_body(["", "__name__"], [1]), "invalid labels: odd number of label references"),
        (
            RW2_MESSAGE,
            rw2_body(["", "__name__", "keep_a"], [1, 7]),
            "invalid labels: symbol reference 7 out of range (3 symbols)",
        ),
    ],
    ids=[
        "snappy-garbage",
        "snappy-framed",
        "uncompressed-protobuf",
        "snappy-length-mismatch",
        "rw1-truncated",
        "rw1-bad-series",
        "rw1-bad-label",
        "rw1-empty-label-name",
        "rw1-duplicate-label",
        "rw2-truncated",
        "rw2-symbol0",
        "rw2-odd-refs",
        "rw2-ref-range",
    ],
)
async def test_bad_requests_get_400_with_a_one_line_reason(
    make_client: MakeClient, message: str, body: bytes, reason: str
) -> None:
    sink = RecordingSink()
    client, registry = await make_client(sink)
    status, text = await post(client, body, headers(message))
    assert (status, text) == (400, reason + "\n")
    assert sink.rows == []
    protocol = "v1" if message == RW1_MESSAGE else "v2"
    assert metric(registry, "requests_total", protocol=protocol, code="400") == 1
    assert metric(registry, "requests_rejected_total", reason="invalid") == 1


async def test_a_bad_series_rejects_the_whole_request(make_client: MakeClient) -> None:
    """Nothing of a 400 request is stored, even the good series before the bad one."""
    sink = RecordingSink()
    client, _ = await make_client(sink)
    good = remote_pb2.WriteRequest()
    good.ParseFromString(b"")
    ts = good.timeseries.add()
    ts.labels.add(name="__name__", value="keep_a")
    ts.samples.add(value=1.0, timestamp=T0)
    bad = good.timeseries.add()
    bad.labels.add(name="", value="x")
    status, _ = await post(client, compress(good.SerializeToString()))
    assert status == 400
    assert sink.rows == []


# --- 415 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hdrs", "reason"),
    [
        ({"Content-Type": "text/plain"}, "unsupported content type 'text/plain'"),
        ({"Content-Type": "application/json"}, "unsupported content type 'application/json'"),
        (
            {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v3.Request"},
            "unsupported content type 'application/x-protobuf;proto=io.prometheus.write.v3.Request'",
        ),
        (
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
            "unsupported content encoding 'gzip'",
        ),
        # aiohttp would decode these itself, or answer 400 when it lacks the codec.
        (
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "zstd"},
            "unsupported content encoding 'zstd'",
        ),
        (
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"},
            "unsupported content encoding 'br'",
        ),
        (
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "deflate"},
            "unsupported content encoding 'deflate'",
        ),
    ],
)
async def test_unsupported_types_and_encodings_get_415(
    make_client: MakeClient, hdrs: dict[str, str], reason: str
) -> None:
    client, registry = await make_client()
    status, text = await post(client, encode_write_request([series("keep_a", 1.0)]), hdrs)
    assert (status, text) == (415, reason + "\n")
    assert metric(registry, "requests_rejected_total", reason="unsupported") == 1


# --- 413 -----------------------------------------------------------------------------------------


async def raw_exchange(client: Client, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes on a fresh connection; return the status and the response head and body."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(HANG_GUARD):
            data = await reader.read(65536)
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1]), data


async def test_a_request_without_content_headers_is_rw1(make_client: MakeClient) -> None:
    """Prometheus 2.42 itself ignores these headers, and old senders omit them."""
    sink = RecordingSink()
    client, _ = await make_client(sink)
    body = encode_write_request([series("keep_a", 1.0)])
    head = b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    status, _ = await raw_exchange(client, head + body)
    assert status == 204
    assert len(sink.rows) == 1


async def test_content_length_over_limit_is_refused_before_the_body_arrives(make_client: MakeClient) -> None:
    """The request declares 1 GB and sends none of it: the answer must not wait for the body."""
    client, registry = await make_client(max_compressed_bytes=1000, max_decompressed_bytes=4000)
    head = (
        b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Encoding: snappy\r\nContent-Length: 1000000000\r\n\r\n"
    )
    status, data = await raw_exchange(client, head)
    assert status == 413
    assert data.endswith(b"body of 1000000000 bytes exceeds limit 1000\n")
    assert metric(registry, "requests_rejected_total", reason="too_large") == 1


async def test_content_length_at_the_limit_is_accepted(make_client: MakeClient) -> None:
    body = encode_write_request([series("keep_a", 1.0)])
    client, _ = await make_client(max_compressed_bytes=len(body), max_decompressed_bytes=4000)
    assert await post(client, body) == (204, "")


async def test_chunked_body_over_limit_gets_413(make_client: MakeClient) -> None:
    """Without a Content-Length the limit is enforced while reading."""
    client, _ = await make_client(max_compressed_bytes=1000, max_decompressed_bytes=4000)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"\x00" * 400

    status, text = await post(client, chunks(), headers())  # type: ignore[arg-type]
    assert (status, text) == (413, "body exceeds limit 1000\n")


async def test_declared_decompressed_size_over_limit_is_refused_without_decompressing(
    make_client: MakeClient,
) -> None:
    """The snappy header claims 1 GiB and the rest is garbage: decompressing would say 400, not 413."""
    client, registry = await make_client(max_compressed_bytes=1000, max_decompressed_bytes=4000)
    bomb = b"\x80\x80\x80\x80\x04" + b"\xfe" * 50
    assert await post(client, bomb) == (413, "decompressed size 1073741824 exceeds limit 4000\n")
    real = encode_write_request([series("keep_a", 1.0, padding="p" * 5000)])
    assert len(real) < 1000
    status, text = await post(client, real)
    assert status == 413
    assert text.startswith("decompressed size ") and text.endswith(" exceeds limit 4000\n")
    assert metric(registry, "requests_rejected_total", reason="too_large") == 2


async def test_a_sender_that_quits_mid_body_is_counted_not_logged_as_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Served like ``tsf-adapter receive`` does (``TestServer`` would cancel the handler instead)."""
    caplog.set_level(logging.INFO)
    registry = CollectorRegistry()
    runner = web.AppRunner(build_app(Config(), RecordingSink(), selectors=[KEEP], registry=registry))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 100\r\n\r\n" + b"\x10" * 10
        )
        await writer.drain()
        await until(lambda: metric(registry, "requests_in_flight") == 1)
        writer.close()
        await until(lambda: metric(registry, "requests_total", protocol="v1", code="400") == 1)
    finally:
        await runner.cleanup()
    assert metric(registry, "requests_rejected_total", reason="invalid") == 1
    assert metric(registry, "requests_in_flight") == 0
    assert "Error handling request" not in caplog.text
    assert "incomplete request body (ConnectionResetError)" in caplog.text


# --- 503 / 500 -----------------------------------------------------------------------------------


class GatedSink(RecordingSink):
    """Holds every ``append`` until the test opens the gate (runs on the ingest worker thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def append(
        self,
        refs: npt.NDArray[np.int64],
        timestamps: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> None:
        if not self.gate.wait(HANG_GUARD):
            raise TimeoutError("gate never opened")
        super().append(refs, timestamps, values)


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_requests_beyond_the_inflight_limit_are_shed_with_503(make_client: MakeClient) -> None:
    sink = GatedSink()
    client, registry = await make_client(sink, max_inflight_requests=2)
    body = encode_write_request([series("keep_a", 1.0)])
    try:
        held = [asyncio.create_task(post(client, body)) for _ in range(2)]
        await until(lambda: metric(registry, "requests_in_flight") == 2)
        assert await post(client, body) == (503, "overloaded: too many requests in flight\n")
        assert metric(registry, "requests_rejected_total", reason="overloaded") == 1
    finally:
        sink.gate.set()
    assert [await task for task in held] == [(204, ""), (204, "")]
    assert metric(registry, "requests_in_flight") == 0
    assert await post(client, body) == (204, "")  # room again
    assert len(sink.rows) == 3


async def test_writes_turned_away_while_starting_are_logged_once_as_a_count(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tsf_adapter.remote.receive")
    state = Readiness(ready=False)
    client, registry = await make_client(RecordingSink(), state=state)
    body = encode_write_request([series("keep_a", 1.0)])
    for _ in range(3):
        assert await post(client, body) == (503, "starting: not ready yet\n")
    ours = [r for r in caplog.records if r.name == "tsf_adapter.remote.receive"]
    # Expected while the backfill runs (the sender resends): nothing above debug per request.
    assert [r.levelno for r in ours] == [logging.DEBUG] * 3
    state.ready = True
    assert await post(client, body) == (204, "")
    assert await post(client, body) == (204, "")
    ours = [r for r in caplog.records if r.name == "tsf_adapter.remote.receive"]
    summary = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert summary == ["answered 503 to 3 remote-write requests while starting; senders resend them"]
    assert metric(registry, "requests_rejected_total", reason="starting") == 3


async def test_stopping_answers_503_and_is_not_ready(make_client: MakeClient) -> None:
    state = Readiness()
    sink = RecordingSink()
    client, registry = await make_client(sink, state=state)
    state.stopping = True
    assert await post(client, encode_write_request([series("keep_a", 1.0)])) == (503, "shutting down\n")
    # Even a request we could not decode: while stopping, the sender should come back later.
    assert await post(client, b"garbage", {"Content-Type": "text/plain"}) == (503, "shutting down\n")
    async with client.get("/-/ready") as resp:
        assert resp.status == 503
        assert await resp.text() == "tsf-adapter is stopping.\n"
    assert sink.rows == []
    assert metric(registry, "requests_rejected_total", reason="stopping") == 2


class FailingSink(RecordingSink):
    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def series_ref(self, labels: Any) -> int | None:
        if self.where == "series_ref":
            raise OSError("store unavailable")
        return super().series_ref(labels)

    def append(self, refs: Any, timestamps: Any, values: Any) -> None:
        raise MemoryError("store full")


@pytest.mark.parametrize("where", ["series_ref", "append"])
async def test_store_failure_is_500_and_the_receiver_keeps_serving(
    make_client: MakeClient, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, registry = await make_client(FailingSink(where))
    body = encode_write_request([series("keep_a", 1.0)])
    assert await post(client, body) == (500, "internal error storing samples\n")
    assert "storing a remote-write request failed" in caplog.text
    assert metric(registry, "requests_rejected_total", reason="internal") == 1
    assert metric(registry, "requests_total", protocol="v1", code="500") == 1
    # Unselected series never reach the store, so they still succeed.
    assert await post(client, encode_write_request([series("other", 1.0)])) == (204, "")


# --- other routes --------------------------------------------------------------------------------


async def test_get_on_the_write_path_is_405(make_client: MakeClient) -> None:
    client, _ = await make_client()
    async with client.get("/api/v1/write") as resp:
        assert resp.status == 405


async def test_ready_follows_the_state_and_healthy_does_not(make_client: MakeClient) -> None:
    state = Readiness(ready=False)
    client, _ = await make_client(state=state)

    async def probe(path: str) -> tuple[int, str]:
        async with client.get(path) as resp:
            return resp.status, await resp.text()

    assert await probe("/-/ready") == (503, "tsf-adapter is not ready: starting.\n")
    assert await probe("/-/healthy") == (200, "tsf-adapter is Healthy.\n")
    state.ready = True
    assert await probe("/-/ready") == (200, "tsf-adapter is Ready.\n")
    state.stopping = True
    assert await probe("/-/ready") == (503, "tsf-adapter is stopping.\n")
    assert await probe("/-/healthy") == (200, "tsf-adapter is Healthy.\n")


async def test_metrics_endpoint_exposes_the_counters(make_client: MakeClient) -> None:
    client, _ = await make_client()
    await post(client, encode_write_request([series("keep_a", 1.0, 2.0)]))
    await post(client, b"junk")
    async with client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    lines = set(text.splitlines())
    assert 'tsf_adapter_receiver_requests_total{code="204",protocol="v1"} 1.0' in lines
    assert 'tsf_adapter_receiver_requests_total{code="400",protocol="v1"} 1.0' in lines
    assert "tsf_adapter_receiver_samples_received_total 2.0" in lines
    assert 'tsf_adapter_receiver_requests_rejected_total{reason="invalid"} 1.0' in lines
    # Every reason is exported from the start, so rate() works before the first rejection.
    assert 'tsf_adapter_receiver_requests_rejected_total{reason="overloaded"} 0.0' in lines
    assert "tsf_adapter_receiver_request_duration_seconds_count 2.0" in lines
    assert not [line for line in lines if re.match(r"\w+_created[{ ]", line)]
