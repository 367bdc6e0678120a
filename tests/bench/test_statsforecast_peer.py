"""The statsforecast peers behind the forecaster contract: quantiles from intervals, gaps, the registry."""

from __future__ import annotations

import numpy as np
import pytest

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.forecast import registry
from tsf_adapter.forecast.base import check_forecast
from tsf_adapter.forecast.options import ModelOptions
from tsf_adapter.forecast.registry import create_model, model_window_s

pytest.importorskip("statsforecast", reason="benchmark-only extra: pip install -e '.[bench]'")

from bench.statsforecast_peer import PEERS, register

STEP_S = 3600.0


def _batch() -> GridBatch:
    t = np.arange(3 * 24)
    daily = 100.0 + 10.0 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(1).normal(0, 0.5, t.size)
    gappy = daily.copy()
    gappy[[5, 30, 31]] = np.nan
    values = np.stack([daily, gappy, np.full(t.size, np.nan)])
    labels = tuple((("s", str(i)),) for i in range(3))
    return GridBatch("t", labels, values, 3_600_000, round(STEP_S * 1000))


@pytest.mark.parametrize("name", PEERS)
def test_peer_forecasts_quantiles_in_order(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))  # the registry stays as it was
    register()
    options = ModelOptions(history_s=12 * 3600, horizon_s=6 * 3600, step_s=STEP_S, quantiles=(0.1, 0.5, 0.9))
    model = create_model(name, options)
    assert model_window_s(name, options) == 3 * 86_400.0
    batch = _batch()
    out = model.predict(batch, 6)
    check_forecast(model, batch, 6, out)
    assert np.isfinite(out[:2]).all() and np.isnan(out[2]).all()  # an empty series: nothing to say
    assert (out[:2, 0] <= out[:2, 1]).all() and (out[:2, 1] <= out[:2, 2]).all()
    assert (out[:2, 0] < out[:2, 2]).any()  # an interval, not a point


def test_ets_takes_the_day_as_its_season(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    register()
    options = ModelOptions(history_s=12 * 3600, horizon_s=6 * 3600, step_s=STEP_S, quantiles=(0.1, 0.5, 0.9))
    out = create_model("auto_ets", options).predict(_batch(), 6)
    # Three days of a daily wave (24 steps a day, within ETS's seasons): the next 6 hours follow it.
    t = np.arange(3 * 24, 3 * 24 + 6)
    truth = 100.0 + 10.0 * np.sin(2 * np.pi * t / 24)
    assert np.abs(out[0, 1] - truth).mean() < 3.0
