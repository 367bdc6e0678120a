"""Aggregation on ingest: PromQL's ``op by (...)`` over member series, step by step.

``sum``/``avg``/``max``/``min``/``count`` ``by`` some labels (``AggregateConfig``),
with PromQL's instant-vector semantics, as a recording rule ``sum by (...) (m)``
evaluated at each grid step would give: a member series counts at ``T`` when its
latest sample at or before ``T`` lies within the lookback ``[T - lookback, T]``
(closed, as in Prometheus 2.x) and is not a staleness marker. A step is final
``settle`` after it: later samples for it are dropped (counted). Steps not yet
final are computed when read. Only the last ``lookback + settle`` of each member
is kept, so memory follows the number of groups, not of members.
"""

from __future__ import annotations

import itertools
from typing import Final

import numpy as np
import numpy.typing as npt

from tsf_adapter.config import AggregateConfig
from tsf_adapter.core.grid import grid_steps
from tsf_adapter.core.series import Labels, stale_mask
from tsf_adapter.store.ring import Ring, last_wins

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_EMPTY_TIME: Final = np.iinfo(np.int64).min


class Aggregator:
    """PromQL-style ``op by (...)`` over member series, step by step, into the target's grid.

    Members live in a short ring (``lookback + settle + 1`` steps) of last value
    and its timestamp per step; a step's aggregate is written to the target grid
    once a sample more than ``settle`` past it arrives.
    """

    def __init__(self, agg: AggregateConfig, step_ms: int, grid: Ring) -> None:
        self.op = agg.op
        self.by = frozenset(agg.by)
        self.step_ms = step_ms
        self.lookback_ms = round(agg.lookback * 1000)
        # Whole steps that lookback and settle reach, rounded up by the grid rule.
        spans = np.array([self.lookback_ms, round(agg.settle * 1000)], dtype=np.int64)
        self.lookback_steps, self.settle_steps = (int(n) for n in grid_steps(spans, step_ms))
        self.members = Ring(
            self.lookback_steps + self.settle_steps + 1,
            ((np.float64, np.nan), (np.int64, _EMPTY_TIME)),
        )
        self.grid = grid
        self.member_group: IntArray = np.zeros(0, dtype=np.int64)
        self._groups: dict[Labels, int] = {}
        self.finalized: int | None = None
        self._last_data_step: int | None = None

    def add_member(self, group: Labels, group_labels: list[Labels]) -> int:
        g = self._groups.get(group)
        if g is None:
            g = self._groups[group] = self.grid.add_row()
            group_labels.append(group)
        m = self.members.add_row()
        if m >= self.member_group.size:
            grown = np.zeros(max(16, 2 * self.member_group.size), dtype=np.int64)
            grown[: self.member_group.size] = self.member_group
            self.member_group = grown
        self.member_group[m] = g
        return m

    def append(self, rows: IntArray, steps: IntArray, timestamps: IntArray, values: FloatArray) -> int:
        """Write member samples step by step in time order; returns how many came too late."""
        order = np.argsort(steps, kind="stable")  # stable: receive order kept within a step
        rows, steps, timestamps, values = rows[order], steps[order], timestamps[order], values[order]
        starts = np.flatnonzero(np.diff(steps)) + 1
        bounds = [0, *starts.tolist(), int(steps.size)]
        late = 0
        ring = self.members
        for lo, hi in itertools.pairwise(bounds):
            step = int(steps[lo])
            if ring.head is None or step > ring.head:
                self._advance(step)
            assert self.finalized is not None
            if step <= self.finalized:
                late += hi - lo
                continue
            keep = lo + last_wins(rows[lo:hi])
            slot = step % ring.slots
            ring.planes[0][slot, rows[keep]] = values[keep]
            ring.planes[1][slot, rows[keep]] = timestamps[keep]
            if self._last_data_step is None or step > self._last_data_step:
                self._last_data_step = step
        return late

    def _advance(self, step: int) -> None:
        """Finalise every step that is now ``settle`` old, then move the member ring to ``step``."""
        ring = self.members
        if ring.head is None or self.finalized is None:
            self.finalized = step - 1
            ring.advance(step)
            return
        # Steps more than ``settle`` behind the new head are final.
        upto = step - self.settle_steps - 1
        last_data = ring.head if self._last_data_step is None else self._last_data_step
        last_useful = last_data + self.lookback_steps
        for k in range(self.finalized + 1, min(upto, last_useful) + 1):
            # Data for k comes from steps k-lookback..k, all still in the ring (before it advances).
            self.grid.advance(k)
            self.grid.planes[0][k % self.grid.slots, : self.grid.rows] = self._aggregate_at(k)
        if upto > self.finalized:
            self.grid.advance(upto)
            self.finalized = upto
        ring.advance(step)

    def _aggregate_at(self, k: int) -> FloatArray:
        """The aggregate of every group at step ``k``, NaN for groups without a present member."""
        ring = self.members
        n = ring.rows
        t_eval = k * self.step_ms
        value = np.full(n, np.nan)
        time = np.full(n, _EMPTY_TIME, dtype=np.int64)
        found = np.zeros(n, dtype=bool)
        for j in range(k, k - self.lookback_steps - 1, -1):
            if not ring.holds(j):
                continue
            slot = j % ring.slots
            t = ring.planes[1][slot, :n]
            new = ~found & (t != _EMPTY_TIME)
            value = np.where(new, ring.planes[0][slot, :n], value)
            time = np.where(new, t, time)
            found |= new
        present = found & (time >= t_eval - self.lookback_ms) & ~stale_mask(value)
        return self._reduce(present, value)

    def _reduce(self, present: npt.NDArray[np.bool_], value: FloatArray) -> FloatArray:
        groups = self.grid.rows
        g = self.member_group[: present.size][present]
        x = value[present]
        count: FloatArray = np.bincount(g, minlength=groups).astype(np.float64)
        out: FloatArray
        if self.op in ("sum", "avg"):
            out = np.bincount(g, weights=x, minlength=groups).astype(np.float64)
            if self.op == "avg":
                with np.errstate(invalid="ignore", divide="ignore"):
                    out = out / count
        elif self.op == "count":
            out = count
        else:
            # fmax/fmin skip NaN unless every member is NaN, as PromQL's max/min do.
            out = np.full(groups, np.nan)
            (np.fmax if self.op == "max" else np.fmin).at(out, g, x)
        out[count == 0] = np.nan
        return out

    def read(self, first: int, last: int) -> FloatArray:
        """``[groups, steps]``: final steps from the grid, newer ones computed now."""
        assert self.finalized is not None
        final_last = min(last, self.finalized)
        parts: list[FloatArray] = []
        if final_last >= first:
            parts.append(self.grid.read(0, first, final_last).astype(np.float64))
        provisional = [self._aggregate_at(k) for k in range(max(first, final_last + 1), last + 1)]
        if provisional:
            parts.append(np.stack(provisional, axis=1))
        return np.concatenate(parts, axis=1)
