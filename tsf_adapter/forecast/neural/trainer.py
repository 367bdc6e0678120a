"""Fit and predict for a set of series on one grid: synchronous, torch only, CPU or CUDA.

The daemon calls :func:`fit` and :func:`predict` from an executor; nothing here
knows about asyncio. Two scopes:

* ``per_series`` (default): one network per series. All networks of a chunk
  train together as one stacked program (:mod:`.nets`); the loss is the sum of
  per-series losses and gradients are clipped per series, so each series
  follows the trajectory it would follow alone (tests/forecast/test_trainer.py
  checks this). Every series' init comes from a seed derived from its labels,
  and every series sees windows in the same seeded order, so results do not
  depend on which other series share the batch, nor on ``chunk_size``.
* ``global``: one network for all series, each window scaled on its own, with
  chosen labels (group, cluster, ...) as learned embeddings.

Training samples windows from history, keeps the newest ``validation_fraction``
of the grid for early stopping (validation targets all lie after every
training target), decays the learning rate on a cosine, keeps each series'
best weights, and stops when every series has stopped improving, after
``max_epochs``, or when ``budget_s`` runs out. Running out of budget is not an
error: the best weights so far are kept and :class:`FitReport` says so.

The result is a :class:`~.state.ModelState`: a small dict config, the labels of
its rows, and a flat dict of stacked CPU tensors, ready to be saved atomically.

This module is the public face; the parts live by role: settings and results in
:mod:`.state`, the two fit paths in :mod:`.fitting`, the epoch loop in :mod:`.loop`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, ParamSpec, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from tsf_adapter.core.errors import TrainingError
from tsf_adapter.core.series import Labels
from tsf_adapter.forecast.neural.calibration import apply_scales
from tsf_adapter.forecast.neural.features import WindowSource
from tsf_adapter.forecast.neural.fitting import FitInput, fit_global, fit_per_series, split_origins
from tsf_adapter.forecast.neural.headroom import HeadroomBatch
from tsf_adapter.forecast.neural.loop import Run
from tsf_adapter.forecast.neural.nets import ForecastNet, NetConfig
from tsf_adapter.forecast.neural.state import (
    CALIBRATION,
    FitReport,
    ModelState,
    ProgressHook,
    TrainConfig,
    category_ids,
    n_chunks,
    saved_features,
    select_device,
    tuples,
)
from tsf_adapter.forecast.options import Monotonic

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _flushing_denormals(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` with denormals flushed to zero, then restore IEEE behaviour.

    Denormals made CPU training ~40x slower in measurements here. The setting is
    per-thread processor state (MXCSR) that torch leaves on, and the same thread may
    later do arithmetic that must stay IEEE-exact, so it is switched back off.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        torch.set_flush_denormal(True)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_flush_denormal(False)

    return wrapper


@_flushing_denormals
def fit(
    labels: Sequence[Labels],
    values: npt.NDArray[np.float64],
    start_s: float,
    step_s: float,
    config: TrainConfig,
    *,
    extra: npt.NDArray[np.float64] | None = None,
    previous: ModelState | None = None,
    clock: Monotonic = time.monotonic,
    progress: ProgressHook | None = None,
) -> tuple[ModelState, FitReport]:
    """Train on ``values`` [series, steps] (NaN = gap) on the grid ``start_s + i * step_s``.

    ``extra`` [series, channels, steps] adds input channels (e.g. a write rate next to bytes
    used). ``previous`` warm-starts every series (or the global network) it has a compatible
    model for. ``clock`` is injectable so budget behaviour can be tested without real time.
    ``progress`` is told after every epoch.
    """
    labels = tuple(labels)
    vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 2 or vals.shape[0] != len(labels):
        raise TrainingError(f"values must be [{len(labels)} series, steps], got shape {vals.shape}")
    if not labels:
        raise TrainingError("no series to train")
    if extra is not None and (np.ndim(extra) != 3 or np.shape(extra)[::2] != vals.shape):
        raise TrainingError(
            f"extra must be [{len(labels)} series, channels, {vals.shape[1]}], got {np.shape(extra)}"
        )
    device = select_device(config.device)
    train_o, val_o = split_origins(vals.shape[1], config)
    run = Run.start(config, clock, device, progress=progress, n_series=len(labels))
    inp = FitInput(labels, vals, start_s, step_s, extra, previous, train_o, val_o)
    if config.scope == "global":
        return fit_global(run, inp)
    return fit_per_series(run, inp)


def load_net(
    net_cfg: NetConfig,
    n_models: int,
    tensors: dict[str, torch.Tensor],
    rows: torch.Tensor | None,
    dev: torch.device,
) -> ForecastNet:
    """A stack of ``n_models`` networks with saved weights (``rows`` of them, or all), on ``dev``."""
    net = ForecastNet(net_cfg, n_models)
    weights = {k: t for k, t in tensors.items() if k != CALIBRATION}
    picked = weights if rows is None else {k: t.index_select(0, rows) for k, t in weights.items()}
    net.load_state_dict(picked)
    return net.to(dev)


@_flushing_denormals
def predict(
    state: ModelState,
    labels: Sequence[Labels],
    values: npt.NDArray[np.float64],
    start_s: float,
    step_s: float,
    *,
    extra: npt.NDArray[np.float64] | None = None,
    device: str = "auto",
    chunk_size: int = 4096,
) -> npt.NDArray[np.float64]:
    """Quantile forecasts [series, quantiles, horizon] for the steps after the grid's last one.

    Rows are NaN for series the state has no model for, or whose input window holds no data.
    """
    labels = tuple(labels)
    vals = np.asarray(values, dtype=np.float64)
    net_cfg = NetConfig(**tuples(state.config["net"]))
    feat_cfg = saved_features(state.config)
    n_extra = 0 if extra is None else int(np.shape(extra)[1])
    if feat_cfg.n_features(n_extra) != net_cfg.n_features:
        raise TrainingError(
            f"the model takes {net_cfg.n_features - feat_cfg.n_features()} extra input channel(s), "
            f"got {n_extra}"
        )
    dev = select_device(device)
    out = np.full((len(labels), len(net_cfg.quantiles), net_cfg.horizon_steps), np.nan)
    groups: list[tuple[npt.NDArray[np.int64], torch.Tensor | None]]
    if state.scope == "global":
        groups = [
            (np.arange(len(labels), dtype=np.int64)[i : i + chunk_size], None)
            for i in range(0, len(labels), chunk_size)
        ]
    else:
        row_of = {lab: i for i, lab in enumerate(state.labels)}
        have = np.array([i for i, lab in enumerate(labels) if lab in row_of], dtype=np.int64)
        groups = [
            (idx, torch.tensor([row_of[labels[i]] for i in idx]))
            for idx in np.array_split(have, n_chunks(have, chunk_size))
        ]
    with torch.no_grad():
        for idx, rows in groups:
            if idx.size == 0:
                continue
            ext = None if extra is None else np.asarray(extra, np.float64)[idx]
            src = WindowSource(vals[idx], start_s, step_s, feat_cfg, extra=ext, device=dev)
            batch = src.grid(torch.tensor([src.n_steps], device=dev))  # leading [S, 1]
            scales = state.tensors.get(CALIBRATION)
            if rows is None:
                net = load_net(net_cfg, 1, state.tensors, None, dev)
                cats = category_ids(state.config, [labels[i] for i in idx]).to(dev)[None]  # [1, S, K]
                pred = net(batch.x.transpose(0, 1), cats if net_cfg.category_sizes else None)[0]  # [S, Q, H]
            else:
                net = load_net(net_cfg, len(idx), state.tensors, rows, dev)
                pred = net(batch.x)[:, 0]  # [S, Q, H]
                scales = None if scales is None else scales.index_select(0, rows)
            if scales is not None:
                pred = apply_scales(pred, scales.to(dev), net.anchor)  # [S, Q, H]
            level, scale = batch.level[:, 0, None, None], batch.scale[:, 0, None, None]  # [S, 1, 1]
            res = (pred.to(torch.float64) * scale + level).cpu().numpy()  # [S, Q, H]
            no_input = ~batch.x[:, 0, :, 1].bool().any(dim=-1).cpu().numpy()  # [S]
            res[no_input] = np.nan
            out[idx] = res
    return out


class GridLike(Protocol):
    """What :class:`NeuralForecaster` reads from a batch (``forecast.base.GridBatch`` has it)."""

    @property
    def labels(self) -> tuple[Labels, ...]: ...
    @property
    def values(self) -> npt.NDArray[np.float64]: ...
    @property
    def start_s(self) -> float: ...
    @property
    def step_s(self) -> float: ...


class NeuralForecaster:
    """The ``Forecaster`` contract over :func:`fit` / :func:`predict`; each ``fit`` warm-starts.

    >>> from tsf_adapter.forecast.neural.features import FeatureConfig
    >>> cfg = TrainConfig(features=FeatureConfig(input_steps=24, horizon_steps=6), device="cpu")
    >>> NeuralForecaster(cfg).name, NeuralForecaster(cfg).quantiles
    ('lstm', (0.1, 0.5, 0.9))
    """

    NEEDS_FIT: ClassVar[bool] = True
    QUANTILES: ClassVar[bool] = True

    def __init__(
        self, config: TrainConfig, *, name: str | None = None, clock: Monotonic = time.monotonic
    ) -> None:
        self.config = config
        self.name = name or config.model
        self.quantiles = config.quantiles
        self.clock = clock
        self.state: ModelState | None = None
        self.last_report: FitReport | None = None
        # Told after every epoch of a fit (the daemon logs training progress from it).
        self.progress: ProgressHook | None = None

    def fit(self, batch: GridLike) -> None:
        self.state, self.last_report = fit(
            batch.labels,
            batch.values,
            batch.start_s,
            batch.step_s,
            self.config,
            extra=headroom_extra(batch, self.config.features.headroom, self.name),
            previous=self.state,
            clock=self.clock,
            progress=self.progress,
        )

    def predict(self, batch: GridLike, horizon_steps: int) -> npt.NDArray[np.float64]:
        """Forecasts [series, quantiles, horizon_steps]; steps beyond the trained horizon are NaN."""
        out = np.full((len(batch.labels), len(self.quantiles), horizon_steps), np.nan)
        if self.state is None:
            return out
        pred = predict(
            self.state,
            batch.labels,
            batch.values,
            batch.start_s,
            batch.step_s,
            extra=headroom_extra(batch, saved_features(self.state.config).headroom, self.name),
            device=self.config.device,
            chunk_size=self.config.chunk_size,
        )
        n = min(horizon_steps, pred.shape[2])
        out[:, :, :n] = pred[:, :, :n]
        return out


def headroom_extra(batch: GridLike, wanted: bool, model: str) -> npt.NDArray[np.float64] | None:
    """The batch's headroom as the one extra channel [series, 1, steps] when ``wanted``, else None.

    A model that reads headroom and gets a batch without it fails loudly: forecasting it
    without the channel would feed the network inputs of the wrong shape or meaning.
    """
    if not wanted:
        return None
    if not isinstance(batch, HeadroomBatch):
        raise TrainingError(f"{model}: the model reads the threshold headroom, and the batch has none")
    return batch.headroom[:, None, :]
