"""The contract between the series store and every model: ``GridBatch`` in, quantile forecasts out.

The store hands a model one ``GridBatch`` per target: the series of that target
side by side on one regular time grid, gaps as NaN. A model (baseline or neural
network) implements ``Forecaster``: ``fit`` on a batch, then ``predict`` the
``horizon_steps`` grid steps that follow the batch's last step, one row per
quantile. Point models report the single quantile 0.5.

Capability flags are class attributes, so the scheduler can decide without
calling anything: ``NEEDS_FIT`` (skip training for models that have nothing to
learn) and ``QUANTILES`` (the model gives more than a point forecast, so
interval coverage and pinball loss mean something).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from tsf_adapter.series import Labels

FloatArray = npt.NDArray[np.float64]

POINT_QUANTILES: tuple[float, ...] = (0.5,)
"""What a point forecaster reports: its forecast is read as the median."""


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


@runtime_checkable
class Forecaster(Protocol):
    """What every model implements: baselines now, neural networks later.

    ``predict`` returns ``[series, len(quantiles), horizon_steps]`` for the steps
    after ``batch.end_ms``; NaN where the model has nothing to say (e.g. a series
    with no samples). ``quantiles`` is sorted ascending.
    """

    NEEDS_FIT: ClassVar[bool]
    QUANTILES: ClassVar[bool]

    name: str
    quantiles: tuple[float, ...]

    def fit(self, batch: GridBatch) -> None: ...

    def predict(self, batch: GridBatch, horizon_steps: int) -> FloatArray: ...


def check_forecast(forecaster: Forecaster, batch: GridBatch, horizon_steps: int, out: FloatArray) -> None:
    """Raise ``ValueError`` unless ``out`` has the shape the contract promises.

    Shared by the contract tests of all models and usable by the scheduler as a guard.
    """
    expected = (batch.n_series, len(forecaster.quantiles), horizon_steps)
    if out.shape != expected:
        raise ValueError(f"{forecaster.name}: forecast shape {out.shape}, expected {expected}")
    if out.dtype != np.float64:
        raise ValueError(f"{forecaster.name}: forecast dtype {out.dtype}, expected float64")
