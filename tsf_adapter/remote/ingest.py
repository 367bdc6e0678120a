"""Ingest: where received samples go, and which series are kept.

The receiver decodes requests, keeps the series that match the configured
selectors, and hands their samples to a ``SampleSink`` (the store) in bulk:
numpy arrays of series references, timestamps and values. Series are
registered once (``series_ref``) and referred to by a small integer after
that, so the per-sample path never rebuilds or hashes label sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError as ProtobufDecodeError

from tsf_adapter._pb import receive_pb2, types_pb2, write_v2_pb2
from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.protocol import RW1_MESSAGE, RW2_MESSAGE
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.series import Labels
from tsf_adapter.remote.codec import resolve_refs, uvarint, validate_labels


class SampleSink(Protocol):
    """The store as the receiver sees it."""

    def series_ref(self, labels: Labels) -> int | None:
        """Register a series (idempotent) and return its reference.

        None means the sink does not want this series; its samples are counted
        as dropped and the receiver will not ask again for the same labels.
        """
        ...

    def append(
        self,
        refs: npt.NDArray[np.int64],
        timestamps: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> None:
        """Add samples (milliseconds, float64; the staleness NaN included) in receive order."""
        ...


@dataclass(slots=True)
class IngestResult:
    """What one request contributed; the RW2 ``*-Written`` headers come from here."""

    samples: int = 0  # handed to the sink
    unselected: int = 0  # samples of series no selector keeps (acknowledged, not stored)
    histograms: int = 0  # native histograms: not forecast, acknowledged and dropped
    exemplars: int = 0
    metadata: int = 0
    new_series: int = 0

    @property
    def acknowledged_samples(self) -> int:
        """Float samples the sender may consider written: stored or filtered out by design."""
        return self.samples + self.unselected


_UNKNOWN: Final = -2
_UNSELECTED: Final = -1


class Ingester:
    """Decode write requests, keep series matching the selectors, hand samples to a sink.

    The RW1 hot path parses with ``LazyWriteRequest`` (labels left as bytes) and
    keys series by the concatenated label bytes. Each label is a self-delimiting
    protobuf message, so the concatenation is unambiguous; a label set that some
    sender encodes differently just gets a second key for the same reference.
    Only unseen keys are decoded, validated and matched. The cache is bounded:
    past ``max_cached_keys`` it is cleared, which costs one slow path per series.

    Not thread-safe: the receiver calls it from a single worker thread.

    >>> class Sink:
    ...     def series_ref(self, labels): return 0
    ...     def append(self, refs, timestamps, values): print(values.tolist())
    >>> from tsf_adapter.remote.codec import encode_write_request, decompress
    >>> from tsf_adapter.core.series import SeriesSamples, make_labels
    >>> body = encode_write_request([SeriesSamples(make_labels({"__name__": "up"}), [1], [1.0])])
    >>> from tsf_adapter.core.selector import MatchOp, Matcher, Selector
    >>> up = Selector((Matcher("__name__", MatchOp.EQ, "up"),))
    >>> Ingester(Sink(), [up]).ingest(decompress(body, 1 << 20)).samples
    [1.0]
    1
    """

    def __init__(
        self, sink: SampleSink, selectors: Sequence[Selector], *, max_cached_keys: int = 2_000_000
    ) -> None:
        self.sink = sink
        self.selectors = tuple(selectors)
        self.max_cached_keys = max_cached_keys
        self._rw1_prefixes: dict[bytes, int] = {}  # raw label prefix of one-sample series -> ref
        self._rw1_keys: dict[bytes, int] = {}  # concatenated raw labels -> ref
        self._rw2_keys: dict[tuple[str, ...], int] = {}

    def set_selectors(self, selectors: Sequence[Selector]) -> None:
        """Select other series from now on (a config reload); call it on the ingest thread.

        The caches remember which label sets were unselected, so they are cleared: a series
        the new selectors (or the sink's new targets) want must reach ``series_ref`` again.
        """
        self.selectors = tuple(selectors)
        self._rw1_prefixes.clear()
        self._rw1_keys.clear()
        self._rw2_keys.clear()

    def ingest(self, raw: bytes, message: str = RW1_MESSAGE) -> IngestResult:
        """Decode one uncompressed request and append its selected samples. Raises ``DecodeError``.

        Nothing is appended unless the whole request decodes and validates, so a
        400 never leaves half a request behind.
        """
        if message == RW2_MESSAGE:
            return self._ingest_rw2(raw)
        return self._ingest_rw1(raw)

    def _wanted(self, labels: Labels) -> int:
        if not any(sel.matches(labels) for sel in self.selectors):
            return _UNSELECTED
        ref = self.sink.series_ref(labels)
        return _UNSELECTED if ref is None else ref

    def _ingest_rw1(self, raw: bytes) -> IngestResult:
        req = receive_pb2.RawWriteRequest()
        try:
            req.ParseFromString(raw)
        except ProtobufDecodeError as exc:
            raise DecodeError("protobuf: cannot parse prometheus.WriteRequest") from exc
        result = IngestResult(metadata=len(req.metadata))
        prefixes, keys = self._rw1_prefixes, self._rw1_keys
        if len(keys) + len(prefixes) > self.max_cached_keys:
            prefixes.clear()
            keys.clear()
        refs: list[int] = []  # one per series with samples, repeated by counts below
        counts: list[int] = []
        samples: list[bytes] = []  # serialized prometheus.Sample messages, in order
        add_ref, add_count = refs.append, counts.append
        add_sample, add_samples = samples.append, samples.extend
        new_prefixes: dict[bytes, int] = {}
        new_keys: dict[bytes, int] = {}
        unselected = 0
        for series in req.timeseries:
            # Fast path: labels, then exactly one sample of the common 16-byte shape
            # (0x12 0x10 + value + 6-byte timestamp varint) whose label prefix we know.
            n = len(series)
            if n > 18 and series[n - 18] == 0x12 and series[n - 17] == 0x10:
                ref = prefixes.get(series[: n - 18], _UNKNOWN)
                if ref >= 0:
                    add_ref(ref)
                    add_count(1)
                    add_sample(series[n - 16 :])
                    continue
                if ref == _UNSELECTED:
                    unselected += 1
                    continue
            ref, parsed = self._slow_series(series, result, new_keys, new_prefixes)
            if parsed.samples:
                if ref == _UNSELECTED:
                    unselected += len(parsed.samples)
                else:
                    add_ref(ref)
                    add_count(len(parsed.samples))
                    add_samples(parsed.samples)
        timestamps, values = decode_samples(samples)
        prefixes.update(new_prefixes)
        keys.update(new_keys)
        result.new_series = len(new_keys)
        result.unselected = unselected
        if refs:
            ref_array = np.repeat(np.array(refs, dtype=np.int64), counts)
            self.sink.append(ref_array, timestamps, values)
        result.samples = len(samples)
        return result

    def _slow_series(
        self,
        series: bytes,
        result: IngestResult,
        new_keys: dict[bytes, int],
        new_prefixes: dict[bytes, int],
    ) -> tuple[int, receive_pb2.RawTimeSeries]:
        """Any series not on the fast path: split its fields, look up or resolve its labels."""
        parsed = receive_pb2.RawTimeSeries()
        try:
            parsed.ParseFromString(series)
        except ProtobufDecodeError as exc:
            raise DecodeError("protobuf: cannot parse prometheus.TimeSeries") from exc
        key = b"".join(parsed.labels)
        ref = self._rw1_keys.get(key, _UNKNOWN)
        if ref == _UNKNOWN:
            ref = new_keys.get(key, _UNKNOWN)
            if ref == _UNKNOWN:
                ref = new_keys[key] = self._wanted(_decode_labels(parsed.labels))
        result.histograms += len(parsed.histograms)
        result.exemplars += len(parsed.exemplars)
        # Teach the fast path this series' label prefix, but only when the bytes
        # before its one 16-byte sample are exactly its labels: then the prefix alone
        # determines the labels, whatever sample follows it.
        n = len(series)
        if (
            len(parsed.samples) == 1
            and not parsed.histograms
            and not parsed.exemplars
            and len(parsed.samples[0]) == 16
            and series[n - 18] == 0x12
            and series[: n - 18] == _as_label_fields(parsed.labels)
        ):
            new_prefixes[series[: n - 18]] = ref
        return ref, parsed

    def _ingest_rw2(self, raw: bytes) -> IngestResult:
        req = write_v2_pb2.Request()
        try:
            req.ParseFromString(raw)
        except ProtobufDecodeError as exc:
            raise DecodeError("protobuf: cannot parse io.prometheus.write.v2.Request") from exc
        symbols = list(req.symbols)
        if symbols and symbols[0] != "":
            raise DecodeError('invalid request: symbols[0] must be ""')
        keys = self._rw2_keys
        if len(keys) > self.max_cached_keys:
            keys.clear()
        result = IngestResult()
        refs: list[int] = []
        times: list[int] = []
        values: list[float] = []
        new: dict[tuple[str, ...], int] = {}
        for series in req.timeseries:
            pairs = resolve_refs(symbols, series.labels_refs)
            key = tuple(s for pair in pairs for s in pair)
            ref = keys.get(key, _UNKNOWN)
            if ref == _UNKNOWN:
                ref = new.get(key, _UNKNOWN)
                if ref == _UNKNOWN:
                    ref = new[key] = self._wanted(validate_labels(pairs))
            if ref == _UNSELECTED:
                result.unselected += len(series.samples)
            else:
                for sample in series.samples:
                    refs.append(ref)
                    times.append(sample.timestamp)
                    values.append(sample.value)
            result.histograms += len(series.histograms)
            result.exemplars += len(series.exemplars)
            if series.HasField("metadata"):
                result.metadata += 1
        keys.update(new)
        result.new_series = len(new)
        self._append(refs, times, values, result)
        return result

    def _append(self, refs: list[int], times: list[int], values: list[float], result: IngestResult) -> None:
        if refs:
            self.sink.append(
                np.array(refs, dtype=np.int64),
                np.array(times, dtype=np.int64),
                np.array(values, dtype=np.float64),
            )
        result.samples = len(refs)


_SAMPLE_LEN: Final = 16
_SHAPE_OFFSETS: Final = np.array([0, 9, 10, 11, 12, 13, 14, 15])


def decode_samples(samples: Sequence[bytes]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Decode serialized ``prometheus.Sample`` messages in bulk.

    Nearly every sample on the wire has one shape: ``0x09`` + 8-byte little-endian
    double + ``0x10`` + a 6-byte varint (millisecond timestamps from 2004 to 2109).
    Those are decoded with numpy in one pass; anything else (a value of 0.0 that
    the sender omitted, negative or tiny timestamps, unusual field order) is
    parsed one by one with protobuf, so every valid encoding decodes exactly.
    """
    n = len(samples)
    timestamps = np.empty(n, dtype=np.int64)
    values = np.empty(n, dtype=np.float64)
    if n == 0:
        return timestamps, values
    lengths = np.fromiter(map(len, samples), dtype=np.int64, count=n)
    buf = np.frombuffer(b"".join(samples), dtype=np.uint8)
    ok = lengths == _SAMPLE_LEN
    if ok.all():
        rows = buf.reshape(n, _SAMPLE_LEN)
    else:
        starts = np.cumsum(lengths) - lengths
        rows = np.zeros((n, _SAMPLE_LEN), dtype=np.uint8)
        rows[ok] = buf[starts[ok, None] + np.arange(_SAMPLE_LEN)]
    varint = rows[:, 10:16].astype(np.int64)
    shape = rows[:, _SHAPE_OFFSETS]
    ok &= (shape[:, 0] == 0x09) & (shape[:, 1] == 0x10)
    ok &= (shape[:, 2:7] >= 0x80).all(axis=1) & (shape[:, 7] < 0x80)
    values[:] = np.ascontiguousarray(rows[:, 1:9]).view("<f8").reshape(n)
    timestamps[:] = (varint & 0x7F) @ (np.int64(1) << (7 * np.arange(6, dtype=np.int64)))
    if not ok.all():
        sample = types_pb2.Sample()
        for i in np.flatnonzero(~ok).tolist():
            try:
                sample.ParseFromString(samples[i])
            except ProtobufDecodeError as exc:
                raise DecodeError("protobuf: cannot parse a sample") from exc
            timestamps[i] = sample.timestamp
            values[i] = sample.value
    return timestamps, values


def _as_label_fields(raw_labels: Sequence[bytes]) -> bytes:
    """Re-frame raw labels as they stand in a TimeSeries: tag 0x0a, uvarint length, bytes."""
    return b"".join(b"\x0a" + uvarint(len(raw)) + raw for raw in raw_labels)


def _decode_labels(raw_labels: Sequence[bytes]) -> Labels:
    """Slow path for a series seen for the first time: parse and validate its labels."""
    pairs = []
    label = types_pb2.Label()
    for raw in raw_labels:
        try:
            label.ParseFromString(raw)
        except ProtobufDecodeError as exc:
            raise DecodeError("protobuf: cannot parse a label") from exc
        pairs.append((label.name, label.value))
    return validate_labels(pairs)
