"""Remote-write codecs: snappy block + protobuf ⇄ ``SeriesSamples``. Pure and synchronous.

Both protocol versions are handled here:

* RW1, ``prometheus.WriteRequest``: full labels with every series.
* RW2, ``io.prometheus.write.v2.Request``: a symbol table, labels as pairs of references.

Snappy is the *block* format (the framed format is what Prometheus rejects as
``snappy: corrupt input``). The uncompressed length is the block's leading
uvarint, so size limits are checked before anything is decompressed.

The receiver's hot path does not go through ``decode_write_request``: see
``tsf_adapter.remote.ingest`` for the cached, bytes-keyed path. This module is the
reference decoder (tests, tools) and the encoder used by the sender, which takes
``SeriesSamples`` and ``SampleBlock`` (many one-sample series at one timestamp, columnar).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import snappy
from google.protobuf.message import DecodeError as ProtobufDecodeError

from tsf_adapter._pb import remote_pb2, write_v2_pb2
from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.protocol import RW1_MESSAGE, RW2_MESSAGE
from tsf_adapter.core.series import Labels, SampleBlock, SeriesSamples, WriteItem, make_labels

RW1_VERSION: Final = "0.1.0"
RW2_VERSION: Final = "2.0.0"
PROTOBUF: Final = "application/x-protobuf"


def content_type(message: str) -> str:
    """The Content-Type a sender puts on a request of this protobuf message."""
    return PROTOBUF if message == RW1_MESSAGE else f"{PROTOBUF};proto={message}"


def version_header(message: str) -> str:
    """``X-Prometheus-Remote-Write-Version`` for this message."""
    return RW1_VERSION if message == RW1_MESSAGE else RW2_VERSION


def parse_content_type(value: str | None) -> str | None:
    """Map a request's Content-Type to the protobuf message it carries, None if unsupported.

    A missing header means RW1: Prometheus 2.42 itself ignores headers, and old
    senders omit them. Parameters other than ``proto`` are ignored.

    >>> parse_content_type("application/x-protobuf;proto=io.prometheus.write.v2.Request")
    'io.prometheus.write.v2.Request'
    """
    if value is None or not value.strip():
        return RW1_MESSAGE
    media, _, params = value.partition(";")
    if media.strip().lower() != PROTOBUF:
        return None
    proto = RW1_MESSAGE
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "proto":
            proto = val.strip().strip('"')
    return proto if proto in (RW1_MESSAGE, RW2_MESSAGE) else None


# --- snappy --------------------------------------------------------------------------------------


def compress(data: bytes) -> bytes:
    """Snappy block format (never the framed format)."""
    out: bytes = snappy.compress(data)
    return out


def decoded_length(body: bytes) -> int:
    """The uncompressed length a snappy block declares in its leading uvarint."""
    result = 0
    for i in range(min(len(body), 10)):
        byte = body[i]
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if result >= 1 << 32:
                break
            return result
    raise DecodeError("snappy: corrupt input (bad length header)")


def decompress(body: bytes, max_length: int) -> bytes:
    """Decompress a snappy block, refusing before work when it declares more than ``max_length``.

    Raises ``DecodeError`` (→ 400) for corrupt input and ``PayloadTooLarge`` (→ 413) for size.
    """
    length = decoded_length(body)
    if length > max_length:
        raise PayloadTooLarge(f"decompressed size {length} exceeds limit {max_length}")
    try:
        out: bytes = snappy.uncompress(body)
    except Exception as exc:  # python-snappy raises its own error types and cramjam's
        raise DecodeError("snappy: corrupt input") from exc
    if len(out) != length:
        raise DecodeError("snappy: corrupt input (length mismatch)")
    return out


class PayloadTooLarge(DecodeError):
    """A request body over a configured size limit (→ HTTP 413)."""


# --- labels ---------------------------------------------------------------------------------------


def validate_labels(pairs: Sequence[tuple[str, str]]) -> Labels:
    """Canonicalise wire labels: sorted, empty values dropped; empty or repeated names rejected.

    Prometheus answers 500 for a repeated name; that is a client error, so we say 400.
    """
    if any(not name for name, _ in pairs):
        raise DecodeError("invalid labels: empty label name")
    try:
        return make_labels(pairs)
    except ValueError as exc:
        raise DecodeError(f"invalid labels: {exc}") from exc


# --- RW1 / RW2 encode -----------------------------------------------------------------------------


def encode_write_request(series: Sequence[WriteItem], *, message: str = RW1_MESSAGE) -> bytes:
    """Serialize and snappy-compress series as an RW1 or RW2 request.

    Labels go out sorted (``Labels`` is canonical) and samples in the order given,
    which callers keep increasing per series. A ``SampleBlock`` goes out as its rows,
    one ``TimeSeries`` each, exactly as the same rows given as ``SeriesSamples`` would.
    """
    if message == RW1_MESSAGE:
        return compress(_RW1_ENCODER.encode(series))
    if message == RW2_MESSAGE:
        return compress(_build_rw2(series).SerializeToString())
    raise ValueError(f"unknown protobuf message {message!r}")


class Rw1Encoder:
    """Writes ``prometheus.WriteRequest`` bytes directly, caching each label set's encoding.

    The daemon writes the same forecast label sets every cycle, one sample each; building
    protobuf objects for them costs ~9 µs a row, most of it labels. Here a label set is
    encoded once (bounded cache) and a row costs a dict lookup and a few byte joins. The
    output parses to exactly what the protobuf serializer produces (property-tested); the
    one difference on the wire is that a value of 0.0 and a timestamp of 0 are written
    rather than omitted, which every protobuf parser reads the same way.
    """

    def __init__(self, max_cached: int = 200_000) -> None:
        self.max_cached = max_cached
        self._labels: dict[Labels, bytes] = {}

    def encode(self, series: Sequence[WriteItem]) -> bytes:
        """The serialized (uncompressed) request."""
        out: list[bytes] = []
        append = out.append
        cache = self._labels
        if len(cache) > self.max_cached:
            cache.clear()
        pack = _SAMPLE_VALUE.pack
        for s in series:
            if isinstance(s, SampleBlock):
                self._encode_block(s, append)
                continue
            block = cache.get(s.labels)
            if block is None:
                block = cache[s.labels] = _label_block(s.labels)
            samples = [
                _sample_entry(pack(0x09, v), t)
                for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True)
            ]
            body = block + b"".join(samples)
            append(b"\x0a" + uvarint(len(body)) + body)
        return b"".join(out)

    def _encode_block(self, rows: SampleBlock, append: Callable[[bytes], None]) -> None:
        """The rows of a block: the timestamp field is shared, so each row costs one join."""
        cache = self._labels
        stamp = b"\x10" + uvarint(rows.timestamp_ms & 0xFFFF_FFFF_FFFF_FFFF)
        sample_len = _SAMPLE_VALUE.size + len(stamp)
        head = b"\x12" + bytes((sample_len,))
        pack = _SAMPLE_VALUE.pack
        for labels, value in zip(rows.labels, rows.values.tolist(), strict=True):
            block = cache.get(labels)
            if block is None:
                block = cache[labels] = _label_block(labels)
            size = len(block) + 2 + sample_len
            append(b"".join((b"\x0a", uvarint(size), block, head, pack(0x09, value), stamp)))


_SAMPLE_VALUE: Final = struct.Struct("<Bd")


def _sample_entry(value_field: bytes, timestamp: int) -> bytes:
    """``TimeSeries.samples`` entry: tag 0x12, length, then value (field 1) and timestamp (field 2)."""
    sample = value_field + b"\x10" + uvarint(timestamp & 0xFFFF_FFFF_FFFF_FFFF)
    return b"\x12" + bytes((len(sample),)) + sample


def _label_block(labels: Labels) -> bytes:
    """The ``TimeSeries.labels`` entries of a label set (names and values are never empty)."""
    parts = []
    for name, value in labels:
        n, v = name.encode(), value.encode()
        label = b"\x0a" + uvarint(len(n)) + n + b"\x12" + uvarint(len(v)) + v
        parts.append(b"\x0a" + uvarint(len(label)) + label)
    return b"".join(parts)


def uvarint(value: int) -> bytes:
    """Protobuf's unsigned varint: 7 bits a byte, low bits first (also frames streamed reads)."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_RW1_ENCODER = Rw1Encoder()


