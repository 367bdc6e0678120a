"""The receiver's fast ingest path must decode exactly what the reference codec decodes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter._pb import remote_pb2, write_v2_pb2
from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.protocol import RW1_MESSAGE, RW2_MESSAGE
from tsf_adapter.core.selector import Matcher, MatchOp, Selector
from tsf_adapter.core.series import STALE_NAN, Labels, SeriesSamples, make_labels
from tsf_adapter.remote.codec import decode_write_request, decompress, encode_write_request
from tsf_adapter.remote.ingest import Ingester, decode_samples

KEEP_ALL = Selector((Matcher("__name__", MatchOp.NEQ, ""),))
ONLY_KEEP = Selector((Matcher("keep", MatchOp.EQ, "yes"),))


class RecordingSink:
    """A SampleSink that records what it was given, in order."""

    def __init__(self, refuse: frozenset[Labels] = frozenset()) -> None:
        self.refs: dict[Labels, int] = {}
        self.labels: list[Labels] = []
        self.rows: list[tuple[Labels, int, bytes]] = []
        self.refuse = refuse

    def series_ref(self, labels: Labels) -> int | None:
        if labels in self.refuse:
            return None
        if labels not in self.refs:
            self.refs[labels] = len(self.labels)
            self.labels.append(labels)
        return self.refs[labels]

    def append(
        self,
        refs: npt.NDArray[np.int64],
        timestamps: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> None:
        assert refs.dtype == np.int64 and timestamps.dtype == np.int64 and values.dtype == np.float64
        for r, t, v in zip(refs.tolist(), timestamps.tolist(), values.tolist(), strict=True):
            self.rows.append((self.labels[r], t, np.float64(v).tobytes()))


def expected_rows(series: Sequence[SeriesSamples], selector: Selector) -> list[tuple[Labels, int, bytes]]:
    return [
        (s.labels, t, np.float64(v).tobytes())
        for s in series
        if selector.matches(s.labels)
        for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True)
    ]


names = st.sampled_from(["m", "storage_used_bytes", "up"])
label_values = st.text(min_size=0, max_size=12)
values = st.one_of(
    st.floats(),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, STALE_NAN, math.nan, 5e-324, 1.79e308, 1e12]),
)
timestamps = st.one_of(
    st.integers(1_600_000_000_000, 1_900_000_000_000),  # the common 6-byte varint
    st.integers(-(2**62), 2**62),
    st.sampled_from([0, 1, 127, 128, 2**35, 2**42, -1]),
)


@st.composite
def wire_series(draw: st.DrawFn) -> SeriesSamples:
    labels = make_labels(
        {
            "__name__": draw(names),
            "keep": draw(st.sampled_from(["yes", "no", ""])),
            "user": draw(label_values),
        }
    )
    n = draw(st.integers(0, 4))
    return SeriesSamples(
        labels,
        draw(st.lists(timestamps, min_size=n, max_size=n)),
        draw(st.lists(values, min_size=n, max_size=n)),
    )


@pytest.mark.parametrize("message", [RW1_MESSAGE, RW2_MESSAGE])
@pytest.mark.parametrize("selector", [KEEP_ALL, ONLY_KEEP])
@settings(max_examples=60, deadline=None)
@given(requests=st.lists(st.lists(wire_series(), max_size=12), min_size=1, max_size=4))
def test_fast_path_equals_reference(
    message: str, selector: Selector, requests: list[list[SeriesSamples]]
) -> None:
    """Several requests through one Ingester (so the caches are exercised) vs the reference decoder."""
    sink = RecordingSink()
    ingester = Ingester(sink, [selector])
    want: list[tuple[Labels, int, bytes]] = []
    for series in requests:
        raw = decompress(encode_write_request(series, message=message), 1 << 30)
        reference = decode_write_request(raw, message=message).series
        want += expected_rows(reference, selector)
        result = ingester.ingest(raw, message)
        assert result.acknowledged_samples == sum(len(s) for s in series)
    assert sink.rows == want


def test_cache_is_bounded_and_still_correct() -> None:
    sink = RecordingSink()
    ingester = Ingester(sink, [KEEP_ALL], max_cached_keys=3)
    for round_ in range(3):
        series = [
            SeriesSamples(make_labels({"__name__": "m", "i": str(i)}), [1_700_000_000_000 + round_], [1.0])
            for i in range(10)
        ]
        ingester.ingest(decompress(encode_write_request(series), 1 << 20))
    assert len(sink.rows) == 30
    assert len(sink.labels) == 10


def test_refused_series_are_counted_not_stored() -> None:
    labels = make_labels({"__name__": "m"})
    sink = RecordingSink(refuse=frozenset({labels}))
    ingester = Ingester(sink, [KEEP_ALL])
    raw = decompress(encode_write_request([SeriesSamples(labels, [1, 2], [1.0, 2.0])]), 1 << 20)
    for _ in range(2):  # second time from the cache
        result = ingester.ingest(raw)
        assert result.samples == 0 and result.unselected == 2
    assert sink.rows == []


def test_bad_request_appends_nothing() -> None:
    good = SeriesSamples(make_labels({"__name__": "m"}), [1], [1.0])
    req = remote_pb2.WriteRequest()
    req.ParseFromString(decompress(encode_write_request([good]), 1 << 20))
    bad = req.timeseries.add()
    bad.labels.add(name="x", value="1")
    bad.labels.add(name="x", value="2")
    bad.samples.add(value=1.0, timestamp=1)
    sink = RecordingSink()
    with pytest.raises(DecodeError, match="not unique"):
        Ingester(sink, [KEEP_ALL]).ingest(req.SerializeToString())
    assert sink.rows == []


def test_rw2_bad_symbols_table() -> None:
    req = write_v2_pb2.Request(symbols=["x", "__name__", "m"])
    req.timeseries.add(labels_refs=[1, 2]).samples.add(value=1, timestamp=1)
    with pytest.raises(DecodeError, match="symbols"):
        Ingester(RecordingSink(), [KEEP_ALL]).ingest(req.SerializeToString(), RW2_MESSAGE)


def test_histograms_exemplars_and_metadata_are_counted() -> None:
    req = remote_pb2.WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="h")
    ts.histograms.add(count_int=3, timestamp=5)
    ts.exemplars.add(value=1.0, timestamp=5)
    req.metadata.add(metric_family_name="h")
    result = Ingester(RecordingSink(), [KEEP_ALL]).ingest(req.SerializeToString())
    assert (result.histograms, result.exemplars, result.metadata, result.samples) == (1, 1, 1, 0)


@pytest.mark.parametrize(
    "blob",
    [b"\x0a\x03\x12\x01", b"\x0a\x05\x12\x03\x09\x00", b"\x0a\x02\x0a\xff"],
)
def test_truncated_series_is_decode_error(blob: bytes) -> None:
    with pytest.raises(DecodeError):
        Ingester(RecordingSink(), [KEEP_ALL]).ingest(blob)


def test_decode_samples_mixed_shapes() -> None:
    samples = [
        remote_pb2.WriteRequest().timeseries.add().samples.add(value=v, timestamp=t).SerializeToString()
        for v, t in [(1.5, 1_700_000_000_000), (0.0, 1_700_000_000_001), (2.0, -5), (STALE_NAN, 0)]
    ]
    ts, vals = decode_samples(samples)
    assert ts.tolist() == [1_700_000_000_000, 1_700_000_000_001, -5, 0]
    assert vals.view(np.uint64).tolist() == np.array([1.5, 0.0, 2.0, STALE_NAN]).view(np.uint64).tolist()
