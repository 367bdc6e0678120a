"""Time to threshold: when a forecast path first reaches a fixed or per-series limit.

``m:forecast_threshold_seconds`` answers "how long until this disk is full" directly, so an
alert needs no PromQL over the horizons. A threshold is either a constant or the latest value
of limit series (quotas) joined to the forecast series on labels, the way
``x / on(user) group_left quota`` would join them. Pure numpy; the builder calls it once per
forecast for all series at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import Labels

FloatArray = npt.NDArray[np.float64]


def latest_values(batch: GridBatch) -> FloatArray:
    """The newest non-NaN value of each row of a batch, NaN for a row with none."""
    values = batch.values
    present = ~np.isnan(values)
    last = values.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
    out: FloatArray = np.where(present.any(axis=1), values[np.arange(values.shape[0]), last], np.nan)
    return out


def join_limits(
    labels: Sequence[Labels], limit_labels: Sequence[Labels], limit_values: FloatArray, on: Sequence[str]
) -> FloatArray:
    """For each series, the value of the limit series with the same ``on`` labels; NaN when none.

    Many-to-one, like ``x / on(on...) group_left y``: many series may share a limit. A label a
    series lacks matches an absent one (PromQL's empty value). When several limit series have
    the same ``on`` labels the match is ambiguous and those series get NaN (PromQL fails the
    whole query instead; one bad limit should not take every threshold down).
    """
    table: dict[tuple[str, ...], float] = {}
    ambiguous: set[tuple[str, ...]] = set()
    for lab, value in zip(limit_labels, limit_values.tolist(), strict=True):
        if value != value:  # a limit without a recent value: as if absent
            continue
        key = _join_key(lab, on)
        if key in table:
            ambiguous.add(key)
        table[key] = value
    for key in ambiguous:
        del table[key]
    out = np.full(len(labels), np.nan)
    for i, lab in enumerate(labels):
        found = table.get(_join_key(lab, on))
        if found is not None:
            out[i] = found
    return out


def limit_grid(batch: GridBatch, limits: GridBatch | None, on: Sequence[str]) -> FloatArray:
    """Each series' limit at each step of ``batch``'s grid: [series, steps], NaN where unknown.

    Series are paired with limit series as :func:`join_limits` pairs them; columns are matched
    by timestamp (both grids have the target's step, and may start and end at different steps:
    a limit exported rarely lags behind). No limit batch (none stored yet): all NaN.

    >>> b = GridBatch("t", ((("u", "a"),), (("u", "b"),)), np.zeros((2, 3)), 60_000, 60_000)
    >>> lim = GridBatch("t/threshold", ((("u", "a"),),), np.array([[5.0, 6.0]]), 120_000, 60_000)
    >>> limit_grid(b, lim, ["u"]).tolist()
    [[nan, 5.0, 6.0], [nan, nan, nan]]
    """
    out = np.full(batch.values.shape, np.nan)
    if limits is None or limits.n_series == 0:
        return out
    if limits.step_ms != batch.step_ms:
        raise ValueError(f"limits on a {limits.step_ms}ms grid, the target's is {batch.step_ms}ms")
    # Join on row numbers rather than values, so every step of a limit series comes along.
    row = join_limits(batch.labels, limits.labels, np.arange(limits.n_series, dtype=np.float64), on)
    paired = np.flatnonzero(~np.isnan(row))
    cols = (batch.timestamps_ms() - limits.start_ms) // limits.step_ms
    inside = np.flatnonzero((cols >= 0) & (cols < limits.n_steps))
    out[np.ix_(paired, inside)] = limits.values[np.ix_(row[paired].astype(np.intp), cols[inside])]
    return out


def _join_key(labels: Labels, on: Sequence[str]) -> tuple[str, ...]:
    values = dict(labels)
    return tuple(values.get(name, "") for name in on)


def threshold_seconds(
    anchor: FloatArray,
    paths: FloatArray,
    thresholds: FloatArray,
    *,
    step_s: float,
    delay_s: float = 0.0,
    direction: Literal["above", "below"] = "above",
) -> FloatArray:
    """Seconds until each path first reaches its series' threshold; ``+Inf`` when it never does.

    ``anchor[s]`` is the last observed value (step 0, NaN if unknown), ``paths[s, q, j]`` the
    forecast for step ``j + 1``, ``thresholds[s]`` the threshold (NaN: no answer, NaN out).
    The crossing time is interpolated linearly between the two grid steps around it, so a path
    from 90 to 110 crosses 100 half a step in. A path already at the threshold gives 0; when
    the anchor is unknown the first forecast step at or past the threshold is taken as the
    crossing. ``delay_s`` is how far the forecast time lies past the origin; it is subtracted,
    not below 0. ``below`` measures falling to the threshold instead of rising to it.

    >>> threshold_seconds(np.array([90.0]), np.array([[[110.0, 130.0]]]), np.array([100.0]), step_s=60)
    array([[30.]])
    """
    sign = 1.0 if direction == "above" else -1.0
    n_series, n_q, n_steps = paths.shape
    full = np.empty((n_series, n_q, n_steps + 1))
    full[:, :, 0] = anchor[:, None]
    full[:, :, 1:] = paths
    full *= sign
    thr = (sign * thresholds)[:, None, None]
    with np.errstate(invalid="ignore"):
        hit = full >= thr  # NaN never reaches anything
    first = np.argmax(hit, axis=2)  # [series, q]
    reached = hit.any(axis=2)
    prev = np.take_along_axis(full, np.maximum(first - 1, 0)[:, :, None], axis=2)[:, :, 0]
    cur = np.take_along_axis(full, first[:, :, None], axis=2)[:, :, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (thr[:, :, 0] - prev) / (cur - prev)
    # An unknown value before the crossing (or an infinite jump) leaves no slope: take the step itself.
    frac = np.where(np.isfinite(frac), np.clip(frac, 0.0, 1.0), 1.0)
    steps = np.where(first == 0, 0.0, first - 1 + frac)
    seconds = np.maximum(steps * step_s - delay_s, 0.0)
    out: FloatArray = np.where(reached, seconds, np.inf)
    out[np.isnan(thresholds)] = np.nan
    return out


def threshold_probability(
    anchor: FloatArray,
    paths: FloatArray,
    thresholds: FloatArray,
    levels: Sequence[float],
    horizon_steps: Sequence[int],
    *,
    direction: Literal["above", "below"] = "above",
) -> FloatArray:
    """The probability that each series reaches its threshold within each horizon, from its quantile paths.

    ``anchor``, ``paths`` and ``thresholds`` are as for ``threshold_seconds``; ``levels[q]`` is the
    quantile level of ``paths[:, q]`` (increasing, in (0, 1)), ``horizon_steps`` the horizons in
    steps (increasing). Returns ``[series, horizons]``: the chance that the series is at or past
    its threshold at some step from the anchor up to the horizon (an anchor already there: 1).

    How: the peak of each quantile path within the horizon (its trough, ``below``) is read as
    that quantile of the series' peak, the peaks sorted across quantiles so that crossing
    quantile paths still give a distribution. The peak's distribution function is linear between
    the levels; beyond the outermost ones the known mass (``levels[0]`` below, ``1 - levels[-1]``
    above) is spread with the density of the adjacent segment and ends there, so the tails are
    bounded and each changes the answer by at most that mass. A point forecast (all quantiles
    equal) gives 0 or 1, and a single quantile is read as one. A longer horizon's probability is
    at least the shorter ones' (the window holds theirs), which the tails alone would not
    guarantee when the inner quantiles narrow. NaN where the threshold or every value of a
    window is NaN, or a peak is infinite.

    The answer reads low rather than high: the path of quantile ``q`` peaks at a value the
    series reaches with probability at least ``1 - q``, so the true ``q``-quantile of the peak
    lies at or above it. It is not calibrated on observed crossings.

    >>> paths = np.array([[[95.0, 90.0], [100.0, 99.0], [110.0, 120.0]]])  # q 0.1, 0.5, 0.9
    >>> threshold_probability(np.array([80.0]), paths, np.array([100.0]), [0.1, 0.5, 0.9], [1, 2])
    array([[0.5, 0.5]])
    >>> threshold_probability(np.array([80.0]), paths, np.array([110.0]), [0.1, 0.5, 0.9], [1, 2])
    array([[0.1, 0.3]])
    """
    sign, extreme = (1.0, np.fmax) if direction == "above" else (-1.0, np.fmin)
    steps = np.asarray(horizon_steps, dtype=np.intp)
    q = np.asarray(levels, dtype=np.float64)
    # Each quantile path's peak (NaN steps skipped) between horizons, then up to each: [series, q, horizons].
    starts = np.concatenate(([0], steps[:-1]))
    between = extreme.reduceat(paths[:, :, : steps[-1]], starts, axis=2)
    peaks = extreme(extreme.accumulate(between, axis=2), anchor[:, None, None]) * sign
    peaks = np.sort(peaks, axis=1).transpose(0, 2, 1)  # [series, horizons, q]
    # Knots of the peak's distribution function: the tails' ends, then one per level.
    if len(q) > 1:
        low = (peaks[..., 1] - peaks[..., 0]) * (q[0] / (q[1] - q[0]))
        high = (peaks[..., -1] - peaks[..., -2]) * ((1.0 - q[-1]) / (q[-1] - q[-2]))
    else:
        low = high = np.zeros(peaks.shape[:2])
    with np.errstate(invalid="ignore", over="ignore"):
        knots = np.concatenate(
            ((peaks[..., 0] - low)[..., None], peaks, (peaks[..., -1] + high)[..., None]), axis=2
        )
    reach = np.concatenate(([1.0], 1.0 - q, [0.0]))  # P(peak >= knot)
    thr = (sign * thresholds)[:, None, None]
    with np.errstate(invalid="ignore"):
        before = np.count_nonzero(knots < thr, axis=2)  # the threshold lies in (knot[i-1], knot[i]]
    right = np.minimum(before, knots.shape[2] - 1)
    left = np.maximum(before - 1, 0)
    x0 = np.take_along_axis(knots, left[..., None], axis=2)[..., 0]
    x1 = np.take_along_axis(knots, right[..., None], axis=2)[..., 0]
    # Below every knot left == right == 0 (reach 1), above them all both are the last (reach 0).
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        frac = np.where(x1 > x0, (thr[..., 0] - x0) / (x1 - x0), 0.0)
    prob = reach[left] + (reach[right] - reach[left]) * frac
    invalid = ~np.isfinite(knots).all(axis=2) | np.isnan(thresholds)[:, None]
    prob[invalid] = 0.0
    out: FloatArray = np.maximum.accumulate(prob, axis=1)
    out[invalid] = np.nan
    return out
