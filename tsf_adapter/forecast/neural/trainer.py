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

The result is a :class:`ModelState`: a small dict config, the labels of its
rows, and a flat dict of stacked CPU tensors, ready to be saved atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, ParamSpec, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from tsf_adapter.core.errors import TrainingError
from tsf_adapter.core.series import Labels
from tsf_adapter.forecast.neural.calibration import apply_scales, quantile_scales
from tsf_adapter.forecast.neural.features import (
    FeatureConfig,
    WindowBatch,
    WindowSource,
    window_origins,
)
from tsf_adapter.forecast.neural.nets import (
    ForecastNet,
    NetConfig,
    pinball_loss,
    reset_parameters,
)
from tsf_adapter.forecast.options import NetKind

_P = ParamSpec("_P")
_R = TypeVar("_R")

Scope = Literal["per_series", "global"]
StopReason = Literal["early_stopping", "max_epochs", "budget"]
Clock = Callable[[], float]
# Key of the quantile scales [M, Q] in ModelState.tensors (not a network weight).
CALIBRATION = "calibration"
# Validation origins the calibration looks at, at most: enough for a 10% tail, bounded memory.
MAX_CALIBRATION_ORIGINS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything one training cycle needs; the defaults suit 10-minute steps on a CPU.

    >>> TrainConfig(model="gru", features=FeatureConfig(input_steps=48, horizon_steps=12)).scope
    'per_series'
    """

    model: NetKind = "lstm"
    scope: Scope = "per_series"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    # Small on purpose: per-series networks see one series; capacity beyond this overfits and costs.
    hidden_size: int = 32
    num_layers: int = 1
    num_heads: int = 2
    # Global scope: labels whose values become learned embeddings (e.g. ("cluster", "storage_type")).
    embed_labels: tuple[str, ...] = ()
    embed_dim: int = 4
    # Rescale each quantile's distance from the median to hold on the validation windows
    # (see calibration.py); saved as the state's "calibration" tensor [M, Q]. Opt-in: it did
    # not improve the quota alerts and narrowed the bands in the end-to-end test's scenario.
    calibrate: bool = False
    # Every window_stride-th origin is used; neighbouring windows are nearly identical anyway.
    window_stride: int = 1
    # Per series: windows per series per step. Global: windows per step over all series.
    batch_size: int = 32
    max_epochs: int = 30
    # Epochs without validation improvement before a series stops.
    patience: int = 4
    min_relative_improvement: float = 1e-3
    learning_rate: float = 3e-3
    # Cosine decay down to this fraction of learning_rate by max_epochs.
    final_lr_factor: float = 0.1
    # Fine-tuning from the previous model starts gentler, so it does not forget what it knew.
    warm_start_lr_factor: float = 0.3
    weight_decay: float = 0.0
    # Per series in the per_series scope: one bad series cannot shrink the others' steps.
    clip_norm: float = 1.0
    # The newest part of the grid kept for early stopping (at least one horizon).
    validation_fraction: float = 0.2
    seed: int = 0
    # Wall-clock budget for the whole fit, checked after every step; None = unlimited.
    budget_s: float | None = None
    # "auto" picks CUDA when present.
    device: str = "auto"
    # Series trained together as one stacked program: it bounds memory (~19 MiB per series for a
    # 288-step LSTM input, measured), and results do not depend on it. 128 keeps a chunk near
    # 2.5 GiB on the CPU while costing little throughput (batching gains flatten past ~100 series);
    # on a GPU, where one chunk should fill the device, raise it (bench/gpu_train.py uses 5,000).
    chunk_size: int = 128


@dataclass(frozen=True, slots=True)
class ModelState:
    """A trained model as plain data: ``config`` (small, JSON-able), row labels, stacked tensors.

    Per series, row ``i`` of every tensor belongs to ``labels[i]``; global models have one row.
    """

    config: dict[str, Any]
    labels: tuple[Labels, ...]
    tensors: dict[str, torch.Tensor]

    @property
    def scope(self) -> Scope:
        scope: Scope = self.config["scope"]
        return scope


@dataclass(frozen=True, slots=True)
class FitReport:
    """What a fit did. Loss arrays are [epochs, series] (global: [epochs, 1]); NaN where not run."""

    stopped: StopReason
    epochs: int
    steps: int
    elapsed_s: float
    train_loss: npt.NDArray[np.float64]
    val_loss: npt.NDArray[np.float64]
    best_epoch: npt.NDArray[np.int64]
    warm_started: int
    # Series left without a model because the budget ran out before their chunk started.
    untrained: int
    device: str

    @property
    def budget_exhausted(self) -> bool:
        return self.stopped == "budget"


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; an explicit CUDA device that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return device


def series_seed(seed: int, labels: Labels) -> int:
    """A stable 63-bit seed for one series (Python's ``hash`` changes between processes)."""
    digest = hashlib.blake2b(f"{seed}\x00{labels!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


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
    clock: Clock = time.monotonic,
) -> tuple[ModelState, FitReport]:
    """Train on ``values`` [series, steps] (NaN = gap) on the grid ``start_s + i * step_s``.

    ``extra`` [series, channels, steps] adds input channels (e.g. a write rate next to bytes
    used). ``previous`` warm-starts every series (or the global network) it has a compatible
    model for. ``clock`` is injectable so budget behaviour can be tested without real time.
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
    n_extra = 0 if extra is None else int(np.shape(extra)[1])
    train_o, val_o = _split_origins(vals.shape[1], config)
    run = _Run(config=config, clock=clock, deadline=_deadline(clock, config.budget_s), device=device)
    if config.scope == "global":
        return _fit_global(run, labels, vals, start_s, step_s, extra, n_extra, train_o, val_o, previous)
    return _fit_per_series(run, labels, vals, start_s, step_s, extra, n_extra, train_o, val_o, previous)


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
    net_cfg = NetConfig(**_tuples(state.config["net"]))
    # States saved before FeatureConfig.scale existed were trained with the std scale.
    feat_cfg = FeatureConfig(**{"scale": "std", **_tuples(state.config["features"])})
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
            for idx in np.array_split(have, _n_chunks(have, chunk_size))
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
                net = _load_net(net_cfg, 1, state.tensors, None, dev)
                cats = _category_ids(state.config, [labels[i] for i in idx]).to(dev)[None]  # [1, S, K]
                pred = net(batch.x.transpose(0, 1), cats if net_cfg.category_sizes else None)[0]  # [S, Q, H]
            else:
                net = _load_net(net_cfg, len(idx), state.tensors, rows, dev)
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

    >>> cfg = TrainConfig(features=FeatureConfig(input_steps=24, horizon_steps=6), device="cpu")
    >>> NeuralForecaster(cfg).name, NeuralForecaster(cfg).quantiles
    ('lstm', (0.1, 0.5, 0.9))
    """

    NEEDS_FIT: ClassVar[bool] = True
    QUANTILES: ClassVar[bool] = True

    def __init__(
        self, config: TrainConfig, *, name: str | None = None, clock: Clock = time.monotonic
    ) -> None:
        self.config = config
        self.name = name or config.model
        self.quantiles = config.quantiles
        self.clock = clock
        self.state: ModelState | None = None
        self.last_report: FitReport | None = None

    def fit(self, batch: GridLike) -> None:
        self.state, self.last_report = fit(
            batch.labels,
            batch.values,
            batch.start_s,
            batch.step_s,
            self.config,
            previous=self.state,
            clock=self.clock,
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
            device=self.config.device,
            chunk_size=self.config.chunk_size,
        )
        n = min(horizon_steps, pred.shape[2])
        out[:, :, :n] = pred[:, :, :n]
        return out


# --- training internals ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    config: TrainConfig
    clock: Clock
    deadline: float
    device: torch.device
    steps: int = 0
    out_of_budget: bool = False

    def over_budget(self) -> bool:
        if not self.out_of_budget and self.clock() >= self.deadline:
            self.out_of_budget = True
        return self.out_of_budget


@dataclass(slots=True)
class _Trained:
    tensors: dict[str, torch.Tensor]  # best weights, on the CPU
    train_loss: list[npt.NDArray[np.float64]]  # per epoch, [M]
    val_loss: list[npt.NDArray[np.float64]]
    best_epoch: npt.NDArray[np.int64]  # [M]
    stopped: StopReason


def _deadline(clock: Clock, budget_s: float | None) -> float:
    return math.inf if budget_s is None else clock() + budget_s


def _split_origins(n_steps: int, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation origins; every validation target lies after every training target."""
    f = cfg.features
    n_val = (
        0
        if cfg.validation_fraction <= 0
        else max(f.horizon_steps, math.ceil(cfg.validation_fraction * n_steps))
    )
    split = n_steps - n_val
    train = window_origins(split, f.input_steps, f.horizon_steps, cfg.window_stride)
    val = window_origins(n_steps, f.input_steps, f.horizon_steps, cfg.window_stride)
    val = val[val >= split]
    if train.size == 0:
        need = f.input_steps + f.horizon_steps + n_val
        raise TrainingError(f"history too short: {n_steps} steps, need at least {need} to train and validate")
    return torch.from_numpy(train), torch.from_numpy(val)


def _n_chunks(items: npt.NDArray[Any], chunk_size: int) -> int:
    return max(1, math.ceil(len(items) / max(1, chunk_size)))


def _net_config(cfg: TrainConfig, n_extra: int, category_sizes: tuple[int, ...] = ()) -> NetConfig:
    return NetConfig(
        kind=cfg.model,
        n_features=cfg.features.n_features(n_extra),
        input_steps=cfg.features.input_steps,
        horizon_steps=cfg.features.horizon_steps,
        quantiles=cfg.quantiles,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        category_sizes=category_sizes,
        embed_dim=cfg.embed_dim,
    )


def _state_config(
    cfg: TrainConfig, net_cfg: NetConfig, vocab: list[list[str]] | None = None
) -> dict[str, Any]:
    return {
        "scope": cfg.scope,
        "net": _plain(net_cfg),
        "features": _plain(cfg.features),
        "embed_labels": list(cfg.embed_labels),
        "vocab": vocab or [],
    }


def _load_net(
    net_cfg: NetConfig,
    n_models: int,
    tensors: dict[str, torch.Tensor],
    rows: torch.Tensor | None,
    dev: torch.device,
) -> ForecastNet:
    net = ForecastNet(net_cfg, n_models)
    weights = {k: t for k, t in tensors.items() if k != CALIBRATION}
    picked = weights if rows is None else {k: t.index_select(0, rows) for k, t in weights.items()}
    net.load_state_dict(picked)
    return net.to(dev)


def _compatible(previous: ModelState | None, cfg: TrainConfig, net_cfg: NetConfig) -> bool:
    if previous is None or previous.scope != cfg.scope:
        return False
    old = dict(previous.config["net"])
    new = _plain(net_cfg)
    # Global nets may grow their vocabularies; everything else must match exactly.
    old.pop("category_sizes")
    new.pop("category_sizes")
    return bool(old == new and previous.config["features"] == _plain(cfg.features))


def _plain(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-native values (lists, not tuples), so a saved state compares equal."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _tuples(config: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


def _fit_per_series(
    run: _Run,
    labels: tuple[Labels, ...],
    vals: npt.NDArray[np.float64],
    start_s: float,
    step_s: float,
    extra: npt.NDArray[np.float64] | None,
    n_extra: int,
    train_o: torch.Tensor,
    val_o: torch.Tensor,
    previous: ModelState | None,
) -> tuple[ModelState, FitReport]:
    cfg = run.config
    net_cfg = _net_config(cfg, n_extra)
    prev_rows = {}
    if previous is not None and _compatible(previous, cfg, net_cfg):
        prev_rows = {lab: i for i, lab in enumerate(previous.labels)}
    t0 = run.clock()
    kept: list[int] = []
    parts: list[dict[str, torch.Tensor]] = []
    n = len(labels)
    train_loss: list[list[npt.NDArray[np.float64]]] = []
    val_loss: list[list[npt.NDArray[np.float64]]] = []
    best_epoch = np.zeros(n, dtype=np.int64)
    stopped: StopReason = "early_stopping"
    warm = 0
    # Warm and cold series train in separate stacks: they start at different learning rates,
    # and a series' result must not depend on which other series share its stack.
    is_warm = np.array([lab in prev_rows for lab in labels], dtype=bool)
    chunks = [
        idx
        for group in (np.flatnonzero(is_warm), np.flatnonzero(~is_warm))
        if group.size
        for idx in np.array_split(group, _n_chunks(group, cfg.chunk_size))
    ]
    # Under a budget every chunk gets a share of the time left in proportion to its series, so
    # small chunks (which bound memory) never leave the last ones untrained; time a chunk does
    # not use (early stopping) goes to the chunks after it.
    overall = run.deadline
    remaining = n
    for idx in chunks:
        chunk_labels = [labels[i] for i in idx]
        warm_idx = [i for i, lab in enumerate(chunk_labels) if lab in prev_rows]
        now = run.clock()
        run.deadline, run.out_of_budget = overall, now >= overall
        if math.isfinite(overall) and not run.out_of_budget:
            run.deadline = now + (overall - now) * len(idx) / remaining
        remaining -= len(idx)
        if run.out_of_budget:
            # Not reached: keep what the previous model had for these series, train nothing.
            if warm_idx and previous is not None:
                rows = torch.tensor([prev_rows[chunk_labels[i]] for i in warm_idx])
                parts.append({k: t.index_select(0, rows) for k, t in previous.tensors.items()})
                kept.extend(int(idx[i]) for i in warm_idx)
            stopped = "budget"
            continue
        net = ForecastNet(net_cfg, len(idx))
        reset_parameters(net, [series_seed(cfg.seed, lab) for lab in chunk_labels])
        if warm_idx and previous is not None:
            rows = torch.tensor([prev_rows[chunk_labels[i]] for i in warm_idx])
            with torch.no_grad():
                for name, p in net.state_dict(keep_vars=True).items():
                    p[torch.tensor(warm_idx)] = previous.tensors[name].index_select(0, rows).to(p.dtype)
            warm += len(warm_idx)
        ext = None if extra is None else np.asarray(extra, np.float64)[idx]
        src = WindowSource(vals[idx], start_s, step_s, cfg.features, extra=ext, device=run.device)
        lr = cfg.learning_rate * (cfg.warm_start_lr_factor if warm_idx else 1.0)
        res = _train(run, net.to(run.device), _PerSeries(src), train_o, val_o, lr)
        parts.append(res.tensors)
        kept.extend(int(i) for i in idx)
        train_loss.append([np.full(n, np.nan) for _ in res.train_loss])
        val_loss.append([np.full(n, np.nan) for _ in res.val_loss])
        for full, part in zip(train_loss[-1], res.train_loss, strict=True):
            full[idx] = part
        for full, part in zip(val_loss[-1], res.val_loss, strict=True):
            full[idx] = part
        best_epoch[idx] = res.best_epoch
        if res.stopped != "early_stopping" and stopped != "budget":
            stopped = res.stopped
    run.deadline = overall
    order = np.argsort(np.asarray(kept, dtype=np.int64), kind="stable")
    tensors = (
        {k: torch.cat([p[k] for p in parts], dim=0)[torch.from_numpy(order)] for k in parts[0]}
        if parts
        else {}
    )
    state = ModelState(
        config=_state_config(cfg, net_cfg), labels=tuple(labels[kept[i]] for i in order), tensors=tensors
    )
    report = FitReport(
        stopped=stopped,
        epochs=max((len(t) for t in train_loss), default=0),
        steps=run.steps,
        elapsed_s=run.clock() - t0,
        train_loss=_merge_epochs(train_loss, n),
        val_loss=_merge_epochs(val_loss, n),
        best_epoch=best_epoch,
        warm_started=warm,
        untrained=n - len(kept),
        device=str(run.device),
    )
    return state, report


def _merge_epochs(chunks: list[list[npt.NDArray[np.float64]]], n: int) -> npt.NDArray[np.float64]:
    """Chunks ran different epoch counts; stack to [max_epochs, n], each chunk filling its columns."""
    epochs = max((len(c) for c in chunks), default=0)
    out = np.full((epochs, n), np.nan)
    for chunk in chunks:
        for e, row in enumerate(chunk):
            sel = ~np.isnan(row)
            out[e, sel] = row[sel]
    return out


def _fit_global(
    run: _Run,
    labels: tuple[Labels, ...],
    vals: npt.NDArray[np.float64],
    start_s: float,
    step_s: float,
    extra: npt.NDArray[np.float64] | None,
    n_extra: int,
    train_o: torch.Tensor,
    val_o: torch.Tensor,
    previous: ModelState | None,
) -> tuple[ModelState, FitReport]:
    cfg = run.config
    old_vocab: list[list[str]] = []
    probe = _net_config(cfg, n_extra)
    if (
        previous is not None
        and _compatible(previous, cfg, probe)
        and previous.config["embed_labels"] == list(cfg.embed_labels)
    ):
        old_vocab = [list(v) for v in previous.config["vocab"]]
    else:
        previous = None
    # Keep old ids stable (their embeddings are trained) and append values seen for the first time.
    vocab = [list(old_vocab[k]) if old_vocab else [] for k in range(len(cfg.embed_labels))]
    for lab in labels:
        d = dict(lab)
        for k, name in enumerate(cfg.embed_labels):
            v = d.get(name, "")
            if v and v not in vocab[k]:
                vocab[k].append(v)
    net_cfg = _net_config(cfg, n_extra, tuple(len(v) + 1 for v in vocab))
    state_cfg = _state_config(cfg, net_cfg, vocab)
    net = ForecastNet(net_cfg, 1)
    reset_parameters(net, [series_seed(cfg.seed, ())])
    if previous is not None:
        with torch.no_grad():
            for name, p in net.state_dict(keep_vars=True).items():
                old = previous.tensors[name]
                p[tuple(slice(0, s) for s in old.shape)] = old.to(p.dtype)  # grown tables keep old rows
    t0 = run.clock()
    src = WindowSource(vals, start_s, step_s, cfg.features, extra=extra, device=run.device)
    cats = _category_ids(state_cfg, labels).to(run.device)  # [S, K]
    lr = cfg.learning_rate * (cfg.warm_start_lr_factor if previous is not None else 1.0)
    res = _train(run, net.to(run.device), _Global(src, cats), train_o, val_o, lr)
    state = ModelState(config=state_cfg, labels=labels, tensors=res.tensors)
    report = FitReport(
        stopped=res.stopped,
        epochs=len(res.train_loss),
        steps=run.steps,
        elapsed_s=run.clock() - t0,
        train_loss=np.asarray(res.train_loss, dtype=np.float64).reshape(-1, 1),
        val_loss=np.asarray(res.val_loss, dtype=np.float64).reshape(-1, 1),
        best_epoch=res.best_epoch,
        warm_started=len(labels) if previous is not None else 0,
        untrained=0,
        device=str(run.device),
    )
    return state, report


def _category_ids(state_config: dict[str, Any], labels: Sequence[Labels]) -> torch.Tensor:
    """[series, K] vocabulary ids of the embedded labels; 0 = value not seen in training."""
    names: list[str] = state_config["embed_labels"]
    lookup = [{v: i + 1 for i, v in enumerate(values)} for values in state_config["vocab"]]
    ids = [[lookup[k].get(dict(lab).get(name, ""), 0) for k, name in enumerate(names)] for lab in labels]
    return torch.tensor(ids, dtype=torch.int64).reshape(len(labels), len(names))


class _PerSeries:
    """Minibatches for stacked per-series nets: the same origins for every series."""

    def __init__(self, src: WindowSource) -> None:
        self.src = src

    def n_items(self, n_origins: int) -> int:
        return n_origins

    def batch(
        self, net: ForecastNet, origins: torch.Tensor, pick: torch.Tensor
    ) -> tuple[torch.Tensor, WindowBatch]:
        b = self.src.grid(origins[pick])  # leading [S, B]
        return net(b.x), b  # [S, B, Q, H]


class _Global:
    """Minibatches for one shared net: (series, origin) pairs drawn from all series."""

    def __init__(self, src: WindowSource, cats: torch.Tensor) -> None:
        self.src = src
        self.cats = cats  # [S, K]

    def n_items(self, n_origins: int) -> int:
        return n_origins * int(self.src.n_series)

    def batch(
        self, net: ForecastNet, origins: torch.Tensor, pick: torch.Tensor
    ) -> tuple[torch.Tensor, WindowBatch]:
        series, which = pick // origins.shape[0], pick % origins.shape[0]  # [N], [N]
        b = self.src.pairs(series, origins[which])  # leading [N]
        cats = self.cats[series][None] if net.config.category_sizes else None  # [1, N, K]
        pred = net(b.x[None], cats)  # [1, N, Q, H]
        return pred, WindowBatch(x=b.x, y=b.y[None], y_mask=b.y_mask[None], level=b.level, scale=b.scale)


def _train(
    run: _Run,
    net: ForecastNet,
    data: _PerSeries | _Global,
    train_o: torch.Tensor,
    val_o: torch.Tensor,
    lr: float,
) -> _Trained:
    """The loop: seeded shuffles, cosine LR, per-model clipping, per-model early stopping."""
    cfg = run.config
    dev = run.device
    train_o, val_o = train_o.to(dev), val_o.to(dev)
    quantiles = torch.tensor(cfg.quantiles, device=dev)
    m = net.n_models
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    best = {k: v.detach().clone() for k, v in net.state_dict().items()}
    best_val = np.full(m, np.inf)
    best_epoch = np.full(m, -1, dtype=np.int64)
    bad = np.zeros(m, dtype=np.int64)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_hist: list[npt.NDArray[np.float64]] = []
    val_hist: list[npt.NDArray[np.float64]] = []
    stopped: StopReason = "max_epochs"
    n_items = data.n_items(train_o.shape[0])
    for epoch in range(cfg.max_epochs):
        cos = 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.max_epochs))
        for group in opt.param_groups:
            group["lr"] = lr * (cfg.final_lr_factor + (1.0 - cfg.final_lr_factor) * cos)
        perm = torch.randperm(n_items, generator=gen).to(dev)
        loss_sum = torch.zeros(m, dtype=torch.float64, device=dev)
        weight_sum = torch.zeros(m, dtype=torch.float64, device=dev)
        net.train()
        for i in range(0, n_items, cfg.batch_size):
            pred, b = data.batch(net, train_o, perm[i : i + cfg.batch_size])
            loss = pinball_loss(pred, b.y, b.y_mask, quantiles)  # [M]
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # type: ignore[no-untyped-call]
            clip_grad_norm_per_model_(params, cfg.clip_norm)
            opt.step()
            run.steps += 1
            n_real = b.y_mask.sum(dim=(1, 2)).to(torch.float64)  # [M]
            loss_sum += loss.detach().to(torch.float64) * n_real
            weight_sum += n_real
            if run.over_budget():
                break
        if run.over_budget():
            # A partial epoch is neither validated nor kept: the best weights so far stand.
            stopped = "budget"
            break
        train_loss = (loss_sum / weight_sum.clamp_min(1.0)).cpu().numpy()
        val_loss = _evaluate(net, data, val_o, quantiles, cfg.batch_size)
        val_loss = np.where(np.isnan(val_loss), train_loss, val_loss)  # no validation data: use train loss
        train_hist.append(train_loss)
        val_hist.append(val_loss)
        improved = val_loss < best_val * (1.0 - cfg.min_relative_improvement)
        if improved.any():
            rows = torch.from_numpy(improved).to(dev)
            for k, v in net.state_dict().items():
                best[k][rows] = v.detach()[rows]
            best_val[improved] = val_loss[improved]
            best_epoch[improved] = epoch
        bad = np.where(improved, 0, bad + 1)
        if (bad >= cfg.patience).all():
            stopped = "early_stopping"
            break
    # Models that never finished an epoch keep their current weights rather than their init.
    never = torch.from_numpy(best_epoch < 0).to(dev)
    if never.any():
        for k, v in net.state_dict().items():
            best[k][never] = v.detach()[never]
    tensors = {k: v.cpu() for k, v in best.items()}
    scales = torch.ones(m, len(cfg.quantiles))
    if cfg.calibrate and val_o.numel():
        net.load_state_dict(best)
        scales = _calibration(net, data, val_o, cfg).cpu()
    tensors[CALIBRATION] = scales
    return _Trained(
        tensors=tensors,
        train_loss=train_hist,
        val_loss=val_hist,
        best_epoch=best_epoch,
        stopped=stopped,
    )


def _calibration(
    net: ForecastNet, data: _PerSeries | _Global, origins: torch.Tensor, cfg: TrainConfig
) -> torch.Tensor:
    """Quantile scales [M, Q] from the best weights' forecasts at (at most
    ``MAX_CALIBRATION_ORIGINS``, evenly spread) validation origins."""
    if origins.shape[0] > MAX_CALIBRATION_ORIGINS:
        pick = torch.linspace(0, origins.shape[0] - 1, MAX_CALIBRATION_ORIGINS, device=origins.device)
        origins = origins[pick.round().long()]
    preds, ys, masks = [], [], []
    net.eval()
    n_items = data.n_items(origins.shape[0])
    with torch.no_grad():
        for i in range(0, n_items, cfg.batch_size):
            idx = torch.arange(i, min(i + cfg.batch_size, n_items), device=origins.device)
            pred, b = data.batch(net, origins, idx)  # [M, B, Q, H]
            preds.append(pred)
            ys.append(b.y)
            masks.append(b.y_mask)
    return quantile_scales(
        torch.cat(preds, dim=1), torch.cat(ys, dim=1), torch.cat(masks, dim=1), cfg.quantiles, net.anchor
    )


def _evaluate(
    net: ForecastNet,
    data: _PerSeries | _Global,
    origins: torch.Tensor,
    quantiles: torch.Tensor,
    batch_size: int,
) -> npt.NDArray[np.float64]:
    """Mean pinball loss per model over all validation windows; NaN for a model without any."""
    m = net.n_models
    dev = origins.device
    loss_sum = torch.zeros(m, dtype=torch.float64, device=dev)
    weight_sum = torch.zeros(m, dtype=torch.float64, device=dev)
    net.eval()
    n_items = data.n_items(origins.shape[0])
    with torch.no_grad():
        for i in range(0, n_items, batch_size):
            pred, b = data.batch(net, origins, torch.arange(i, min(i + batch_size, n_items), device=dev))
            n_real = b.y_mask.sum(dim=(1, 2)).to(torch.float64)  # [M]
            loss_sum += pinball_loss(pred, b.y, b.y_mask, quantiles).to(torch.float64) * n_real
            weight_sum += n_real
    out = (loss_sum / weight_sum).cpu().numpy()  # 0/0 = NaN where no real targets
    return np.asarray(out, dtype=np.float64)


def clip_grad_norm_per_model_(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` for each model of a stack separately; returns the norms [M] before clipping.

    Same formula as torch's (coefficient ``max_norm / (norm + 1e-6)``, capped at 1), so a
    stack of one clips exactly as a lone model would.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    sq = torch.stack([g.pow(2).flatten(1).sum(dim=1) for g in grads]).sum(dim=0)  # [M]
    norms = sq.sqrt()  # [M]
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # [M]
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms
