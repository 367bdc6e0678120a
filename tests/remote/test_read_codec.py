from __future__ import annotations

import math

import google_crc32c
import numpy as np
import pytest
import snappy
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter._pb import remote_pb2, types_pb2
from tsf_adapter.core.errors import DecodeError, UnsupportedEncodingError
from tsf_adapter.core.selector import Matcher, MatchOp
from tsf_adapter.core.series import STALE_NAN, Labels, SeriesSamples, make_labels
from tsf_adapter.remote.read_codec import (
    ChunkedSeriesAssembler,
    FrameReader,
    ReadQuery,
    ResponseType,
    decode_read_request,
    decode_samples_response,
    decode_streamed_response,
    encode_frame,
    encode_read_request,
    encode_samples_response,
    merge_samples,
)
from tsf_adapter.remote.xor import encode_xor_chunk

UP = make_labels({"__name__": "up", "job": "node"})
QUERY = ReadQuery(1000, 9000, (Matcher("__name__", MatchOp.EQ, "up"), Matcher("job", MatchOp.RE, "n.*")))


def _chunk(ts: list[int], vs: list[float], encoding: int = 1) -> types_pb2.Chunk:
    return types_pb2.Chunk(
        min_time_ms=ts[0],
        max_time_ms=ts[-1],
        type=types_pb2.Chunk.Encoding.ValueType(encoding),
        data=encode_xor_chunk(ts, vs),
    )


def _pb_labels(pairs: Labels | list[tuple[str, str]]) -> list[types_pb2.Label]:
    return [types_pb2.Label(name=n, value=v) for n, v in pairs]


def _frame(chunks: list[types_pb2.Chunk], labels: Labels = UP, index: int = 0) -> bytes:
    series = types_pb2.ChunkedSeries(labels=_pb_labels(labels), chunks=chunks)
    return encode_frame(remote_pb2.ChunkedReadResponse(chunked_series=[series], query_index=index))


# --- requests -----------------------------------------------------------------------------------


def test_read_request_round_trip() -> None:
    body = encode_read_request([QUERY, ReadQuery(-5, 5, ())], [ResponseType.STREAMED_XOR_CHUNKS])
    queries, types = decode_read_request(body)
    assert queries == [QUERY, ReadQuery(-5, 5, ())]
    assert types == [ResponseType.STREAMED_XOR_CHUNKS]


def test_read_request_is_snappy_block_protobuf() -> None:
    request = remote_pb2.ReadRequest()
    request.ParseFromString(snappy.decompress(encode_read_request([QUERY])))
    assert list(request.accepted_response_types) == [1, 0]  # streamed first, SAMPLES as fallback
    assert request.queries[0].matchers[1].type == types_pb2.LabelMatcher.RE


@pytest.mark.parametrize("body", [b"", b"garbage", snappy.compress(b"\xff\xff\xff")], ids=str)
def test_bad_read_request_raises_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_read_request(body)


# --- SAMPLES ------------------------------------------------------------------------------------


def test_samples_response_round_trip_keeps_bits_and_sorts_labels() -> None:
    series = SeriesSamples(UP, [1, 2, 3, 4], [math.inf, STALE_NAN, 5e-324, math.nan])
    body = encode_samples_response([[series], []])
    assert decode_samples_response(body) == [[series], []]


def test_samples_response_canonicalises_labels_and_skips_empty_series() -> None:
    response = remote_pb2.ReadResponse(
        results=[
            remote_pb2.QueryResult(
                timeseries=[
                    types_pb2.TimeSeries(
                        labels=_pb_labels([("job", "node"), ("__name__", "up"), ("empty", "")]),
                        samples=[types_pb2.Sample(timestamp=5, value=1.0)],
                    ),
                    types_pb2.TimeSeries(labels=_pb_labels([("__name__", "histogram_only")])),
                ]
            )
        ]
    )
    [[got]] = decode_samples_response(snappy.compress(response.SerializeToString()))
    assert got == SeriesSamples(UP, [5], [1.0])


def test_samples_response_with_duplicate_label_names_is_rejected() -> None:
    response = remote_pb2.ReadResponse(
        results=[
            remote_pb2.QueryResult(
                timeseries=[
                    types_pb2.TimeSeries(
                        labels=_pb_labels([("a", "1"), ("a", "2")]),
                        samples=[types_pb2.Sample(timestamp=1, value=1.0)],
                    )
                ]
            )
        ]
    )
    with pytest.raises(DecodeError, match="not unique"):
        decode_samples_response(snappy.compress(response.SerializeToString()))


@pytest.mark.parametrize("body", [b"", b"\x00\x01garbage", snappy.compress(b"\x0a\xff")], ids=str)
def test_bad_samples_response_raises_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_samples_response(body)


# --- frames -------------------------------------------------------------------------------------


def test_frames_survive_any_split_of_the_stream() -> None:
    stream = _frame([_chunk([1000, 2000], [1.0, 2.0])]) + _frame([_chunk([3000], [3.0])])
    whole = FrameReader().feed(stream)
    assert len(whole) == 2
    reader = FrameReader()
    one_by_one = [frame for i in range(len(stream)) for frame in reader.feed(stream[i : i + 1])]
    reader.close()
    assert one_by_one == whole
    assert reader.frames_read == 2 and reader.buffered == 0


