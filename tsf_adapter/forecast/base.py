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

from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from tsf_adapter.core.grid import FloatArray, GridBatch

POINT_QUANTILES: tuple[float, ...] = (0.5,)
"""What a point forecaster reports: its forecast is read as the median."""


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
