"""The regular time grid a target lives on: ``GridBatch`` and the rule that puts samples on it.

Grid step ``k`` has timestamp ``k * step`` and holds the last sample in
``(k*step - step, k*step]``; a step without a sample is a gap (NaN). The store
applies this rule on ingest, the backtest on CSV or remote-read history, so a
model sees the same grid in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.series import Labels

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def grid_steps(timestamps_ms: IntArray, step_ms: int) -> IntArray:
    """The grid step each timestamp falls in: ``ceil(t / step)``, so a sample at ``k*step`` is step ``k``.

    >>> grid_steps(np.array([0, 1, 10, 11, -10]), 10).tolist()
    [0, 1, 1, 2, -1]
    """
    return -(-timestamps_ms // step_ms)


def grid_values(
    timestamps_ms: IntArray, values: FloatArray, cutoff_ms: int, first_ms: int, n_steps: int, step_ms: int
) -> FloatArray:
    """Grid steps ``first_ms + j * step_ms``, each the last sample in its step; samples ``<= cutoff`` only.

    ``timestamps_ms`` is sorted ascending, as Prometheus returns series.

    >>> grid_values(np.array([10, 20, 30, 50]), np.array([1.0, 2.0, 3.0, 5.0]), 45, 20, 3, 10).tolist()
    [2.0, 3.0, nan]
    """
    visible = int(np.searchsorted(timestamps_ms, cutoff_ms, side="right"))
    cols = grid_steps(timestamps_ms[:visible] - first_ms, step_ms)
    inside = (cols >= 0) & (cols < n_steps)
    cols, vals = cols[inside], values[:visible][inside]
    out = np.full(n_steps, np.nan)
    if cols.size:
        last = np.flatnonzero(np.append(cols[1:] != cols[:-1], True))  # the last sample of each step wins
        out[cols[last]] = vals[last]
    return out


@dataclass(frozen=True, slots=True, eq=False)
class GridBatch:
    """Series of one target on a shared regular grid: ``values[series, step]``, NaN for gaps.

    Column ``j`` holds the sample of the step ending at ``start_ms + j * step_ms``
    (unix milliseconds, a multiple of ``step_ms``). Milliseconds because that is
    what Prometheus uses everywhere; ``start_s`` / ``step_s`` are there for
    code that thinks in seconds.

    >>> import numpy as np
    >>> b = GridBatch("disk", ((("instance", "a"),),), np.array([[1.0, np.nan, 3.0]]), 60_000, 60_000)
    >>> b.n_series, b.n_steps, b.end_ms, b.timestamps_ms().tolist()
    (1, 3, 180000, [60000, 120000, 180000])
    """

    target: str
    labels: tuple[Labels, ...]
    values: FloatArray
    start_ms: int
    step_ms: int

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[0] != len(self.labels):
            raise ValueError(
                f"values must be [series, steps] with one row per label set "
                f"(got shape {self.values.shape} for {len(self.labels)} label sets)"
            )
        if self.step_ms <= 0:
            raise ValueError(f"step_ms must be > 0 (got {self.step_ms})")

    @property
    def n_series(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.values.shape[1])

    @property
    def end_ms(self) -> int:
        """Timestamp of the last column (the step the forecast starts after)."""
        return self.start_ms + (self.n_steps - 1) * self.step_ms

    @property
    def start_s(self) -> float:
        return self.start_ms / 1000.0

    @property
    def step_s(self) -> float:
        return self.step_ms / 1000.0

    def timestamps_ms(self) -> npt.NDArray[np.int64]:
        """The grid's timestamps, one per column."""
        return self.start_ms + self.step_ms * np.arange(self.n_steps, dtype=np.int64)

    def horizon_timestamps_ms(self, horizon_steps: int) -> npt.NDArray[np.int64]:
        """Timestamps of the ``horizon_steps`` steps a forecast covers."""
        return self.end_ms + self.step_ms * np.arange(1, horizon_steps + 1, dtype=np.int64)

    def rows(self, rows: npt.ArrayLike) -> GridBatch:
        """The batch of the series at ``rows`` (a subclass keeps its own per-series columns with them)."""
        idx = np.asarray(rows, dtype=np.intp)
        labels = tuple(self.labels[i] for i in idx.tolist())
        return GridBatch(self.target, labels, self.values[idx], self.start_ms, self.step_ms)

    def head(self, steps: int) -> GridBatch:
        """The first ``steps`` columns: the grid as it stood before column ``steps`` (no later value).

        >>> b = GridBatch("d", ((("i", "a"),),), np.array([[1.0, 2.0, 3.0]]), 60_000, 60_000)
        >>> b.head(2).values.tolist(), b.rows([0]).labels
        ([[1.0, 2.0]], ((('i', 'a'),),))
        """
        return GridBatch(self.target, self.labels, self.values[:, :steps], self.start_ms, self.step_ms)
