"""Remote-read bytes ⇄ our types: requests, ``SAMPLES`` answers and streamed XOR-chunk frames.

Pure and synchronous, so the HTTP client stays thin and every byte-level rule
is testable without a socket. Two answer formats exist (PROTOCOL.md §3):

* ``SAMPLES``: one snappy-block ``ReadResponse``, one result per query. It is
  capped by the server's sample limit and loses ``-0.0`` (proto3 drops zeros).
* ``STREAMED_XOR_CHUNKS``: uncompressed frames
  ``uvarint(len) | big-endian CRC32-Castagnoli | ChunkedReadResponse``, each
  with at most one series, which may continue in the next frame. Chunks come
  as the TSDB stores them, so they can reach outside the query window and
  overlap each other: the assembler trims and de-duplicates.

Usage::

    reader = FrameReader()
    assembler = ChunkedSeriesAssembler(queries)
    for piece in body_pieces:
        for frame in reader.feed(piece):
            assembler.add(frame)
    reader.close()  # raises DecodeError if the stream stopped mid-frame
    per_query = assembler.result()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import google_crc32c
import numpy as np
import numpy.typing as npt
import snappy
from google.protobuf.message import DecodeError as ProtobufDecodeError

from tsf_adapter._pb import remote_pb2, types_pb2
from tsf_adapter.core.errors import DecodeError, UnsupportedEncodingError
from tsf_adapter.core.selector import Matcher, MatchOp
from tsf_adapter.core.series import Labels, SeriesSamples, make_labels
from tsf_adapter.remote.codec import uvarint
from tsf_adapter.remote.xor import decode_xor_chunk

SAMPLES_CONTENT_TYPE: Final = "application/x-protobuf"
STREAMED_CONTENT_TYPE: Final = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
# Prometheus's own client refuses larger frames; a server may overshoot its
# --storage.remote.read-max-bytes-in-frame a little, never by this much.
DEFAULT_MAX_FRAME_BYTES: Final = 50 * 1024 * 1024
XOR_ENCODING: Final = 1
_U64: Final = (1 << 64) - 1


class ResponseType(IntEnum):
    """``ReadRequest.ResponseType``: the server takes the first one it supports."""

    SAMPLES = 0
    STREAMED_XOR_CHUNKS = 1


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """One remote-read query: samples with ``start_ms <= t <= end_ms`` (closed, as in Prometheus)."""

    start_ms: int
    end_ms: int
    matchers: tuple[Matcher, ...]


# --- requests -----------------------------------------------------------------------------------


def encode_read_request(
    queries: Sequence[ReadQuery],
    accepted_response_types: Sequence[ResponseType] = (
        ResponseType.STREAMED_XOR_CHUNKS,
        ResponseType.SAMPLES,
    ),
) -> bytes:
    """A snappy-block compressed ``ReadRequest``, ready to POST.

    >>> body = encode_read_request([ReadQuery(0, 1000, (Matcher("__name__", MatchOp.EQ, "up"),))])
    >>> decode_read_request(body)[0][0].end_ms
    1000
    """
    request = remote_pb2.ReadRequest(
        queries=[
            remote_pb2.Query(
                start_timestamp_ms=q.start_ms,
                end_timestamp_ms=q.end_ms,
                matchers=[
                    types_pb2.LabelMatcher(
                        type=types_pb2.LabelMatcher.Type.ValueType(m.op), name=m.name, value=m.value
                    )
                    for m in q.matchers
                ],
            )
            for q in queries
        ],
        accepted_response_types=[
            remote_pb2.ReadRequest.ResponseType.ValueType(t) for t in accepted_response_types
        ],
    )
    return bytes(snappy.compress(request.SerializeToString()))


def decode_read_request(body: bytes) -> tuple[list[ReadQuery], list[ResponseType]]:
    """The inverse of :func:`encode_read_request`, for anything that serves remote-read."""
    request = remote_pb2.ReadRequest()
    _parse(request, _uncompress(body), "ReadRequest")
    queries = []
    for q in request.queries:
        try:
            matchers = tuple(Matcher(m.name, MatchOp(m.type), m.value) for m in q.matchers)
        except ValueError as err:  # unknown matcher type or a bad regex
            raise DecodeError(f"ReadRequest: bad matcher: {err}") from None
        queries.append(ReadQuery(q.start_timestamp_ms, q.end_timestamp_ms, matchers))
    try:
        types = [ResponseType(t) for t in request.accepted_response_types]
    except ValueError as err:
        raise DecodeError(f"ReadRequest: {err}") from None
    return queries, types


# --- SAMPLES answers ----------------------------------------------------------------------------


def encode_samples_response(results: Sequence[Sequence[SeriesSamples]]) -> bytes:
    """A snappy-block ``ReadResponse`` with one ``QueryResult`` per query, as Prometheus sends it."""
    response = remote_pb2.ReadResponse(
        results=[
            remote_pb2.QueryResult(
                timeseries=[
                    types_pb2.TimeSeries(
                        labels=[types_pb2.Label(name=n, value=v) for n, v in s.labels],
                        samples=[
                            types_pb2.Sample(value=v, timestamp=t)
                            for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True)
                        ],
                    )
                    for s in series
                ]
            )
            for series in results
        ]
    )
    return bytes(snappy.compress(response.SerializeToString()))


def decode_samples_response(body: bytes) -> list[list[SeriesSamples]]:
    """Decode a ``SAMPLES`` answer into one list of series per query, in query order.

    Series without float samples (histogram-only series) are left out: we forecast floats only.
    """
    response = remote_pb2.ReadResponse()
    _parse(response, _uncompress(body), "ReadResponse")
    out: list[list[SeriesSamples]] = []
    for result in response.results:
        series: list[SeriesSamples] = []
        for ts in result.timeseries:
            n = len(ts.samples)
            if n == 0:
                continue
            timestamps = np.fromiter((s.timestamp for s in ts.samples), dtype=np.int64, count=n)
            values = np.fromiter((s.value for s in ts.samples), dtype=np.float64, count=n)
            series.append(SeriesSamples(_labels(ts.labels), timestamps, values))
        out.append(series)
    return out


# --- streamed XOR chunks ------------------------------------------------------------------------


def encode_frame(message: remote_pb2.ChunkedReadResponse) -> bytes:
    """One stream frame: ``uvarint(len) | CRC32C (big-endian) | message``."""
    data = message.SerializeToString()
    crc: int = google_crc32c.value(data)
    return uvarint(len(data)) + crc.to_bytes(4, "big") + data


class FrameReader:
    """Cut a streamed answer into ``ChunkedReadResponse`` messages as bytes arrive.

    Feed it whatever the socket delivers (any split, even one byte at a time);
    ``feed`` returns the frames completed so far. A frame longer than
    ``max_frame_bytes`` is refused as soon as its length prefix is read, before
    its body is buffered.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.frames_read = 0
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[remote_pb2.ChunkedReadResponse]:
        buf = self._buf
        buf += data
        frames: list[remote_pb2.ChunkedReadResponse] = []
        pos = 0
        while True:
            header = _read_uvarint(buf, pos)
            if header is None:
                break
            length, start = header
            if length > self.max_frame_bytes:
                raise DecodeError(
                    f"remote-read frame of {length} bytes exceeds the limit of {self.max_frame_bytes}"
                )
            end = start + 4 + length
            if len(buf) < end:
                break
            payload = bytes(buf[start + 4 : end])
            expected = int.from_bytes(buf[start : start + 4], "big")
            actual: int = google_crc32c.value(payload)
            if actual != expected:
                raise DecodeError(
                    f"remote-read frame {self.frames_read}: CRC32C mismatch "
                    f"(header {expected:08x}, data {actual:08x})"
                )
            message = remote_pb2.ChunkedReadResponse()
            _parse(message, payload, "ChunkedReadResponse")
            frames.append(message)
            self.frames_read += 1
            pos = end
        del buf[:pos]
        return frames

    def close(self) -> None:
        """Call at end of stream: leftover bytes mean the stream was cut mid-frame."""
        if self._buf:
            raise DecodeError(f"remote-read stream truncated: {len(self._buf)} bytes of an incomplete frame")


