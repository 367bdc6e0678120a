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
