"""fit/predict: learning, equivalence of batched and lone training, budgets, warm starts, scopes."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from tsf_adapter.core.errors import TrainingError
from tsf_adapter.core.series import Labels, make_labels
from tsf_adapter.core.windows import min_train_steps
from tsf_adapter.forecast.neural import state as trainer_state
from tsf_adapter.forecast.neural.features import FeatureConfig
from tsf_adapter.forecast.neural.fitting import split_origins
from tsf_adapter.forecast.neural.state import EpochProgress, TrainConfig, select_device, series_seed
from tsf_adapter.forecast.neural.trainer import NeuralForecaster, fit, predict

HOUR = 3600.0


# Every test here: tiny nets, one intra-op thread (see conftest).
pytestmark = pytest.mark.usefixtures("_one_thread")


TINY = TrainConfig(
    features=FeatureConfig(input_steps=12, horizon_steps=4),
    hidden_size=8,
    max_epochs=3,
    batch_size=16,
    window_stride=2,
    device="cpu",
)


def _labels(n: int, **extra: str) -> list[Labels]:
    return [make_labels({"__name__": "disk_used_bytes", "instance": f"i{i}", **extra}) for i in range(n)]


def _daily(n_series: int, n_steps: int, seed: int = 0, noise: float = 0.0) -> npt.NDArray[np.float64]:
    """Hourly series with a daily cycle: different levels, amplitudes and phases per series."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps)
    level = rng.uniform(10, 1e6, (n_series, 1))
    amp = level * rng.uniform(0.05, 0.2, (n_series, 1))
    phase = rng.uniform(0, 2 * np.pi, (n_series, 1))
    return (
        level
        + amp * np.sin(2 * np.pi * t / 24 + phase)
        + noise * amp * rng.standard_normal((n_series, n_steps))
    )


class FakeClock:
    """Advances a fixed amount per reading: budgets are tested without real time."""

    def __init__(self, tick: float) -> None:
        self.now = 0.0
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize(("scope", "epochs", "batch"), [("per_series", 12, 32), ("global", 6, 64)])
def test_learns_a_daily_cycle_better_than_last_value_on_held_out_data(
    scope: Any, epochs: int, batch: int
) -> None:
    horizon = 6
    values = _daily(2, 24 * 16 + horizon, noise=0.02)
    history, future = values[:, :-horizon], values[:, -horizon:]
    cfg = TrainConfig(
        scope=scope,
        features=FeatureConfig(input_steps=24, horizon_steps=horizon),
        hidden_size=16,
        max_epochs=epochs,
        batch_size=batch,
        learning_rate=1e-2,
        device="cpu",
    )
    state, report = fit(_labels(2), history, 0.0, HOUR, cfg)
    pred = predict(state, _labels(2), history, 0.0, HOUR, device="cpu")
    assert pred.shape == (2, 3, horizon)
    mae = np.abs(pred[:, 1] - future).mean(axis=1)
    last_value = np.abs(history[:, -1:] - future).mean(axis=1)
    assert (mae < 0.5 * last_value).all(), (mae, last_value)
    assert (np.diff(pred, axis=1) >= 0).all()
    assert report.val_loss[-1].max() < report.val_loss[0].max()


def test_batched_fit_gives_the_same_losses_as_fitting_each_series_alone() -> None:
    values = _daily(3, 24 * 6, seed=1)
    labels = _labels(3)
    cfg = dataclasses.replace(TINY, patience=10)  # no early stop: every run does all epochs
    state, together = fit(labels, values, 0.0, HOUR, cfg)
    for i in range(3):
        alone_state, alone = fit(labels[i : i + 1], values[i : i + 1], 0.0, HOUR, cfg)
        np.testing.assert_allclose(together.train_loss[:, i], alone.train_loss[:, 0], rtol=1e-4)
        np.testing.assert_allclose(together.val_loss[:, i], alone.val_loss[:, 0], rtol=1e-4)
        for name, t in alone_state.tensors.items():
            torch.testing.assert_close(state.tensors[name][i], t[0], rtol=1e-4, atol=1e-5)
    # Chunking is only a memory bound: one series per chunk trains the same models.
    chunked, _ = fit(labels, values, 0.0, HOUR, dataclasses.replace(cfg, chunk_size=1))
    assert chunked.labels == state.labels
    for name, t in chunked.tensors.items():
        torch.testing.assert_close(state.tensors[name], t, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["lstm", "gru", "transformer"])
