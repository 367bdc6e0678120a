"""Did the threshold get reached? Resolving past crossing probabilities, to calibrate the next ones.

Each forecast's raw crossing probabilities (``[series, within]``, read from the quantile paths,
:func:`~tsf_adapter.pipeline.output.thresholds.threshold_probability`) are remembered with the
threshold each was about and whether the series was climbing then. Once a window
``(origin, origin + within]`` has passed (and its newest step is ``lag_steps`` old, so late samples
are in), the target's grid says whether the series reached that threshold inside it. The pair
(raw probability, reached) goes to the window's calibrations
(:class:`~tsf_adapter.pipeline.output.calibration.IsotonicCalibration`), which map the next
forecasts' raw probabilities to the frequencies observed: held-out origins by construction, each
forecast was made before anything it is scored on was seen.

Why climbing matters: the raw probability reads the forecast's quantiles only, and a series that
sits high and flat looks much like one that is climbing towards its threshold; in the quota
simulator about two thirds of the windows that began with the series climbing (the shipped
alert's guard, :class:`~tsf_adapter.pipeline.climb.ClimbGuard`, its rate read against the
threshold) reached the quota, against 2% of the others. So each window has three calibrations:
one on the pairs of climbing series, one on the rest, and one on all of them; a series is mapped
by its own group's calibration once that has enough evidence, by the pooled one before that,
and published raw until even that has enough (see ``IsotonicCalibration.ready``).

Left out of the pairs: series whose value already was at or past the threshold at the origin
(their probability is 1 by definition, published as 1), windows with no value at all (a gap),
series that left the target, and series without a threshold. Memory is one small record per
forecast still waiting for its longest window: ``(series x withins + 2 x series) x 8`` bytes, e.g.
about 13 MB for 10,000 series with windows 1h and 6h forecast every 5 minutes. The outcomes are
not kept across a restart: a restarted daemon publishes raw probabilities until enough new
windows have passed (``tsf_adapter_probability_calibrated`` says when it no longer does).

Order in each forecast cycle, as for the forecast error: ``observe(batch)`` first, then
``publish`` the new forecast's raw probabilities (``calibrate`` them, then ``record`` them, the
guard read once for both).

>>> from tsf_adapter.core.grid import GridBatch
>>> t = CrossingTracker(horizon_steps=(2,), step_ms=60_000, lag_steps=0)
>>> s = (("__name__", "x"),)
>>> first = GridBatch("x", (s,), np.array([[5.0]]), 60_000, 60_000)
>>> t.record(first, np.array([0]), np.array([[0.4]]), np.array([10.0]))
>>> t.observe(GridBatch("x", (s,), np.array([[5.0, 8.0, 11.0]]), 60_000, 60_000))
>>> t.calibrations[0].pooled.n_pairs, t.calibrations[0].pooled.n_events
(1, 1)
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.plain import as_array, as_int, as_labels, as_list
from tsf_adapter.core.series import Labels
from tsf_adapter.pipeline.climb import ClimbGuard, climb_guard
from tsf_adapter.pipeline.forecast_error import checked_windows
from tsf_adapter.pipeline.output.calibration import IsotonicCalibration

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]
# The shipped alert's guard, with its defaults.
GUARD = ClimbGuard()


@dataclass(slots=True)
class WindowCalibration:
    """One window's calibrations: over all pairs, and apart for series climbing at the origin or not."""

    pooled: IsotonicCalibration = field(default_factory=IsotonicCalibration)
    climbing: IsotonicCalibration = field(default_factory=IsotonicCalibration)
    steady: IsotonicCalibration = field(default_factory=IsotonicCalibration)

    @property
    def ready(self) -> bool:
        """Published calibrated (by one calibration or another), not raw."""
        return self.pooled.ready

    def add(self, raw: FloatArray, reached: BoolArray, climbing: BoolArray) -> None:
        self.pooled.add(raw, reached)
        self.climbing.add(raw[climbing], reached[climbing])
        self.steady.add(raw[~climbing], reached[~climbing])

    def parts(self) -> dict[str, IsotonicCalibration]:
        return {"pooled": self.pooled, "climbing": self.climbing, "steady": self.steady}

    def __call__(self, raw: FloatArray, climbing: BoolArray) -> FloatArray:
        out = self.pooled(raw)
        for group, where in ((self.climbing, climbing), (self.steady, ~climbing)):
            if group.ready and where.any():
                out[where] = group(raw[where])
        return out


@dataclass(slots=True)
class _Pending:
    """One forecast's probabilities, waiting for their windows to pass."""

    origin: int  # grid step of the origin (the anchor's step)
    labels: Sequence[Labels]
    raw: FloatArray  # [series, withins]
    thresholds: FloatArray  # [series]
    climbing: BoolArray  # [series]
    done: list[bool] = field(default_factory=list)  # per window: resolved (or unresolvable)


