"""Quantile calibration: factors that make quantiles hold on held-out targets, applied without crossing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter.forecast.neural.calibration import MAX_SCALE, MIN_SCALE, apply_scales, quantile_scales

QS = (0.1, 0.5, 0.9)


def _band(m: int, b: int, h: int, half_width: float) -> torch.Tensor:
    """[M, B, Q, H]: median 0, p10/p90 at -/+ half_width."""
    q = torch.tensor([-half_width, 0.0, half_width])
    return q[None, None, :, None].expand(m, b, 3, h).clone()


def test_too_narrow_bands_are_widened_until_they_hold() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(2, 400, 5, generator=gen)  # [M, B, H], standard normal
    pred = _band(2, 400, 5, 0.8)  # narrower than the true p10/p90 (±1.28)
    scales = quantile_scales(pred, y, torch.ones_like(y), QS, anchor=1)
    assert scales[:, 1].tolist() == [1.0, 1.0]
    out = apply_scales(pred, scales, anchor=1)  # [M, B, Q, H]
    below = (y[:, :, None, :] <= out).double().mean(dim=(1, 3))  # [M, Q]
    np.testing.assert_allclose(below[:, 0], 0.1, atol=0.01)
    np.testing.assert_allclose(below[:, 2], 0.9, atol=0.01)
    np.testing.assert_allclose(scales[:, 2], 1.28 / 0.8, rtol=0.15)


def test_models_are_calibrated_separately_and_masked_targets_do_not_count() -> None:
    y = torch.zeros(2, 100, 1)
    y[1] = torch.linspace(-3.0, 3.0, 100)[:, None]
    mask = torch.ones_like(y)
    mask[0, :50] = 0.0
    y[0, :50] = 1e6  # would blow up model 0's band if it counted
    scales = quantile_scales(_band(2, 100, 1, 1.5), y, mask, QS, anchor=1)
    assert scales[0, 2] == MIN_SCALE  # all of model 0's real targets sit on its median
    assert 1.4 < scales[1, 2] < 1.8


def test_factors_are_bounded() -> None:
    y = torch.linspace(-100.0, 100.0, 50)[None, :, None]
    scales = quantile_scales(_band(1, 50, 1, 1.0), y, torch.ones_like(y), QS, anchor=1)
    assert scales.tolist() == [[MAX_SCALE, 1.0, MAX_SCALE]]


def test_too_few_targets_keep_the_network_quantiles() -> None:
    y = torch.full((1, 3, 2), 100.0)
    scales = quantile_scales(_band(1, 3, 2, 1.0), y, torch.ones_like(y), QS, anchor=1)
    assert scales.tolist() == [[1.0, 1.0, 1.0]]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
    st.lists(st.floats(MIN_SCALE, MAX_SCALE), min_size=3, max_size=3),
)
def test_applied_scales_never_cross_quantiles(raw: list[float], factors: list[float]) -> None:
    pred = torch.tensor(sorted(raw), dtype=torch.float64)[None, :, None]  # [M=1, Q, H=1]
    out = apply_scales(pred, torch.tensor([factors], dtype=torch.float64), anchor=1)
    assert (out.diff(dim=-2) >= 0).all()
    assert out[0, 1, 0] == pred[0, 1, 0]


def test_a_global_network_is_calibrated_on_a_bounded_draw_of_its_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows are origins x series for one network: at 10,000 series reading all of them ran a
    retrain out of memory. The calibration reads a fixed draw of at most MAX_CALIBRATION_WINDOWS."""
    from tsf_adapter.forecast.neural import loop
    from tsf_adapter.forecast.neural.features import WindowBatch
    from tsf_adapter.forecast.neural.state import TrainConfig

    monkeypatch.setattr(loop, "MAX_CALIBRATION_WINDOWS", 100)
    seen: list[torch.Tensor] = []

    class ManyWindows:
        def n_items(self, n_origins: int) -> int:
            return n_origins * 10_000  # 10,000 series

        def batch(
            self, net: object, origins: torch.Tensor, pick: torch.Tensor
        ) -> tuple[torch.Tensor, WindowBatch]:
            seen.append(pick)
            n = pick.shape[0]
            y = torch.randn(1, n, 4)
            ones = torch.ones(1, n, 4)
            pred = torch.stack([y - 1, y, y + 1], dim=2)  # [M, B, Q, H]
            level = torch.zeros(1, n, dtype=torch.float64)
            return pred, WindowBatch(torch.zeros(1, n, 2, 1), y, ones, level, level + 1)

    class Net:
        anchor = 1

        def eval(self) -> None:
            pass

    cfg = TrainConfig(quantiles=QS)
    origins = torch.arange(64)
    scales = loop.calibration_scales(Net(), ManyWindows(), origins, cfg)  # type: ignore[arg-type]
    read = torch.cat(seen)
    assert read.shape[0] == 100 and len(set(read.tolist())) == 100
    assert int(read.max()) < 64 * 10_000
    assert scales.shape == (1, 3)
    seen.clear()
    loop.calibration_scales(Net(), ManyWindows(), origins, cfg)  # type: ignore[arg-type]
    assert torch.equal(torch.cat(seen), read)  # the same draw every time