def test_fixed_seed_repeats_exactly(model: Any) -> None:
    values = _daily(2, 24 * 5)
    cfg = dataclasses.replace(TINY, model=model, max_epochs=2)
    a, ra = fit(_labels(2), values, 0.0, HOUR, cfg)
    b, rb = fit(_labels(2), values, 0.0, HOUR, cfg)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert np.array_equal(ra.train_loss, rb.train_loss)
    c, _ = fit(_labels(2), values, 0.0, HOUR, dataclasses.replace(cfg, seed=1))
    assert not all(torch.equal(a.tensors[k], c.tensors[k]) for k in a.tensors)


@pytest.mark.parametrize("scope", ["per_series", "global"])
def test_progress_is_told_every_epoch_of_every_stack(scope: str) -> None:
    seen: list[EpochProgress] = []
    cfg = dataclasses.replace(TINY, scope=scope, chunk_size=2, max_epochs=2, patience=10)  # type: ignore[arg-type]
    _, report = fit(
        _labels(3), _daily(3, 24 * 6), 0.0, HOUR, cfg, clock=FakeClock(tick=1.0), progress=seen.append
    )
    where = [(p.epoch, p.series_done, p.series_in_stack, p.series_total) for p in seen]
    if scope == "per_series":  # two stacks, of 2 and 1 series, one after the other
        assert where == [(1, 0, 2, 3), (2, 0, 2, 3), (1, 2, 1, 3), (2, 2, 1, 3)]
    else:
        assert where == [(1, 0, 3, 3), (2, 0, 3, 3)]
    assert all(math.isfinite(p.train_loss) and math.isfinite(p.val_loss) for p in seen)
    assert [p.elapsed_s for p in seen] == sorted(p.elapsed_s for p in seen)
    assert {p.budget_s for p in seen} == {None} and report.epochs == 2


def test_budget_stops_cleanly_keeps_usable_models_and_says_so() -> None:
    values = _daily(2, 24 * 6)
    clock = FakeClock(tick=1.0)
    cfg = dataclasses.replace(TINY, max_epochs=50, budget_s=30.0)
    state, report = fit(_labels(2), values, 0.0, HOUR, cfg, clock=clock)
    assert report.stopped == "budget" and report.budget_exhausted
    assert report.steps < 30  # each step reads the clock at least once
    assert 0 < report.epochs < 50
    assert state.labels == tuple(_labels(2))
    pred = predict(state, _labels(2), values, 0.0, HOUR, device="cpu")
    assert np.isfinite(pred).all()


def test_budget_is_shared_so_every_chunk_trains() -> None:
    """Small chunks bound memory; under a budget each gets its share instead of the last starving."""
    values = _daily(3, 24 * 6)
    cfg = dataclasses.replace(TINY, max_epochs=50, budget_s=10.0, chunk_size=1)
    state, report = fit(_labels(3), values, 0.0, HOUR, cfg, clock=FakeClock(tick=1.0))
    assert report.budget_exhausted
    assert report.untrained == 0
    assert len(state.labels) == 3
    assert np.isfinite(predict(state, _labels(3), values, 0.0, HOUR, device="cpu")).all()


class StopAfter(FakeClock):
    """A clock that jumps past every deadline after ``n`` readings, as the daemon's does on shutdown."""

    def __init__(self, n: int) -> None:
        super().__init__(tick=1.0)
        self.left = n

    def __call__(self) -> float:
        self.left -= 1
        return super().__call__() if self.left > 0 else float("inf")


