"""How wrong this daemon's own forecasts turned out: a rolling mean absolute error per series and horizon.

Each forecast's median for every horizon is remembered under the grid step it
is about (``origin + horizon``). When that step's value arrives in the store's
grid, the absolute error is folded into an exponentially weighted mean, and the
remembered forecast is dropped. The result is what ``m:forecast_error`` reports.

Why exponentially weighted: it needs two numbers per series and horizon, not a
window of past errors, and old errors fade smoothly instead of falling off a
cliff. The mean is bias-corrected (the sum of weights is tracked), so the first
matured forecast already gives its own error rather than a value pulled towards
zero. The default half-life is one day of grid steps: the error then mixes busy
and quiet hours instead of describing only the last few.

Memory is bounded: per series and horizon a ring of ``horizon_steps + lag + 1``
remembered forecasts (float64), so 8 bytes times the sum of the horizons in
steps; e.g. 3.4 KB per series for horizons 1h and 6h at 1m steps. Series come
and go: an unknown series gets a row when first seen; one that is neither
forecast nor observed for longer than the longest horizon (plus the lag) is
forgotten, error included, and its row is reused.

A grid value may still change while its step is young (late samples, or an
aggregation that has not settled), so only steps at least ``lag_steps`` behind
the newest one are scored.

Order in each forecast cycle: ``observe(batch)`` first, then ``record(...)`` of
the new forecasts, then ``errors(...)`` for the output. If the origin jumps by
more than two steps between observations (a stalled scheduler), forecasts whose
targets were still within the lag are dropped, never scored against another step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.plain import as_array, as_labels, as_list, as_optional_int
from tsf_adapter.core.series import Labels

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_MS = 86_400_000


def checked_windows(horizon_steps: Sequence[int], lag_steps: int) -> tuple[int, ...]:
    """The horizons in steps of a tracker that scores forecasts once they have matured."""
    if not horizon_steps or min(horizon_steps) < 1:
        raise ValueError(f"horizon_steps must be >= 1 (got {list(horizon_steps)})")
    if lag_steps < 0:
        raise ValueError(f"lag_steps must be >= 0 (got {lag_steps})")
    return tuple(int(h) for h in horizon_steps)


class ForecastErrorTracker:
    """Remembers median forecasts of one target and scores them when their step arrives.

    >>> t = ForecastErrorTracker(horizon_steps=(1,), step_ms=60_000, lag_steps=0)
    >>> s = (("__name__", "x"),)
    >>> t.record([s], origin_ms=60_000, forecasts=np.array([[10.0]]))
    >>> t.observe(GridBatch("x", (s,), np.array([[0.0, 13.0]]), 60_000, 60_000))
    >>> t.errors([s]).tolist()
    [[3.0]]
    """

    def __init__(
        self,
        horizon_steps: Sequence[int],
        step_ms: int,
        *,
        lag_steps: int = 1,
        half_life_steps: float | None = None,
    ) -> None:
        self.horizon_steps = checked_windows(horizon_steps, lag_steps)
        self.step_ms = step_ms
        self.lag_steps = lag_steps
        half_life = DAY_MS / step_ms if half_life_steps is None else half_life_steps
        if not half_life > 0:
            raise ValueError(f"half_life_steps must be > 0 (got {half_life_steps})")
        # Each matured forecast multiplies the weight of older ones by this.
        self.decay = math.pow(0.5, 1.0 / half_life)
        # Ring slots per horizon: targets (head - lag - 1, head + h] must all fit.
        self._slots = [h + lag_steps + 2 for h in self.horizon_steps]
        self._rows: dict[Labels, int] = {}
        self._free: list[int] = []
        self._capacity = 0
        self._pending = [np.zeros((0, n)) for n in self._slots]  # NaN: nothing remembered
        self._sum = np.zeros((0, len(self.horizon_steps)))  # decayed sum of absolute errors
        self._weight = np.zeros((0, len(self.horizon_steps)))  # decayed count
        self._last_seen = np.zeros(0, dtype=np.int64)  # grid step a row was last used
        self._head: int | None = None  # newest origin step recorded
        self._scored: int | None = None  # newest target step scored

    @property
    def n_series(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self._pending) + self._sum.nbytes + self._weight.nbytes

    def record(self, labels: Sequence[Labels], origin_ms: int, forecasts: FloatArray) -> None:
        """Remember ``forecasts[series, horizon]`` (medians) made at origin ``origin_ms``.

        A later forecast from the same origin replaces the earlier one: it saw the same or
        newer data. An origin older than one already recorded is ignored.
        """
        if forecasts.shape != (len(labels), len(self.horizon_steps)):
            raise ValueError(
                f"forecasts shape {forecasts.shape}, expected ({len(labels)}, {len(self.horizon_steps)})"
            )
        origin = origin_ms // self.step_ms
        if self._head is not None and origin < self._head:
            return
        self._advance(origin)
        rows = self._rows_of(labels, origin)
        for j, h in enumerate(self.horizon_steps):
            self._pending[j][rows, (origin + h) % self._slots[j]] = forecasts[:, j]

    def observe(self, batch: GridBatch) -> None:
        """Score every remembered forecast whose target step is in ``batch`` and old enough."""
        if batch.step_ms != self.step_ms:
            raise ValueError(f"batch step {batch.step_ms} ms, tracker step {self.step_ms} ms")
        head = self._head
        if head is None or batch.n_steps == 0:
            return
        start = batch.start_ms // self.step_ms
        last = batch.end_ms // self.step_ms - self.lag_steps
        first = start if self._scored is None else max(start, self._scored + 1)
        # Targets further back than every ring reaches have been cleared already.
        first = max(first, head - self.lag_steps - 1)
        if last < first:
            return
        pairs = [(i, self._rows.get(lab)) for i, lab in enumerate(batch.labels)]
        known = [(i, r) for i, r in pairs if r is not None]
        batch_rows = np.array([i for i, _ in known], dtype=np.intp)
        rows = np.array([r for _, r in known], dtype=np.intp)
        self._last_seen[rows] = np.maximum(self._last_seen[rows], last)
        for step in range(first, last + 1):
            actual = batch.values[batch_rows, step - start]
            for j, h in enumerate(self.horizon_steps):
                n = self._slots[j]
                if not head + h - n < step <= head + h:  # no forecast of this horizon is about it
                    continue
                pending = self._pending[j]
                with np.errstate(over="ignore", invalid="ignore"):  # values near the float64 limit
                    error = np.abs(actual - pending[rows, step % n])
                    folded = self._sum[rows, j] * self.decay + error
                # A gap, or no forecast: nothing to score; nor an error past float64, whose Inf
                # would stay in the mean for good.
                ok = np.isfinite(folded)
                self._sum[rows[ok], j] = folded[ok]
                self._weight[rows[ok], j] = self._weight[rows[ok], j] * self.decay + 1.0
                pending[rows, step % n] = np.nan  # scored or unscorable: never counted twice
        self._scored = last

    def errors(self, labels: Sequence[Labels]) -> FloatArray:
        """``[series, horizon]`` rolling mean absolute error; NaN where nothing has matured yet."""
        out = np.full((len(labels), len(self.horizon_steps)), np.nan)
        for i, lab in enumerate(labels):
            row = self._rows.get(lab)
            if row is not None:
                out[i] = self._sum[row] / np.where(self._weight[row] > 0, self._weight[row], np.nan)
        return out

    # --- kept across restarts (pipeline.memory) --------------------------------------------------

    def settings(self) -> list[object]:
        """What a snapshot depends on: one taken under other settings means something else."""
        return [list(self.horizon_steps), self.step_ms, self.lag_steps, self.decay]

    def snapshot(self) -> dict[str, object]:
        """Everything remembered, as plain values and arrays (copies), rows compacted."""
        order = list(self._rows.items())
        rows = np.array([r for _, r in order], dtype=np.intp)
        return {
            "settings": self.settings(),
            "head": self._head,
            "scored": self._scored,
            "labels": [lab for lab, _ in order],
            "pending": [p[rows] for p in self._pending],
            "sum": self._sum[rows],
            "weight": self._weight[rows],
            "last_seen": self._last_seen[rows],
        }

    def restore(self, snap: dict[str, object]) -> None:
        """Take back a :meth:`snapshot`; ``ValueError`` (nothing changed) when it does not fit."""
        if snap.get("settings") != self.settings():
            raise ValueError("forecast errors were kept under other horizons or another step")
        labels = [as_labels(lab) for lab in as_list(snap["labels"])]
        n, width = len(labels), len(self.horizon_steps)
        parts = as_list(snap["pending"])
        if len(parts) != width:
            raise ValueError(f"{len(parts)} pending rings for {width} horizons")
        pending = [as_array(p, (n, slots)) for p, slots in zip(parts, self._slots, strict=True)]
        total, weight = as_array(snap["sum"], (n, width)), as_array(snap["weight"], (n, width))
        seen = as_array(snap["last_seen"], (n,), np.int64)
        head, scored = as_optional_int(snap["head"]), as_optional_int(snap["scored"])
        self._rows = {lab: i for i, lab in enumerate(labels)}
        self._free, self._capacity = [], n
        self._pending, self._sum, self._weight, self._last_seen = pending, total, weight, seen
        self._head, self._scored = head, scored

    def _advance(self, origin: int) -> None:
        """Clear ring slots the new origin reuses, and forget rows unused for too long."""
        if self._head is not None and origin > self._head:
            for j, n in enumerate(self._slots):
                h = self.horizon_steps[j]
                # Slots of targets (old_head + h, origin + h] are about to be written afresh.
                span = min(origin - self._head, n)
                cleared = (np.arange(self._head + h + 1, self._head + h + 1 + span) % n).astype(np.intp)
                self._pending[j][:, cleared] = np.nan
        self._head = origin
        self._forget(origin - max(self._slots))

    def _forget(self, before: int) -> None:
        stale = [lab for lab, row in self._rows.items() if self._last_seen[row] < before]
        for lab in stale:
            row = self._rows.pop(lab)
            self._free.append(row)
            for pending in self._pending:
                pending[row] = np.nan
            self._sum[row] = 0.0
            self._weight[row] = 0.0

    def _rows_of(self, labels: Sequence[Labels], step: int) -> npt.NDArray[np.intp]:
        rows = np.empty(len(labels), dtype=np.intp)
        for i, lab in enumerate(labels):
            row = self._rows.get(lab)
            if row is None:
                row = self._free.pop() if self._free else self._grow()
                self._rows[lab] = row
            rows[i] = row
        self._last_seen[rows] = step
        return rows

    def _grow(self) -> int:
        """A new row at the end, doubling the arrays when full (amortised O(1))."""
        row = len(self._rows) + len(self._free)
        if row >= self._capacity:
            cap = max(16, 2 * self._capacity)
            self._pending = [_grown(p, cap, np.nan) for p in self._pending]
            self._sum = _grown(self._sum, cap, 0.0)
            self._weight = _grown(self._weight, cap, 0.0)
            seen = np.zeros(cap, dtype=np.int64)
            seen[: self._capacity] = self._last_seen
            self._last_seen = seen
            self._capacity = cap
        return row


def _grown(array: FloatArray, rows: int, fill: float) -> FloatArray:
    out = np.full((rows, array.shape[1]), fill)
    out[: array.shape[0]] = array
    return out
