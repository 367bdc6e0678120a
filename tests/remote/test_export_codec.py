"""The JSON-lines export format: round trips, merging, and every bad line refused by number."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.remote.export_codec import decode_export, encode_export

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
values = st.floats(allow_nan=False, width=64)


@st.composite
def series_sets(draw: st.DrawFn) -> list[SeriesSamples]:
    out = []
    for name in draw(st.lists(names, min_size=0, max_size=4, unique=True)):
        stamps = sorted(draw(st.sets(st.integers(0, 2**50), min_size=1, max_size=20)))
        vals = [draw(values) for _ in stamps]
        labels = make_labels({"__name__": name, "job": draw(st.text(max_size=8))})
        out.append(SeriesSamples(labels, np.asarray(stamps, np.int64), np.asarray(vals, np.float64)))
    return out


@given(series_sets())
def test_what_is_encoded_decodes_the_same(series: list[SeriesSamples]) -> None:
    back = decode_export(encode_export(series))
    assert [s.labels for s in back] == sorted(s.labels for s in series)
    by = {s.labels: s for s in series}
    for s in back:
        assert s.timestamps.tolist() == by[s.labels].timestamps.tolist()
        assert s.values.tolist() == by[s.labels].values.tolist()


def test_lines_of_one_series_merge_in_time_order_and_nan_is_a_number() -> None:
    body = (
        b'{"metric":{"__name__":"m"},"values":[3,NaN],"timestamps":[3000,4000]}\n'
        b"\n"
        b'{"metric":{"__name__":"m"},"values":[1,2,9],"timestamps":[1000,2000,3000]}\n'
    )
    (s,) = decode_export(body)
    assert s.timestamps.tolist() == [1000, 2000, 3000, 4000]
    assert s.values[:3].tolist() == [1.0, 2.0, 3.0] and math.isnan(s.values[3])  # first value kept


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "export line 2: not a series of samples"),
        (b'{"values":[1],"timestamps":[1]}', "export line 2: not a series of samples: 'metric'"),
        (b'{"metric":{},"values":[1,2],"timestamps":[1]}', "export line 2: 2 values for 1 timestamps"),
        (b'{"metric":{},"values":["x"],"timestamps":[1]}', "export line 2: not a series of samples"),
        (b"[1, 2]", "export line 2: not a series of samples"),
    ],
)
def test_a_bad_line_is_refused_by_its_number(line: bytes, reason: str) -> None:
    good = b'{"metric":{"__name__":"m"},"values":[1],"timestamps":[1]}\n'
    with pytest.raises(DecodeError, match="^" + reason.replace("[", r"\[")):
        decode_export(good + line + b"\n")


def test_samples_outside_the_asked_range_are_left_out() -> None:
    body = b'{"metric":{"__name__":"m"},"values":[1,2,3,4],"timestamps":[1000,2000,3000,4000]}\n'
    (s,) = decode_export(body, 2000, 3000)
    assert (s.timestamps.tolist(), s.values.tolist()) == ([2000, 3000], [2.0, 3.0])
