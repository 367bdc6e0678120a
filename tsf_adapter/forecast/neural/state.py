"""Training settings in (:class:`TrainConfig`), results out (:class:`ModelState`, :class:`FitReport`).

A :class:`ModelState` is a trained model as plain data: a small JSON-able config, the labels
of its rows, and a flat dict of stacked CPU tensors, ready to be saved atomically
(:mod:`.persist`). The helpers below write and read that config, so a saved state and a
freshly trained one compare equal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from tsf_adapter.core.errors import TrainingError
from tsf_adapter.core.series import Labels
from tsf_adapter.core.windows import VALIDATION_FRACTION
from tsf_adapter.forecast.neural.features import FeatureConfig
from tsf_adapter.forecast.neural.nets import NetConfig
from tsf_adapter.forecast.options import DEFAULT_QUANTILES, NetKind, Scope

StopReason = Literal["early_stopping", "max_epochs", "budget"]
# Key of the quantile scales [M, Q] in ModelState.tensors (not a network weight).
CALIBRATION = "calibration"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything one training cycle needs; the defaults suit 10-minute steps on a CPU.

    >>> TrainConfig(model="gru", features=FeatureConfig(input_steps=48, horizon_steps=12)).scope
    'per_series'
    """

    model: NetKind = "lstm"
    scope: Scope = "per_series"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    # Small on purpose: per-series networks see one series; capacity beyond this overfits and costs.
    hidden_size: int = 32
    num_layers: int = 1
    num_heads: int = 2
    # Global scope: labels whose values become learned embeddings (e.g. ("cluster", "storage_type")).
    embed_labels: tuple[str, ...] = ()
    embed_dim: int = 4
    # Rescale each quantile's distance from the median to hold on the validation windows
    # (see calibration.py); saved as the state's "calibration" tensor [M, Q]. Opt-in
    # (``model.calibrate``): the storage-quota target needs it for its bands to hold when
    # retrained every 6 hours; the real series' bands hold without it.
    calibrate: bool = False
    # Every window_stride-th origin is used; neighbouring windows are nearly identical anyway.
    window_stride: int = 1
    # Per series: windows per series per step. Global: windows per step over all series.
    batch_size: int = 32
    # Minibatch items (global: (series, origin) windows) per epoch at most, drawn afresh each epoch,
    # and as many validation items (one fixed draw); 0 = all. With one network for thousands of
    # series, an epoch over every window would take hours; a bounded one costs the same at any size.
    epoch_windows: int = 0
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
    # The newest part of the grid kept for early stopping (at least one horizon; core.windows).
    validation_fraction: float = VALIDATION_FRACTION
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
class EpochProgress:
    """One finished epoch of a fit, for whoever watches it (the daemon logs it).

    Per series, a fit trains its series in stacks (chunks) one after the other; ``series_done``
    counts the series of the stacks before this one. Losses are medians over the stack's networks.
    """

    epoch: int  # 1-based, within the current stack
    train_loss: float
    val_loss: float
    series_done: int
    series_in_stack: int
    series_total: int
    elapsed_s: float
    budget_s: float | None


ProgressHook = Callable[[EpochProgress], None]
"""Called on the training thread after every epoch; it must be quick and must not raise."""


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


def n_chunks(items: npt.NDArray[Any], chunk_size: int) -> int:
    """How many chunks of at most ``chunk_size`` cover ``items`` (at least one)."""
    return max(1, math.ceil(len(items) / max(1, chunk_size)))


def net_config(cfg: TrainConfig, n_extra: int, category_sizes: tuple[int, ...] = ()) -> NetConfig:
    """The network shape ``cfg`` asks for, with ``n_extra`` input channels beyond the series."""
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


def state_config(
    cfg: TrainConfig, net_cfg: NetConfig, vocab: list[list[str]] | None = None
) -> dict[str, Any]:
    """What a :class:`ModelState` keeps of its config: enough to rebuild the network and its inputs."""
    return {
        "scope": cfg.scope,
        "net": plain(net_cfg),
        "features": plain(cfg.features),
        "embed_labels": list(cfg.embed_labels),
        "vocab": vocab or [],
    }


def plain(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-native values (lists, not tuples), so a saved state compares equal."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def tuples(config: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`plain` for one level: lists back to the tuples a config dataclass takes."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


def saved_features(state_config: dict[str, Any]) -> FeatureConfig:
    """The :class:`FeatureConfig` a state was trained with; fields it predates take their old values.

    States saved before ``scale`` existed were trained with the std scale, before ``headroom``
    existed without a headroom channel.
    """
    return FeatureConfig(**{"scale": "std", "headroom": False, **tuples(state_config["features"])})


def category_ids(state_config: dict[str, Any], labels: Sequence[Labels]) -> torch.Tensor:
    """[series, K] vocabulary ids of the embedded labels; 0 = value not seen in training."""
    names: list[str] = state_config["embed_labels"]
    lookup = [{v: i + 1 for i, v in enumerate(values)} for values in state_config["vocab"]]
    ids = [[lookup[k].get(dict(lab).get(name, ""), 0) for k, name in enumerate(names)] for lab in labels]
    return torch.tensor(ids, dtype=torch.int64).reshape(len(labels), len(names))
