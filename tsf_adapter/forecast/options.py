"""Model options: the one description of a model run, and the one place for its defaults.

Every model, baseline or neural, is built from a :class:`ModelOptions` and nothing else
(:func:`tsf_adapter.forecast.registry.create_model`), so a value set here reaches the model
without being copied from one option type to the next. A neural model derives its training
settings from the options itself (:mod:`tsf_adapter.forecast.neural.model`), the training
clock included.

The backtest and the daemon differ only in what they put in: the backtest leaves
``input_steps``/``horizon_steps`` to be derived from the window it hands over at each origin;
the daemon sets them from its own rule (:attr:`tsf_adapter.config.TargetConfig.input_steps`) and adds
a training clock it can stop and the training scope.

This module imports nothing of the package, so any layer may read the names and defaults.

>>> o = ModelOptions(history_s=3600, horizon_s=600, step_s=60)
>>> o.quantiles, o.scope, o.device
((0.1, 0.5, 0.9), 'auto', 'cpu')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
"""The quantiles a model forecasts unless told otherwise: a median and an 80% band."""

NetKind = Literal["lstm", "gru", "transformer"]
"""The neural architectures (:mod:`tsf_adapter.forecast.neural.nets`)."""

Scope = Literal["per_series", "global"]
"""One network per series, or one shared by all series of a target."""

ScopeSetting = Literal["auto", "per_series", "global"]
"""A scope, or ``auto``: chosen at each training by the number of series trained together
(:func:`tsf_adapter.forecast.neural.model.auto_scope`)."""

Monotonic = Callable[[], float]
"""Seconds from a monotonic source, read for training budgets (``time.monotonic`` by default).

Not the daemon's :class:`tsf_adapter.core.clock.Clock`: a training runs in an executor thread
and only needs "now"; the scheduler hands in one that jumps past every deadline at shutdown.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOptions:
    """What every model may use; a model ignores what it does not need."""

    history_s: float
    horizon_s: float
    step_s: float
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    device: str = "cpu"
    seed: int = 0
    # Wall-clock seconds one training run of a learning model may take; None = until it converges.
    train_budget_s: float | None = None
    scope: ScopeSetting = "auto"
    # Input and output window of a neural model in grid steps; None derives them from the history
    # and horizon as the backtest hands them over (see ``tsf_adapter.forecast.neural.model``).
    input_steps: int | None = None
    horizon_steps: int | None = None
    # Training settings to change by name, as (TrainConfig field, value) pairs, "features.NAME" for a
    # FeatureConfig field: benchmarks try settings with them without editing code. Empty for the daemon.
    train_settings: tuple[tuple[str, Any], ...] = ()
    # Neural models read the threshold headroom as an input channel (``forecast.neural.headroom``):
    # every batch they fit and forecast on must then be a ``HeadroomBatch``. Off: no such channel.
    headroom: bool = False
    # Neural models rescale their quantiles on the validation windows after training
    # (``forecast.neural.calibration``).
    calibrate: bool = False
    # The clock a training reads its budget from; the daemon passes one that jumps to infinity at
    # shutdown, so a running fit ends at its next step with its best weights.
    clock: Monotonic = field(default=time.monotonic, compare=False)
