"""The headroom channel: its values, how windows carry it, and networks that read it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsf_adapter.core.errors import TrainingError
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import make_labels
from tsf_adapter.forecast.neural.features import FeatureConfig, WindowSource
from tsf_adapter.forecast.neural.headroom import HEADROOM_MAX, HeadroomBatch, headroom
from tsf_adapter.forecast.neural.model import NeuralModel
from tsf_adapter.forecast.neural.state import saved_features
from tsf_adapter.forecast.options import ModelOptions

NAN = np.nan


# Every test here: tiny nets, one intra-op thread (see conftest).
pytestmark = pytest.mark.usefixtures("_one_thread")


# --- the values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "limits", "kw", "expected"),
    [
        # Fixed limit: usage over the threshold; "85% and climbing" is not "40% and climbing".
        ([40.0, 85.0, 100.0], [100.0], {}, [0.4, 0.85, 1.0]),
        # The threshold is limit x ratio: 90 of a 100 quota warned at 90% is at its threshold.
        ([45.0, 90.0, 99.0], [100.0], {"ratio": 0.9}, [0.5, 1.0, 1.1]),
        # A limit series: a gap holds the previous limit; before the first limit sample, unknown.
        ([10.0, 10.0, 30.0, 30.0], [NAN, 20.0, NAN, 60.0], {}, [NAN, 0.5, 1.5, 0.5]),
        # An unknown value is unknown headroom, whatever the limit.
        ([NAN, 50.0], [100.0, 100.0], {}, [NAN, 0.5]),
        # No limit ever: unknown throughout.
        ([1.0, 2.0], [NAN, NAN], {}, [NAN, NAN]),
        # Far past the threshold is clipped; a negative value reads as empty.
        ([500.0, -5.0], [100.0], {}, [HEADROOM_MAX, 0.0]),
        # A threshold at or below zero has no ratio.
        ([5.0, 5.0], [0.0, -10.0], {}, [NAN, NAN]),
        # below: free space falling to its floor reads like usage rising to a quota.
        ([40.0, 20.0, 10.0, 5.0], [10.0], {"direction": "below"}, [0.25, 0.5, 1.0, 2.0]),
        # below: at or under zero is past any positive floor; a floor of 0 has no ratio.
        ([0.0, -1.0], [10.0], {"direction": "below"}, [HEADROOM_MAX, HEADROOM_MAX]),
        ([5.0], [0.0], {"direction": "below"}, [NAN]),
    ],
)
def test_headroom_values(
    values: list[float], limits: list[float], kw: dict[str, object], expected: list[float]
) -> None:
    got = headroom(np.array([values]), np.array([limits]), **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, np.array([expected]), equal_nan=True)


def test_headroom_is_per_series_and_rejects_a_limit_of_another_shape() -> None:
    values = np.array([[50.0, 60.0], [5.0, 6.0]])
    # Two series of different sizes at the same share of their quotas read the same.
    np.testing.assert_allclose(headroom(values, np.array([[100.0], [10.0]])), [[0.5, 0.6], [0.5, 0.6]])
    with pytest.raises(ValueError, match="limits must be"):
        headroom(values, np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))


def test_a_limit_sample_never_reaches_back_before_it() -> None:
    # Forward filled only: a limit first seen at step 2 says nothing about steps 0 and 1.
    got = headroom(np.array([[1.0, 1.0, 1.0, 1.0]]), np.array([[NAN, NAN, 4.0, NAN]]))
    np.testing.assert_allclose(got, [[NAN, NAN, 0.25, 0.25]], equal_nan=True)


# --- windows ----------------------------------------------------------------------------------------

SMALL = FeatureConfig(input_steps=4, horizon_steps=2, headroom=True)


def test_windows_carry_headroom_unscaled_where_other_extras_are_scaled() -> None:
    # The same climb at 40% and at 85% of a quota: the scaled value channel cannot tell them
    # apart, the headroom channel can.
    climb = np.arange(10.0)
    values = np.stack([40.0 + climb, 85.0 + climb])
    channel = headroom(values, np.array([[100.0], [100.0]]))
    src = WindowSource(values, 0.0, 60.0, SMALL, extra=channel[:, None, :])
    x = src.grid(torch.tensor([8])).x[:, 0]  # [S, L, F]
    assert src.n_features == SMALL.n_features(n_extra=1) == 8
    torch.testing.assert_close(x[0, :, 0], x[1, :, 0])  # scaled values: alike
    np.testing.assert_allclose(x[:, :, 2].numpy(), channel[:, 4:8], rtol=1e-6)  # headroom as it is
    # Without the flag the same channel is scaled per window, and the level is gone.
    plain = WindowSource(
        values, 0.0, 60.0, FeatureConfig(input_steps=4, horizon_steps=2), extra=channel[:, None, :]
    )
    px = plain.grid(torch.tensor([8])).x[:, 0]
    torch.testing.assert_close(px[0, :, 2], px[1, :, 2], rtol=1e-4, atol=1e-4)


def test_unknown_headroom_is_filled_as_other_extras_are() -> None:
    # Gaps take the previous value, leading gaps the first one, a row with none becomes 0.
    channel = np.array([[NAN, 0.5, NAN, 0.7, NAN, NAN], [NAN] * 6])
    src = WindowSource(np.ones((2, 6)), 0.0, 60.0, SMALL, extra=channel[:, None, :])
    x = src.grid(torch.tensor([6])).x[:, 0]
    np.testing.assert_allclose(x[0, :, 2].numpy(), [0.5, 0.7, 0.7, 0.7], rtol=1e-6)
    assert x[1, :, 2].tolist() == [0.0] * 4


# --- networks that read it ----------------------------------------------------------------------


def _batch(n_steps: int) -> GridBatch:
    t = np.arange(n_steps, dtype=np.float64)
    values = np.stack([40.0 + 0.2 * t + np.sin(t / 3), 80.0 + 0.1 * t + np.cos(t / 3)])
    labels = (make_labels({"user": "a"}), make_labels({"user": "b"}))
    return GridBatch("quota", labels, values, 0, 60_000)


def _model(headroom_on: bool) -> NeuralModel:
    options = ModelOptions(
        history_s=11 * 60,
        horizon_s=3 * 60,
        step_s=60,
        device="cpu",
        headroom=headroom_on,
        train_settings=(("max_epochs", 2), ("hidden_size", 4)),
    )
    return NeuralModel(options, kind="lstm")


def test_a_model_with_headroom_trains_and_forecasts_on_the_channel() -> None:
    batch = _batch(60)
    with_channel = HeadroomBatch.of(batch, headroom(batch.values, np.array([[100.0], [NAN]])))
    model = _model(True)
    model.fit(with_channel)
    assert model.state is not None
    assert saved_features(model.state.config).headroom
    assert model.state.config["net"]["n_features"] == FeatureConfig().n_features(n_extra=1)
    pred = model.predict(with_channel, 4)
    assert pred.shape == (2, 3, 4) and np.isfinite(pred).all()
    # The channel reaches the network: other headroom, other forecast.
    fuller = HeadroomBatch.of(batch, headroom(batch.values, np.array([[45.0], [NAN]])))
    assert not np.allclose(model.predict(fuller, 4)[0], pred[0])
    np.testing.assert_allclose(model.predict(fuller, 4)[1], pred[1])
    # Without the channel it refuses, rather than feed the network a wrong shape.
    with pytest.raises(TrainingError, match="headroom"):
        model.predict(batch, 4)


def test_a_model_without_headroom_ignores_the_channel_and_older_states_read_as_without() -> None:
    batch = _batch(60)
    model = _model(False)
    model.fit(HeadroomBatch.of(batch, np.zeros_like(batch.values)))
    assert model.state is not None
    assert model.state.config["net"]["n_features"] == FeatureConfig().n_features()
    np.testing.assert_allclose(
        model.predict(batch, 4), model.predict(HeadroomBatch.of(batch, np.ones_like(batch.values)), 4)
    )
    # A state saved before the field existed names neither scale nor headroom.
    old = {
        "features": {
            k: v for k, v in model.state.config["features"].items() if k not in ("headroom", "scale")
        }
    }
    assert not saved_features(old).headroom and saved_features(old).scale == "std"
