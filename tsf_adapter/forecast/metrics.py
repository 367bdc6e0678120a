"""Forecast error metrics for the backtest summary: MAE, MASE, pinball loss, interval coverage.

Every metric reduces over the LAST axis (the horizon) and keeps the leading
ones, so ``[series, horizon]`` arrays give one number per series and a 1-d
array gives a 0-d array (``float()`` it). Positions where the actual value is
NaN (a gap in the data) are left out rather than counted as errors; a series
with no actual values at all gets NaN.

Across series, errors of different scales are combined with the geometric mean
of ratios (e.g. a model's MAE divided by a baseline's), which neither a large
disk nor a near-empty one dominates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _masked_mean(errors: FloatArray, valid: npt.NDArray[np.bool_]) -> FloatArray:
    count = valid.sum(axis=-1)
    total = np.where(valid, errors, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(count > 0, total / count, np.nan)
    return out


def mae(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> FloatArray:
    """Mean absolute error over the last axis, skipping NaN actuals.

    >>> float(mae([1.0, 2.0, float("nan")], [2.0, 2.0, 5.0]))
    0.5
    """
    y = np.asarray(actual, dtype=np.float64)
    f = np.asarray(predicted, dtype=np.float64)
    return _masked_mean(np.abs(y - f), ~np.isnan(y))


def naive_scale(history: npt.ArrayLike, season: int = 1) -> FloatArray:
    """In-sample MAE of the (seasonal) naive forecast: mean ``|y[t] - y[t - season]|`` over present pairs."""
    if season < 1:
        raise ValueError(f"season must be >= 1 (got {season})")
    h = np.asarray(history, dtype=np.float64)
    diffs = np.abs(h[..., season:] - h[..., :-season])
    return _masked_mean(diffs, ~np.isnan(diffs))


def mase(
    actual: npt.ArrayLike, predicted: npt.ArrayLike, history: npt.ArrayLike, season: int = 1
) -> FloatArray:
    """MAE scaled by the in-sample one-step (or ``season``-step) naive MAE of ``history``.

    Below 1 the forecast beats what the naive method did in the past. A flat
    history (scale 0) gives inf, or NaN when the forecast error is 0 too.

    >>> float(mase([10.0, 12.0], [11.0, 11.0], [1.0, 2.0, 4.0]))
    0.6666666666666666
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = mae(actual, predicted) / naive_scale(history, season)
    return out


def pinball_loss(actual: npt.ArrayLike, predicted: npt.ArrayLike, quantiles: Sequence[float]) -> FloatArray:
    """Mean pinball loss per quantile: ``actual [..., h]``, ``predicted [..., q, h]`` → ``[..., q]``.

    For quantile ``q`` and error ``e = actual - predicted``: ``max(q * e, (q - 1) * e)``.
    At q=0.5 it is half the absolute error.

    >>> pinball_loss([1.0, 1.0], [[0.0, 2.0]], [0.9]).tolist()
    [0.5]
    """
    y = np.asarray(actual, dtype=np.float64)[..., None, :]  # [..., 1, h]
    f = np.asarray(predicted, dtype=np.float64)  # [..., q, h]
    q = np.asarray(quantiles, dtype=np.float64)[:, None]  # [q, 1]
    if f.shape[-2] != q.shape[0]:
        raise ValueError(f"predicted has {f.shape[-2]} quantile rows for {q.shape[0]} quantiles")
    e = y - f
    loss = np.maximum(q * e, (q - 1.0) * e)
    return _masked_mean(loss, np.broadcast_to(~np.isnan(y), loss.shape))


def interval_coverage(actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> FloatArray:
    """Share of actual values inside ``[lower, upper]`` (0.8 is ideal for a p10–p90 interval).

    >>> float(interval_coverage([1.0, 5.0, 2.0, 0.5], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]))
    0.75
    """
    y = np.asarray(actual, dtype=np.float64)
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    inside = ((y >= lo) & (y <= hi)).astype(np.float64)
    return _masked_mean(inside, np.broadcast_to(~np.isnan(y), inside.shape))


def quantile_coverage(
    actual: npt.ArrayLike,
    predicted: npt.ArrayLike,
    quantiles: Sequence[float],
    low: float = 0.1,
    high: float = 0.9,
) -> FloatArray:
    """``interval_coverage`` between the ``low`` and ``high`` quantile rows of ``predicted [..., q, h]``."""
    qs = list(quantiles)
    try:
        i_low, i_high = qs.index(low), qs.index(high)
    except ValueError:
        raise ValueError(f"quantiles {qs} must include {low} and {high}") from None
    f = np.asarray(predicted, dtype=np.float64)
    return interval_coverage(actual, f[..., i_low, :], f[..., i_high, :])


def geometric_mean(values: npt.ArrayLike) -> float:
    """Geometric mean of positive numbers, NaNs skipped; 0 if any is 0; NaN if none is left.

    >>> geometric_mean([0.5, 2.0, float("nan")])
    1.0
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan")
    if (v < 0).any():
        raise ValueError("geometric_mean: values must not be negative")
    if (v == 0).any():
        return 0.0
    return float(np.exp(np.mean(np.log(v))))
