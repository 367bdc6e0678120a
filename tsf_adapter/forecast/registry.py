"""Every model by name, one registry: what the backtest's ``--models`` and the daemon's ``model.kind`` accept.

A model is built from :class:`~tsf_adapter.forecast.options.ModelOptions` in one hop: the
registry looks the name up and calls its builder with the options (for the neural names, the
model class itself, which derives its training settings from the options). The caller never
needs to know a model's class or its constructor. Baselines are plain numpy; the neural names
import torch only when one is actually built, which keeps ``import tsf_adapter.forecast`` light.

>>> m = create_model("predict_linear", ModelOptions(history_s=3600, horizon_s=600, step_s=60))
>>> m.name, m.quantiles
('predict_linear', (0.5,))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import get_args

from tsf_adapter.config.target import TrainedKind
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.forecast.base import Forecaster
from tsf_adapter.forecast.baselines import HoltWinters, LastValue, PredictLinear, SeasonalNaive
from tsf_adapter.forecast.options import ModelOptions

AUTO = "auto"
# The config's list of kinds that train: one list, so check-config and the registry agree.
NEURAL_MODELS: tuple[str, ...] = get_args(TrainedKind)
SEASON_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to build one model, and how much past it needs at each forecast.

    ``build`` is called with the run's options, so a class whose constructor takes
    :class:`ModelOptions` is a builder as it is. ``window_s`` defaults to the history;
    seasonal naive needs a whole season behind the origin whatever the history is, or it
    would have nothing to copy.
    """

    build: Callable[[ModelOptions], Forecaster]
    window_s: Callable[[ModelOptions], float] = lambda o: o.history_s


def _season_s(o: ModelOptions) -> float:
    """A day as a whole number of grid steps: a 57s grid (as some exporters have) gets 1516 steps."""
    return max(1, round(SEASON_S / o.step_s)) * o.step_s


def _seasonal_window(o: ModelOptions) -> float:
    return max(o.history_s, _season_s(o))


def _neural(options: ModelOptions, name: str) -> Forecaster:
    """A neural model; :mod:`tsf_adapter.forecast.neural.model` is imported only now, as it imports torch."""
    from tsf_adapter.forecast.neural.model import AutoModel, NeuralModel

    if name == AUTO:
        return AutoModel(options)
    return NeuralModel(options, kind=name)


def _neural_spec(name: str) -> ModelSpec:
    return ModelSpec(lambda o: _neural(o, name))


MODELS: dict[str, ModelSpec] = {
    # predict_linear over the history is what an alert rule `predict_linear(x[12h], 6h)` computes.
    "predict_linear": ModelSpec(lambda o: PredictLinear(range_s=o.history_s)),
    "holt_winters": ModelSpec(lambda o: HoltWinters()),
    "last_value": ModelSpec(lambda o: LastValue()),
    "seasonal_naive": ModelSpec(lambda o: SeasonalNaive(_season_s(o)), _seasonal_window),
    **{name: _neural_spec(name) for name in NEURAL_MODELS},
}


def register_model(name: str, spec: ModelSpec) -> None:
    """Add (or replace) a model; tests use it to plug in recording models."""
    MODELS[name] = spec


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
    return MODELS[name].build(options)


def model_window_s(name: str, options: ModelOptions) -> float:
    """Seconds of past the named model is given at each forecast origin."""
    check_models([name])
    return MODELS[name].window_s(options)