def test_budget_spent_before_a_chunk_leaves_its_series_without_a_model() -> None:
    values = _daily(3, 24 * 6)
    cfg = dataclasses.replace(TINY, max_epochs=50, budget_s=1_000.0, chunk_size=1)
    state, report = fit(_labels(3), values, 0.0, HOUR, cfg, clock=StopAfter(12))
    assert report.budget_exhausted
    assert report.untrained >= 1
    assert len(state.labels) == 3 - report.untrained
    pred = predict(state, _labels(3), values, 0.0, HOUR, device="cpu")
    assert np.isnan(pred[-report.untrained :]).all()
    assert np.isfinite(pred[: len(state.labels)]).all()


def test_warm_start_continues_from_the_previous_model() -> None:
    labels = _labels(3)
    values = _daily(3, 24 * 8, seed=2)
    cfg = dataclasses.replace(TINY, max_epochs=6)
    first, _ = fit(labels[:2], values[:2, : 24 * 7], 0.0, HOUR, cfg)
    one_epoch = dataclasses.replace(cfg, max_epochs=1)
    _, warm_report = fit(labels, values, 0.0, HOUR, one_epoch, previous=first)
    _, cold_report = fit(labels, values, 0.0, HOUR, one_epoch)
    assert warm_report.warm_started == 2
    # Trained series start far ahead; the new one starts from scratch, exactly like a cold fit.
    assert (warm_report.val_loss[0, :2] < cold_report.val_loss[0, :2]).all()
    np.testing.assert_allclose(warm_report.train_loss[0, 2], cold_report.train_loss[0, 2], rtol=1e-5)
    # An incompatible previous model (other architecture) is ignored, not an error.
    other = dataclasses.replace(one_epoch, hidden_size=4)
    _, report = fit(labels, values, 0.0, HOUR, other, previous=first)
    assert report.warm_started == 0


def test_gaps_are_never_targets_and_empty_series_predict_nothing() -> None:
    values = _daily(3, 24 * 6)
    values[0, 50:70] = np.nan
    values[1, ::3] = np.nan
    values[2, :] = np.nan
    state, report = fit(_labels(3), values, 0.0, HOUR, TINY)
    assert np.isfinite(report.train_loss[:, :2]).all()
    assert (report.train_loss[:, 2] == 0).all()  # nothing to learn from, nothing learned
    pred = predict(state, _labels(3), values, 0.0, HOUR, device="cpu")
    assert np.isfinite(pred[:2]).all() and np.isnan(pred[2]).all()
    unknown = predict(state, _labels(1, job="other"), values[:1], 0.0, HOUR, device="cpu")
    assert np.isnan(unknown).all()


def test_extra_series_are_input_channels() -> None:
    values = _daily(2, 24 * 6)
    rate = np.diff(values, prepend=values[:, :1], axis=1)[:, None, :]  # [S, 1, T]
    state, _ = fit(_labels(2), values, 0.0, HOUR, TINY, extra=rate)
    assert state.config["net"]["n_features"] == TINY.features.n_features(n_extra=1)
    pred = predict(state, _labels(2), values, 0.0, HOUR, extra=rate, device="cpu")
    assert np.isfinite(pred).all()


def test_global_scope_shares_one_net_and_embeds_chosen_labels() -> None:
    labels = [make_labels({"__name__": "used", "cluster": c, "i": str(i)}) for i, c in enumerate("aab")]
    values = _daily(3, 24 * 6)
    cfg = dataclasses.replace(TINY, scope="global", embed_labels=("cluster",), batch_size=32)
    state, report = fit(labels, values, 0.0, HOUR, cfg)
    assert all(t.shape[0] == 1 for t in state.tensors.values())
    assert state.config["vocab"] == [["a", "b"]]
    assert report.train_loss.shape[1] == 1
    new = [*labels, make_labels({"__name__": "used", "cluster": "c", "i": "9"})]
    more = np.concatenate([values, values[:1]])
    pred = predict(state, new, more, 0.0, HOUR, device="cpu")
    assert pred.shape == (4, 3, 4) and np.isfinite(pred).all()
    # Retraining with a new cluster grows the vocabulary and keeps the old embeddings' ids.
    grown, report = fit(new, more, 0.0, HOUR, cfg, previous=state)
    assert grown.config["vocab"] == [["a", "b", "c"]]
    assert report.warm_started == 4