def _as_rows(series: Sequence[WriteItem]) -> list[SeriesSamples]:
    out: list[SeriesSamples] = []
    for s in series:
        if isinstance(s, SampleBlock):
            out.extend(s.rows())
        else:
            out.append(s)
    return out


def _build_rw1(series: Sequence[WriteItem]) -> remote_pb2.WriteRequest:
    """The reference encoding through protobuf objects (tests compare against it)."""
    req = remote_pb2.WriteRequest()
    for s in _as_rows(series):
        ts = req.timeseries.add()
        for name, value in s.labels:
            label = ts.labels.add()
            label.name = name
            label.value = value
        for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True):
            sample = ts.samples.add()
            sample.timestamp = t
            sample.value = v
    return req


def _build_rw2(series: Sequence[WriteItem]) -> write_v2_pb2.Request:
    req = write_v2_pb2.Request()
    symbols: dict[str, int] = {"": 0}
    for s in _as_rows(series):
        ts = req.timeseries.add()
        refs: list[int] = []
        for name, value in s.labels:
            refs.append(symbols.setdefault(name, len(symbols)))
            refs.append(symbols.setdefault(value, len(symbols)))
        ts.labels_refs.extend(refs)
        for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True):
            sample = ts.samples.add()
            sample.timestamp = t
            sample.value = v
    req.symbols.extend(symbols)  # dicts keep insertion order: index == reference
    return req


