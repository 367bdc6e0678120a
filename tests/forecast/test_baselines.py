from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import STALE_NAN
from tsf_adapter.forecast.base import Forecaster, check_forecast
from tsf_adapter.forecast.baselines import (
    BASELINES,
    HoltWinters,
    LastValue,
    PredictLinear,
    SeasonalNaive,
    holt_winters,
    holt_winters_grid,
    holt_winters_level_trend,
    linear_regression,
    linear_regression_grid,
    predict_linear,
    predict_linear_grid,
    range_columns,
)

T0 = 1_700_000_000_000  # a multiple of 60 s
H12 = 12 * 3600 * 1000


def reference_series() -> tuple[np.ndarray, np.ndarray]:
    """PROTOCOL.md §7d: 781 samples at 60 s, v_i = 1000 + 2.5 i + 50 sin(i / 7)."""
    i = np.arange(781)
    return T0 + i * 60_000, 1000 + 2.5 * i + 50 * np.sin(i / 7)


@pytest.mark.parametrize(
    ("offset_ms", "expected"),
    [(0, 3851.4486797798086), (30_000, 3852.969899799351), (-450_000, 3833.4664518982217)],
)
def test_predict_linear_matches_prometheus_reference_values(offset_ms: int, expected: float) -> None:
    ts, vs = reference_series()
    assert predict_linear(ts, vs, int(ts[-1]) + offset_ms, H12, 6 * 3600) == expected


@pytest.mark.parametrize(("offset_ms", "expected"), [(0, 2897.20657143293), (-450_000, 2926.837726098653)])
def test_holt_winters_matches_prometheus_reference_values(offset_ms: int, expected: float) -> None:
    ts, vs = reference_series()
    assert holt_winters(ts, vs, int(ts[-1]) + offset_ms, H12, 0.3, 0.1) == expected


def test_deriv_slope_matches_reference() -> None:
    # deriv is the same regression with its origin at the first sample.
    ts, vs = reference_series()
    window = ts >= ts[-1] - H12
    slope, _ = linear_regression(ts[window], vs[window], int(ts[window][0]))
    assert slope == 0.04170667302458148


def test_range_is_closed_and_stale_markers_are_not_samples() -> None:
    ts = np.array([0, 60_000, 120_000])
    # The sample at exactly t - range counts (2.x): 3 points on a line -> exact.
    assert predict_linear(ts, [1.0, 2.0, 3.0], 120_000, 120_000, 60) == 4.0
    # Range one ms shorter leaves 2 samples, with a different fit through (60s, 5) and (120s, 3).
    assert predict_linear(ts, [100.0, 5.0, 3.0], 120_000, 119_999, 60) == 1.0
    # A stale marker is no sample: one left, so no value.
    assert predict_linear(ts, [1.0, STALE_NAN, STALE_NAN], 120_000, 120_000, 60) is None
    assert holt_winters(ts, [1.0, STALE_NAN, 3.0], 120_000, 120_000, 0.5, 0.5) is not None


def test_constant_and_short_series() -> None:
    assert linear_regression([0, 1000], [5.0, 5.0], 0) == (0.0, 5.0)
    slope, intercept = linear_regression([0, 1000], [math.inf, math.inf], 0)
    assert math.isnan(slope) and math.isnan(intercept)
    assert predict_linear([0], [1.0], 0, 1000, 10) is None
    assert holt_winters([0], [1.0], 0, 1000, 0.5, 0.5) is None
    with pytest.raises(ValueError, match="at least one"):
        linear_regression([], [], 0)


@pytest.mark.parametrize(("sf", "tf"), [(1.0, 0.1), (0.0, 0.1), (0.3, 1.0), (0.3, -0.1)])
def test_holt_winters_rejects_factors_outside_open_unit_interval(sf: float, tf: float) -> None:
    with pytest.raises(ValueError, match="Expected: 0 <"):
        holt_winters([0, 1], [1.0, 2.0], 1, 10, sf, tf)


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.lists(st.one_of(finite, st.just(math.nan)), min_size=8, max_size=8), min_size=1, max_size=5
    ),
    eval_offset=st.integers(min_value=0, max_value=120_000),
    sf=st.floats(min_value=0.01, max_value=0.99),
    tf=st.floats(min_value=0.01, max_value=0.99),
)
def test_grid_kernels_are_bit_identical_to_scalar_kernels(
    data: list[list[float]], eval_offset: int, sf: float, tf: float
) -> None:
    values = np.array(data)
    ts = T0 + 15_000 * np.arange(values.shape[1], dtype=np.int64)
    eval_ms = int(ts[-1]) + eval_offset
    pl = predict_linear_grid(values, ts, eval_ms, np.array([0.0, 3600.0]))
    slope, intercept, n = linear_regression_grid(values, ts, eval_ms)
    level, trend = holt_winters_grid(values, sf, tf)
    for r, row in enumerate(values):
        keep = ~np.isnan(row)
        assert n[r] == keep.sum()
        if keep.sum() >= 1:
            scalar = np.array(linear_regression(ts[keep], row[keep], eval_ms))
            assert np.array([slope[r], intercept[r]]).tobytes() == scalar.tobytes()
        if keep.sum() < 2:
            assert np.isnan(pl[r]).all() and np.isnan(level[r])
            continue
        expected = predict_linear(ts[keep], row[keep], eval_ms, 10**12, 3600.0)
        assert pl[r, 1].tobytes() == np.float64(expected).tobytes()
        lt = holt_winters_level_trend(row[keep], sf, tf)
        assert lt is not None
        assert np.array([level[r], trend[r]]).tobytes() == np.array(lt).tobytes()


