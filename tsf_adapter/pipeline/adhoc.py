"""Ad hoc forecasts: a target's model applied to series given on request, changing nothing.

``POST /api/v1/forecast`` answers "what would the daemon forecast for this?" for samples an
operator posts, or reads from Prometheus, without them entering the store, the forecast-error
history, the calibration or any output. The series are put on the target's grid by a store of
their own (the same gridding, and the same aggregation, as the target's stored series), and
forecast by the target's runner as its own series are: by the trained model where it has one
for them, else by ``predict_linear``.

A trained network forecasts the horizon it was trained for, so an ad hoc horizon is at most the
target's longest; the answer is cut to the asked one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.errors import InputError
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import SeriesSamples
from tsf_adapter.core.units import spelled
from tsf_adapter.pipeline.output import ModelInfo
from tsf_adapter.pipeline.runner import TargetRunner
from tsf_adapter.store.store import TargetStore

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AdHocForecast:
    """``paths[series, quantile, step]`` after ``batch.end_ms``, and each series' model."""

    batch: GridBatch
    paths: FloatArray
    models: list[ModelInfo]


def horizon_steps(runner: TargetRunner, horizon_s: float | None) -> int:
    """The steps of ``horizon_s`` (default: the target's longest), or ``InputError`` saying why not."""
    target = runner.target
    longest = max(target.horizons)
    if horizon_s is None:
        return runner.horizon_steps
    if horizon_s > longest:
        raise InputError(
            f"horizon {spelled(horizon_s)} is longer than target {target.name}'s longest,"
            f" {spelled(longest)}, which its model forecasts"
        )
    steps = round(horizon_s * 1000) // target.step_ms
    if steps < 1:
        raise InputError(
            f"horizon {spelled(horizon_s)} is shorter than target {target.name}'s step,"
            f" {spelled(target.step)}"
        )
    return steps


def grid(runner: TargetRunner, series: Sequence[SeriesSamples], history_s: float | None) -> GridBatch:
    """``series`` on the target's grid (aggregated as the target is), over ``history_s`` at most
    (default: the target's history); ``InputError`` when nothing is left to forecast from."""
    target = runner.target
    spec = target if history_s is None else dataclasses.replace(target, history=history_s)
    store = TargetStore(spec)
    rows, stamps, values = [], [], []
    for s in series:
        if len(s) == 0:
            continue
        row = store.add_series(s.labels)
        rows.append(np.full(len(s), row, dtype=np.int64))
        order = np.argsort(s.timestamps, kind="stable")
        stamps.append(s.timestamps[order])
        values.append(s.values[order])
    if rows:
        store.append(np.concatenate(rows), np.concatenate(stamps), np.concatenate(values))
    batch = store.batch()
    if batch is None or batch.n_series == 0:
        raise InputError("no samples to forecast from")
    return batch


def forecast(runner: TargetRunner, batch: GridBatch, steps: int) -> AdHocForecast:
    """Forecast thread: the runner's forecast of ``batch`` for ``steps`` steps.

    Reads the runner's model and nothing else of its state: no error tracking, no output, no
    metric (a series that falls back to ``predict_linear`` here is not the target's to count).
    A model that reads the threshold's headroom gets it from a fixed threshold value; with a
    limit series it sees the headroom as unknown, as for a series whose limit is missing.
    """
    prediction = runner.predict(runner.model_batch(batch, None))
    return AdHocForecast(batch, prediction.values[:, :, :steps], prediction.models)
