from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import Labels
from tsf_adapter.pipeline.forecast_error import ForecastErrorTracker

STEP = 60_000
A: Labels = (("__name__", "m"), ("i", "a"))
B: Labels = (("__name__", "m"), ("i", "b"))


def batch(labels: list[Labels], values: list[list[float]], start_step: int) -> GridBatch:
    return GridBatch("t", tuple(labels), np.array(values, dtype=np.float64), start_step * STEP, STEP)


def test_errors_appear_once_the_target_step_arrives_and_settles() -> None:
    t = ForecastErrorTracker((1, 2), STEP, lag_steps=1, half_life_steps=1e9)
    t.record([A], origin_ms=10 * STEP, forecasts=np.array([[100.0, 200.0]]))
    # Step 11 is the newest: it may still change, so nothing is scored yet.
    t.observe(batch([A], [[0.0, 104.0]], start_step=10))
    assert np.isnan(t.errors([A])).all()
    t.observe(batch([A], [[0.0, 104.0, 190.0, 0.0]], start_step=10))
    assert t.errors([A]).tolist() == [[4.0, 10.0]]
    # Observing the same steps again does not count them twice.
    t.observe(batch([A], [[0.0, 104.0, 190.0, 0.0]], start_step=10))
    assert t.errors([A]).tolist() == [[4.0, 10.0]]


def test_mean_over_many_forecasts_and_the_weighting() -> None:
    flat = ForecastErrorTracker((1,), STEP, lag_steps=0, half_life_steps=1e12)
    fading = ForecastErrorTracker((1,), STEP, lag_steps=0, half_life_steps=1.0)
    errors = [1.0, 3.0, 8.0]
    for k, e in enumerate(errors):
        origin = 100 + k
        for t in (flat, fading):
            t.record([A], origin_ms=origin * STEP, forecasts=np.array([[0.0]]))
            t.observe(batch([A], [[e]], start_step=origin + 1))
    assert flat.errors([A])[0, 0] == pytest.approx(np.mean(errors))
    # Half-life of one forecast: weights 1/4, 1/2, 1.
    assert fading.errors([A])[0, 0] == pytest.approx((0.25 * 1 + 0.5 * 3 + 8) / 1.75)


def test_gaps_and_missing_forecasts_are_not_scored() -> None:
    t = ForecastErrorTracker((1,), STEP, lag_steps=0)
    t.record([A, B], origin_ms=0, forecasts=np.array([[1.0], [np.nan]]))
    t.observe(batch([A, B], [[np.nan], [5.0]], start_step=1))
    assert np.isnan(t.errors([A, B])).all()
    # The gap at step 1 is final: a later value for it is not matched to the dropped forecast.
    t.observe(batch([A, B], [[3.0, 0.0], [5.0, 0.0]], start_step=1))
    assert np.isnan(t.errors([A, B])).all()


def test_a_later_forecast_from_the_same_origin_replaces_the_earlier() -> None:
    t = ForecastErrorTracker((2,), STEP, lag_steps=0)
    t.record([A], origin_ms=5 * STEP, forecasts=np.array([[10.0]]))
    t.record([A], origin_ms=5 * STEP + 30_000, forecasts=np.array([[12.0]]))
    t.record([A], origin_ms=4 * STEP, forecasts=np.array([[99.0]]))  # older origin: ignored
    t.observe(batch([A], [[0.0, 13.0]], start_step=6))
    assert t.errors([A]).tolist() == [[1.0]]