def batch_of(values: list[list[float]], start_ms: int = T0, step_ms: int = 60_000) -> GridBatch:
    arr = np.array(values, dtype=np.float64)
    labels = tuple(((("i", str(i)),)) for i in range(arr.shape[0]))
    return GridBatch("t", labels, arr, start_ms, step_ms)


@pytest.mark.parametrize("model", [PredictLinear(), HoltWinters(), LastValue(), SeasonalNaive(180.0)])
def test_baselines_honour_the_forecaster_contract(model: Forecaster) -> None:
    batch = batch_of([[1.0, 2.0, np.nan, 4.0, 5.0, 6.0], [np.nan] * 6, [3.0] * 6])
    assert isinstance(model, Forecaster)
    assert not model.NEEDS_FIT and not model.QUANTILES
    assert model.quantiles == (0.5,)
    model.fit(batch)
    out = model.predict(batch, 4)
    check_forecast(model, batch, 4, out)
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    # A flat series stays flat (holt_winters' 0.3*3 + 0.7*3 is one ulp off, as in Prometheus).
    np.testing.assert_allclose(out[2], 3.0, rtol=1e-15)
    with pytest.raises(ValueError, match="horizon_steps"):
        model.predict(batch, 0)


def test_predict_linear_forecaster_equals_promql_at_each_horizon() -> None:
    ts, vs = reference_series()
    batch = GridBatch("t", ((),), vs[None, :], int(ts[0]), 60_000)
    out = PredictLinear(range_s=12 * 3600).predict(batch, 360)
    assert out[0, 0, -1] == 3851.4486797798086
    assert out[0, 0, 0] == predict_linear(ts, vs, int(ts[-1]), H12, 60.0)


def test_range_columns_is_closed() -> None:
    batch = batch_of([[0.0] * 10])
    assert range_columns(batch, None) == slice(0, 10)
    assert range_columns(batch, 120.0) == slice(7, 10)  # end-120s, end-60s, end
    assert range_columns(batch, 119.0) == slice(8, 10)
    assert range_columns(batch, 1e9) == slice(0, 10)
    with pytest.raises(ValueError):
        range_columns(batch, 0)


def test_holt_winters_forecaster_extrapolates_level_with_trend() -> None:
    batch = batch_of([[1.0, 2.0, 3.0, 4.0]])
    level_trend = holt_winters_level_trend([1.0, 2.0, 3.0, 4.0], 0.5, 0.5)
    assert level_trend == (4.0, 1.0)
    np.testing.assert_array_equal(HoltWinters(0.5, 0.5).predict(batch, 3)[0, 0], [5.0, 6.0, 7.0])


def test_last_value_skips_trailing_gaps() -> None:
    out = LastValue().predict(batch_of([[1.0, 7.0, np.nan]]), 2)
    np.testing.assert_array_equal(out[0, 0], [7.0, 7.0])


def test_seasonal_naive_repeats_the_last_period_and_falls_back_a_season_on_gaps() -> None:
    # period 3 steps; last season is [10, nan, 12], one before [4, 5, 6].
    batch = batch_of([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, np.nan, 12.0]])
    out = SeasonalNaive(180.0).predict(batch, 7)
    np.testing.assert_array_equal(out[0, 0], [10.0, 5.0, 12.0, 10.0, 5.0, 12.0, 10.0])
    assert SeasonalNaive().name == "seasonal_naive_1d"
    assert SeasonalNaive(7 * 86_400).name == "seasonal_naive_1w"
    with pytest.raises(ValueError, match="whole number"):
        SeasonalNaive(90.0).predict(batch, 1)
    short = SeasonalNaive(86_400.0).predict(batch, 2)
    assert np.isnan(short).all()


def test_baselines_registry_builds_every_model() -> None:
    for name, cls in BASELINES.items():
        assert cls().name.startswith(name)


def test_grid_batch_validates_shape_and_reports_times() -> None:
    with pytest.raises(ValueError, match="one row per label set"):
        GridBatch("t", ((),), np.zeros((2, 3)), 0, 60_000)
    with pytest.raises(ValueError, match="step_ms"):
        GridBatch("t", ((),), np.zeros((1, 3)), 0, 0)
    b = batch_of([[1.0, 2.0]])
    assert b.horizon_timestamps_ms(2).tolist() == [T0 + 120_000, T0 + 180_000]
    assert (b.start_s, b.step_s) == (T0 / 1000, 60.0)


def test_check_forecast_rejects_wrong_shape() -> None:
    b = batch_of([[1.0, 2.0]])
    with pytest.raises(ValueError, match="shape"):
        check_forecast(LastValue(), b, 3, np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match="dtype"):
        check_forecast(LastValue(), b, 2, np.zeros((1, 1, 2), dtype=np.float32))


def test_engine_imports_neither_aiohttp_nor_torch() -> None:
    code = (
        "import sys, tsf_adapter.forecast, tsf_adapter.forecast.metrics, tsf_adapter.store.store; "
        "bad = {'aiohttp', 'torch'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)
