"""Calibrating the crossing probability on crossings that were seen: isotonic regression.

Why: the probability read from the quantile paths' peaks
(:func:`~tsf_adapter.pipeline.output.thresholds.threshold_probability`) reads low by construction
(the path of quantile ``q`` peaks at a value the series reaches with probability at least
``1 - q``), and it inherits whatever is wrong with the quantiles themselves. What an operator needs
from ``P = 0.3`` is that about three in ten such forecasts did reach the threshold. Each published
probability is remembered (:mod:`tsf_adapter.pipeline.crossings`) and, once its window has passed,
whether the threshold was reached is known: a pair (raw probability, outcome) from an origin the
model never trained on. Isotonic regression (pool adjacent violators) fits the non-decreasing
map from raw probability to observed frequency that is closest to those pairs in squared error:
it keeps the order of the raw probabilities, a higher raw one never maps lower, and assumes no
shape beyond that. It also minimises the Brier score over all such maps on the pairs it saw.

Evidence and cost: the pairs of all series of a target are pooled (a crossing is rare; one series
sees few) and only the newest ``max_pairs`` are kept, so the map follows the model as it is
retrained. The raw values are binned to ``1 / bins`` before the fit, so a fit costs O(bins) after
O(pairs) binning, whatever the number of series. Until ``min_pairs`` outcomes with at least
``min_events`` crossings and as many non-crossings are in, the map is the identity: the raw
probability is published as it is. Between the fitted blocks the map is linear (through each
block's mean raw value and observed frequency), flat beyond the outermost ones.

>>> cal = IsotonicCalibration(min_pairs=4, min_events=1)
>>> cal.add(np.array([0.1, 0.2, 0.3, 0.4]), np.array([False, True, False, True]))
>>> cal(np.array([0.0, 0.1, 0.25, 0.4, np.nan])).round(3).tolist()
[0.0, 0.0, 0.5, 1.0, nan]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Enough outcomes for a 1-in-20 event to have been seen a few dozen times at once, bounded memory
# (16 bytes a pair).
MAX_PAIRS = 50_000
MIN_PAIRS = 500
MIN_EVENTS = 20
BINS = 1000


def pool_adjacent_violators(
    y: FloatArray, w: FloatArray
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """The least-squares non-decreasing fit of ``y`` (weights ``w``, in order) as blocks.

    Returns each block's mean, its total weight and the index of its first point.

    >>> means, weights, starts = pool_adjacent_violators(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4))
    >>> means.tolist(), weights.tolist(), starts.tolist()
    ([1.0, 2.5, 4.0], [1.0, 2.0, 1.0], [0, 1, 3])
    """
    means: list[float] = []
    weights: list[float] = []
    starts: list[int] = []
    for i, (v, wi) in enumerate(zip(y.tolist(), w.tolist(), strict=True)):
        means.append(v)
        weights.append(wi)
        starts.append(i)
        while len(means) > 1 and means[-2] > means[-1]:
            total = weights[-2] + weights[-1]
            means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / total
            weights[-2] = total
            del means[-1], weights[-1], starts[-1]
    return np.array(means), np.array(weights), np.array(starts, dtype=np.intp)


class IsotonicCalibration:
    """A monotone map from raw to calibrated probability, refitted on the newest resolved outcomes."""

    def __init__(
        self,
        *,
        max_pairs: int = MAX_PAIRS,
        min_pairs: int = MIN_PAIRS,
        min_events: int = MIN_EVENTS,
        bins: int = BINS,
    ) -> None:
        if max_pairs < 1 or min_pairs < 1 or min_events < 0 or bins < 1:
            raise ValueError("max_pairs, min_pairs and bins must be >= 1, min_events >= 0")
        self.max_pairs = max_pairs
        self.min_pairs = min_pairs
        self.min_events = min_events
        self.bins = bins
        # Ring of the newest pairs: raw probability and outcome (1.0 reached, 0.0 not).
        self._raw = np.empty(max_pairs)
        self._hit = np.empty(max_pairs)
        self._next = 0
        self.n_pairs = 0
        self._knots: tuple[FloatArray, FloatArray] | None = None
        self._stale = False

    @property
    def n_events(self) -> int:
        """Crossings among the pairs kept."""
        return int(self._hit[: self.n_pairs].sum())

    @property
    def ready(self) -> bool:
        """Enough evidence to publish calibrated values instead of the raw ones."""
        events = self.n_events
        return self.n_pairs >= self.min_pairs and min(events, self.n_pairs - events) >= self.min_events

    def add(self, raw: FloatArray, reached: BoolArray) -> None:
        """Remember resolved forecasts: their raw probability and whether the threshold was reached."""
        raw = np.clip(np.asarray(raw, dtype=np.float64).ravel(), 0.0, 1.0)
        hit = np.asarray(reached, dtype=np.float64).ravel()
        if raw.shape != hit.shape:
            raise ValueError(f"raw {raw.shape} and reached {hit.shape} differ")
        ok = ~np.isnan(raw)
        raw, hit = raw[ok][-self.max_pairs :], hit[ok][-self.max_pairs :]
        if not len(raw):
            return
        at = (self._next + np.arange(len(raw))) % self.max_pairs
        self._raw[at] = raw
        self._hit[at] = hit
        self._next = int((self._next + len(raw)) % self.max_pairs)
        self.n_pairs = min(self.max_pairs, self.n_pairs + len(raw))
        self._stale = True

    def __call__(self, raw: FloatArray) -> FloatArray:
        """Calibrated probabilities (same shape; NaN stays NaN); the raw ones until ``ready``."""
        raw = np.asarray(raw, dtype=np.float64)
        if not self.ready:
            return raw.copy()
        if self._stale or self._knots is None:
            self._knots = self._fit()
            self._stale = False
        xs, ys = self._knots
        out: FloatArray = np.interp(np.clip(raw, 0.0, 1.0), xs, ys)
        out[np.isnan(raw)] = np.nan
        return out

    def snapshot(self) -> dict[str, object]:
        """The pairs kept, oldest first (a copy)."""
        order = (self._next - self.n_pairs + np.arange(self.n_pairs)) % self.max_pairs
        return {"raw": self._raw[order], "hit": self._hit[order]}

    def restore(self, snap: dict[str, object]) -> None:
        """Take back a :meth:`snapshot` (the newest ``max_pairs`` of it); ``ValueError`` if malformed."""
        raw = np.asarray(snap["raw"], dtype=np.float64)
        hit = np.asarray(snap["hit"], dtype=np.float64)
        if raw.ndim != 1 or raw.shape != hit.shape:
            raise ValueError(f"calibration pairs of shapes {raw.shape} and {hit.shape}")
        self._next = self.n_pairs = 0
        self.add(raw, hit.astype(bool))

    def _fit(self) -> tuple[FloatArray, FloatArray]:
        """Knots (mean raw value, observed frequency) of the isotonic fit on the binned pairs."""
        raw, hit = self._raw[: self.n_pairs], self._hit[: self.n_pairs]
        b = np.minimum((raw * self.bins).astype(np.intp), self.bins - 1)
        count = np.bincount(b, minlength=self.bins).astype(np.float64)
        used = count > 0
        x = np.bincount(b, weights=raw, minlength=self.bins)[used] / count[used]
        y = np.bincount(b, weights=hit, minlength=self.bins)[used] / count[used]
        w = count[used]
        means, _, starts = pool_adjacent_violators(y, w)
        ends = np.append(starts[1:], len(x))
        # Each block's raw position: its weighted mean raw value.
        cum = np.concatenate(([0.0], np.cumsum(x * w)))
        cw = np.concatenate(([0.0], np.cumsum(w)))
        centres = (cum[ends] - cum[starts]) / (cw[ends] - cw[starts])
        return centres, means