def test_series_come_and_go_and_rows_are_reused() -> None:
    t = ForecastErrorTracker((1,), STEP, lag_steps=0, half_life_steps=1e12)
    t.record([A, B], origin_ms=0, forecasts=np.array([[1.0], [2.0]]))
    t.observe(batch([B, A], [[2.5], [1.5]], start_step=1))  # another row order than recorded
    assert t.errors([A, B]).tolist() == [[0.5], [0.5]]
    # B leaves; after more than a ring's worth of steps it is forgotten, A keeps its error.
    for origin in range(1, 10):
        t.record([A], origin_ms=origin * STEP, forecasts=np.array([[1.0]]))
        t.observe(batch([A], [[1.5]], start_step=origin + 1))
    assert t.n_series == 1
    assert t.errors([A, B])[0, 0] == pytest.approx(0.5)
    assert math.isnan(t.errors([A, B])[1, 0])
    c: Labels = (("__name__", "m"), ("i", "c"))
    capacity = t._capacity
    t.record([c], origin_ms=10 * STEP, forecasts=np.array([[0.0]]))
    assert t._capacity == capacity and t.n_series == 2  # B's row was reused
    assert math.isnan(t.errors([c])[0, 0])


def test_memory_is_bounded_by_the_horizons_not_by_time() -> None:
    t = ForecastErrorTracker((60, 360), STEP, lag_steps=1)
    labels = [(("i", str(i)),) for i in range(100)]
    for origin in range(0, 2000, 7):
        t.record(labels, origin_ms=origin * STEP, forecasts=np.zeros((100, 2)))
    # Per row: a ring of h + lag + 2 per horizon, plus sum and weight; 100 rows round up to 128.
    assert t.nbytes == 128 * ((60 + 3) + (360 + 3) + 2 * 2) * 8


def test_shape_and_step_are_checked() -> None:
    t = ForecastErrorTracker((1, 2), STEP)
    with pytest.raises(ValueError, match=r"forecasts shape \(1, 1\), expected \(1, 2\)"):
        t.record([A], origin_ms=0, forecasts=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="batch step 1000 ms, tracker step 60000 ms"):
        t.observe(GridBatch("t", (A,), np.zeros((1, 1)), 0, 1000))
    with pytest.raises(ValueError, match="horizon_steps must be >= 1"):
        ForecastErrorTracker((0,), STEP)


@settings(max_examples=60, deadline=None)
@given(
    horizon=st.integers(1, 5),
    lag=st.integers(0, 2),
    advances=st.lists(st.integers(0, 2), min_size=1, max_size=25),
    seed=st.integers(0, 2**16),
)
def test_matches_a_plain_reference(horizon: int, lag: int, advances: list[int], seed: int) -> None:
    """Each cycle observes the grid, then forecasts (the scheduler's order); a dict is the reference."""
    rng = np.random.default_rng(seed)
    n_steps = 2 + sum(advances)
    actual = rng.integers(0, 100, n_steps).astype(np.float64)
    t = ForecastErrorTracker((horizon,), STEP, lag_steps=lag, half_life_steps=1e12)
    forecasts: dict[int, float] = {}  # target step -> the last forecast for it
    scored: list[float] = []
    origin = 1
    for advance in advances:
        origin += advance
        t.observe(batch([A], [actual[: origin + 1].tolist()], start_step=0))
        for target in sorted(forecasts):
            if target <= origin - lag:
                scored.append(abs(actual[target] - forecasts.pop(target)))
        value = float(rng.integers(0, 100))
        t.record([A], origin_ms=origin * STEP, forecasts=np.array([[value]]))
        forecasts[origin + horizon] = value
    got = t.errors([A])[0, 0]
    if scored:
        assert got == pytest.approx(np.mean(scored))
    else:
        assert math.isnan(got)


def test_a_long_stall_drops_forecasts_rather_than_scoring_them_wrongly() -> None:
    t = ForecastErrorTracker((1,), STEP, lag_steps=1, half_life_steps=1e12)
    t.record([A], origin_ms=0, forecasts=np.array([[0.0]]))  # about step 1, never observed in time
    t.record([A], origin_ms=10 * STEP, forecasts=np.array([[5.0]]))  # about step 11
    t.observe(batch([A], [[7.0] * 13], start_step=0))
    assert t.errors([A]).tolist() == [[2.0]]
