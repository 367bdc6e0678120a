"""``auto``'s choice: a backtest of recent origins in the series' units, never reading past an origin."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tests.forecast.test_neural import JumpsAtSecondReading
from tsf_adapter.core.grid import FloatArray, GridBatch
from tsf_adapter.core.series import make_labels
from tsf_adapter.core.windows import validation_steps
from tsf_adapter.forecast.neural.headroom import HeadroomBatch, headroom
from tsf_adapter.forecast.neural.model import AutoModel, NeuralModel
from tsf_adapter.forecast.neural.selection import MAX_ORIGINS, backtest_errors, choose, scoring_origins
from tsf_adapter.forecast.options import ModelOptions

QUANTILES = (0.1, 0.5, 0.9)
H, L = 4, 6


def grid(values: FloatArray) -> GridBatch:
    labels = tuple(make_labels({"__name__": "m", "i": str(i)}) for i in range(values.shape[0]))
    return GridBatch("t", labels, values, 60_000, 60_000)


class Shifted:
    """A fake at the predict seam: the true future plus ``shift``; records every grid it is handed."""

    def __init__(self, truth: FloatArray, shift: float | FloatArray) -> None:
        self.truth, self.shift = truth, np.broadcast_to(np.asarray(shift, dtype=np.float64), truth.shape[:1])
        self.seen: list[GridBatch] = []

    def __call__(self, past: GridBatch, horizon_steps: int) -> FloatArray:
        self.seen.append(past)
        n = past.n_steps
        future = self.truth[:, n : n + horizon_steps] + self.shift[:, None]  # [S, H]
        return np.repeat(future[:, None, :], len(QUANTILES), axis=1)  # [S, Q, H]


def series(n_series: int = 2, n_steps: int = 60) -> FloatArray:
    t = np.arange(n_steps, dtype=np.float64)
    return np.stack([1e9 * (i + 1) + 1e6 * t for i in range(n_series)])


@pytest.mark.parametrize("n_steps", [30, 60, 61, 500])
def test_origins_lie_in_the_validation_span_with_whole_horizons(n_steps: int) -> None:
    origins = scoring_origins(n_steps, L, H, 0.2)
    split = n_steps - validation_steps(n_steps, H)
    assert 1 <= origins.size <= MAX_ORIGINS
    assert origins[0] == split and origins[-1] == n_steps - H
    assert (np.diff(origins) > 0).all()


def test_the_error_is_the_mean_pinball_loss_in_the_series_units() -> None:
    values = series()
    origins = scoring_origins(values.shape[1], L, H, 0.2)
    close, far = Shifted(values, 1e6), Shifted(values, np.array([2e6, -4e6]))
    errors = backtest_errors([close, far], grid(values), origins, H, QUANTILES, L)
    # A forecast d above the truth costs (1 - q) * d per quantile; below, q * |d|: 0.5 * |d| on average.
    np.testing.assert_allclose(errors, [[5e5, 5e5], [1e6, 2e6]])
    winner, _ = choose(errors, np.ones_like(errors, dtype=bool))
    assert winner.tolist() == [0, 0]


def test_scoring_never_hands_a_candidate_a_value_after_its_origin() -> None:
    values = series()
    origins = scoring_origins(values.shape[1], L, H, 0.2)
    recording = Shifted(values, 0.0)
    backtest_errors([recording], grid(values), origins, H, QUANTILES, L)
    assert [g.n_steps for g in recording.seen] == origins.tolist()  # one batched call per origin
    for past, origin in zip(recording.seen, origins, strict=True):
        assert past.start_ms == 60_000 and past.step_ms == 60_000
        np.testing.assert_array_equal(past.values, values[:, :origin])


def test_gaps_are_left_out_and_a_series_with_nothing_to_score_is_nan() -> None:
    values = series(3)
    origins = scoring_origins(values.shape[1], L, H, 0.2)
    truth = values.copy()
    values[0, origins[0] : origins[0] + 2] = np.nan  # two gaps among the targets of series 0
    values[1, origins[0] :] = np.nan  # series 1 stopped before the span
    errors = backtest_errors([Shifted(truth, 1e6)], grid(values), origins, H, QUANTILES, L)
    assert errors[0, 0] == pytest.approx(5e5) and math.isnan(errors[0, 1])
    assert errors[0, 2] == pytest.approx(5e5)


def test_no_forecast_where_there_is_a_value_scores_inf_but_an_empty_input_window_is_skipped() -> None:
    values = series(2)
    origins = scoring_origins(values.shape[1], L, H, 0.2)
    truth = values.copy()
    values[1, : origins[0]] = np.nan  # series 1 starts inside the span: no input at the first origin

    def blind_on_0(past: GridBatch, horizon_steps: int) -> FloatArray:
        out = Shifted(truth, 0.0)(past, horizon_steps)
        out[0] = np.nan
        out[1, :, :] = np.where(np.isnan(past.values[1, -L:]).all(), np.nan, out[1])
        return out

    errors = backtest_errors([blind_on_0], grid(values), origins, H, QUANTILES, L)
    assert errors[0, 0] == math.inf and errors[0, 1] == 0.0


def test_an_untrained_candidate_is_never_chosen_and_ties_go_to_the_earlier() -> None:
    nan, inf = math.nan, math.inf
    errors = np.array([[3.0, 1.0, nan, 2.0, 2.0], [1.0, 1.0, nan, 2.0, inf], [0.5, 1.0, 0.1, 2.0, 1.0]])
    trained = np.array([[True] * 5, [True] * 5, [False, True, False, True, False]])
    winner, scores = choose(errors, trained)
    assert winner.tolist() == [1, 0, 0, 0, 0]
    assert scores[2].tolist() == [inf, 1.0, inf, 2.0, inf]
    assert math.isnan(scores[0, 2])


def pinball(actual: FloatArray, pred: FloatArray) -> FloatArray:
    """Mean pinball loss per series over quantiles and horizon, written out for the check."""
    total = np.zeros(actual.shape[0])
    for k, q in enumerate(QUANTILES):
        e = actual - pred[:, k]
        total += np.mean(np.maximum(q * e, (q - 1) * e), axis=1)
    result: FloatArray = total / len(QUANTILES)
    return result


def tiny_options(*, max_epochs: int, headroom: bool = False) -> ModelOptions:
    """A 4-unit network on a minute grid, 8 steps in and 3 out: trains in a moment."""
    return ModelOptions(
        history_s=3600,
        horizon_s=600,
        step_s=60,
        input_steps=8,
        horizon_steps=3,
        device="cpu",
        headroom=headroom,
        train_settings=(("hidden_size", 4), ("max_epochs", max_epochs)),
    )


def test_auto_serves_each_series_by_the_argmin_of_its_backtest_error() -> None:
    options = tiny_options(max_epochs=3)
    t = np.arange(80, dtype=np.float64)
    values = np.stack([1e9 + 1e7 * np.sin(t / 4), 5.0 + (t % 7), 100 + 0.5 * t])
    batch = grid(values)
    model = AutoModel(options)
    # The transformer's training stops before its first epoch: it has weights, but never trained.
    stopped = dataclasses.replace(options, train_budget_s=3600.0, clock=JumpsAtSecondReading())
    model.candidates[2] = NeuralModel(stopped, kind="transformer")
    model.fit(batch)

    origins = scoring_origins(batch.n_steps, 8, 3, 0.2)
    assert origins.size > 1
    errors = np.zeros((2, batch.n_series))
    for origin in origins:
        past = grid(values[:, :origin])
        actual = values[:, origin : origin + 3]
        for c in range(2):
            errors[c] += pinball(actual, model.candidates[c].predict(past, 3)) / origins.size
    assert np.isfinite(errors).all()
    for i, lab in enumerate(batch.labels):
        np.testing.assert_allclose(model.scores[lab][:2], errors[:, i], rtol=1e-9)
        assert model.scores[lab][2] == math.inf
        assert model.choice[lab] == int(np.argmin(errors[:, i]))
    assert model.chosen["transformer"] == 0


def test_scoring_cuts_the_headroom_channel_at_each_origin_too() -> None:
    values = series()
    limits = np.full((values.shape[0], 1), 2e9)
    batch = HeadroomBatch.of(grid(values), headroom(values, limits))
    origins = scoring_origins(values.shape[1], L, H, 0.2)
    recording = Shifted(values, 0.0)
    backtest_errors([recording], batch, origins, H, QUANTILES, L)
    for past, origin in zip(recording.seen, origins, strict=True):
        assert isinstance(past, HeadroomBatch)
        np.testing.assert_array_equal(past.headroom, batch.headroom[:, :origin])


def test_auto_with_headroom_trains_scores_and_forecasts() -> None:
    options = tiny_options(max_epochs=2, headroom=True)
    t = np.arange(80, dtype=np.float64)
    values = np.stack([50 + 0.5 * t, 10 + np.sin(t / 3)])
    batch = HeadroomBatch.of(grid(values), headroom(values, np.array([[100.0], [100.0]])))
    model = AutoModel(options)
    model.fit(batch)
    assert all(np.isfinite(s).any() for s in model.scores.values())
    out = model.predict(batch, 3)
    assert out.shape == (2, len(QUANTILES), 3) and np.isfinite(out).all()