def test_a_bounded_epoch_takes_as_many_steps_whatever_the_number_of_series() -> None:
    cfg = dataclasses.replace(TINY, scope="global", batch_size=16, epoch_windows=64, max_epochs=2, patience=5)
    steps = []
    for n in (4, 40):
        _, report = fit(_labels(n), _daily(n, 24 * 6), 0.0, HOUR, cfg)
        steps.append(report.steps)
        assert np.isfinite(report.val_loss).all()
    assert steps == [2 * 64 // 16] * 2
    # Unbounded, the epoch covers every (series, origin) window: ten times the series, ten times the steps.
    unbounded = dataclasses.replace(cfg, epoch_windows=0)
    few = fit(_labels(4), _daily(4, 24 * 6), 0.0, HOUR, unbounded)[1].steps
    many = fit(_labels(40), _daily(40, 24 * 6), 0.0, HOUR, unbounded)[1].steps
    assert many > 5 * few


def test_a_bound_above_the_windows_changes_nothing() -> None:
    values = _daily(3, 24 * 6)
    cfg = dataclasses.replace(TINY, scope="global")
    a, _ = fit(_labels(3), values, 0.0, HOUR, cfg)
    b, _ = fit(_labels(3), values, 0.0, HOUR, dataclasses.replace(cfg, epoch_windows=10**6))
    for k, t in a.tensors.items():
        assert torch.equal(t, b.tensors[k]), k


@pytest.mark.parametrize(
    ("input_steps", "horizon_steps", "fraction", "stride"),
    [(288, 360, 0.2, 1), (24, 2, 0.2, 3), (20, 7, 0.35, 1), (12, 4, 0.0, 2)],
)
def test_the_split_trains_from_exactly_the_least_steps_the_config_checks(
    input_steps: int, horizon_steps: int, fraction: float, stride: int
) -> None:
    # The config decoder and the scheduler judge a history by min_train_steps: the split must agree.
    cfg = TrainConfig(
        features=FeatureConfig(input_steps=input_steps, horizon_steps=horizon_steps),
        validation_fraction=fraction,
        window_stride=stride,
    )
    need = min_train_steps(input_steps, horizon_steps, fraction)
    train_at, val_at = split_origins(need, cfg)
    assert train_at.numel() >= 1 and (val_at.numel() >= 1 or fraction == 0)
    with pytest.raises(TrainingError, match=f"{need - 1} steps, need at least {need} to train"):
        split_origins(need - 1, cfg)


def test_too_short_history_and_bad_shapes_are_training_errors() -> None:
    with pytest.raises(TrainingError, match="history too short"):
        fit(_labels(1), np.zeros((1, 15)), 0.0, HOUR, TINY)
    with pytest.raises(TrainingError, match="values must be"):
        fit(_labels(2), np.zeros((1, 200)), 0.0, HOUR, TINY)
    with pytest.raises(TrainingError, match="extra must be"):
        fit(_labels(1), np.zeros((1, 200)), 0.0, HOUR, TINY, extra=np.zeros((1, 199)))


def test_device_selection() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="CUDA is not available"):
            select_device("cuda")


def test_series_seed_is_stable_and_distinct() -> None:
    a, b = _labels(2)
    assert series_seed(0, a) == series_seed(0, a)
    assert len({series_seed(0, a), series_seed(0, b), series_seed(1, a)}) == 3
    assert series_seed(0, a) == 759447053730471855  # stable across processes and releases


@dataclasses.dataclass(frozen=True)
class Grid:
    """The fields of the store's GridBatch that the adapter reads."""

    labels: tuple[Labels, ...]
    values: npt.NDArray[np.float64]
    start_s: float
    step_s: float