# --- RW1 / RW2 decode -----------------------------------------------------------------------------


@dataclass(slots=True)
class DecodedWrite:
    """What a write request carried, after validation."""

    series: list[SeriesSamples] = field(default_factory=list)
    metadata: int = 0
    histograms: int = 0
    exemplars: int = 0

    @property
    def samples(self) -> int:
        return sum(len(s) for s in self.series)


def decode_write_request(raw: bytes, *, message: str = RW1_MESSAGE) -> DecodedWrite:
    """Parse an uncompressed RW1/RW2 body into validated series. Raises ``DecodeError``."""
    if message == RW1_MESSAGE:
        return _decode_rw1(raw)
    if message == RW2_MESSAGE:
        return _decode_rw2(raw)
    raise ValueError(f"unknown protobuf message {message!r}")


def _decode_rw1(raw: bytes) -> DecodedWrite:
    req = remote_pb2.WriteRequest()
    try:
        req.ParseFromString(raw)
    except ProtobufDecodeError as exc:
        raise DecodeError("protobuf: cannot parse prometheus.WriteRequest") from exc
    out = DecodedWrite(metadata=len(req.metadata))
    for ts in req.timeseries:
        labels = validate_labels([(lb.name, lb.value) for lb in ts.labels])
        out.histograms += len(ts.histograms)
        out.exemplars += len(ts.exemplars)
        out.series.append(
            SeriesSamples(labels, [s.timestamp for s in ts.samples], [s.value for s in ts.samples])
        )
    return out


def _decode_rw2(raw: bytes) -> DecodedWrite:
    req = write_v2_pb2.Request()
    try:
        req.ParseFromString(raw)
    except ProtobufDecodeError as exc:
        raise DecodeError("protobuf: cannot parse io.prometheus.write.v2.Request") from exc
    symbols = list(req.symbols)
    out = DecodedWrite()
    for ts in req.timeseries:
        labels = validate_labels(resolve_refs(symbols, ts.labels_refs))
        out.histograms += len(ts.histograms)
        out.exemplars += len(ts.exemplars)
        if ts.HasField("metadata"):
            out.metadata += 1
        out.series.append(
            SeriesSamples(labels, [s.timestamp for s in ts.samples], [s.value for s in ts.samples])
        )
    return out


def resolve_refs(symbols: Sequence[str], refs: Sequence[int]) -> list[tuple[str, str]]:
    """Turn RW2 label references into (name, value) pairs, checking every index."""
    if len(refs) % 2:
        raise DecodeError("invalid labels: odd number of label references")
    n = len(symbols)
    if n and symbols[0] != "":
        raise DecodeError('invalid request: symbols[0] must be ""')
    pairs = []
    for i in range(0, len(refs), 2):
        a, b = refs[i], refs[i + 1]
        if a >= n or b >= n:
            raise DecodeError(f"invalid labels: symbol reference {max(a, b)} out of range ({n} symbols)")
        pairs.append((symbols[a], symbols[b]))
    return pairs
