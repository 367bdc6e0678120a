"""Scoring a backtest: each (series, model)'s errors against the actual samples, and the summary table.

Kept apart from the run (:mod:`tsf_adapter.tools.backtest`) because it only reads what the
run wrote: forecast rows and the inputs. MAE on the median, MASE against the in-sample naive
step, pinball loss over the quantiles and the p10-p90 coverage; the table's rows are geometric
means over series, as errors of series of different scales only compare as ratios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsf_adapter.forecast import metrics
from tsf_adapter.tools.csvio import ForecastRows, InputSeries

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Score:
    """One (series, model): errors over all its forecast rows. NaN where not defined."""

    series: str
    model: str
    rows: int
    mae: float
    mase: float
    pinball: float
    coverage: float
    missing: float


def actual_values(series: InputSeries, timestamps_ms: IntArray) -> FloatArray:
    """The input's value at each timestamp (NaN where the input has no sample there)."""
    idx = np.clip(np.searchsorted(series.timestamps_ms, timestamps_ms), 0, len(series) - 1)
    found = series.timestamps_ms[idx] == timestamps_ms
    return np.where(found, series.values[idx], np.nan)


def score(rows: ForecastRows, series: InputSeries) -> Score:
    """MAE of the median, MASE (scaled by the one-step naive error before the first origin), mean
    pinball loss over the quantiles, p10–p90 coverage; rows whose forecast is NaN are left out and
    counted in ``missing``."""
    actual = actual_values(series, rows.timestamps_ms)
    values = rows.values  # [row, q]
    qs = list(rows.quantiles)
    missing = np.asarray(np.isnan(values).any(axis=1), dtype=bool)
    y = np.where(missing, np.nan, actual)
    nan = float("nan")
    mae = float(metrics.mae(y, values[:, qs.index(0.5)])) if 0.5 in qs else nan
    first_origin = int(rows.origins_ms.min()) if len(rows.origins_ms) else 0
    past = series.values[series.timestamps_ms <= first_origin]
    with np.errstate(invalid="ignore", divide="ignore"):
        mase = mae / float(metrics.naive_scale(past))
    pinball = float(np.mean(metrics.pinball_loss(y, values.T, qs)))
    coverage = float(metrics.quantile_coverage(y, values.T, qs)) if {0.1, 0.9} <= set(qs) else nan
    share_missing = float(missing.mean()) if len(missing) else nan
    return Score(rows.series, rows.model, len(actual), mae, mase, pinball, coverage, share_missing)


def score_all(forecasts: Sequence[ForecastRows], inputs: dict[str, InputSeries]) -> list[Score]:
    return [score(f, inputs[f.series]) for f in forecasts]


def common_series(scores: Sequence[Score]) -> list[str]:
    """The series that every model scored (a finite MAE), in order of first appearance.

    Every row of the summary is a mean over these, so the rows compare: a model that cannot
    forecast some series (a seasonal one with less than a season before the first origin) would
    otherwise be averaged over other, perhaps easier, series than the rest.
    """
    models = set(s.model for s in scores)
    scored: dict[str, set[str]] = {}
    for s in scores:
        if math.isfinite(s.mae):
            scored.setdefault(s.series, set()).add(s.model)
    return [n for n in dict.fromkeys(s.series for s in scores) if scored.get(n, set()) == models]


def score_warnings(scores: Sequence[Score]) -> list[str]:
    """One line per (model, series) that could not be scored on all of its rows."""
    by = {(s.series, s.model): s for s in scores}
    out = []
    for name in dict.fromkeys(s.series for s in scores):
        for model in dict.fromkeys(s.model for s in scores):
            found = by.get((name, model))
            if found is None or not math.isfinite(found.mae):
                out.append(f"warning: {model} has no score for {name}; it is left out of every model's means")
            elif found.missing > 0:
                out.append(
                    f"warning: {model} has no forecast for {100 * found.missing:.1f}% of the rows of {name}"
                    " (e.g. a seasonal model with less than a season of history); its scores there cover"
                    " the rest"
                )
    return out


def summary_table(scores: Sequence[Score]) -> str:
    """Per model, over the same series (:func:`common_series`): geometric means of MAE, MASE,
    pinball loss and of the MAE ratios to predict_linear and last_value, plus mean p10–p90
    coverage; then a warning for each model and series it could not score in full. Markdown."""
    models = list(dict.fromkeys(s.model for s in scores))
    by = {(s.series, s.model): s for s in scores}
    every = list(dict.fromkeys(s.series for s in scores))
    series = common_series(scores)
    kept = set(series)
    scores = [s for s in scores if s.series in kept]

    def ratio(model: str, base: str) -> str:
        if base not in models:
            return "-"
        r = [by[(n, model)].mae / by[(n, base)].mae for n in series]
        return _fmt(metrics.geometric_mean(_positive(r)))

    which = (
        f"{len(series)} series"
        if len(series) == len(every)
        else (f"{len(series)} of {len(every)} series (those every model scored)")
    )
    lines = [
        f"{which}; geometric means across series (coverage: mean)",
        "",
        "| model | MAE | MASE | pinball | p10-p90 coverage "
        "| MAE / predict_linear | MAE / last_value | missing |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        mine = [s for s in scores if s.model == m]
        if not mine:
            lines.append(f"| {m} | - | - | - | - | - | - | - |")
            continue
        cov = [s.coverage for s in mine if not math.isnan(s.coverage)]
        lines.append(
            f"| {m} | {_fmt(metrics.geometric_mean(_positive([s.mae for s in mine])))} "
            f"| {_fmt(metrics.geometric_mean(_positive([s.mase for s in mine])))} "
            f"| {_fmt(metrics.geometric_mean(_positive([s.pinball for s in mine])))} "
            f"| {_fmt(float(np.mean(cov))) if cov else '-'} "
            f"| {ratio(m, 'predict_linear')} | {ratio(m, 'last_value')} "
            f"| {100 * float(np.nanmean([s.missing for s in mine])):.1f}% |"
        )
    warned = score_warnings(list(by.values()))
    return "\n".join(lines + (["", *warned] if warned else []))


def _positive(values: Sequence[float]) -> list[float]:
    """Finite values only: a flat series (MASE inf) or an empty one (NaN) must not poison the mean."""
    return [v for v in values if math.isfinite(v)]


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.4g}"
