"""The epoch loop shared by both scopes: minibatches, optimiser steps, early stopping, the budget.

:func:`train` trains a stack of ``M`` networks (``M`` series of the per-series scope, or the
one global network) on the origins it is given: seeded shuffles, cosine learning-rate decay,
gradients clipped per network, each network's best weights kept by validation loss, stopping
when every network has stopped improving, after ``max_epochs``, or when the :class:`Run`'s
clock passes its deadline. A partial epoch is neither validated nor kept.

The two scopes differ only in how a minibatch is drawn (:class:`PerSeriesBatches`,
:class:`GlobalBatches`); the loop does not know which it has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from tsf_adapter.forecast.neural.calibration import quantile_scales
from tsf_adapter.forecast.neural.features import WindowBatch, WindowSource
from tsf_adapter.forecast.neural.nets import ForecastNet, pinball_loss
from tsf_adapter.forecast.neural.state import (
    CALIBRATION,
    EpochProgress,
    ProgressHook,
    StopReason,
    TrainConfig,
)
from tsf_adapter.forecast.options import Monotonic

# Validation origins the calibration looks at, at most: enough for a 10% tail, bounded memory.
MAX_CALIBRATION_ORIGINS = 64
# Validation windows per model the calibration reads, at most. A global network's windows are
# origins x series: at 10,000 series and a 24h horizon of 5m steps, all 64 origins' forecasts
# would take tens of GiB; 8,192 windows of 288 targets are plenty for a 2% tail, in ~0.3 GiB.
MAX_CALIBRATION_WINDOWS = 8192


@dataclass(slots=True)
class Run:
    """One fit's mutable progress: steps taken and whether the budget ran out.

    ``clock`` is read after every step; once it reaches ``deadline`` the run stays out of
    budget, so a clock that jumps past the deadline (the daemon's, at shutdown) stops it.
    """

    config: TrainConfig
    clock: Monotonic
    deadline: float
    device: torch.device
    steps: int = 0
    out_of_budget: bool = False
    # Told after every epoch (``None``: nobody watches); the series counts say where the fit is.
    progress: ProgressHook | None = None
    started: float = 0.0
    series_total: int = 0
    series_done: int = 0
    series_in_stack: int = 0

    @classmethod
    def start(
        cls,
        config: TrainConfig,
        clock: Monotonic,
        device: torch.device,
        *,
        progress: ProgressHook | None = None,
        n_series: int = 0,
    ) -> Run:
        """A run whose deadline lies ``config.budget_s`` after now; never, without a budget."""
        now = clock()
        deadline = math.inf if config.budget_s is None else now + config.budget_s
        return cls(
            config=config,
            clock=clock,
            deadline=deadline,
            device=device,
            progress=progress,
            started=now,
            series_total=n_series,
            series_in_stack=n_series,
        )

    def over_budget(self) -> bool:
        if not self.out_of_budget and self.clock() >= self.deadline:
            self.out_of_budget = True
        return self.out_of_budget

    def epoch_done(
        self, epoch: int, train_loss: npt.NDArray[np.float64], val_loss: npt.NDArray[np.float64]
    ) -> None:
        """Tell the watcher, if any, that epoch ``epoch`` (1-based) of the current stack ended."""
        if self.progress is None:
            return
        self.progress(
            EpochProgress(
                epoch=epoch,
                train_loss=_median(train_loss),
                val_loss=_median(val_loss),
                series_done=self.series_done,
                series_in_stack=self.series_in_stack,
                series_total=self.series_total,
                elapsed_s=self.clock() - self.started,
                budget_s=self.config.budget_s,
            )
        )


def _median(values: npt.NDArray[np.float64]) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


@dataclass(slots=True)
class Trained:
    """What :func:`train` returns for one stack of networks."""

    tensors: dict[str, torch.Tensor]  # best weights, on the CPU
    train_loss: list[npt.NDArray[np.float64]]  # per epoch, [M]
    val_loss: list[npt.NDArray[np.float64]]
    best_epoch: npt.NDArray[np.int64]  # [M]
    stopped: StopReason


class PerSeriesBatches:
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


class GlobalBatches:
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


def train(
    run: Run,
    net: ForecastNet,
    data: PerSeriesBatches | GlobalBatches,
    train_o: torch.Tensor,
    val_o: torch.Tensor,
    lr: float,
) -> Trained:
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
    per_epoch = min(n_items, cfg.epoch_windows) if cfg.epoch_windows else n_items
    val_pick = validation_draw(data.n_items(val_o.shape[0]), cfg, dev)
    for epoch in range(cfg.max_epochs):
        cos = 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.max_epochs))
        for group in opt.param_groups:
            group["lr"] = lr * (cfg.final_lr_factor + (1.0 - cfg.final_lr_factor) * cos)
        perm = torch.randperm(n_items, generator=gen)[:per_epoch].to(dev)
        loss_sum = torch.zeros(m, dtype=torch.float64, device=dev)
        weight_sum = torch.zeros(m, dtype=torch.float64, device=dev)
        net.train()
        for i in range(0, per_epoch, cfg.batch_size):
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
        val_loss = evaluate(net, data, val_o, quantiles, cfg.batch_size, val_pick)
        val_loss = np.where(np.isnan(val_loss), train_loss, val_loss)  # no validation data: use train loss
        train_hist.append(train_loss)
        val_hist.append(val_loss)
        run.epoch_done(epoch + 1, train_loss, val_loss)
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
        scales = calibration_scales(net, data, val_o, cfg).cpu()
    tensors[CALIBRATION] = scales
    return Trained(
        tensors=tensors,
        train_loss=train_hist,
        val_loss=val_hist,
        best_epoch=best_epoch,
        stopped=stopped,
    )


def calibration_scales(
    net: ForecastNet, data: PerSeriesBatches | GlobalBatches, origins: torch.Tensor, cfg: TrainConfig
) -> torch.Tensor:
    """Quantile scales [M, Q] from the best weights' forecasts at (at most
    ``MAX_CALIBRATION_ORIGINS``, evenly spread) validation origins, on at most
    ``MAX_CALIBRATION_WINDOWS`` windows per model (a fixed draw, so a retrain is reproducible)."""
    if origins.shape[0] > MAX_CALIBRATION_ORIGINS:
        pick = torch.linspace(0, origins.shape[0] - 1, MAX_CALIBRATION_ORIGINS, device=origins.device)
        origins = origins[pick.round().long()]
    preds, ys, masks = [], [], []
    net.eval()
    n_items = data.n_items(origins.shape[0])
    items = torch.arange(n_items, device=origins.device)
    if n_items > MAX_CALIBRATION_WINDOWS:
        gen = torch.Generator().manual_seed(cfg.seed + 2)
        items = (
            torch.randperm(n_items, generator=gen)[:MAX_CALIBRATION_WINDOWS].sort().values.to(origins.device)
        )
    with torch.no_grad():
        for i in range(0, items.shape[0], cfg.batch_size):
            idx = items[i : i + cfg.batch_size]
            pred, b = data.batch(net, origins, idx)  # [M, B, Q, H]
            preds.append(pred)
            ys.append(b.y)
            masks.append(b.y_mask)
    return quantile_scales(
        torch.cat(preds, dim=1), torch.cat(ys, dim=1), torch.cat(masks, dim=1), cfg.quantiles, net.anchor
    )


def validation_draw(n_items: int, cfg: TrainConfig, device: torch.device) -> torch.Tensor | None:
    """The validation items every epoch is scored on when ``epoch_windows`` bounds them; None: all."""
    if not cfg.epoch_windows or n_items <= cfg.epoch_windows:
        return None
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    return torch.randperm(n_items, generator=gen)[: cfg.epoch_windows].sort().values.to(device)


def evaluate(
    net: ForecastNet,
    data: PerSeriesBatches | GlobalBatches,
    origins: torch.Tensor,
    quantiles: torch.Tensor,
    batch_size: int,
    pick: torch.Tensor | None = None,
) -> npt.NDArray[np.float64]:
    """Mean pinball loss per model over the validation windows (``pick`` of them, or all); NaN for a
    model without any."""
    m = net.n_models
    dev = origins.device
    loss_sum = torch.zeros(m, dtype=torch.float64, device=dev)
    weight_sum = torch.zeros(m, dtype=torch.float64, device=dev)
    net.eval()
    items = torch.arange(data.n_items(origins.shape[0]), device=dev) if pick is None else pick
    with torch.no_grad():
        for i in range(0, items.shape[0], batch_size):
            pred, b = data.batch(net, origins, items[i : i + batch_size])
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
