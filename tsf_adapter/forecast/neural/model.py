"""The neural models by name, for the registry: ``lstm``, ``gru``, ``transformer`` and ``auto``.

Imports torch, so :mod:`tsf_adapter.forecast.registry` (and the daemon's
:mod:`tsf_adapter.pipeline.models`) import it inside functions, only when a
neural model is actually built or restored. Each model is built from the run's
:class:`~tsf_adapter.forecast.options.ModelOptions` alone and derives its
:class:`TrainConfig` (:func:`train_config`) and its training clock from them, so
nothing set in the options can be lost between the registry and the trainer.

The settings come from the options: the input window is the history
(on the grid: ``history / step + 1`` steps, the window the backtest hands
over), the trained horizon covers ``horizon`` plus one step (an origin between
two grid steps needs one more); options that set ``input_steps`` and
``horizon_steps`` (the daemon's) are taken as they are. An epoch uses at most ``MAX_WINDOWS_PER_EPOCH``
windows, evenly strided over the history: neighbouring windows are nearly
identical, and a month of minute samples would otherwise make every epoch
tens of thousands of windows long on a CPU.

``auto`` trains the three architectures on the same windows and keeps, per
series, the one with the lowest error on a backtest of a few recent origins in
the held-out validation span, in the series' own units (:mod:`.selection`): each
forecast is made from the grid up to its origin only, so choosing uses nothing a
forecast could not have known.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, ClassVar, get_args

import numpy as np
import numpy.typing as npt

from tsf_adapter.config import decode_section
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.forecast.neural.features import FeatureConfig
from tsf_adapter.forecast.neural.selection import backtest_errors, choose, scoring_origins
from tsf_adapter.forecast.neural.state import TrainConfig
from tsf_adapter.forecast.neural.trainer import NeuralForecaster
from tsf_adapter.forecast.options import ModelOptions, NetKind, Scope

FloatArray = npt.NDArray[np.float64]

MAX_WINDOWS_PER_EPOCH = 1024
# One network for all series: minibatches of (series, origin) windows and epochs of a bounded
# number of them, drawn afresh each epoch, so that an epoch costs the same at 30 series or 10,000
# (about 45 s on one CPU thread for a 1-minute, 2-day target; BENCHMARKS.md, training cost).
GLOBAL_BATCH_SIZE = 64
GLOBAL_EPOCH_WINDOWS = 16_384
# ``scope: auto`` trains a network per series up to this many series (one stack of ``chunk_size``),
# and one network above it. Per series the cost grows with the series: on one CPU thread of this
# 2-core machine, a network each for a 1-minute, 2-day target runs its 30 epochs within the hour's
# 2,880 s budget for one stack of 128 series; 256 series stopped on the budget after 20 epochs,
# still improving, and 1,000 after 4. One network for 1,000 converges in about 3 minutes
# (BENCHMARKS.md, training cost). Where per-series networks can train, they measured best on the
# real series.
AUTO_GLOBAL_ABOVE = 128
# Once global, a target stays global until it shrinks to this share of the limit, so a target
# whose size wavers around the limit does not flip scope, and start cold, at every training.
AUTO_HYSTERESIS = 0.8
# Where training settings come from, for their error messages (bench/accuracy.py's flag).
SETTINGS_SOURCE = "--train-setting"
KINDS: tuple[NetKind, ...] = get_args(NetKind)


def auto_scope(n_series: int, previous: Scope | None = None) -> Scope:
    """The scope ``auto`` trains ``n_series`` series in; ``previous``: the scope of the last model.

    >>> auto_scope(128), auto_scope(129), auto_scope(110, previous="global"), auto_scope(100, "global")
    ('per_series', 'global', 'global', 'per_series')
    """
    if previous == "global" and n_series > AUTO_GLOBAL_ABOVE * AUTO_HYSTERESIS:
        return "global"
    return "global" if n_series > AUTO_GLOBAL_ABOVE else "per_series"


def train_config(kind: NetKind, options: ModelOptions, scope: Scope | None = None) -> TrainConfig:
    """The training settings of one architecture for the run described by ``options``.

    ``scope`` resolves an ``auto`` scope (the fit knows its series; see :func:`auto_scope`);
    without it ``auto`` reads as ``per_series``, which only the network's shape depends on.

    >>> cfg = train_config("gru", ModelOptions(history_s=43_200, horizon_s=21_600, step_s=300))
    >>> cfg.model, cfg.features.input_steps, cfg.features.horizon_steps
    ('gru', 145, 73)
    """
    if scope is None:
        scope = "per_series" if options.scope == "auto" else options.scope
    step = options.step_s
    features = FeatureConfig(
        input_steps=options.input_steps or int(options.history_s // step) + 1,
        horizon_steps=options.horizon_steps or math.ceil(options.horizon_s / step) + 1,
        headroom=options.headroom,
    )
    device = options.device
    config = TrainConfig(
        model=kind,
        scope=scope,
        features=features,
        quantiles=options.quantiles,
        device=device,
        seed=options.seed,
        budget_s=options.train_budget_s,
        calibrate=options.calibrate,
    )
    if scope == "global":
        config = dataclasses.replace(config, batch_size=GLOBAL_BATCH_SIZE, epoch_windows=GLOBAL_EPOCH_WINDOWS)
    return with_settings(config, options.train_settings)


def with_settings(config: TrainConfig, settings: Iterable[tuple[str, Any]]) -> TrainConfig:
    """``config`` with fields replaced by name; ``features.NAME`` reaches into its FeatureConfig.

    The names and values are checked by the config file's own strict decoder, so a misspelt
    name or a wrong type is a ``ConfigError`` naming the setting ("did you mean ...?") before
    anything trains, never a benchmark quietly run on the defaults or a crash in the optimiser.
    Fields not named keep ``config``'s values (the windows derived from the options included).

    >>> cfg = with_settings(TrainConfig(), [("weight_decay", 0.01), ("features.scale", "min")])
    >>> cfg.weight_decay, cfg.features.scale
    (0.01, 'min')
    """
    named: dict[str, Any] = {}
    for name, value in settings:
        group, _, key = name.rpartition(".")
        into = named.setdefault(group, {}) if group else named
        if not isinstance(into, dict):
            raise ConfigError(f"{SETTINGS_SOURCE}: {group}: set both as a whole and by field")
        into[key] = value
    checked = decode_section(TrainConfig, named, source=SETTINGS_SOURCE)
    feats = {k: getattr(checked.features, k) for k in named.get("features", {})}
    top = {k: getattr(checked, k) for k in named if k != "features"}
    return dataclasses.replace(config, features=dataclasses.replace(config.features, **feats), **top)


def net_kind(name: str) -> NetKind:
    """``name`` as an architecture; ``ValueError`` for anything else (``auto`` included)."""
    for kind in KINDS:
        if kind == name:
            return kind
    raise ValueError(f"not a neural model: {name!r} (known: {', '.join((*KINDS, 'auto'))})")


class NeuralModel(NeuralForecaster):
    """One architecture built from the run's options; each epoch uses at most ``max_windows`` windows.

    The training settings and the clock both come from ``options``: the daemon's clock jumps
    past every deadline at shutdown, and it must reach the fit to end a running training.

    >>> m = NeuralModel(ModelOptions(history_s=3600, horizon_s=600, step_s=60), kind="gru")
    >>> m.name, m.config.features.input_steps, m.config.features.horizon_steps
    ('gru', 61, 11)
    """

    def __init__(self, options: ModelOptions, *, kind: str, max_windows: int = MAX_WINDOWS_PER_EPOCH) -> None:
        self.kind = net_kind(kind)
        self.options = options
        super().__init__(train_config(self.kind, options), clock=options.clock)
        self.max_windows = max_windows

    def fit(self, batch: GridBatch) -> None:  # type: ignore[override]
        if self.options.scope == "auto":
            previous = None if self.state is None else self.state.scope
            self.config = train_config(self.kind, self.options, auto_scope(batch.n_series, previous))
        f = self.config.features
        windows = max(1, batch.n_steps - f.input_steps - f.horizon_steps + 1)
        stride = max(1, math.ceil(windows / self.max_windows))
        self.config = dataclasses.replace(self.config, window_stride=stride)
        super().fit(batch)


class AutoModel:
    """LSTM, GRU and transformer trained side by side; each series is forecast by its best one."""

    NEEDS_FIT: ClassVar[bool] = True
    QUANTILES: ClassVar[bool] = True

    def __init__(self, options: ModelOptions) -> None:
        budget = options.train_budget_s
        share = dataclasses.replace(options, train_budget_s=None if budget is None else budget / len(KINDS))
        self.name = "auto"
        # ``share`` keeps the options' clock: every candidate stops when the daemon does.
        self.candidates = [NeuralModel(share, kind=k) for k in KINDS]
        self.quantiles = self.candidates[0].quantiles
        # Per series label set: index into candidates.
        self.choice: dict[tuple[tuple[str, str], ...], int] = {}
        # Per series label set: each candidate's backtest error in the series' units (mean pinball
        # loss over recent origins, :mod:`.selection`); inf: not trained, NaN: nothing to score.
        self.scores: dict[tuple[tuple[str, str], ...], tuple[float, ...]] = {}

    def fit(self, batch: GridBatch) -> None:
        trained = []
        for model in self.candidates:
            model.fit(batch)
            report = model.last_report
            assert report is not None
            # A candidate stopped before its first epoch (budget, or shutdown) has no losses.
            ran = ~np.isnan(report.val_loss).all(axis=0) & (model.state is not None)  # [series] or [1]
            trained.append(np.broadcast_to(ran, (batch.n_series,)))
        cfg = self.candidates[0].config
        f = cfg.features
        origins = scoring_origins(batch.n_steps, f.input_steps, f.horizon_steps, cfg.validation_fraction)
        ran_any = [c for c, t in enumerate(trained) if t.any()]  # the others score inf unforecast
        errors = np.full((len(self.candidates), batch.n_series), np.inf)
        errors[ran_any] = backtest_errors(
            [self.candidates[c].predict for c in ran_any],
            batch,
            origins,
            f.horizon_steps,
            self.quantiles,
            f.input_steps,
        )
        winner, scores = choose(errors, np.stack(trained))  # [series], [candidates, series]
        self.choice.update({lab: int(w) for lab, w in zip(batch.labels, winner, strict=True)})
        self.scores.update({lab: tuple(scores[:, i].tolist()) for i, lab in enumerate(batch.labels)})

    @property
    def chosen(self) -> dict[str, int]:
        """How many series each architecture won, for reports."""
        names = [m.name for m in self.candidates]
        return {n: sum(1 for c in self.choice.values() if names[c] == n) for n in names}

    def predict(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        out = np.full((batch.n_series, len(self.quantiles), horizon_steps), np.nan)
        picks = np.array([self.choice.get(lab, -1) for lab in batch.labels])
        for i, model in enumerate(self.candidates):
            rows = np.flatnonzero(picks == i)
            if rows.size:
                out[rows] = model.predict(batch.rows(rows), horizon_steps)
        return out
