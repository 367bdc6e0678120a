"""How ``auto`` picks an architecture per series: a backtest of recent origins, in the series' own units.

After the candidates are trained, each one forecasts every series from a few origins inside the
held-out validation span (the newest steps of the grid, :func:`~tsf_adapter.core.windows.validation_steps`,
whose targets no training window used), each forecast made from the grid up to its origin only,
exactly as the daemon would have made it then (calibration included). The forecasts are scored
against the values that followed, and each series is served by the candidate with the lowest error.

The error is the **mean pinball loss over the configured quantiles** (:func:`.metrics.pinball_loss`),
in the series' own units (bytes for a disk), averaged over the horizon and then over the origins:

* it is a proper score for quantile forecasts, so it rewards a good median (at q=0.5 it is half
  the absolute error) and intervals placed where the values fall, with no weight to choose between
  the two, as "MAE of the median plus a coverage term" would need;
* it is in the units an operator reads, on the forecasts as served; the validation loss that early
  stopping minimised is on per-window scaled values, where an error in a quiet window weighs as
  much as one a hundred times larger in a busy one, and it is the number training already chose
  its best epoch by.

Rules: positions where the actual value is NaN (a gap) are left out, and so are origins whose input
window holds no data at all (no candidate can forecast there). A candidate that did not train for
a series, or that gives no forecast where there is a value to score, scores ``inf`` and is never
chosen over one that did. A series with nothing to score against scores NaN for every trained
candidate (no evidence: the earliest trained one serves it). Ties go to the earlier candidate.

Cost: one batched ``predict`` per candidate per scoring origin (at most :data:`MAX_ORIGINS`), on
the whole batch of series. Two caveats, shared by every candidate alike: a warm-started network
saw part of this span in the previous cycle, and the calibration of the intervals is fitted on
the validation windows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.windows import validation_steps
from tsf_adapter.forecast.metrics import pinball_loss

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Predict = Callable[[GridBatch, int], FloatArray]

# Enough origins to see more than one episode of the span, few enough that scoring a 1,000-series
# target costs 3 x 8 batched forecasts, a small fraction of its training.
MAX_ORIGINS: Final = 8
# What ``auto``'s saved scores are (``ModelMeta.score_metric``).
METRIC: Final = "backtest_pinball"


def scoring_origins(
    n_steps: int, input_steps: int, horizon_steps: int, fraction: float, max_origins: int = MAX_ORIGINS
) -> IntArray:
    """Up to ``max_origins`` origins (index of the first forecast step) spread over the validation span.

    Every forecast from them lies inside the span with its whole horizon, so it is scored on values
    no training window used; the first one is the span's start, the last one the newest full horizon.
    Empty when there is no span (``fraction`` 0) or no input window before it.

    >>> scoring_origins(100, 10, 5, 0.2).tolist()
    [80, 82, 84, 86, 89, 91, 93, 95]
    >>> scoring_origins(100, 10, 5, 0.2, max_origins=3).tolist()
    [80, 88, 95]
    >>> scoring_origins(100, 10, 5, 0.0).tolist()
    []
    """
    span = validation_steps(n_steps, horizon_steps, fraction)
    first, last = n_steps - span, n_steps - horizon_steps
    if span == 0 or first < input_steps or last < first:
        return np.zeros(0, dtype=np.int64)
    count = min(max_origins, last - first + 1)
    return np.unique(np.round(np.linspace(first, last, count)).astype(np.int64))


def backtest_errors(
    predictors: Sequence[Predict],
    batch: GridBatch,
    origins: IntArray,
    horizon_steps: int,
    quantiles: Sequence[float],
    input_steps: int,
) -> FloatArray:
    """Each candidate's mean pinball loss per series [candidates, series], in the series' units.

    ``predictors[c](grid, horizon_steps)`` forecasts [series, quantiles, horizon_steps] after the
    grid's last step; it is handed ``batch`` cut just before each origin, never a later value.
    NaN where a series has nothing to score against, ``inf`` where a candidate gave no forecast
    for a value there was to score (see the module docstring).
    """
    n_cand, n_series = len(predictors), batch.n_series
    total = np.zeros((n_cand, n_series))
    counted = np.zeros(n_series)
    failed = np.zeros((n_cand, n_series), dtype=bool)
    for origin in (int(o) for o in origins):
        past = batch.head(origin)
        actual = batch.values[:, origin : origin + horizon_steps]  # [S, H]
        window = past.values[:, max(0, origin - input_steps) :]  # [S, L]
        scored = ~np.isnan(actual).all(axis=1) & ~np.isnan(window).all(axis=1)  # [S]
        if not scored.any():
            continue
        counted += scored
        for c, predict in enumerate(predictors):
            pred = predict(past, horizon_steps)[:, :, : actual.shape[1]]  # [S, Q, H]
            # Values near the float64 limit overflow the loss to inf: that candidate scores inf there.
            with np.errstate(invalid="ignore", over="ignore"):
                loss = pinball_loss(actual, pred, quantiles).mean(axis=1)  # [S]
            failed[c] |= scored & np.isnan(loss)
            total[c] += np.where(scored & ~np.isnan(loss), loss, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        errors: FloatArray = np.where(counted > 0, total / counted, np.nan)
    errors[failed] = np.inf
    return errors


def choose(errors: FloatArray, trained: BoolArray) -> tuple[IntArray, FloatArray]:
    """The candidate per series [series] and the scores to keep [candidates, series].

    Scores are ``errors`` with ``inf`` where a candidate did not train. The lowest finite score
    wins; with none, the earliest candidate that trained (NaN: nothing to score); ties go to the
    earlier candidate.

    >>> nan, inf = float("nan"), float("inf")
    >>> winner, scores = choose(np.array([[2.0, nan, 1.0], [1.0, nan, 1.0]]),
    ...                         np.array([[True, False, True], [True, True, True]]))
    >>> winner.tolist(), scores[:, 1].tolist()
    ([1, 1, 0], [inf, nan])
    """
    scores: FloatArray = np.where(trained, errors, np.inf)
    # NaN (trained, nothing to score) ranks after every finite error and before every inf.
    rank = np.where(np.isnan(scores), np.finfo(np.float64).max, scores)
    winner: IntArray = np.argmin(rank, axis=0).astype(np.int64)
    return winner, scores
