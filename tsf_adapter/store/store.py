"""In-memory series store: received samples on each target's regular time grid.

The receiver registers series (``series_ref``) and appends samples in bulk
(``append``); the store implements ``tsf_adapter.remote.ingest.SampleSink``. Each
forecasting target (its ``TargetConfig``) keeps its series on a grid of its ``step``,
and the training/forecasting side reads one ``GridBatch`` per target.

Grid: step ``k`` has timestamp ``k * step`` (unix time, so all targets with the
same step line up) and holds the *last* sample received for the interval
``(k*step - step, k*step]``, which is what an instant query at ``k*step``
returns when samples come once per step. Nothing is invented: a step without a
sample is NaN, and a staleness marker as the last sample of a step makes the
step NaN; the series stays empty until new samples come.

Aggregation (``AggregateConfig``): ``sum``/``avg``/``max``/``min``/``count`` ``by``
some labels, with PromQL's instant-vector semantics, as a recording rule
``sum by (...) (m)`` evaluated at each grid step would give: a member series
counts at ``T`` when its latest sample at or before ``T`` lies within the
lookback ``[T - lookback, T]`` (closed, as in Prometheus 2.x) and is not a
staleness marker. A step is final ``settle`` after it: later samples for it
are dropped (counted). Steps not yet final are computed when read. Only the
last ``lookback + settle`` of each member is kept, so memory follows the number
of groups, not of members.

Storage: float64, time-major ring buffers (``[step % slots, row]``) sized to
the target's ``history``: appending is a vectorised scatter, old steps are
overwritten as time advances (clearing a step is one contiguous row), and new
series grow the row capacity by doubling (amortised O(1)). float64 rather than
float32 because the values are Prometheus's own (counters of bytes pass 2**24
quickly, where float32 would round them to 8 or more) and the PromQL baselines
must be bit-exact; it costs 8 bytes per stored step (see
``bench/store_memory.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tsf_adapter.config import AggregateConfig, TargetConfig
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import Labels, stale_mask

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_EMPTY_TIME: Final = np.iinfo(np.int64).min


def _grid_key(target: TargetConfig) -> tuple[object, ...]:
    """What a target's grid depends on; a reload that leaves it equal keeps the grid's history.

    Horizons, model, thresholds and schedules are not here: changing them changes what is
    done with the series, not which series are kept on which grid.
    """
    return (target.name, target.selector, target.step, target.history, target.aggregate)


class _Ring:
    """Time-major ring buffer: cell ``[step % slots, row]``, holding steps ``(head - slots, head]``.

    Several planes (e.g. values and timestamps) share the ring's geometry.
    """

    def __init__(self, slots: int, planes: tuple[tuple[type[Any], Any], ...]) -> None:
        self.slots = slots
        self._kinds = planes
        self.planes: list[npt.NDArray[Any]] = [np.full((slots, 0), fill, dtype) for dtype, fill in planes]
        self.rows = 0
        self.head: int | None = None

    @property
    def capacity(self) -> int:
        return int(self.planes[0].shape[1])

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.planes)

    def add_row(self) -> int:
        if self.rows == self.capacity:
            new_cap = max(16, 2 * self.capacity)
            grown = []
            for (dtype, fill), old in zip(self._kinds, self.planes, strict=True):
                new = np.full((self.slots, new_cap), fill, dtype)
                new[:, : self.rows] = old[:, : self.rows]
                grown.append(new)
            self.planes = grown
        self.rows += 1
        return self.rows - 1

    def holds(self, step: int) -> bool:
        return self.head is not None and self.head - self.slots < step <= self.head

    def advance(self, step: int) -> None:
        """Move the head forward to ``step``, clearing the slots of the steps it passes."""
        if self.head is not None and step <= self.head:
            return
        if self.head is None or step - self.head >= self.slots:
            cleared: slice | IntArray = slice(None)
        else:
            cleared = np.arange(self.head + 1, step + 1, dtype=np.int64) % self.slots
        for (_, fill), plane in zip(self._kinds, self.planes, strict=True):
            plane[cleared, : self.rows] = fill
        self.head = step

    def read(self, plane: int, first: int, last: int) -> npt.NDArray[Any]:
        """``[rows, steps]`` copy of steps ``first..last`` (all held)."""
        idx = np.arange(first, last + 1, dtype=np.int64) % self.slots
        return self.planes[plane][idx, : self.rows].T.copy()


def _last_wins(keys: IntArray) -> IntArray:
    """Indices that keep, for each distinct key, its last occurrence (receive order)."""
    if keys.size < 2:
        return np.arange(keys.size)
    _, first_in_reversed = np.unique(keys[::-1], return_index=True)
    return keys.size - 1 - first_in_reversed


@dataclass(slots=True)
class TargetStats:
    """Counters of one target: what was kept and what was dropped, and why."""

    samples: int = 0
    dropped_too_old: int = 0
    nbytes: int = 0
    series: int = 0
    rows: int = 0


class TargetStore:
    """The grid of one target. Rows are raw series, or groups when the target aggregates."""

    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self.step_ms = target.step_ms
        self.labels: list[Labels] = []
        self._first_step: int | None = None
        self.stats = TargetStats()
        # The decoder made the step a whole number of ms and the history at least two steps.
        history_steps = int(target.history * 1000) // self.step_ms
        self._grid = _Ring(history_steps, ((np.float64, np.nan),))
        agg = target.aggregate
        if agg is None:
            self._agg: _Aggregator | None = None
        else:
            self._agg = _Aggregator(agg, self.step_ms, self._grid)

    def add_series(self, labels: Labels) -> int:
        """Register a matching series; returns its row (raw) or member index (aggregated)."""
        self.stats.series += 1
        if self._agg is None:
            self.labels.append(labels)
            return self._grid.add_row()
        group = tuple((n, v) for n, v in labels if n in self._agg.by)
        return self._agg.add_member(group, self.labels)

    def append(self, rows: IntArray, timestamps: IntArray, values: FloatArray) -> None:
        """Samples of this target's series, in receive order."""
        if rows.size == 0:
            return
        steps = -(-timestamps // self.step_ms)  # ceil: a sample at k*step belongs to step k
        first = int(steps.min())
        if self._first_step is None or first < self._first_step:
            self._first_step = first
        if self._agg is not None:
            self.stats.dropped_too_old += self._agg.append(rows, steps, timestamps, values)
            self.stats.samples += rows.size
            return
        grid = self._grid
        grid.advance(int(steps.max()))
        assert grid.head is not None
        fresh = steps > grid.head - grid.slots
        if not fresh.all():
            self.stats.dropped_too_old += int(rows.size - fresh.sum())
            rows, steps, values = rows[fresh], steps[fresh], values[fresh]
        slots = steps % grid.slots
        keep = _last_wins(slots * grid.capacity + rows)
        # A staleness marker ends the series: its step becomes a gap, like any absent sample.
        vals = np.where(stale_mask(values[keep]), np.nan, values[keep])
        grid.planes[0][slots[keep], rows[keep]] = vals
        self.stats.samples += rows.size

    def batch(self, *, steps: int | None = None, drop_empty: bool = True) -> GridBatch | None:
        """The target's grid up to its newest step (``steps`` of them at most); None before any sample.

        ``drop_empty`` leaves out rows without a single sample in the window (series that ended).
        """
        head = self._head()
        if head is None or self._first_step is None:
            return None
        n = self._grid.slots if steps is None else min(steps, self._grid.slots)
        first = max(self._first_step, head - n + 1)
        if self._agg is None:
            values = self._grid.read(0, first, head).astype(np.float64)
        else:
            values = self._agg.read(first, head)
        labels = tuple(self.labels)
        if drop_empty:
            keep = np.asarray(~np.isnan(values).all(axis=1), dtype=bool)
            if not keep.all():
                values = values[keep]
                labels = tuple(labels[i] for i in np.flatnonzero(keep).tolist())
        return GridBatch(self.target.name, labels, values, first * self.step_ms, self.step_ms)

    def _head(self) -> int | None:
        return self._grid.head if self._agg is None else self._agg.members.head

    def current_stats(self) -> TargetStats:
        self.stats.rows = len(self.labels)
        self.stats.nbytes = self._grid.nbytes + (self._agg.members.nbytes if self._agg else 0)
        return self.stats


class _Aggregator:
    """PromQL-style ``op by (...)`` over member series, step by step, into the target's grid.

    Members live in a short ring (``lookback + settle + 1`` steps) of last value
    and its timestamp per step; a step's aggregate is written to the target grid
    once a sample more than ``settle`` past it arrives.
    """

    def __init__(self, agg: AggregateConfig, step_ms: int, grid: _Ring) -> None:
        self.op = agg.op
        self.by = frozenset(agg.by)
        self.step_ms = step_ms
        self.lookback_ms = round(agg.lookback * 1000)
        self.lookback_steps = -(-self.lookback_ms // step_ms)
        self.settle_steps = -(-round(agg.settle * 1000) // step_ms)
        self.members = _Ring(
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
            keep = lo + _last_wins(rows[lo:hi])
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


@dataclass(slots=True)
class _Routes:
    """For one target: the row of each store ref (-1 when the target does not want it)."""

    rows: IntArray = field(default_factory=lambda: np.full(0, -1, dtype=np.int64))


class Store:
    """Every target's grid behind one ``SampleSink``.

    >>> from tsf_adapter.core.selector import parse_selector
    >>> store = Store([TargetConfig(name="up", selector=parse_selector("up"))])
    >>> ref = store.series_ref((("__name__", "up"), ("job", "a")))
    >>> store.append(np.array([ref]), np.array([60_000]), np.array([1.0]))
    >>> store.batch("up").values.tolist()
    [[1.0]]
    """

    def __init__(self, targets: Iterable[TargetConfig]) -> None:
        self.targets: dict[str, TargetStore] = {}
        for target in targets:
            if target.name in self.targets:
                raise ValueError(f"targets: duplicate target name {target.name!r}")
            self.targets[target.name] = TargetStore(target)
        self._stores = list(self.targets.values())
        self._routes = [_Routes() for _ in self._stores]
        self._refs: dict[Labels, int] = {}
        self._labels: list[Labels] = []

    def series_ref(self, labels: Labels) -> int | None:
        """Register a series that at least one target selects; None when none does."""
        ref = self._refs.get(labels)
        if ref is not None:
            return ref
        wanted = [i for i, t in enumerate(self._stores) if t.target.selector.matches(labels)]
        if not wanted:
            return None
        ref = len(self._labels)
        self._labels.append(labels)
        self._refs[labels] = ref
        for i, route in enumerate(self._routes):
            if ref >= route.rows.size:
                grown = np.full(max(16, 2 * route.rows.size), -1, dtype=np.int64)
                grown[: route.rows.size] = route.rows
                route.rows = grown
            if i in wanted:
                route.rows[ref] = self._stores[i].add_series(labels)
        return ref

    def reconfigure(self, targets: Iterable[TargetConfig]) -> None:
        """Switch to a new set of targets, keeping the grids of those whose grid is unchanged.

        For a config reload: a target with the same name, selector, step, history and
        aggregation keeps its history and rows (its other settings do not touch the grid); a
        changed or new one starts empty, with every series already known that it selects
        registered in it; a removed one is dropped. Refs handed out before stay valid (a ref no
        target wants any more is simply not routed anywhere). Like every other method, it must
        run on the single thread that owns the store.
        """
        new = list(targets)
        names = [t.name for t in new]
        if len(set(names)) != len(names):
            raise ValueError(f"targets: duplicate target names in {names}")
        old = {
            name: (store, route)
            for name, store, route in zip(self.targets, self._stores, self._routes, strict=True)
        }
        stores: list[TargetStore] = []
        routes: list[_Routes] = []
        for target in new:
            kept = old.get(target.name)
            if kept is not None and _grid_key(kept[0].target) == _grid_key(target):
                store, route = kept
                store.target = target  # equal where the grid is concerned
            else:
                store, route = TargetStore(target), _Routes(np.full(len(self._labels), -1, dtype=np.int64))
                for ref, labels in enumerate(self._labels):
                    if target.selector.matches(labels):
                        route.rows[ref] = store.add_series(labels)
            stores.append(store)
            routes.append(route)
        self.targets = {t.name: store for t, store in zip(new, stores, strict=True)}
        self._stores = stores
        self._routes = routes

    def append(
        self,
        refs: npt.NDArray[np.int64],
        timestamps: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> None:
        """Fan samples out to the targets that want them; refs must come from ``series_ref``."""
        if refs.size == 0:
            return
        if int(refs.min()) < 0 or int(refs.max()) >= len(self._labels):
            raise ValueError("append: unknown series ref (refs must come from series_ref)")
        for target, route in zip(self._stores, self._routes, strict=True):
            rows = route.rows[refs]
            wanted = rows >= 0
            if wanted.all():
                target.append(rows, timestamps, values)
            elif wanted.any():
                target.append(rows[wanted], timestamps[wanted], values[wanted])

    def batch(self, target: str, *, steps: int | None = None, drop_empty: bool = True) -> GridBatch | None:
        """One target's ``GridBatch`` (see ``TargetStore.batch``); KeyError for an unknown target."""
        return self.targets[target].batch(steps=steps, drop_empty=drop_empty)

    def batches(self) -> dict[str, GridBatch]:
        """Every target that has samples, by name."""
        out = {}
        for name, target in self.targets.items():
            batch = target.batch()
            if batch is not None:
                out[name] = batch
        return out

    @property
    def n_series(self) -> int:
        return len(self._labels)
