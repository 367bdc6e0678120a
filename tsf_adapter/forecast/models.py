"""The daemon's model factory: ``make_forecaster(model_cfg, target_cfg)`` builds what a target's config names.

Baselines are built directly. Neural kinds get a :class:`TrainConfig` derived from the target:

* ``horizon_steps`` is the longest horizon in grid steps, so one network covers every horizon;
* ``input_steps`` is twice that, at least ``MIN_INPUT_STEPS`` and at most ``MAX_INPUT_STEPS``, and
  never more than a third of the history: the network sees more past than it predicts, the
  recurrent cost per window stays bounded on a CPU (it grows with the window length), and the
  history still holds enough windows to train on and to validate with (the trainer keeps the
  newest fifth, at least one horizon, for early stopping);
* ``budget_s`` is passed in by the scheduler (a fraction of ``retrain_every``).

``auto`` is meant to pick a model per series by backtest; until that selection is available here
it trains ``lstm`` and says so once in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from tsf_adapter.config import ModelConfig, TargetConfig
from tsf_adapter.forecast.base import Forecaster
from tsf_adapter.forecast.baselines import BASELINES, HoltWinters, LastValue, PredictLinear, SeasonalNaive

if TYPE_CHECKING:
    from tsf_adapter.forecast.trainer import TrainConfig

logger = logging.getLogger("tsf_adapter.forecast.models")

MIN_INPUT_STEPS: Final = 24
MAX_INPUT_STEPS: Final = 288
NEURAL_KINDS: Final = ("lstm", "gru", "transformer", "auto")
AUTO_FALLBACK: Final = "lstm"
SEASON_S: Final = 86_400.0

_auto_logged = False


def is_neural(model_cfg: ModelConfig) -> bool:
    """Whether the kind learns (and so is trained, saved and loaded) or is a baseline."""
    return model_cfg.kind in NEURAL_KINDS


def net_kind(model_cfg: ModelConfig) -> str:
    """The network actually trained for a neural kind (``auto`` falls back to ``lstm``, logged once)."""
    global _auto_logged
    if model_cfg.kind != "auto":
        return model_cfg.kind
    if not _auto_logged:
        _auto_logged = True
        logger.warning(
            "model kind auto: per-series selection is not available yet, training %s", AUTO_FALLBACK
        )
    return AUTO_FALLBACK


def input_steps(target: TargetConfig) -> int:
    """The input window in steps for ``target`` (rule in the module docstring).

    >>> from tsf_adapter.config import decode_section
    >>> input_steps(decode_section(TargetConfig, {"name": "d", "selector": "disk"}))  # 1m step, 6h, 2d
    288
    """
    longest = max(target.horizon_steps)
    history_steps = round(target.history * 1000) // target.step_ms
    wanted = min(max(2 * longest, MIN_INPUT_STEPS), MAX_INPUT_STEPS)
    return max(1, min(wanted, history_steps // 3))


def train_config(target: TargetConfig, *, budget_s: float | None = None, device: str = "auto") -> TrainConfig:
    """The :class:`~tsf_adapter.forecast.trainer.TrainConfig` of a neural target (imports torch)."""
    from tsf_adapter.forecast.features import FeatureConfig
    from tsf_adapter.forecast.trainer import TrainConfig

    features = FeatureConfig(input_steps=input_steps(target), horizon_steps=max(target.horizon_steps))
    return TrainConfig(
        model=net_kind(target.model),  # type: ignore[arg-type]
        scope=target.model.scope,
        features=features,
        quantiles=target.quantiles,
        budget_s=budget_s,
        device=device,
    )


def model_config_hash(target: TargetConfig) -> str:
    """What a saved model must match to be reused: everything that shapes the network or its grid."""
    from tsf_adapter.forecast.persist import config_hash

    cfg = train_config(target)
    return config_hash(
        {
            "kind": target.model.kind,
            "scope": target.model.scope,
            "step_ms": target.step_ms,
            "model": cfg.model,
            "features": repr(cfg.features),
            "quantiles": list(target.quantiles),
            "hidden": [cfg.hidden_size, cfg.num_layers, cfg.num_heads],
        }
    )


def baseline(kind: str, target: TargetConfig) -> Forecaster:
    """A baseline by config name, fitted to the target's grid."""
    if kind == "seasonal_naive":
        # A day as whole grid steps, so a step that does not divide a day (57s) still works.
        return SeasonalNaive(max(1, round(SEASON_S / target.step)) * target.step)
    if kind == "predict_linear":
        return PredictLinear()  # over the whole history the store keeps
    if kind == "holt_winters":
        return HoltWinters()
    if kind == "last_value":
        return LastValue()
    raise ValueError(f"unknown baseline {kind!r} (known: {', '.join(BASELINES)})")


def make_forecaster(
    model_cfg: ModelConfig,
    target_cfg: TargetConfig,
    *,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    device: str = "auto",
) -> Forecaster:
    """The forecaster a target's ``model`` names; neural ones are untrained ``NeuralForecaster``\\ s.

    ``clock`` is the training clock: the scheduler passes one that jumps past every deadline
    when the daemon stops, so a running fit ends at its next step with its best weights.
    """
    if not is_neural(model_cfg):
        return baseline(model_cfg.kind, target_cfg)
    from tsf_adapter.forecast.trainer import NeuralForecaster

    cfg = train_config(target_cfg, budget_s=budget_s, device=device)
    return NeuralForecaster(cfg, name=cfg.model, clock=clock)
