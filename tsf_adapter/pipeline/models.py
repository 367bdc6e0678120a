"""The daemon's side of the model registry: a target's config in, the registry's model out.

The names and classes live in :mod:`tsf_adapter.forecast.registry`, shared with the backtest;
this module only turns a :class:`TargetConfig` into the one options type,
:class:`~tsf_adapter.forecast.options.ModelOptions`, the daemon's way (:func:`model_options`),
and :func:`make_forecaster` hands those to the registry, which builds the model from them:

* ``horizon_steps`` is the longest horizon in grid steps, so one network covers every horizon
  (the daemon's origin is always a grid step, unlike the backtest's, which needs one step more);
* ``input_steps`` is the target's own (:attr:`TargetConfig.input_steps`: twice that, within
  bounds, never more than a third of the history), so the config decoder can check that the
  history holds a training window. The backtest's rule (the input window is the history it
  hands over) cannot be shared: there "history" is the window given at each origin, here it is
  everything the store keeps, and a 2-day window of 1-minute steps would leave a single
  training window and make every recurrent step ~10x longer on a CPU;
* ``train_budget_s`` is passed in by the scheduler (a fraction of ``retrain_every``), and ``clock``
  is the training clock the scheduler stops at shutdown.

It also moves trained models in and out of :mod:`.persist` (:func:`snapshot`, :func:`restore`)
and says which architecture serves each series (:func:`serving_models`), which for ``auto`` is
the candidate chosen per series by a backtest of recent origins in the series' own units
(:mod:`tsf_adapter.forecast.neural.selection`); those errors are the scores it saves.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from statistics import median
from typing import TYPE_CHECKING, Final

import numpy as np

from tsf_adapter.config import ModelConfig, TargetConfig
from tsf_adapter.core.series import Labels
from tsf_adapter.forecast import registry
from tsf_adapter.forecast.base import Forecaster
from tsf_adapter.forecast.options import ModelOptions, Monotonic, Scope, ScopeSetting

if TYPE_CHECKING:
    from tsf_adapter.forecast.neural.persist import SavedModel
    from tsf_adapter.forecast.neural.state import EpochProgress
    from tsf_adapter.forecast.neural.trainer import NeuralForecaster

AUTO: Final = registry.AUTO


def is_neural(model_cfg: ModelConfig) -> bool:
    """Whether the kind learns (and so is trained, saved and loaded) or is a baseline."""
    return registry.is_neural(model_cfg.kind)


def model_options(
    target: TargetConfig,
    *,
    budget_s: float | None = None,
    clock: Monotonic = time.monotonic,
    device: str = "auto",
) -> ModelOptions:
    """The model options for ``target``: its grid, horizons and quantiles, the daemon's windows.

    >>> from tsf_adapter.config import decode_section
    >>> o = model_options(decode_section(TargetConfig, {"name": "d", "selector": "disk"}))
    >>> o.input_steps, o.horizon_steps, o.scope
    (288, 360, 'auto')
    """
    return ModelOptions(
        history_s=target.history,
        horizon_s=max(target.horizons),
        step_s=target.step,
        quantiles=target.quantiles,
        device=device,
        train_budget_s=budget_s,
        scope=target.model.scope,
        input_steps=target.input_steps,
        horizon_steps=max(target.horizon_steps),
        clock=clock,
        headroom=target.model.headroom,
        calibrate=target.model.calibrate,
    )


def make_forecaster(
    target: TargetConfig,
    *,
    budget_s: float | None = None,
    clock: Monotonic = time.monotonic,
    device: str = "auto",
) -> Forecaster:
    """The forecaster ``target.model`` names, built by the registry from its options; neural ones untrained.

    ``clock`` is the training clock: the scheduler passes one that jumps past every deadline
    when the daemon stops, so a running fit ends at its next step with its best weights.
    """
    options = model_options(target, budget_s=budget_s, clock=clock, device=device)
    return registry.create_model(target.model.kind, options)


def model_config_hash(target: TargetConfig) -> str:
    """What a saved model must match to be reused: everything that shapes a network or its grid."""
    from tsf_adapter.forecast.neural.model import KINDS, net_kind, train_config
    from tsf_adapter.forecast.neural.persist import config_hash

    kind = target.model.kind
    options = model_options(target)
    candidates = KINDS if kind == AUTO else (net_kind(kind),)
    shapes = {}
    for name in candidates:
        cfg = train_config(name, options)
        shapes[name] = [repr(cfg.features), cfg.hidden_size, cfg.num_layers, cfg.num_heads]
    hashed = {
        "kind": kind,
        # ``auto`` hashes as ``per_series``, the default it replaced, so the models saved before it
        # keep loading; :func:`restore` checks that the saved network's scope is one the setting allows.
        "scope": target.model.initial_scope,
        "step_ms": target.step_ms,
        "quantiles": list(target.quantiles),
        "candidates": shapes,
    }
    if target.model.headroom:
        # One more input channel: a model saved without it must be retrained, not loaded. Named only
        # when on, so the hash of every model without it stays what it was.
        hashed["headroom"] = True
    return config_hash(hashed)


def serving_models(forecaster: Forecaster, labels: Sequence[Labels]) -> list[str]:
    """Per series, the architecture that forecasts it: ``auto``'s choice, else the model's name."""
    from tsf_adapter.forecast.neural.model import AutoModel

    if not isinstance(forecaster, AutoModel):
        return [forecaster.name] * len(labels)
    names = [m.name for m in forecaster.candidates]
    return [names[forecaster.choice[lab]] if lab in forecaster.choice else AUTO for lab in labels]


def candidate_scores(forecaster: Forecaster, labels: Labels) -> dict[str, float]:
    """``auto``'s backtest error of each architecture on one series (mean pinball loss in the series'
    units, :mod:`tsf_adapter.forecast.neural.selection`), the scores it chose by; ``{}`` for any
    other model, or a series it has not scored. A candidate that did not train scores ``inf``."""
    if forecaster.name != AUTO:
        return {}
    from tsf_adapter.forecast.neural.model import AutoModel

    if not isinstance(forecaster, AutoModel):
        return {}
    scores = forecaster.scores.get(labels, ())
    return dict(zip((m.name for m in forecaster.candidates), scores, strict=False))


def serving_scope(forecaster: Forecaster, model_cfg: ModelConfig) -> Scope:
    """The scope the forecasts come from: the trained network's, else the configured one's start."""
    if model_cfg.scope != "auto":
        return model_cfg.scope
    for model in neural_parts(forecaster):
        if model.state is not None:
            return model.state.scope
    return model_cfg.initial_scope


def neural_parts(forecaster: Forecaster) -> list[NeuralForecaster]:
    """The networks a forecaster trains: ``auto``'s candidates, a neural model itself, or none.

    Asks the registry first, so that a baseline (or a test's stand-in) never imports torch.
    """
    if not registry.is_neural(forecaster.name):
        return []
    from tsf_adapter.forecast.neural.model import AutoModel
    from tsf_adapter.forecast.neural.trainer import NeuralForecaster

    models = forecaster.candidates if isinstance(forecaster, AutoModel) else [forecaster]
    return [m for m in models if isinstance(m, NeuralForecaster)]


def watch_training(forecaster: Forecaster, hook: Callable[[str, EpochProgress], None]) -> None:
    """Have every network of ``forecaster`` call ``hook(its name, progress)`` after each epoch."""
    for model in neural_parts(forecaster):
        model.progress = functools.partial(hook, model.name)


def fit_summary(forecaster: Forecaster) -> str:
    """How the last fit ended, per network: ``lstm: early_stopping after 5 epochs (best 1)``."""
    parts = []
    for model in neural_parts(forecaster):
        report = model.last_report
        if report is None:
            continue
        best = report.best_epoch[report.best_epoch >= 0]
        best_text = f" (best {int(np.median(best)) + 1})" if best.size else ""
        untrained = f", {report.untrained} series untrained" if report.untrained else ""
        parts.append(f"{model.name}: {report.stopped} after {report.epochs} epochs{best_text}{untrained}")
    return "; ".join(parts)


def snapshot(forecaster: Forecaster, target: TargetConfig, start_ms: int, end_ms: int) -> SavedModel | None:
    """A trained forecaster as a :class:`SavedModel`, or None when there is nothing to save."""
    from tsf_adapter.forecast.neural.model import AutoModel
    from tsf_adapter.forecast.neural.persist import Choice, ModelMeta, SavedModel
    from tsf_adapter.forecast.neural.selection import METRIC
    from tsf_adapter.forecast.neural.trainer import NeuralForecaster

    choices: tuple[Choice, ...] = ()
    if isinstance(forecaster, AutoModel):
        names = [m.name for m in forecaster.candidates]
        states = {m.name: m.state for m in forecaster.candidates if m.state is not None}
        choices = tuple(
            Choice(lab, names[i], dict(zip(names, forecaster.scores.get(lab, ()), strict=False)))
            for lab, i in forecaster.choice.items()
            if names[i] in states
        )
        scores = {n: _median_finite(c.scores.get(n, math.inf) for c in choices) for n in names}
        metric = METRIC
    elif isinstance(forecaster, NeuralForecaster) and forecaster.state is not None:
        states = {forecaster.name: forecaster.state}
        report = forecaster.last_report
        best = [] if report is None else report.val_loss.min(axis=0, initial=math.inf).tolist()
        scores = {forecaster.name: _median_finite(best)}
        metric = "val_loss"
    else:
        return None
    if not states:
        return None
    meta = ModelMeta(
        kind=target.model.kind,
        scope=next(iter(states.values())).scope,
        config_hash=model_config_hash(target),
        trained_from_ms=start_ms,
        trained_to_ms=end_ms,
        scores={n: s for n, s in scores.items() if math.isfinite(s)},
        score_metric=metric,
        chosen_by=AUTO if choices else "",
        saved_at=time.time(),
    )
    return SavedModel(meta, states, choices)


def restore(forecaster: Forecaster, saved: SavedModel, scope: ScopeSetting = "auto") -> bool:
    """Put saved weights (and ``auto``'s choices) into a fresh forecaster; False when they do not fit.

    ``scope`` is the target's setting: a network saved in another scope does not fit it.
    """
    from tsf_adapter.forecast.neural.model import AutoModel
    from tsf_adapter.forecast.neural.trainer import NeuralForecaster

    if scope != "auto" and any(state.scope != scope for state in saved.states.values()):
        return False
    if isinstance(forecaster, AutoModel):
        names = [m.name for m in forecaster.candidates]
        if not saved.choices or not saved.states.keys() <= set(names):
            return False
        for model in forecaster.candidates:
            model.state = saved.states.get(model.name)
        forecaster.choice = {c.labels: names.index(c.model) for c in saved.choices}
        forecaster.scores = {c.labels: tuple(c.scores.get(n, math.inf) for n in names) for c in saved.choices}
        return True
    if isinstance(forecaster, NeuralForecaster):
        state = saved.states.get(forecaster.name)
        if state is None or len(saved.states) != 1:
            return False
        forecaster.state = state
        return True
    return False


def _median_finite(values: Iterable[float]) -> float:
    finite = [float(v) for v in values if math.isfinite(v)]
    return median(finite) if finite else math.inf
