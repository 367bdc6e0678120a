from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter.forecast.metrics import (
    geometric_mean,
    interval_coverage,
    mae,
    mase,
    naive_scale,
    pinball_loss,
    quantile_coverage,
)

nan = math.nan


def test_mae_reduces_the_last_axis_and_skips_gaps() -> None:
    actual = np.array([[1.0, 2.0, nan], [nan, nan, nan]])
    predicted = np.array([[2.0, 4.0, 100.0], [1.0, 1.0, 1.0]])
    out = mae(actual, predicted)
    assert out.shape == (2,)
    assert out[0] == 1.5 and math.isnan(out[1])


def test_mase_uses_one_step_naive_mae_of_the_history() -> None:
    history = np.array([1.0, 3.0, nan, 4.0, 8.0])  # present pairs: |3-1|, |8-4| -> 3
    assert float(naive_scale(history)) == 3.0
    assert float(mase([10.0], [16.0], history)) == 2.0
    assert float(naive_scale([1.0, 5.0, 2.0, 6.0], season=2)) == 1.0
    assert float(mase([1.0], [2.0], [5.0, 5.0])) == math.inf
    with pytest.raises(ValueError):
        naive_scale([1.0], season=0)


def test_pinball_loss_per_quantile() -> None:
    actual = np.array([10.0, 10.0])
    predicted = np.array([[8.0, 8.0], [10.0, 12.0], [12.0, 12.0]])  # [q, h]
    out = pinball_loss(actual, predicted, (0.1, 0.5, 0.9))
    np.testing.assert_allclose(out, [0.2, 0.5, 0.2])
    with pytest.raises(ValueError, match="quantile rows"):
        pinball_loss(actual, predicted, (0.5,))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20), st.floats(-1e6, 1e6))
def test_pinball_at_median_is_half_the_absolute_error(actual: list[float], forecast: float) -> None:
    predicted = np.full((1, len(actual)), forecast)
    half_mae = float(mae(actual, predicted[0])) / 2
    assert float(pinball_loss(actual, predicted, (0.5,))[0]) == pytest.approx(half_mae, rel=1e-12, abs=1e-9)


def test_coverage_of_p10_p90_interval() -> None:
    actual = np.array([[0.0, 5.0, 10.0, nan]])
    predicted = np.stack([np.full((1, 4), 1.0), np.full((1, 4), 5.0), np.full((1, 4), 10.0)], axis=1)
    assert quantile_coverage(actual, predicted, (0.1, 0.5, 0.9)).tolist() == [2 / 3]
    assert float(interval_coverage([1.0], [1.0], [1.0])) == 1.0
    with pytest.raises(ValueError, match="must include"):
        quantile_coverage(actual, predicted[:, :2], (0.1, 0.5))


def test_geometric_mean() -> None:
    assert geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
    assert geometric_mean([0.0, 3.0]) == 0.0
    assert math.isnan(geometric_mean([nan]))
    with pytest.raises(ValueError, match="negative"):
        geometric_mean([-1.0, 2.0])
