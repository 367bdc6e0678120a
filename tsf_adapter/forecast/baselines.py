"""Baseline forecasters, and their exact kernels: PromQL's ``predict_linear`` and ``holt_winters``.

Pure kernels first, thin ``Forecaster`` classes at the bottom (the classes only
pick the window and shape the output).

Two forms of each: one on raw samples (``timestamps_ms``, ``values``), which is
what Prometheus evaluates and what the integration test compares bit for bit,
and one on a grid (``[series, steps]``, NaN for gaps) vectorised across series
for the forecasters. Both perform the same float64 operations in the same order
as Prometheus 2.42's Go code (no fused multiply-add on amd64), so results are
bit-identical, not merely close.

Semantics kept from Prometheus 2.x:

* a range ``x[r]`` evaluated at ``t`` holds the samples in the CLOSED interval
  ``[t - r, t]`` (3.x made it left-open); staleness markers are not samples;
* the regression's x axis is seconds relative to the evaluation time, so the
  intercept is the fitted value *at* ``t``, not at the last sample;
* sums use Kahan-Babuška-Neumaier compensation; when every y is equal the
  slope is 0 (NaN, NaN for an infinite constant);
* fewer than 2 samples: no value (``None`` here, NaN in the grid form);
* ``holt_winters`` returns the smoothed level, not a forecast, and needs
  ``0 < sf < 1`` and ``0 < tf < 1``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import stale_mask
from tsf_adapter.forecast.base import POINT_QUANTILES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def select_range(
    timestamps_ms: npt.ArrayLike, values: npt.ArrayLike, eval_ms: int, range_ms: int
) -> tuple[IntArray, FloatArray]:
    """The samples PromQL's ``x[range]`` sees at ``eval_ms``: ``[eval - range, eval]``, no stale markers."""
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    vs = np.asarray(values, dtype=np.float64)
    keep = (ts >= eval_ms - range_ms) & (ts <= eval_ms) & ~stale_mask(vs)
    return ts[keep], vs[keep]


def _kahan_inc(inc: float, total: float, comp: float) -> tuple[float, float]:
    """One Neumaier-compensated addition: returns the new sum and compensation."""
    t = total + inc
    if abs(total) >= abs(inc):
        comp += (total - t) + inc
    else:
        comp += (inc - t) + total
    return t, comp


def linear_regression(
    timestamps_ms: npt.ArrayLike, values: npt.ArrayLike, intercept_ms: int
) -> tuple[float, float]:
    """Least-squares slope (per second) and intercept at ``intercept_ms``, exactly as Prometheus 2.x.

    Needs at least one sample; callers check for two (PromQL gives no value below two).
    """
    ts = np.asarray(timestamps_ms, dtype=np.int64).tolist()
    ys = np.asarray(values, dtype=np.float64).tolist()
    if not ys:
        raise ValueError("linear_regression needs at least one sample")
    n = 0.0
    sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    init_y = ys[0]
    const_y = True
    for i, (t, y) in enumerate(zip(ts, ys, strict=True)):
        if const_y and i > 0 and y != init_y:
            const_y = False
        n += 1.0
        x = float(t - intercept_ms) / 1e3
        sum_x, c_x = _kahan_inc(x, sum_x, c_x)
        sum_y, c_y = _kahan_inc(y, sum_y, c_y)
        sum_xy, c_xy = _kahan_inc(x * y, sum_xy, c_xy)
        sum_x2, c_x2 = _kahan_inc(x * x, sum_x2, c_x2)
    if const_y:
        if math.isinf(init_y):
            return math.nan, math.nan
        return 0.0, init_y
    sum_x += c_x
    sum_y += c_y
    sum_xy += c_xy
    sum_x2 += c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = _div(cov_xy, var_x)
    intercept = sum_y / n - slope * sum_x / n
    return slope, intercept