class ChunkedSeriesAssembler:
    """Collect streamed frames into one sorted, trimmed, de-duplicated series list per query.

    Chunks are decoded as frames arrive; a series that continues in a later
    frame (same query and labels) is joined to what came before.
    """

    def __init__(self, queries: Sequence[ReadQuery]) -> None:
        self._queries = tuple(queries)
        self._parts: list[dict[Labels, list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]]] = [
            {} for _ in self._queries
        ]
        self.chunks_decoded = 0

    def add(self, frame: remote_pb2.ChunkedReadResponse) -> None:
        """Decode one frame; raises ``UnsupportedEncodingError`` for non-XOR chunks."""
        index = frame.query_index
        if not 0 <= index < len(self._queries):
            raise DecodeError(f"remote-read frame for query {index}, but {len(self._queries)} were sent")
        series = self._parts[index]
        for chunked in frame.chunked_series:
            parts = series.setdefault(_labels(chunked.labels), [])
            for chunk in chunked.chunks:
                if chunk.type != XOR_ENCODING:
                    raise UnsupportedEncodingError(chunk.type)
                parts.append(decode_xor_chunk(chunk.data))
                self.chunks_decoded += 1

    def add_all(self, frames: Iterable[remote_pb2.ChunkedReadResponse]) -> None:
        for frame in frames:
            self.add(frame)

    def result(self) -> list[list[SeriesSamples]]:
        """Series per query in arrival order (Prometheus sends them sorted by labels)."""
        out: list[list[SeriesSamples]] = []
        for query, series in zip(self._queries, self._parts, strict=True):
            merged = []
            for labels, parts in series.items():
                timestamps, values = merge_samples(parts, query.start_ms, query.end_ms)
                if timestamps.size:
                    merged.append(SeriesSamples(labels, timestamps, values))
            out.append(merged)
        return out


