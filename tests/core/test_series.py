from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from tsf_adapter.core.series import (
    STALE_NAN,
    SeriesSamples,
    format_labels,
    is_stale,
    make_labels,
    metric_name,
    stale_mask,
)


def test_stale_marker_is_distinct_from_ordinary_nan() -> None:
    assert struct.pack("<d", STALE_NAN) == bytes.fromhex("020000000000f07f")
    assert is_stale(STALE_NAN)
    assert not is_stale(math.nan)
    assert not is_stale(1.0)
    mask = stale_mask(np.array([STALE_NAN, math.nan, 0.0]))
    assert mask.tolist() == [True, False, False]


def test_make_labels_sorts_drops_empty_and_rejects_duplicates() -> None:
    assert make_labels([("b", "2"), ("a", "1"), ("c", "")]) == (("a", "1"), ("b", "2"))
    with pytest.raises(ValueError, match="not unique"):
        make_labels([("x", "1"), ("x", "2")])


def test_format_labels() -> None:
    labels = make_labels({"__name__": "up", "job": 'a"b'})
    assert metric_name(labels) == "up"
    assert format_labels(labels) == 'up{job="a\\"b"}'
    assert format_labels(make_labels({"job": "x"})) == '{job="x"}'


def test_series_samples_equality_is_bit_exact() -> None:
    labels = make_labels({"__name__": "m"})
    a = SeriesSamples(labels, [1, 2], [STALE_NAN, -0.0])
    assert a == SeriesSamples(labels, [1, 2], [STALE_NAN, -0.0])
    assert a != SeriesSamples(labels, [1, 2], [math.nan, -0.0])
    assert a != SeriesSamples(labels, [1, 2], [STALE_NAN, 0.0])
    with pytest.raises(ValueError):
        SeriesSamples(labels, [1], [1.0, 2.0])
