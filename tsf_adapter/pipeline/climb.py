"""Has a series been climbing, fast and for a while? The climb guard of the shipped quota alert.

The recommended ``StorageQuotaForecastFull`` rule (``deploy/rules/``) pages only while the usage
has climbed at least ``min_rate_per_h`` of its quota per hour (its 15-minute ``deriv``) at every
5-minute step of the last 20 minutes. Here it is in PromQL (:meth:`ClimbGuard.promql`) and in
numpy on the same samples (:func:`climb_guard`): the benchmarks score it, and the daemon reads it
at each forecast origin to calibrate the crossing probability separately for series that are
climbing and series that are not (:mod:`tsf_adapter.pipeline.crossings`).

Ranges are Prometheus 2.x's closed ``[t - range, t]`` (as in
:func:`tsf_adapter.forecast.baselines.select_range`) and ``deriv`` is PromQL's
least-squares slope (:func:`tsf_adapter.forecast.baselines.linear_regression_grid`).
The subquery's steps are the multiples of ``step`` in ``[t - sustain, t]``: Prometheus 2.x aligns
them to the step and keeps the range's start, closed like its range selectors (checked
against promtool in ``tests/tools/test_climb_guard_promql.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsf_adapter.forecast.baselines import linear_regression_grid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def duration_text(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h" if s % 3600 == 0 else f"{s // 60}m" if s % 60 == 0 else f"{s}s"


def deriv(values: FloatArray, timestamps_ms: IntArray, eval_ms: int, range_ms: int) -> FloatArray:
    """PromQL ``deriv(x[range])`` at ``eval_ms`` for every row of ``values[series, steps]`` (per
    second; NaN where fewer than 2 samples)."""
    cols = np.flatnonzero((timestamps_ms >= eval_ms - range_ms) & (timestamps_ms <= eval_ms))
    if cols.size == 0:
        return np.full(values.shape[0], np.nan)
    slope, _, n = linear_regression_grid(values[:, cols], timestamps_ms[cols], eval_ms)
    return np.where(n >= 2, slope, np.nan)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClimbGuard:
    """ "Has been climbing, at least this fast, for a while": the condition alone, in PromQL.

    The 30-minute slope (``slope_s``), sampled every ``step_s`` over the last ``sustain_s``,
    stayed above ``min_rate_per_h`` × the quota per hour. A write burst rises for minutes and
    then stops; the day's rhythm rises slowly; a runaway job climbs on. Put in front of a
    forecast's "reaches the quota within 6h", it keeps the forecast's lead and drops the
    episodes of users who sit high or had a burst (BENCHMARKS.md, quota alerts).
    ``min_rate_per_h=0`` asks only that the slope stayed positive (the climb rule's condition).

    >>> ClimbGuard().promql("used", "quota", ("user",))
    'min_over_time(deriv(used[15m])[20m:5m]) > on(user) group_left 0.005 / 3600 * quota'
    >>> ClimbGuard(slope_s=1800, sustain_s=7200, min_rate_per_h=0).promql("used", "quota")
    'min_over_time(deriv(used[30m])[2h:5m]) > 0'
    """

    sustain_s: float = 20 * 60.0
    slope_s: float = 15 * 60.0
    step_s: float = 300.0
    min_rate_per_h: float = 0.005

    def promql(self, used: str, quota: str, on: tuple[str, ...] = ()) -> str:
        slope, sustain, step = (duration_text(s) for s in (self.slope_s, self.sustain_s, self.step_s))
        climb = f"min_over_time(deriv({used}[{slope}])[{sustain}:{step}])"
        if self.min_rate_per_h == 0:
            return f"{climb} > 0"
        match = f"on({', '.join(on)}) group_left " if on else ""
        return f"{climb} > {match}{self.min_rate_per_h:g} / 3600 * {quota}"


def climb_guard(
    timestamps_ms: IntArray,
    used: FloatArray,
    quota: FloatArray,
    origins_ms: IntArray,
    guard: ClimbGuard = ClimbGuard(),
) -> BoolArray:
    """The guard's value at each origin: ``climbing[series, origin]`` (False where it has no value).

    >>> t = np.arange(0, 3 * 3_600_000 + 1, 300_000)
    >>> used = np.stack([90.0 + 0.2 * t / 3_600_000, 90.0 + 2 * t / 3_600_000])  # +0.2%/h, +2%/h
    >>> climb_guard(t, used, np.full_like(used, 100.0), np.array([0, 7_200_000])).tolist()
    [[False, False], [False, True]]
    """
    step_ms = round(guard.step_s * 1000)
    slopes_at: dict[int, FloatArray] = {}
    out = np.zeros((used.shape[0], len(origins_ms)), dtype=bool)
    for k, origin in enumerate(int(o) for o in origins_ms):
        at = int(np.searchsorted(timestamps_ms, origin, side="right")) - 1  # the quota's instant sample
        if at < 0:
            continue
        first = -(-(origin - round(guard.sustain_s * 1000)) // step_ms)  # the first multiple at or after
        for s in range(first * step_ms, origin + 1, step_ms):
            if s not in slopes_at:
                slopes_at[s] = deriv(used, timestamps_ms, s, round(guard.slope_s * 1000))
        slopes = np.stack([slopes_at[s] for s in range(first * step_ms, origin + 1, step_ms)], axis=1)
        # "> 0" needs no quota; a rate floor does, and PromQL's match drops a series without one.
        floor = np.zeros((used.shape[0], 1)) if guard.min_rate_per_h == 0 else quota[:, at : at + 1]
        floor = floor * (guard.min_rate_per_h / 3600.0)
        # min_over_time skips steps without a value; the subquery has none if all are missing.
        with np.errstate(invalid="ignore"):
            climbing = np.isfinite(slopes).any(axis=1) & ~(slopes <= floor).any(axis=1)
        out[:, k] = climbing & np.isfinite(floor[:, 0])
    return out