def _with_bad_crc(frame: bytes) -> bytes:
    corrupt = bytearray(frame)
    corrupt[-1] ^= 0x01
    return bytes(corrupt)


def _oversized_header() -> bytes:
    return bytes([0x80, 0x80, 0x80, 0x40])  # uvarint 2^27 = 128 MiB, no body needed


_GOOD = _frame([_chunk([1000], [1.0])])
_BAD_FRAMES: dict[str, tuple[bytes, str]] = {
    "bad crc": (_with_bad_crc(_GOOD), "CRC32C mismatch"),
    "oversize": (_oversized_header(), "exceeds the limit"),
    "length varint too long": (b"\xff" * 11, "longer than 10 bytes"),
    "not protobuf": (
        b"\x02" + google_crc32c.value(b"\x0a\xff").to_bytes(4, "big") + b"\x0a\xff",
        "invalid protobuf",
    ),
}


@pytest.mark.parametrize(("stream", "message"), list(_BAD_FRAMES.values()), ids=list(_BAD_FRAMES))
def test_bad_frames_raise_decode_error(stream: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        FrameReader().feed(stream)


@pytest.mark.parametrize("cut", [1, 3, 5, len(_GOOD) - 1])
def test_truncated_stream_raises_on_close(cut: int) -> None:
    reader = FrameReader()
    assert reader.feed(_GOOD[:cut]) == []
    with pytest.raises(DecodeError, match="truncated"):
        reader.close()


def test_frame_limit_is_configurable() -> None:
    assert len(FrameReader(max_frame_bytes=len(_GOOD)).feed(_GOOD)) == 1
    with pytest.raises(DecodeError, match="exceeds the limit of 10"):
        FrameReader(max_frame_bytes=10).feed(_GOOD)


# --- assembling series --------------------------------------------------------------------------


def test_series_continues_across_frames_and_is_trimmed_to_the_query() -> None:
    stream = (
        _frame([_chunk([0, 500, 1000, 1500], [0.0, 0.5, 1.0, 1.5])])
        + _frame([_chunk([2000, 9000, 9001], [2.0, -0.0, 9.1])])
        + _frame([_chunk([4000], [4.0])], labels=make_labels({"__name__": "up", "job": "other"}))
    )
    [series] = decode_streamed_response(stream, [QUERY])
    assert series == [
        SeriesSamples(UP, [1000, 1500, 2000, 9000], [1.0, 1.5, 2.0, -0.0]),
        SeriesSamples(make_labels({"__name__": "up", "job": "other"}), [4000], [4.0]),
    ]


def test_overlapping_chunks_are_deduplicated_keeping_the_first() -> None:
    stream = _frame(
        [
            _chunk([1000, 2000, 3000], [1.0, 2.0, 3.0]),
            _chunk([2000, 2500, 3000, 4000], [20.0, 2.5, 30.0, 4.0]),
        ]
    )
    [[series]] = decode_streamed_response(stream, [QUERY])
    assert series == SeriesSamples(UP, [1000, 2000, 2500, 3000, 4000], [1.0, 2.0, 2.5, 3.0, 4.0])


def test_frames_go_to_their_query() -> None:
    second = ReadQuery(0, 100, ())
    stream = _frame([_chunk([1000], [1.0])], index=0) + _frame([_chunk([50, 5000], [5.0, 6.0])], index=1)
    assert decode_streamed_response(stream, [QUERY, second]) == [
        [SeriesSamples(UP, [1000], [1.0])],
        [SeriesSamples(UP, [50], [5.0])],
    ]
    with pytest.raises(DecodeError, match="query 1, but 1 were sent"):
        decode_streamed_response(stream, [QUERY])


@pytest.mark.parametrize("encoding", [0, 2, 3, 4, 5])
def test_unknown_chunk_encoding_is_unsupported(encoding: int) -> None:
    assembler = ChunkedSeriesAssembler([QUERY])
    [frame] = FrameReader().feed(_frame([_chunk([1000], [1.0], encoding=encoding)]))
    with pytest.raises(UnsupportedEncodingError) as info:
        assembler.add(frame)
    assert info.value.encoding == encoding


def test_series_trimmed_to_nothing_is_left_out() -> None:
    assert decode_streamed_response(_frame([_chunk([1, 2], [1.0, 2.0])]), [QUERY]) == [[]]


def test_merge_samples_of_nothing() -> None:
    ts, vs = merge_samples([])
    assert ts.size == vs.size == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 200), min_size=1, max_size=30, unique=True), max_size=6))
def test_merge_samples_is_sorted_unique_and_first_wins(runs: list[list[int]]) -> None:
    parts = [(np.array(sorted(r), dtype=np.int64), np.full(len(r), float(i))) for i, r in enumerate(runs)]
    ts, vs = merge_samples(parts, 10, 150)
    expected: dict[int, float] = {}
    for i, run in enumerate(runs):
        for t in run:
            if 10 <= t <= 150:
                expected.setdefault(t, float(i))
    assert ts.tolist() == sorted(expected)
    assert vs.tolist() == [expected[t] for t in sorted(expected)]