def _div(a: float, b: float) -> float:
    """Go float division: x/0 is ±Inf or NaN instead of an exception."""
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def predict_linear(
    timestamps_ms: npt.ArrayLike, values: npt.ArrayLike, eval_ms: int, range_ms: int, horizon_s: float
) -> float | None:
    """``predict_linear(x[range], horizon_s)`` evaluated at ``eval_ms``; None where PromQL has no value.

    >>> predict_linear([0, 60_000, 120_000], [1.0, 2.0, 3.0], 120_000, 120_000, 60.0)
    4.0
    """
    ts, vs = select_range(timestamps_ms, values, eval_ms, range_ms)
    if len(vs) < 2:
        return None
    slope, intercept = linear_regression(ts, vs, eval_ms)
    return slope * horizon_s + intercept


def _check_factors(sf: float, tf: float) -> None:
    if not 0.0 < sf < 1.0:
        raise ValueError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:f}")
    if not 0.0 < tf < 1.0:
        raise ValueError(f"invalid trend factor. Expected: 0 < tf < 1, got: {tf:f}")


def holt_winters_level_trend(values: npt.ArrayLike, sf: float, tf: float) -> tuple[float, float] | None:
    """Double exponential smoothing over consecutive samples: ``(level, next trend)``.

    ``level`` is what PromQL's ``holt_winters`` returns. ``next trend`` is the
    trend Prometheus would use for one more sample, per sample interval, for
    extrapolating ``level + k * trend``.
    """
    _check_factors(sf, tf)
    ys = np.asarray(values, dtype=np.float64).tolist()
    if len(ys) < 2:
        return None
    s0 = 0.0
    s1 = ys[0]
    b = ys[1] - ys[0]
    for i in range(1, len(ys)):
        x = sf * ys[i]
        if i - 1 != 0:
            b = tf * (s1 - s0) + (1 - tf) * b
        y = (1 - sf) * (s1 + b)
        s0, s1 = s1, x + y
    return s1, tf * (s1 - s0) + (1 - tf) * b


def holt_winters(
    timestamps_ms: npt.ArrayLike, values: npt.ArrayLike, eval_ms: int, range_ms: int, sf: float, tf: float
) -> float | None:
    """``holt_winters(x[range], sf, tf)`` evaluated at ``eval_ms``; None where PromQL has no value."""
    _check_factors(sf, tf)
    _, vs = select_range(timestamps_ms, values, eval_ms, range_ms)
    out = holt_winters_level_trend(vs, sf, tf)
    return None if out is None else out[0]


# --- grid forms: [series, steps], NaN = no sample; vectorised across series --------------------


def _kahan_inc_vec(
    inc: FloatArray, total: FloatArray, comp: FloatArray, use: BoolArray
) -> tuple[FloatArray, FloatArray]:
    t = total + inc
    delta = np.where(np.abs(total) >= np.abs(inc), (total - t) + inc, (inc - t) + total)
    return np.where(use, t, total), np.where(use, comp + delta, comp)