def decode_streamed_response(
    body: bytes, queries: Sequence[ReadQuery], max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> list[list[SeriesSamples]]:
    """Decode a whole streamed answer held in memory (tests, small reads)."""
    reader = FrameReader(max_frame_bytes)
    assembler = ChunkedSeriesAssembler(queries)
    assembler.add_all(reader.feed(body))
    reader.close()
    return assembler.result()


def merge_samples(
    parts: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Join sample runs in time order, keep ``[start_ms, end_ms]``, one sample per timestamp.

    On a duplicate timestamp the earlier run wins. Runs that are already in
    order and disjoint (the usual case) are only concatenated.
    """
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    timestamps = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    if start_ms is not None or end_ms is not None:
        keep = np.ones(timestamps.shape, dtype=np.bool_)
        if start_ms is not None:
            keep &= timestamps >= start_ms
        if end_ms is not None:
            keep &= timestamps <= end_ms
        if not keep.all():
            timestamps, values = timestamps[keep], values[keep]
    if timestamps.size > 1 and not bool(np.all(timestamps[1:] > timestamps[:-1])):
        order = np.argsort(timestamps, kind="stable")
        timestamps, values = timestamps[order], values[order]
        first = np.ones(timestamps.shape, dtype=np.bool_)
        first[1:] = timestamps[1:] != timestamps[:-1]
        timestamps, values = timestamps[first], values[first]
    return timestamps, values


# --- helpers ------------------------------------------------------------------------------------


def _labels(pairs: Iterable[types_pb2.Label]) -> Labels:
    try:
        return make_labels((p.name, p.value) for p in pairs)
    except ValueError as err:
        raise DecodeError(f"remote-read series: {err}") from None


def _uncompress(body: bytes) -> bytes:
    try:
        return bytes(snappy.decompress(body))
    except Exception as err:  # python-snappy raises its own UncompressError, not a ValueError
        raise DecodeError(f"snappy: corrupt input ({type(err).__name__})") from None


def _parse(
    message: remote_pb2.ReadRequest | remote_pb2.ReadResponse | remote_pb2.ChunkedReadResponse,
    data: bytes,
    what: str,
) -> None:
    try:
        message.ParseFromString(data)
    except ProtobufDecodeError as err:
        raise DecodeError(f"{what}: invalid protobuf ({err})") from None


def _read_uvarint(buf: bytearray, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None when the buffer ends inside the varint."""
    value = 0
    for i in range(10):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if value > _U64:
                raise DecodeError("remote-read frame length overflows 64 bits")
            return value, pos + i + 1
    raise DecodeError("remote-read frame length: varint longer than 10 bytes")
