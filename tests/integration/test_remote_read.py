"""Our remote-read client against a real Prometheus 2.42: every written sample comes back, bit for bit.

Prometheus starts with no scrape configs (an empty TSDB), a sample limit of 500
and 2 KiB frames, so one read of ~1,500 samples per series needs several XOR
chunks, series split over frames and, with SAMPLES, the halving on
``exceeded sample limit``. All series go in with ONE remote-write request: in a
fresh TSDB the first append sets the head's time range, so samples up to ~1.5h
old are accepted only in that first request (PROTOCOL.md §7a, §7b).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import aiohttp
import numpy as np
import pytest
import snappy

from tests.prometheus import PrometheusProcess
from tsf_adapter._pb import remote_pb2, types_pb2
from tsf_adapter.config import RemoteReadConfig
from tsf_adapter.core.selector import Matcher, MatchOp, Selector
from tsf_adapter.core.series import STALE_NAN, SeriesSamples, make_labels
from tsf_adapter.remote.read_client import RemoteReadClient, split_range
from tsf_adapter.remote.read_codec import STREAMED_CONTENT_TYPE, FrameReader, ReadQuery, encode_read_request
from tsf_adapter.remote.xor import decode_xor_chunk, encode_xor_chunk

pytestmark = pytest.mark.integration

METRIC = "rr_test"
SAMPLES_PER_SERIES = 1500
# Prometheus's head cuts a chunk at its time estimate for 120 samples, or at twice that at most.
MAX_SAMPLES_PER_CHUNK = 240
SPECIALS = [math.inf, -math.inf, -0.0, 5e-324, 1.79e308, math.nan, STALE_NAN, 0.0, -0.0]


def _series(rng: np.random.Generator, labels: dict[str, str], n: int, end_ms: int) -> SeriesSamples:
    """Irregular steps (1 ms, seconds, one 10-minute gap for a 64-bit delta-of-delta) and special values."""
    steps = rng.choice([1, 7, 1000, 1000, 1000, 2500, 3001], size=n - 1)
    steps[n // 3] = 600_000
    offsets = np.concatenate([[0], np.cumsum(steps)])
    timestamps = end_ms - offsets[-1] + offsets
    values = np.round(rng.normal(100.0, 30.0, size=n), 3)
    spots = rng.choice(np.arange(1, n - 1), size=len(SPECIALS), replace=False)
    values[spots] = SPECIALS
    return SeriesSamples(make_labels({"__name__": METRIC, **labels}), timestamps, values)


def _write_request(series: list[SeriesSamples]) -> bytes:
    request = remote_pb2.WriteRequest(
        timeseries=[
            types_pb2.TimeSeries(
                labels=[types_pb2.Label(name=n, value=v) for n, v in s.labels],
                samples=[
                    types_pb2.Sample(timestamp=t, value=v)
                    for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True)
                ],
            )
            for s in series
        ]
    )
    return bytes(snappy.compress(request.SerializeToString()))


@pytest.fixture
async def loaded(
    prometheus_factory: Callable[..., PrometheusProcess],
) -> tuple[PrometheusProcess, list[SeriesSamples]]:
    prom = prometheus_factory(
        extra_args=["--storage.remote.read-sample-limit=500", "--storage.remote.read-max-bytes-in-frame=2048"]
    )
    rng = np.random.default_rng(2024)
    end_ms = int(time.time() * 1000) - 60_000
    written = [
        _series(rng, {"k": "a"}, SAMPLES_PER_SERIES, end_ms),
        _series(rng, {"k": "b", "zone": "eu"}, SAMPLES_PER_SERIES, end_ms - 5),
        _series(rng, {"k": "c"}, 300, end_ms - 77),
    ]
    other = SeriesSamples(make_labels({"__name__": "rr_other"}), [end_ms], [1.0])
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{prom.url}/api/v1/write", data=_write_request([*written, other]), headers=headers
        ) as r,
    ):
        assert r.status == 204, await r.text()
    return prom, written


def _without_negative_zero(series: SeriesSamples) -> SeriesSamples:
    """SAMPLES answers are proto3 doubles: -0.0 is not sent and comes back as +0.0 (PROTOCOL.md §4.4)."""
    values = series.values.copy()
    values[(values == 0.0) & np.signbit(values)] = 0.0
    return SeriesSamples(series.labels, series.timestamps, values)


@pytest.mark.parametrize(
    ("streamed", "max_query_range"),
    [
        pytest.param(True, 3 * 3600.0, id="streamed-one-query"),
        pytest.param(True, 600.0, id="streamed-split"),
        pytest.param(False, 3 * 3600.0, id="samples-halving"),
        pytest.param(False, 900.0, id="samples-split-and-halving"),
    ],
)
async def test_read_returns_exactly_what_was_written(
    loaded: tuple[PrometheusProcess, list[SeriesSamples]], streamed: bool, max_query_range: float
) -> None:
    prom, written = loaded
    start = min(int(s.timestamps[0]) for s in written) - 1000
    end = max(int(s.timestamps[-1]) for s in written) + 1000
    cfg = RemoteReadConfig(
        url=f"{prom.url}/api/v1/read",
        prefer_streamed=streamed,
        max_query_range=max_query_range,
        concurrency=3,
    )
    selector = Selector((Matcher("__name__", MatchOp.EQ, METRIC),))
    async with aiohttp.ClientSession() as session:
        client = RemoteReadClient(cfg, session)
        got = await client.read(selector, start, end)

    expected = written if streamed else [_without_negative_zero(s) for s in written]
    assert [s.labels for s in got] == [s.labels for s in expected]
    for g, e in zip(got, expected, strict=True):
        assert g == e, f"{g!r} differs from {e!r}"
    stats = client.stats
    assert stats.fallbacks == 0
    if streamed:
        assert stats.samples_responses == 0
        assert stats.streamed_responses == stats.requests
        # 2 KiB frames: each long series spans several frames and several chunks. The head aims
        # at 120 samples a chunk but cuts by a time estimate, so a chunk may hold up to 240.
        assert stats.frames > 2 * len(written)
        assert stats.chunks >= 2 * SAMPLES_PER_SERIES // MAX_SAMPLES_PER_CHUNK
    else:
        assert stats.streamed_responses == 0
        assert stats.halvings > 0  # 1,500 samples per series against a limit of 500
    sub_queries = len(split_range(start, end, int(max_query_range * 1000)))
    assert sub_queries > 1 if max_query_range < 3600 else sub_queries == 1
    assert stats.requests >= sub_queries


async def test_read_of_a_window_trims_chunks(loaded: tuple[PrometheusProcess, list[SeriesSamples]]) -> None:
    """Chunks reach outside the query window; only samples inside [start, end] come back."""
    prom, written = loaded
    series = written[0]
    start, end = int(series.timestamps[200]), int(series.timestamps[333])
    cfg = RemoteReadConfig(url=f"{prom.url}/api/v1/read")
    selector = Selector((Matcher("__name__", MatchOp.EQ, METRIC), Matcher("k", MatchOp.EQ, "a")))
    async with aiohttp.ClientSession() as session:
        got = await RemoteReadClient(cfg, session).read(selector, start, end)
    assert got == [SeriesSamples(series.labels, series.timestamps[200:334], series.values[200:334])]


async def test_our_encoder_reproduces_prometheus_chunks_byte_for_byte(
    loaded: tuple[PrometheusProcess, list[SeriesSamples]],
) -> None:
    """Decode every chunk Prometheus streams, re-encode it, and compare the bytes."""
    prom, written = loaded
    query = ReadQuery(0, 2**62, (Matcher("__name__", MatchOp.EQ, METRIC),))
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{prom.url}/api/v1/read", data=encode_read_request([query]), headers=headers) as r,
    ):
        assert r.status == 200
        assert r.headers["Content-Type"] == STREAMED_CONTENT_TYPE
        body = await r.read()
    reader = FrameReader()
    chunks = [c for frame in reader.feed(body) for s in frame.chunked_series for c in s.chunks]
    reader.close()
    assert len(chunks) >= sum(len(s) for s in written) // MAX_SAMPLES_PER_CHUNK
    decoded = 0
    for chunk in chunks:
        timestamps, values = decode_xor_chunk(chunk.data)
        decoded += len(timestamps)
        assert encode_xor_chunk(timestamps, values) == chunk.data
    assert decoded == sum(len(s) for s in written)