def linear_regression_grid(
    values: FloatArray, timestamps_ms: IntArray, intercept_ms: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-row ``linear_regression`` over the non-NaN cells: ``(slope, intercept, n)``.

    A row's result is bit-identical to the scalar kernel on that row's samples.
    Rows with no samples get NaN.
    """
    rows = values.shape[0]
    present = ~np.isnan(values)
    n = np.zeros(rows)
    sum_x, c_x, sum_y, c_y = (np.zeros(rows) for _ in range(4))
    sum_xy, c_xy, sum_x2, c_x2 = (np.zeros(rows) for _ in range(4))
    first = np.argmax(present, axis=1)
    init_y = values[np.arange(rows), first]
    const_y = np.ones(rows, dtype=bool)
    xs = (np.asarray(timestamps_ms, dtype=np.int64) - intercept_ms).astype(np.float64) / 1e3
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for j in np.flatnonzero(present.any(axis=0)):
            use = present[:, j]
            y = np.where(use, values[:, j], 0.0)
            x = np.full(rows, xs[j])
            const_y &= ~(use & (n > 0) & (y != init_y))
            n = np.where(use, n + 1.0, n)
            sum_x, c_x = _kahan_inc_vec(x, sum_x, c_x, use)
            sum_y, c_y = _kahan_inc_vec(y, sum_y, c_y, use)
            sum_xy, c_xy = _kahan_inc_vec(x * y, sum_xy, c_xy, use)
            sum_x2, c_x2 = _kahan_inc_vec(x * x, sum_x2, c_x2, use)
        sum_x = sum_x + c_x
        sum_y = sum_y + c_y
        sum_xy = sum_xy + c_xy
        sum_x2 = sum_x2 + c_x2
        cov_xy = sum_xy - sum_x * sum_y / n
        var_x = sum_x2 - sum_x * sum_x / n
        slope = cov_xy / var_x
        intercept = sum_y / n - slope * sum_x / n
    inf_const = const_y & np.isinf(init_y)
    slope = np.where(const_y, np.where(inf_const, np.nan, 0.0), slope)
    intercept = np.where(const_y, np.where(inf_const, np.nan, init_y), intercept)
    empty = n == 0
    return np.where(empty, np.nan, slope), np.where(empty, np.nan, intercept), n


def predict_linear_grid(
    values: FloatArray, timestamps_ms: IntArray, eval_ms: int, horizons_s: FloatArray
) -> FloatArray:
    """``predict_linear`` at ``eval_ms`` over all columns, for several horizons: ``[series, horizons]``.

    The caller picks the columns that form the range. Rows with fewer than 2 samples give NaN.
    """
    slope, intercept, n = linear_regression_grid(values, timestamps_ms, eval_ms)
    with np.errstate(invalid="ignore"):
        out = slope[:, None] * np.asarray(horizons_s, dtype=np.float64)[None, :] + intercept[:, None]
    out[n < 2] = np.nan
    return out


def holt_winters_grid(values: FloatArray, sf: float, tf: float) -> tuple[FloatArray, FloatArray]:
    """Per-row ``holt_winters_level_trend`` over the non-NaN cells: ``(level, next trend)``.

    Bit-identical to the scalar kernel on each row's samples; NaN for rows with fewer than 2.
    """
    _check_factors(sf, tf)
    rows = values.shape[0]
    present = ~np.isnan(values)
    count = np.zeros(rows, dtype=np.int64)
    s0 = np.zeros(rows)
    s1 = np.zeros(rows)
    b = np.zeros(rows)
    with np.errstate(invalid="ignore", over="ignore"):
        for j in np.flatnonzero(present.any(axis=0)):
            use = present[:, j]
            y = np.where(use, values[:, j], 0.0)
            first = use & (count == 0)
            second = use & (count == 1)
            later = use & (count >= 2)
            s1 = np.where(first, y, s1)
            b = np.where(second, y - s1, b)
            b = np.where(later, tf * (s1 - s0) + (1 - tf) * b, b)
            step = use & (count >= 1)
            new_s1 = sf * y + (1 - sf) * (s1 + b)
            s0 = np.where(step, s1, s0)
            s1 = np.where(step, new_s1, s1)
            count = count + use
        trend = tf * (s1 - s0) + (1 - tf) * b
    short = count < 2
    return np.where(short, np.nan, s1), np.where(short, np.nan, trend)


# --- forecasters: thin classes over the kernels ---------------------------------------------


def range_columns(batch: GridBatch, range_s: float | None) -> slice:
    """Columns of ``batch`` inside the closed range ``[end - range, end]`` (all of them for None)."""
    if range_s is None:
        return slice(0, batch.n_steps)
    if range_s <= 0:
        raise ValueError(f"range_s must be > 0 (got {range_s})")
    lower = batch.end_ms - round(range_s * 1000) - batch.start_ms
    first = max(0, -(-lower // batch.step_ms))
    return slice(first, batch.n_steps)


class _PointBaseline:
    """Shared plumbing: nothing to fit, one quantile (the point forecast), output ``[series, 1, h]``."""

    NEEDS_FIT: ClassVar[bool] = False
    QUANTILES: ClassVar[bool] = False

    name: str = ""

    def __init__(self) -> None:
        self.quantiles: tuple[float, ...] = POINT_QUANTILES

    def fit(self, batch: GridBatch) -> None:
        """Baselines learn nothing; present so every model is driven the same way."""

    def predict(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        if horizon_steps < 1:
            raise ValueError(f"horizon_steps must be >= 1 (got {horizon_steps})")
        point = self._point(batch, horizon_steps)  # [series, horizon]
        return point[:, None, :]  # [series, 1, horizon]

    def _point(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class PredictLinear(_PointBaseline):
    """PromQL ``predict_linear(x[range], h)`` evaluated at the batch's last step, for each horizon step.

    ``range_s=None`` uses the whole batch. Gaps are simply absent samples, as in Prometheus.

    >>> import numpy as np
    >>> b = GridBatch("t", ((),), np.array([[1.0, 2.0, 3.0]]), 60_000, 60_000)
    >>> PredictLinear().predict(b, 2).tolist()
    [[[4.0, 5.0]]]
    """

    name = "predict_linear"

    def __init__(self, range_s: float | None = None) -> None:
        super().__init__()
        self.range_s = range_s

    def _point(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        cols = range_columns(batch, self.range_s)
        horizons_s = np.arange(1, horizon_steps + 1, dtype=np.int64) * batch.step_ms / 1000.0
        return predict_linear_grid(
            batch.values[:, cols], batch.timestamps_ms()[cols], batch.end_ms, horizons_s
        )


class HoltWinters(_PointBaseline):
    """PromQL's ``holt_winters`` level, extrapolated with its trend: ``level + k * trend``.

    PromQL itself returns only the level (a smoothed value, not a forecast); the
    trend is per *sample*, so it matches per *step* only where the grid has no gaps.
    """

    name = "holt_winters"

    def __init__(self, sf: float = 0.3, tf: float = 0.1, range_s: float | None = None) -> None:
        super().__init__()
        _check_factors(sf, tf)
        self.sf = sf
        self.tf = tf
        self.range_s = range_s

    def _point(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        cols = range_columns(batch, self.range_s)
        level, trend = holt_winters_grid(batch.values[:, cols], self.sf, self.tf)
        k = np.arange(1, horizon_steps + 1, dtype=np.float64)
        return level[:, None] + k[None, :] * trend[:, None]


class LastValue(_PointBaseline):
    """The last sample of each series, held flat. Hard to beat on short horizons."""

    name = "last_value"

    def _point(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        return np.repeat(last_values(batch.values)[:, None], horizon_steps, axis=1)


class SeasonalNaive(_PointBaseline):
    """The value one period earlier (1 day by default; 1 week with ``period_s=7 * 86400``).

    Where that step is a gap, the same step one more period back is used, and so
    on; NaN if no season has it. The period must be a whole number of steps.
    """

    name = "seasonal_naive"

    def __init__(self, period_s: float = 86_400.0) -> None:
        super().__init__()
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0 (got {period_s})")
        self.period_s = period_s
        self.name = f"seasonal_naive_{_duration(period_s)}"

    def _point(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        period_ms = round(self.period_s * 1000)
        if period_ms % batch.step_ms:
            raise ValueError(f"period {self.period_s}s is not a whole number of {batch.step_s}s steps")
        return seasonal_naive_grid(batch.values, period_ms // batch.step_ms, horizon_steps)


def last_values(values: FloatArray) -> FloatArray:
    """The last non-NaN cell of each row; NaN for empty rows."""
    present = ~np.isnan(values)
    last = values.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
    picked = values[np.arange(values.shape[0]), last]
    return np.where(present.any(axis=1), picked, np.nan)


def seasonal_naive_grid(values: FloatArray, period_steps: int, horizon_steps: int) -> FloatArray:
    """``[series, horizon]``: for step ``n - 1 + k`` the latest non-NaN of ``n - 1 + k - m * period``."""
    rows, cols = values.shape
    k = np.arange(1, horizon_steps + 1)
    col = cols - 1 + k - period_steps * (-(-k // period_steps))  # same phase, last full season
    out = np.full((rows, horizon_steps), np.nan)
    while (col >= 0).any():
        picked = np.where(col >= 0, values[:, np.clip(col, 0, None)], np.nan)
        out = np.where(np.isnan(out), picked, out)
        if not np.isnan(out).any():
            break
        col = col - period_steps
    return out


def _duration(seconds: float) -> str:
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


BASELINES: dict[str, type[_PointBaseline]] = {
    "predict_linear": PredictLinear,
    "holt_winters": HoltWinters,
    "last_value": LastValue,
    "seasonal_naive": SeasonalNaive,
}
"""Baselines by config name; keyword arguments go to the constructor."""
