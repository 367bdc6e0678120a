"""Headroom: how much of its threshold a series uses, as one more input channel of a network.

A quota at 85% and climbing is a different situation from one at 40% and climbing, yet the
per-window scaling of the inputs (:mod:`.features`) erases the level that tells them apart.
So a target with a threshold may hand its networks the fraction of the threshold each series
uses, step by step: :func:`headroom` computes it, the same function for training (over the
whole history) and for forecasting (up to the origin), in the daemon and in the backtest, and
:class:`HeadroomBatch` carries it next to the values. The channel is already scale-free, so it
is passed to the network as it is, not scaled per window (``FeatureConfig.headroom``).

Numpy only, no torch: the daemon's runner builds the channel without loading the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.grid import GridBatch

FloatArray = npt.NDArray[np.float64]

# The channel is clipped to [0, HEADROOM_MAX]: twice the threshold (or half of it, ``below``) is
# already far past it, and an unbounded input (a value near 0 under ``below``) would swamp the
# network's other inputs, which are scaled to about unit size.
HEADROOM_MAX: Final = 2.0


def headroom(
    values: FloatArray,
    limits: FloatArray,
    *,
    ratio: float = 1.0,
    direction: Literal["above", "below"] = "above",
) -> FloatArray:
    """The fraction of its threshold each series uses at each step: 0 far from it, 1 at it.

    ``values`` is [series, steps]; ``limits`` is [series, steps] on the same grid (NaN where no
    limit sample is known; each row is forward filled, so a limit exported now and then holds
    until its next sample, and nothing after a step reaches it) or [series, 1] for a fixed
    limit. The threshold is ``limit * ratio``. With ``above`` the channel is
    ``value / threshold`` (a quota 85% full reads 0.85); with ``below`` it is
    ``threshold / value`` (free space at twice its floor reads 0.5), so in both directions it
    rises towards 1 as the series approaches its threshold and one network reads it alike.

    Why a ratio and not the distance left as a fraction of the threshold: both are scale-free,
    but the ratio puts "far from the threshold" at 0, which is what an unknown limit becomes
    once the network's inputs fill their gaps (a series whose limit was never seen is read as
    having plenty of room, so the network falls back on the series alone), while the distance
    would put it at "reached". NaN where the value or the limit is unknown, and where the
    threshold is not positive (a ratio to 0 or to a negative number says nothing); clipped to
    ``[0, HEADROOM_MAX]``.

    >>> headroom(np.array([[40.0, 85.0, np.nan]]), np.array([[100.0]]), ratio=1.0).tolist()
    [[0.4, 0.85, nan]]
    >>> headroom(np.array([[20.0, 10.0]]), np.array([[10.0, np.nan]]), direction="below").tolist()
    [[0.5, 1.0]]
    """
    vals = np.asarray(values, dtype=np.float64)
    lim = np.asarray(limits, dtype=np.float64)
    if (
        vals.ndim != 2
        or lim.ndim != 2
        or lim.shape[0] != vals.shape[0]
        or lim.shape[1] not in (1, vals.shape[1])
    ):
        raise ValueError(f"limits must be [series, 1] or {list(vals.shape)}, got shape {lim.shape}")
    threshold = np.broadcast_to(_forward_fill(lim) * ratio, vals.shape)
    known = np.isfinite(vals) & np.isfinite(threshold) & (threshold > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Below: a value at or under zero is past any positive floor, the clip's top.
        raw = vals / threshold if direction == "above" else np.where(vals > 0, threshold / vals, HEADROOM_MAX)
    out: FloatArray = np.where(known, np.clip(raw, 0.0, HEADROOM_MAX), np.nan)
    return out


def _forward_fill(rows: FloatArray) -> FloatArray:
    """Each NaN takes the last earlier finite value of its row; leading gaps stay NaN."""
    finite = np.isfinite(rows)
    idx = np.where(finite, np.arange(rows.shape[1]), -1)
    last = np.maximum.accumulate(idx, axis=1)
    filled = np.take_along_axis(rows, np.maximum(last, 0), axis=1)
    out: FloatArray = np.where(last >= 0, filled, np.nan)
    return out


@dataclass(frozen=True, slots=True, eq=False)
class HeadroomBatch(GridBatch):
    """A :class:`GridBatch` with its :func:`headroom` channel [series, steps] on the same grid.

    Every model takes it as a plain batch; a network trained with ``FeatureConfig.headroom``
    reads the channel from it (and refuses a batch without one).

    >>> b = GridBatch("quota", ((("user", "a"),),), np.array([[50.0, 80.0]]), 0, 60_000)
    >>> h = HeadroomBatch.of(b, headroom(b.values, np.array([[100.0]])))
    >>> h.headroom.tolist(), h.rows([0]).headroom.tolist()
    ([[0.5, 0.8]], [[0.5, 0.8]])
    """

    headroom: FloatArray

    def __post_init__(self) -> None:
        GridBatch.__post_init__(self)
        if self.headroom.shape != self.values.shape:
            raise ValueError(
                f"headroom must have the values' shape {self.values.shape}, got {self.headroom.shape}"
            )

    @classmethod
    def of(cls, batch: GridBatch, channel: FloatArray) -> HeadroomBatch:
        """``batch`` with ``channel`` as its headroom."""
        return cls(batch.target, batch.labels, batch.values, batch.start_ms, batch.step_ms, channel)

    def rows(self, rows: npt.ArrayLike) -> HeadroomBatch:
        """The batch of the series at ``rows``, their headroom with them."""
        idx = np.asarray(rows, dtype=np.intp)
        labels = tuple(self.labels[i] for i in idx.tolist())
        return HeadroomBatch(
            self.target, labels, self.values[idx], self.start_ms, self.step_ms, self.headroom[idx]
        )

    def head(self, steps: int) -> HeadroomBatch:
        """The first ``steps`` columns, the headroom cut with them."""
        return HeadroomBatch.of(GridBatch.head(self, steps), self.headroom[:, :steps])
