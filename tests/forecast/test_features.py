"""Windowing, per-window scaling, gap handling and calendar covariates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tsf_adapter.core.series import STALE_NAN
from tsf_adapter.forecast.neural.features import (
    N_COVARIATES,
    FeatureConfig,
    WindowSource,
    climb_run,
    forward_fill,
    time_covariates,
    window_origins,
)

DAY = 86_400.0
MONDAY = 4 * DAY  # 1970-01-05 00:00 UTC


def test_forward_fill_fills_from_the_past_and_marks_gaps() -> None:
    values = np.array([[np.nan, 2.0, np.nan, STALE_NAN, 5.0, np.inf], [np.nan] * 6])
    filled, seen = forward_fill(values)
    assert filled.tolist() == [[2.0, 2.0, 2.0, 2.0, 5.0, 5.0], [0.0] * 6]
    assert seen.tolist() == [[False, True, False, False, True, False], [False] * 6]


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 30), elements=st.one_of(st.just(np.nan), st.floats(-1e6, 1e6))))
def test_forward_fill_properties(values: np.ndarray[Any, np.dtype[np.float64]]) -> None:
    filled, seen = forward_fill(values)
    assert np.isfinite(filled).all()
    assert np.array_equal(filled[seen], values[seen])
    obs = np.flatnonzero(seen)
    for i in range(values.size):
        before = obs[obs <= i]
        want = values[before[-1]] if before.size else (values[obs[0]] if obs.size else 0.0)
        assert filled[i] == want


def test_time_covariates_cycle_and_day_flag() -> None:
    cfg = FeatureConfig(day_start_hour=8, day_end_hour=20)
    stamps = MONDAY + np.array([0.0, 6, 8, 12, 19.99, 20]) * 3600
    cov = time_covariates(stamps, cfg).astype(np.float64)
    assert cov.shape == (6, N_COVARIATES)
    np.testing.assert_allclose(cov[0, :4], [0.0, 1.0, 0.0, 1.0], atol=1e-6)  # Monday midnight
    np.testing.assert_allclose(cov[1, :2], [1.0, 0.0], atol=1e-6)  # 06:00 is a quarter turn
    assert cov[:, 4].tolist() == [0, 0, 1, 1, 1, 0]
    # A week later everything repeats; a day later only time of day does.
    week = time_covariates(stamps + 7 * DAY, cfg).astype(np.float64)
    day = time_covariates(stamps + DAY, cfg).astype(np.float64)
    np.testing.assert_allclose(week, cov, atol=1e-5)
    np.testing.assert_allclose(day[:, :2], cov[:, :2], atol=1e-5)
    assert not np.allclose(day[:, 2:4], cov[:, 2:4], atol=1e-3)


def test_day_flag_wraps_midnight_and_follows_local_time() -> None:
    night_shift = FeatureConfig(day_start_hour=22, day_end_hour=6)
    hours = MONDAY + np.array([21.0, 23, 2, 7]) * 3600
    assert time_covariates(hours, night_shift)[:, 4].tolist() == [0, 1, 1, 0]
    # 07:00 UTC is 09:00 at UTC+2: inside office hours there.
    local = FeatureConfig(day_start_hour=8, day_end_hour=20, utc_offset_hours=2)
    assert time_covariates(np.array([MONDAY + 7 * 3600]), local)[0, 4] == 1


@pytest.mark.parametrize(
    ("n_steps", "stride", "want"),
    [(10, 1, [4, 5, 6, 7, 8]), (10, 3, [5, 8]), (6, 1, [4]), (5, 1, [])],
)
def test_window_origins_always_include_the_newest(n_steps: int, stride: int, want: list[int]) -> None:
    assert window_origins(n_steps, 4, 2, stride).tolist() == want


def _source(values: Any, cfg: FeatureConfig | None = None, **kw: Any) -> WindowSource:
    cfg = cfg or FeatureConfig(input_steps=6, horizon_steps=3)
    return WindowSource(np.asarray(values, dtype=np.float64), 0.0, 60.0, cfg, **kw)


@settings(max_examples=25, deadline=None)
@given(st.floats(1e-3, 1e6), st.floats(-1e9, 1e9))
def test_windows_see_shape_not_level(gain: float, offset: float) -> None:
    # Without the relative floor (which exists for flat series) scaling is exactly affine-invariant.
    cfg = FeatureConfig(input_steps=6, horizon_steps=3, relative_scale_floor=0.0)
    base = np.sin(np.arange(40) / 3.0)[None]
    origins = torch.tensor([10, 25, 37])
    a = _source(base, cfg).grid(origins)
    b = _source(base * gain + offset, cfg).grid(origins)
    np.testing.assert_allclose(b.x.numpy(), a.x.numpy(), atol=1e-3)
    np.testing.assert_allclose(b.y.numpy(), a.y.numpy(), atol=1e-3)


@pytest.mark.parametrize("scale", ["std", "min"])
@pytest.mark.parametrize("gain", [2.0**-20, 2.0**30, 2.0**1000, 1e300, 1.5e308])
def test_windows_near_the_float64_limits_scale_as_any_others(gain: float, scale: str) -> None:
    # 1.5e308 * sin: differences and squares past float64. A power of two scales exactly.
    cfg = FeatureConfig(input_steps=6, horizon_steps=3, scale=scale)  # type: ignore[arg-type]
    base = np.sin(np.arange(40) / 3.0)[None]
    origins = torch.tensor([10, 25, 37])
    a = _source(base, cfg).grid(origins)
    b = _source(base * gain, cfg).grid(origins)
    assert torch.isfinite(b.x).all() and torch.isfinite(b.y).all()
    assert torch.isfinite(b.scale).all() and (b.scale > 0).all()
    if math.log2(gain).is_integer():
        assert torch.equal(b.x, a.x) and torch.equal(b.y, a.y)
        assert torch.equal(b.scale, a.scale * gain) and torch.equal(b.level, a.level * gain)
    else:
        np.testing.assert_allclose(b.x.numpy(), a.x.numpy(), atol=1e-5)
        np.testing.assert_allclose(b.y.numpy(), a.y.numpy(), atol=1e-5)


def test_a_target_too_far_off_its_window_is_masked_not_infinite() -> None:
    values = np.concatenate([np.full(10, 1e-3), [1.7e308, -1.7e308], np.full(10, 1e-3)])
    b = _source(values[None]).grid(torch.tensor([10]))  # inputs 4..9, targets 10..12
    assert torch.isfinite(b.y).all()
    assert b.y_mask[0, 0].tolist() == [0.0, 0.0, 1.0]


def test_targets_scale_back_to_the_raw_values_and_gaps_are_masked() -> None:
    values = 1e12 + 1e3 * np.arange(30.0)  # bytes-sized level: float32 alone would lose the signal
    values[20] = np.nan
    src = _source(values[None])
    b = src.grid(torch.tensor([18]))
    y = b.y[0, 0].double() * b.scale[0, 0] + b.level[0, 0]
    assert b.y_mask[0, 0].tolist() == [1.0, 1.0, 0.0]
    np.testing.assert_allclose(y.numpy()[[0, 1]], values[[18, 19]], rtol=0, atol=1e-2)
    assert b.y[0, 0, 2] == 0.0
    assert float(b.level[0, 0]) == values[17]


def test_gap_inputs_are_filled_and_flagged() -> None:
    values = np.arange(20.0)
    values[[8, 9]] = np.nan
    b = _source(values[None]).grid(torch.tensor([11]))  # inputs are steps 5..10
    assert b.x[0, 0, :, 1].tolist() == [1, 1, 1, 0, 0, 1]
    assert b.x[0, 0, 3, 0] == b.x[0, 0, 2, 0]  # step 8 repeats step 7
    assert torch.isfinite(b.x).all()


def test_flat_and_empty_series_stay_finite_and_empty_ones_train_nothing() -> None:
    values = np.stack([np.full(20, 5.0), np.zeros(20), np.full(20, np.nan)])
    b = _source(values).grid(torch.tensor([8, 17]))
    assert torch.isfinite(b.x).all() and torch.isfinite(b.y).all()
    assert (b.scale > 0).all()
    assert torch.allclose(b.scale[0], torch.tensor(5e-3, dtype=torch.float64))  # the relative floor
    assert b.y_mask[:2].all() and not b.y_mask[2].any()


def test_short_history_is_padded_with_gaps() -> None:
    src = _source(np.array([[1.0, 2.0, 3.0]]))
    b = src.grid(torch.tensor([src.n_steps]))  # the forecast origin: no targets
    assert tuple(b.x.shape) == (1, 1, 6, 2 + N_COVARIATES)
    assert b.x[0, 0, :, 1].tolist() == [0, 0, 0, 1, 1, 1]
    assert not b.y_mask.any()


def test_extra_channels_are_scaled_and_pairs_match_grid() -> None:
    values = np.stack([np.arange(30.0), np.arange(30.0) ** 2])
    extra = np.stack([values * 1000 + 7, -values])[:, :, :].transpose(1, 0, 2)  # [S=2, C=2, T]
    src = _source(values, extra=extra)
    assert src.n_features == 2 + 2 + N_COVARIATES
    g = src.grid(torch.tensor([10, 20]))
    # Channel 2 is the first extra: an affine copy of the target, so identical once scaled.
    np.testing.assert_allclose(g.x[..., 2].numpy(), g.x[..., 0].numpy(), atol=1e-4)
    p = src.pairs(torch.tensor([1, 0]), torch.tensor([20, 10]))
    assert torch.equal(p.x[0], g.x[1, 1]) and torch.equal(p.x[1], g.x[0, 0])
    assert torch.equal(p.y[0], g.y[1, 1])


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="series, steps"):
        _source(np.zeros(5))
    with pytest.raises(ValueError, match="extra"):
        _source(np.zeros((2, 5)), extra=np.zeros((2, 5)))


def test_covariates_in_windows_follow_the_grid_clock() -> None:
    cfg = FeatureConfig(input_steps=4, horizon_steps=1)
    src = WindowSource(np.zeros((1, 48)), MONDAY, 3600.0, cfg)
    x = src.grid(torch.tensor([24])).x[0, 0]  # inputs are hours 20..23
    np.testing.assert_allclose(x[-1, 2].item(), math.sin(2 * math.pi * 23 / 24), atol=1e-6)


def test_min_scale_is_barely_moved_by_one_level_shift() -> None:
    # A quiet random walk that dropped by 100x its step a few steps before the window ends (a
    # deletion): the std scale jumps ~20x, the min scale less than half as much.
    rng = np.random.default_rng(0)
    quiet = 1000.0 + np.cumsum(rng.normal(0.0, 1.0, 200))
    shifted = quiet.copy()
    shifted[150:] -= 100.0
    origin = torch.tensor([170])
    scales = {}
    for kind in ("std", "min"):
        cfg = FeatureConfig(input_steps=48, horizon_steps=6, scale=kind)
        a = _source(quiet[None], cfg).grid(origin).scale[0, 0]
        b = _source(shifted[None], cfg).grid(origin).scale[0, 0]
        scales[kind] = float(b / a)
    assert scales["std"] > 2 * scales["min"]


def test_min_scale_keeps_the_std_of_noise_and_of_a_random_walk() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 1.0, (200, 145))
    walk = np.cumsum(noise, axis=1)
    cfg = {k: FeatureConfig(input_steps=145, horizon_steps=1, scale=k) for k in ("std", "min")}
    at = torch.tensor([145])
    ratio_noise = _source(noise, cfg["min"]).grid(at).scale / _source(noise, cfg["std"]).grid(at).scale
    assert (ratio_noise == 1).all()
    ratio_walk = _source(walk, cfg["min"]).grid(at).scale / _source(walk, cfg["std"]).grid(at).scale
    assert 0.5 < float(ratio_walk.median()) <= 1.0


def test_climb_channel_counts_how_long_the_series_has_risen() -> None:
    step_s = 300.0
    flat = np.full(60, 100.0)
    climb = np.concatenate([np.full(20, 100.0), 100.0 + np.arange(40.0)])  # rises from step 20 on
    values = np.stack([flat, climb])
    run = climb_run(values, step_s)
    assert (run[0] == 0).all()
    # Rising once the 30-minute change (6 steps) is positive, then by one step per step, to the cap.
    assert run[1, 20] == 0 and run[1, 21] == pytest.approx(step_s / (6 * 3600))
    assert run[1, -1] == pytest.approx(39 * step_s / (6 * 3600))
    assert climb_run(np.linspace(0.0, 1.0, 200)[None], step_s)[0, -1] == 1.0  # capped at 6 hours

    cfg = FeatureConfig(input_steps=12, horizon_steps=4, climb=True)
    assert cfg.n_features() == FeatureConfig(input_steps=12, horizon_steps=4).n_features() + 1
    batch = WindowSource(values, 0.0, step_s, cfg).grid(torch.tensor([50]))
    assert batch.x.shape[-1] == cfg.n_features()
    # The channel sits just before the calendar covariates, unscaled.
    got = batch.x[:, 0, :, -N_COVARIATES - 1].double().numpy()
    np.testing.assert_allclose(got, run[:, 38:50], rtol=1e-6)
