"""RW1/RW2 codec: byte fixtures, content types, and hypothesis round trips."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import snappy
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter._pb import remote_pb2, types_pb2, write_v2_pb2
from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.protocol import RW1_MESSAGE, RW2_MESSAGE
from tsf_adapter.core.series import STALE_NAN, SeriesSamples, make_labels
from tsf_adapter.remote.codec import (
    PayloadTooLarge,
    content_type,
    decode_write_request,
    decoded_length,
    decompress,
    encode_write_request,
    parse_content_type,
    resolve_refs,
    validate_labels,
)

MESSAGES = [RW1_MESSAGE, RW2_MESSAGE]

label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True)
label_values = st.text(min_size=1, max_size=20)
special_floats = st.sampled_from([math.inf, -math.inf, -0.0, 0.0, STALE_NAN, math.nan, 5e-324, 1.79e308])
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), special_floats)


@st.composite
def series_samples(draw: st.DrawFn, max_samples: int = 200) -> SeriesSamples:
    names = draw(st.lists(label_names, min_size=1, max_size=6, unique=True))
    labels = make_labels([("__name__", "m"), *((n, draw(label_values)) for n in names if n != "__name__")])
    n = draw(st.integers(1, max_samples))
    start = draw(st.integers(-(2**40), 2**41))
    gaps = draw(st.lists(st.integers(1, 10**7), min_size=n, max_size=n))
    timestamps = [start]
    for gap in gaps[1:]:
        timestamps.append(timestamps[-1] + gap)
    vals = draw(st.lists(values, min_size=n, max_size=n))
    return SeriesSamples(labels, timestamps, vals)


def _unique_by_labels(series: list[SeriesSamples]) -> list[SeriesSamples]:
    seen: dict[object, SeriesSamples] = {}
    for s in series:
        seen.setdefault(s.labels, s)
    return list(seen.values())


@pytest.mark.parametrize("message", MESSAGES)
@settings(max_examples=40, deadline=None)
@given(series=st.lists(series_samples(), min_size=0, max_size=8))
def test_round_trip_is_bit_exact(message: str, series: list[SeriesSamples]) -> None:
    series = _unique_by_labels(series)
    body = encode_write_request(series, message=message)
    decoded = decode_write_request(decompress(body, 1 << 30), message=message)
    assert decoded.series == series


@st.composite
def long_series(draw: st.DrawFn) -> SeriesSamples:
    """Up to 10,000 samples: sizes hypothesis draws, contents from a drawn numpy seed."""
    n = draw(st.integers(1, 10_000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gaps = rng.choice([1, 15_000, 60_000, 2**40], size=n, p=[0.2, 0.5, 0.29, 0.01])
    timestamps = draw(st.integers(-(2**40), 2**40)) + np.cumsum(gaps) - gaps[0]
    vals = rng.normal(0, 1e6, size=n)
    specials = np.array([math.inf, -math.inf, -0.0, STALE_NAN, math.nan, 5e-324, 1.79e308])
    picks = rng.random(n) < 0.05
    vals[picks] = rng.choice(specials, size=int(picks.sum()))
    return SeriesSamples(make_labels({"__name__": "long"}), timestamps, vals)


@pytest.mark.parametrize("message", MESSAGES)
@settings(max_examples=5, deadline=None)
@given(series=long_series())
def test_round_trip_long_series(message: str, series: SeriesSamples) -> None:
    body = encode_write_request([series], message=message)
    assert decode_write_request(decompress(body, 1 << 30), message=message).series == [series]


def test_staleness_marker_survives_and_stays_distinct() -> None:
    labels = make_labels({"__name__": "m"})
    body = encode_write_request([SeriesSamples(labels, [1, 2], [STALE_NAN, math.nan])])
    out = decode_write_request(decompress(body, 1 << 20)).series[0]
    bits = [struct.pack("<d", v) for v in out.values.tolist()]
    assert bits[0] == struct.pack("<Q", 0x7FF0000000000002)
    assert bits[1] != bits[0]


def test_rw2_symbols_start_with_empty_string_and_are_shared() -> None:
    a = SeriesSamples(make_labels({"__name__": "m", "job": "x"}), [1], [1.0])
    b = SeriesSamples(make_labels({"__name__": "m", "job": "y"}), [1], [2.0])
    req = write_v2_pb2.Request()
    req.ParseFromString(snappy.uncompress(encode_write_request([a, b], message=RW2_MESSAGE)))
    assert req.symbols[0] == ""
    assert list(req.symbols).count("__name__") == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, RW1_MESSAGE),
        ("", RW1_MESSAGE),
        ("application/x-protobuf", RW1_MESSAGE),
        ("application/x-protobuf;proto=prometheus.WriteRequest", RW1_MESSAGE),
        ("application/x-protobuf; proto=io.prometheus.write.v2.Request", RW2_MESSAGE),
        ("Application/X-Protobuf;proto=io.prometheus.write.v2.Request", RW2_MESSAGE),
        ("application/x-protobuf;proto=io.prometheus.write.v3.Request", None),
        ("application/json", None),
        ("text/plain", None),
    ],
)
def test_parse_content_type(header: str | None, expected: str | None) -> None:
    assert parse_content_type(header) == expected


def test_content_type_round_trips() -> None:
    for message in MESSAGES:
        assert parse_content_type(content_type(message)) == message


def test_decompress_checks_declared_length_before_work() -> None:
    body = snappy.compress(b"x" * 10_000)
    assert decoded_length(body) == 10_000
    with pytest.raises(PayloadTooLarge, match="exceeds limit 9999"):
        decompress(body, 9_999)
    assert decompress(body, 10_000) == b"x" * 10_000


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # length varint never ends
        b"\xff\x06\x00\x00sNaPpY",  # framed snappy stream identifier
        snappy.compress(b"hello world")[:-3],  # truncated
        b"\x05abc",  # declares 5, carries garbage
    ],
)
def test_corrupt_snappy_is_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match="snappy"):
        decompress(body, 1 << 20)


def _rw1_with_labels(pairs: list[tuple[str, str]]) -> bytes:
    req = remote_pb2.WriteRequest()
    ts = req.timeseries.add()
    for n, v in pairs:
        ts.labels.add(name=n, value=v)
    ts.samples.add(value=1.0, timestamp=1)
    return req.SerializeToString()


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        ([("__name__", "m"), ("x", "1"), ("x", "2")], 'label name "x" is not unique'),
        ([("__name__", "m"), ("", "v")], "empty label name"),
    ],
)
def test_invalid_labels_are_rejected(pairs: list[tuple[str, str]], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_write_request(_rw1_with_labels(pairs))


def test_unsorted_labels_and_empty_values_are_canonicalised() -> None:
    out = decode_write_request(_rw1_with_labels([("z", "1"), ("__name__", "m"), ("e", "")]))
    assert out.series[0].labels == (("__name__", "m"), ("z", "1"))


def test_metadata_only_request() -> None:
    req = remote_pb2.WriteRequest()
    req.metadata.add(type=types_pb2.MetricMetadata.GAUGE, metric_family_name="m", help="h")
    out = decode_write_request(req.SerializeToString())
    assert out.metadata == 1 and out.series == [] and out.samples == 0


def test_bad_protobuf_is_decode_error() -> None:
    with pytest.raises(DecodeError, match="protobuf"):
        decode_write_request(b"\x0a\xff\xff\xff\x0f")
    with pytest.raises(DecodeError, match="protobuf"):
        decode_write_request(b"\x22\x05abc", message=RW2_MESSAGE)


@pytest.mark.parametrize(
    ("symbols", "refs", "reason"),
    [
        (["", "a", "b"], [1], "odd number"),
        (["", "a", "b"], [1, 7], "out of range"),
        (["x", "a", "b"], [1, 2], "symbols\\[0\\]"),
    ],
)
def test_rw2_bad_refs(symbols: list[str], refs: list[int], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        resolve_refs(symbols, refs)


def test_validate_labels_accepts_prometheus_quirks() -> None:
    # Prometheus 2.42 stores metric names like "5abc-x"; we do not reject more than it does.
    assert validate_labels([("__name__", "5abc-x")]) == (("__name__", "5abc-x"),)


@settings(max_examples=60, deadline=None)
@given(series=st.lists(series_samples(max_samples=20), min_size=0, max_size=8))
def test_direct_rw1_encoder_parses_to_the_protobuf_reference(series: list[SeriesSamples]) -> None:
    from tsf_adapter.remote.codec import Rw1Encoder, _build_rw1

    encoder = Rw1Encoder(max_cached=3)  # small, so the cache is cleared during the test too
    for _ in range(2):
        ours = remote_pb2.WriteRequest()
        ours.ParseFromString(encoder.encode(series))
        assert ours == _build_rw1(series)
