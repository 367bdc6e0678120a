"""The "sustained climb, extrapolated" quota alert: a plain PromQL rule, evaluated in numpy.

It is the rule an operator could write today without us, and so the peer our
forecast alerts are measured against (with ``predict_linear`` and ``holt_winters``)::

    - alert: QuotaFillsWithin6h
      expr: |
        storage_used_bytes + deriv(storage_used_bytes[2h]) * 6 * 3600 >= storage_quota_bytes
        and
        min_over_time(deriv(storage_used_bytes[30m])[2h:5m]) > 0

The first line extrapolates the last 2 hours' slope over the 6-hour horizon; the
second asks that the usage has been climbing all along those 2 hours (the 30-minute
slope, sampled every 5 minutes, never at or below 0), which a write burst (up within
30 minutes, then flat) or the day's rhythm under noise does not do. Usage and quota
share their labels, so the comparison matches series one to one.

Ranges are Prometheus 2.x's closed ``[t - range, t]`` (as in
:func:`tsf_adapter.forecast.baselines.select_range`) and ``deriv`` is PromQL's
least-squares slope (:func:`tsf_adapter.forecast.baselines.linear_regression_grid`).
The subquery's steps are the multiples of ``step`` in ``[t - 2h, t]``: Prometheus 2.x aligns
them to the step and keeps the range's start, closed like its range selectors (checked
against promtool in ``tests/tools/test_climb_guard_promql.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsf_adapter.pipeline.climb import ClimbGuard, climb_guard, deriv, duration_text

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClimbRule:
    """The rule's durations in seconds: extrapolation range and horizon, the climb's slope range,
    how long it must have lasted, and the subquery step.

    >>> ClimbRule().promql("used", "quota")
    'used + deriv(used[2h]) * 21600 >= quota and min_over_time(deriv(used[30m])[2h:5m]) > 0'
    """

    trend_s: float = 2 * 3600.0
    horizon_s: float = 6 * 3600.0
    slope_s: float = 30 * 60.0
    sustain_s: float = 2 * 3600.0
    step_s: float = 300.0

    def promql(self, used: str, quota: str) -> str:
        guard = ClimbGuard(
            sustain_s=self.sustain_s, slope_s=self.slope_s, step_s=self.step_s, min_rate_per_h=0
        )
        return (
            f"{used} + deriv({used}[{duration_text(self.trend_s)}]) * {self.horizon_s:.0f} >= {quota} and "
            f"{guard.promql(used, quota)}"
        )


def climb_alerts(
    timestamps_ms: IntArray,
    used: FloatArray,
    quota: FloatArray,
    origins_ms: IntArray,
    rule: ClimbRule = ClimbRule(),
) -> BoolArray:
    """The rule's value at each origin: ``alert[series, origin]`` (False where it has no value).

    >>> t = np.arange(0, 4 * 3_600_000 + 1, 300_000)
    >>> used = np.stack([50.0 + t / 3_600_000, 50.0 + 5 * t / 3_600_000])  # +1/h, +5/h
    >>> climb_alerts(t, used, np.full_like(used, 100.0), np.array([7_200_000, 14_400_000])).tolist()
    [[False, False], [False, True]]
    """
    guard = ClimbGuard(sustain_s=rule.sustain_s, slope_s=rule.slope_s, step_s=rule.step_s, min_rate_per_h=0.0)
    climbing = climb_guard(timestamps_ms, used, quota, origins_ms, guard)
    out = np.zeros_like(climbing)
    for k, origin in enumerate(int(o) for o in origins_ms):
        at = int(np.searchsorted(timestamps_ms, origin, side="right")) - 1  # the instant value's sample
        if at < 0:
            continue
        trend = deriv(used, timestamps_ms, origin, round(rule.trend_s * 1000))
        with np.errstate(invalid="ignore"):
            reaches = used[:, at] + trend * rule.horizon_s >= quota[:, at]
        out[:, k] = reaches & climbing[:, k]
    return out