class CrossingTracker:
    """Remembers one target's raw crossing probabilities and learns their calibration per window."""

    def __init__(
        self,
        horizon_steps: Sequence[int],
        step_ms: int,
        *,
        direction: str = "above",
        lag_steps: int = 1,
        guard: ClimbGuard = GUARD,
        calibrations: Sequence[WindowCalibration] | None = None,
    ) -> None:
        self.horizon_steps = checked_windows(horizon_steps, lag_steps)
        self.step_ms = step_ms
        self.lag_steps = lag_steps
        self.sign = 1.0 if direction == "above" else -1.0
        self.guard = guard
        self.calibrations = (
            list(calibrations)
            if calibrations is not None
            else [WindowCalibration() for _ in self.horizon_steps]
        )
        if len(self.calibrations) != len(self.horizon_steps):
            raise ValueError("one calibration per window")
        # Grid steps the guard reads back from the origin (its slope range and how long it lasted).
        self._guard_steps = -(-round((guard.slope_s + guard.sustain_s) * 1000) // step_ms) + 1
        self._pending: deque[_Pending] = deque()

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def reached(self, values: FloatArray, thresholds: FloatArray) -> BoolArray:
        """Where ``values`` are at or past ``thresholds`` (NaN: not)."""
        with np.errstate(invalid="ignore"):
            out: BoolArray = self.sign * values >= self.sign * thresholds
        return out

    def climbing(self, batch: GridBatch, rows: IntArray, thresholds: FloatArray) -> BoolArray:
        """The guard at the batch's last step, per row: climbing towards the threshold, fast, for a while.

        The rate floor is read against the threshold's size (the alert reads it against the quota,
        which a threshold ``ratio`` scales); for ``direction: below`` the series must be falling.
        """
        if not len(rows) or batch.n_steps == 0:
            return np.zeros(len(rows), dtype=bool)
        cols = slice(max(0, batch.n_steps - self._guard_steps), batch.n_steps)
        values = self.sign * batch.values[rows, cols]  # below: falling is climbing towards it
        stamps = batch.timestamps_ms()[cols]
        limit = np.broadcast_to(np.abs(thresholds)[:, None], values.shape)
        return climb_guard(stamps, values, limit, np.array([batch.end_ms]), self.guard)[:, 0]

    def publish(
        self, batch: GridBatch, rows: IntArray, raw: FloatArray, thresholds: FloatArray
    ) -> FloatArray:
        """The probabilities to publish for ``raw`` of ``batch``'s ``rows``; ``raw`` is remembered."""
        climbing = self.climbing(batch, rows, thresholds)
        out = self.calibrate(batch, rows, raw, thresholds, climbing)
        self.record(batch, rows, raw, thresholds, climbing)
        return out

    def calibrate(
        self,
        batch: GridBatch,
        rows: IntArray,
        raw: FloatArray,
        thresholds: FloatArray,
        climbing: BoolArray | None = None,
    ) -> FloatArray:
        """``raw [series, withins]`` (for ``batch``'s ``rows``) mapped through each window's calibration.

        A series already at its threshold keeps 1; a longer window never gets a lower probability
        than a shorter one (it holds the shorter one). NaN stays NaN. ``climbing``: the guard per
        row, when already read.
        """
        anchor = batch.values[rows, -1] if batch.n_steps else np.full(len(rows), np.nan)
        if climbing is None:
            climbing = self.climbing(batch, rows, thresholds)
        out = np.empty_like(raw)
        for j, cal in enumerate(self.calibrations):
            out[:, j] = cal(raw[:, j], climbing)
        nan = np.isnan(out)
        out = np.maximum.accumulate(np.where(nan, 0.0, out), axis=1)
        out[self.reached(anchor, thresholds)] = 1.0
        out[nan] = np.nan
        return out

    def record(
        self,
        batch: GridBatch,
        rows: IntArray,
        raw: FloatArray,
        thresholds: FloatArray,
        climbing: BoolArray | None = None,
    ) -> None:
        """Remember the raw probabilities ``[series, withins]`` of ``batch``'s ``rows``, forecast now.

        The origin is the batch's last step; one not after the newest remembered is ignored (it
        would be scored twice). ``climbing``: the guard per row, when already read.
        """
        if raw.shape != (len(rows), len(self.horizon_steps)):
            raise ValueError(f"raw shape {raw.shape}, expected ({len(rows)}, {len(self.horizon_steps)})")
        if batch.n_steps == 0:
            return
        origin = batch.end_ms // self.step_ms
        if self._pending and origin <= self._pending[-1].origin:
            return
        anchor = batch.values[rows, -1]
        keep = np.isfinite(thresholds) & ~self.reached(anchor, thresholds) & ~np.isnan(raw).all(axis=1)
        if not keep.any():
            return
        idx = np.flatnonzero(keep)
        self._pending.append(
            _Pending(
                origin=origin,
                labels=[batch.labels[i] for i in rows[idx].tolist()],
                raw=raw[idx],
                thresholds=thresholds[idx],
                climbing=(
                    self.climbing(batch, rows[idx], thresholds[idx]) if climbing is None else climbing[idx]
                ),
                done=[False] * len(self.horizon_steps),
            )
        )

    def observe(self, batch: GridBatch) -> None:
        """Resolve every remembered window that ``batch`` now covers, oldest forecasts first."""
        if batch.step_ms != self.step_ms:
            raise ValueError(f"batch step {batch.step_ms} ms, tracker step {self.step_ms} ms")
        if not self._pending or batch.n_steps == 0:
            return
        start = batch.start_ms // self.step_ms
        last = batch.end_ms // self.step_ms - self.lag_steps
        index: dict[Labels, int] | None = None
        while self._pending:
            p = self._pending[0]
            if p.origin + 1 < start:  # the window began before the grid holds: unresolvable
                self._pending.popleft()
                continue
            for j, h in enumerate(self.horizon_steps):
                if p.done[j] or p.origin + h > last:
                    continue
                if index is None:
                    index = {lab: i for i, lab in enumerate(batch.labels)}
                self._resolve(p, j, h, batch, start, index)
                p.done[j] = True
            if not all(p.done):
                break  # newer forecasts' windows end later
            self._pending.popleft()

    # --- kept across restarts (pipeline.memory) --------------------------------------------------

    def settings(self) -> list[object]:
        """What a snapshot depends on: windows, step and direction."""
        return [list(self.horizon_steps), self.step_ms, self.lag_steps, self.sign]

    def snapshot(self) -> dict[str, object]:
        """The calibrations' pairs and the forecasts still waiting for their windows (copies)."""
        return {
            "settings": self.settings(),
            "calibrations": [
                {name: part.snapshot() for name, part in cal.parts().items()} for cal in self.calibrations
            ],
            "pending": [
                {
                    "origin": p.origin,
                    "labels": list(p.labels),
                    "raw": p.raw.copy(),
                    "thresholds": p.thresholds.copy(),
                    "climbing": p.climbing.copy(),
                    "done": list(p.done),
                }
                for p in self._pending
            ],
        }

    def restore(self, snap: dict[str, object]) -> None:
        """Take back a :meth:`snapshot`; ``ValueError`` (nothing changed) when it does not fit."""
        if snap.get("settings") != self.settings():
            raise ValueError("crossings were kept under other windows, step or direction")
        windows = len(self.horizon_steps)
        cals = as_list(snap["calibrations"])
        if len(cals) != windows:
            raise ValueError(f"{len(cals)} calibrations for {windows} windows")
        restored = copy.deepcopy(self.calibrations)  # their settings, the snapshot's pairs
        for cal, parts in zip(restored, cals, strict=True):
            for name, part in cal.parts().items():
                part.restore(parts[name])
        pending: deque[_Pending] = deque()
        for item in as_list(snap["pending"]):
            labels = [as_labels(lab) for lab in as_list(item["labels"])]
            n = len(labels)
            done = [bool(d) for d in as_list(item["done"])]
            if len(done) != windows:
                raise ValueError(f"a pending forecast has {len(done)} windows, not {windows}")
            pending.append(
                _Pending(
                    origin=as_int(item["origin"]),
                    labels=labels,
                    raw=as_array(item["raw"], (n, windows)),
                    thresholds=as_array(item["thresholds"], (n,)),
                    climbing=as_array(item["climbing"], (n,), np.bool_),
                    done=done,
                )
            )
        self.calibrations, self._pending = restored, pending

    def _resolve(
        self, p: _Pending, j: int, h: int, batch: GridBatch, start: int, index: dict[Labels, int]
    ) -> None:
        rows = np.array([index.get(lab, -1) for lab in p.labels], dtype=np.intp)
        present = rows >= 0
        window = batch.values[rows[present], p.origin + 1 - start : p.origin + h + 1 - start]
        seen = ~np.isnan(window).all(axis=1) if window.size else np.zeros(len(window), dtype=bool)
        peak = np.full(len(window), np.nan)
        if seen.any():
            peak[seen] = self.sign * np.nanmax(self.sign * window[seen], axis=1)
        reached = self.reached(peak, p.thresholds[present])
        raw = p.raw[present, j]
        ok = seen & ~np.isnan(raw)
        self.calibrations[j].add(raw[ok], reached[ok], p.climbing[present][ok])