def test_neural_forecaster_fits_warm_starts_and_pads_the_horizon() -> None:
    labels = tuple(_labels(2))
    values = _daily(2, 24 * 6)
    model = NeuralForecaster(TINY)
    assert model.NEEDS_FIT and model.QUANTILES
    assert np.isnan(model.predict(Grid(labels, values, 0.0, HOUR), 3)).all()  # not fitted yet
    model.fit(Grid(labels, values, 0.0, HOUR))
    model.fit(Grid(labels, values, 0.0, HOUR))
    assert model.last_report is not None and model.last_report.warm_started == 2
    out = model.predict(Grid(labels, values, 0.0, HOUR), 6)  # trained horizon is 4
    assert out.shape == (2, 3, 6) and out.dtype == np.float64
    assert np.isfinite(out[..., :4]).all() and np.isnan(out[..., 4:]).all()


def test_state_survives_a_json_round_trip_of_its_config() -> None:
    values = _daily(2, 24 * 6)
    state, _ = fit(_labels(2), values, 0.0, HOUR, TINY)
    config = json.loads(json.dumps(state.config))
    assert config == state.config
    saved = trainer_state.ModelState(config=config, labels=state.labels, tensors=dict(state.tensors))
    np.testing.assert_array_equal(
        predict(saved, _labels(2), values, 0.0, HOUR, device="cpu"),
        predict(state, _labels(2), values, 0.0, HOUR, device="cpu"),
    )
    _, report = fit(_labels(2), values, 0.0, HOUR, TINY, previous=saved)
    assert report.warm_started == 2


def test_calibration_is_saved_per_series_and_applied_by_predict() -> None:
    values = _daily(2, 24 * 8, noise=0.3)
    state, _ = fit(_labels(2), values, 0.0, HOUR, dataclasses.replace(TINY, calibrate=True))
    scales = state.tensors[trainer_state.CALIBRATION]
    assert tuple(scales.shape) == (2, 3) and (scales > 0).all() and (scales[:, 1] == 1).all()
    plain = dict(state.tensors)
    plain[trainer_state.CALIBRATION] = torch.ones(2, 3)
    raw = predict(dataclasses.replace(state, tensors=plain), _labels(2), values, 0.0, HOUR, device="cpu")
    out = predict(state, _labels(2), values, 0.0, HOUR, device="cpu")
    np.testing.assert_allclose(out[:, 1], raw[:, 1])  # the median is never moved
    gap = (out - out[:, 1:2]) / np.where(raw - raw[:, 1:2] == 0, 1.0, raw - raw[:, 1:2])
    np.testing.assert_allclose(gap[:, [0, 2]], scales[:, [0, 2], None].expand(2, 2, 4).numpy(), rtol=1e-3)
    # Without calibration (the default) the network's own quantiles are what predict returns.
    off, _ = fit(_labels(2), values, 0.0, HOUR, TINY)
    assert (off.tensors[trainer_state.CALIBRATION] == 1).all()


def test_states_from_before_the_diff_scale_and_calibration_still_predict_as_trained() -> None:
    values = _daily(2, 24 * 6)
    std = dataclasses.replace(TINY, features=dataclasses.replace(TINY.features, scale="std"), calibrate=False)
    state, _ = fit(_labels(2), values, 0.0, HOUR, std)
    old_features = {k: v for k, v in state.config["features"].items() if k != "scale"}
    old = trainer_state.ModelState(
        config={**state.config, "features": old_features},
        labels=state.labels,
        tensors={k: v for k, v in state.tensors.items() if k != trainer_state.CALIBRATION},
    )
    np.testing.assert_array_equal(
        predict(old, _labels(2), values, 0.0, HOUR, device="cpu"),
        predict(state, _labels(2), values, 0.0, HOUR, device="cpu"),
    )
    # A new training run does not warm-start from it: its inputs were scaled differently.
    _, report = fit(_labels(2), values, 0.0, HOUR, TINY, previous=old)
    assert report.warm_started == 0
