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

Aggregation (``AggregateConfig``, see ``aggregate.py``): a target may keep
``op by (...)`` of the series it selects instead of the series, as a recording
rule would; its rows are then the groups.

Storage: float64, time-major ring buffers (``ring.py``) sized to the target's
``history``, holding the newest steps and overwriting older ones. float64 rather than
float32 because the values are Prometheus's own (counters of bytes pass 2**24
quickly, where float32 would round them to 8 or more) and the PromQL baselines
must be bit-exact; it costs 8 bytes per stored step (see
``bench/store_memory.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tsf_adapter.config import TargetConfig
from tsf_adapter.core.grid import GridBatch, grid_steps
from tsf_adapter.core.series import Labels, stale_mask
from tsf_adapter.core.shard import Shard
from tsf_adapter.store.aggregate import Aggregator
from tsf_adapter.store.ring import Ring, last_wins

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _grid_key(target: TargetConfig) -> tuple[object, ...]:
    """What a target's grid depends on; a reload that leaves it equal keeps the grid's history.

    Horizons, model, thresholds and schedules are not here: changing them changes what is
    done with the series, not which series are kept on which grid.
    """
    return (target.name, target.selector, target.step, target.history, target.aggregate)


@dataclass(slots=True)
class TargetStats:
    """Counters of one target: what was kept and what was dropped, and why."""

    samples: int = 0
    dropped_too_old: int = 0
    nbytes: int = 0
    series: int = 0
    rows: int = 0
    # New series turned away: the target's max_series, or the store's, was reached.
    refused: int = 0


class TargetStore:
    """The grid of one target. Rows are raw series, or groups when the target aggregates."""

    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self.step_ms = target.step_ms
        self.labels: list[Labels] = []
        self._rows: dict[Labels, int] = {}  # raw series only: each one's row
        self._first_step: int | None = None
        self.stats = TargetStats()
        # The decoder made the step a whole number of ms and the history at least two steps.
        self._grid = Ring(target.history_steps, ((np.float64, np.nan),))
        agg = target.aggregate
        if agg is None:
            self._agg: Aggregator | None = None
        else:
            self._agg = Aggregator(agg, self.step_ms, self._grid)

    @property
    def full(self) -> bool:
        """Whether the target keeps as many series as its ``max_series``."""
        return self.stats.series >= self.target.max_series

    def add_series(self, labels: Labels) -> int:
        """Register a matching series; returns its row (raw) or member index (aggregated)."""
        self.stats.series += 1
        if self._agg is None:
            self.labels.append(labels)
            self._rows[labels] = row = self._grid.add_row()
            return row
        group = tuple((n, v) for n, v in labels if n in self._agg.by)
        return self._agg.add_member(group, self.labels)

    def append(self, rows: IntArray, timestamps: IntArray, values: FloatArray) -> None:
        """Samples of this target's series, in receive order."""
        if rows.size == 0:
            return
        steps = grid_steps(timestamps, self.step_ms)  # a sample at k*step belongs to step k
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
        keep = last_wins(slots * grid.capacity + rows)
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

    def history(self, labels: Labels, *, steps: int) -> GridBatch | None:
        """One row of ``batch(steps=steps, drop_empty=False)``, read alone; None for an unknown row.

        A person opening one series of ten thousand should not cost a copy of all of them.
        """
        head = self._head()
        if head is None or self._first_step is None:
            return None
        if self._agg is not None:  # groups are few: read them all and keep the one
            batch = self.batch(steps=steps, drop_empty=False)
            if batch is None or labels not in batch.labels:
                return None
            i = batch.labels.index(labels)
            return GridBatch(batch.target, (labels,), batch.values[i : i + 1], batch.start_ms, batch.step_ms)
        row = self._rows.get(labels)
        if row is None:
            return None
        first = max(self._first_step, head - min(steps, self._grid.slots) + 1)
        values = self._grid.read_row(0, row, first, head).astype(np.float64)[None, :]
        return GridBatch(self.target.name, (labels,), values, first * self.step_ms, self.step_ms)

    def _head(self) -> int | None:
        return self._grid.head if self._agg is None else self._agg.members.head

    def current_stats(self) -> TargetStats:
        self.stats.rows = len(self.labels)
        self.stats.nbytes = self._grid.nbytes + (self._agg.members.nbytes if self._agg else 0)
        return self.stats


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

    def __init__(
        self, targets: Iterable[TargetConfig], *, max_series: int | None = None, shard: Shard | None = None
    ) -> None:
        # Series kept over all targets (``ingest.max_series``); None: no limit but the targets'.
        self.max_series = max_series
        # This replica's share of the series (``shard``); None keeps every series.
        self.shard = shard
        # New series a target selected that belong to another replica's shard.
        self.other_shards = 0
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
        """Register a series that at least one target selects; None when none does.

        A series of another replica's shard is not kept (None, counted in ``other_shards``).
        A new series is refused (None, counted in each selecting target's ``refused``) once the
        store keeps ``max_series``; a target that keeps its own ``max_series`` does not take it,
        and it is refused when no target does. Series already kept are never affected.
        """
        ref = self._refs.get(labels)
        if ref is not None:
            return ref
        wanted = [i for i, t in enumerate(self._stores) if t.target.selector.matches(labels)]
        if not wanted:
            return None
        if self.shard is not None and not self.shard.keeps(labels):
            self.other_shards += 1
            return None
        store_full = self.max_series is not None and len(self._labels) >= self.max_series
        for i in wanted:
            if store_full or self._stores[i].full:
                self._stores[i].stats.refused += 1
        wanted = [] if store_full else [i for i in wanted if not self._stores[i].full]
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
                        if store.full:
                            store.stats.refused += 1
                            continue
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

    def history(self, target: str, labels: Labels, *, steps: int) -> GridBatch | None:
        """One series' recent grid (see ``TargetStore.history``); KeyError for an unknown target."""
        return self.targets[target].history(labels, steps=steps)

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
