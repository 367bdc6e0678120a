"""Every model by name, one registry: what the backtest's ``--models`` and the daemon's ``model.kind`` accept.

A model is built from :class:`ModelOptions` (the run's step, history, horizon,
quantiles and device), so the caller never needs to know a model's class or
its constructor. Baselines are plain numpy; the neural names import torch only
when one is actually built, which keeps ``import tsf_adapter.forecast`` light.

The backtest and the daemon differ only in what they put into the options:
the backtest leaves ``input_steps``/``horizon_steps`` to be derived from the
window it hands over at each origin, the daemon sets them from its own rule
(:func:`tsf_adapter.pipeline.models.input_steps`) and adds a training clock
it can stop and the training scope. The classes behind the names are the same.

>>> m = create_model("predict_linear", ModelOptions(history_s=3600, horizon_s=600, step_s=60))
>>> m.name, m.quantiles
('predict_linear', (0.5,))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from tsf_adapter.core.errors import ConfigError
from tsf_adapter.forecast.base import Forecaster
from tsf_adapter.forecast.baselines import HoltWinters, LastValue, PredictLinear, SeasonalNaive

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
NEURAL_MODELS: tuple[str, ...] = ("lstm", "gru", "transformer", "auto")
DEFAULT_MODEL = "lstm"
SEASON_S = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOptions:
    """What every model factory may use; a model ignores what it does not need."""

    history_s: float
    horizon_s: float
    step_s: float
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    device: str = "cpu"
    seed: int = 0
    # Wall-clock seconds one training run of a learning model may take; None = until it converges.
    train_budget_s: float | None = None
    # One network per series, or one shared by all series of a target.
    scope: Literal["per_series", "global"] = "per_series"
    # Input and output window of a neural model in grid steps; None derives them from the history
    # and horizon as the backtest hands them over (see ``tsf_adapter.forecast.neural.model``).
    input_steps: int | None = None
    horizon_steps: int | None = None
    # Training settings to change by name, as (TrainConfig field, value) pairs, "features.NAME" for a
    # FeatureConfig field: benchmarks try settings with them without editing code. Empty for the daemon.
    train_settings: tuple[tuple[str, Any], ...] = ()
    # The clock a training reads its budget from; the daemon passes one that jumps to infinity at
    # shutdown, so a running fit ends at its next step with its best weights.
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to build one model, and how much past it needs at each forecast.

    ``window_s`` defaults to the history; seasonal naive needs a whole season
    behind the origin whatever the history is, or it would have nothing to copy.
    """

    build: Callable[[ModelOptions], Forecaster]
    window_s: Callable[[ModelOptions], float] = lambda o: o.history_s


def _season_s(o: ModelOptions) -> float:
    """A day as a whole number of grid steps: a 57s grid (as some exporters have) gets 1516 steps."""
    return max(1, round(SEASON_S / o.step_s)) * o.step_s


def _seasonal_window(o: ModelOptions) -> float:
    return max(o.history_s, _season_s(o))


MODELS: dict[str, ModelSpec] = {
    # predict_linear over the history is what an alert rule `predict_linear(x[12h], 6h)` computes.
    "predict_linear": ModelSpec(lambda o: PredictLinear(range_s=o.history_s)),
    "holt_winters": ModelSpec(lambda o: HoltWinters()),
    "last_value": ModelSpec(lambda o: LastValue()),
    "seasonal_naive": ModelSpec(lambda o: SeasonalNaive(_season_s(o)), _seasonal_window),
}


def register_model(name: str, spec: ModelSpec) -> None:
    """Add (or replace) a model; tests use it to plug in recording models."""
    MODELS[name] = spec


def _neural(name: str) -> ModelSpec:
    """Built by :mod:`tsf_adapter.forecast.neural.model`, imported only now because it imports torch."""

    def build(options: ModelOptions) -> Forecaster:
        from tsf_adapter.forecast.neural.model import build_neural

        return build_neural(name, options)

    return ModelSpec(build)


for _name in NEURAL_MODELS:
    MODELS[_name] = _neural(_name)


def check_models(names: Iterable[str]) -> list[str]:
    """The names, deduplicated in order; ``ConfigError`` for an unknown one, listing the known ones."""
    out: list[str] = []
    for name in names:
        if name not in MODELS:
            raise ConfigError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("no models given")
    return out


def is_neural(name: str) -> bool:
    """Whether the named model learns (and so is trained, saved and loaded) or is a baseline."""
    return name in NEURAL_MODELS


def create_model(name: str, options: ModelOptions) -> Forecaster:
    """Build the named model; ``ConfigError`` when the name is unknown or cannot be built here."""
    check_models([name])
    model = MODELS[name].build(options)
    return model


def model_window_s(name: str, options: ModelOptions) -> float:
    """Seconds of past the named model is given at each forecast origin."""
    check_models([name])
    return MODELS[name].window_s(options)
