"""The two fit paths, per series and global, over one :class:`FitInput`.

:func:`tsf_adapter.forecast.neural.trainer.fit` checks its arguments, splits the grid into
training and validation origins and hands one :class:`FitInput` to the path of the config's
scope; both run :func:`.loop.train` and turn its result into a :class:`.state.ModelState`
and a :class:`.state.FitReport`.

* ``per_series``: the series are cut into chunks of ``chunk_size`` stacked networks, warm
  and cold series in separate chunks (they start at different learning rates). Under a
  budget, each chunk gets a share of the time left in proportion to its series.
* ``global``: one network; the labels named in ``embed_labels`` become learned embeddings whose
  vocabulary keeps the previous model's ids and appends values seen for the first time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from tsf_adapter.core.errors import TrainingError
from tsf_adapter.core.series import Labels
from tsf_adapter.core.windows import min_train_steps, validation_steps
from tsf_adapter.forecast.neural.features import WindowSource, window_origins
from tsf_adapter.forecast.neural.loop import GlobalBatches, PerSeriesBatches, Run, train
from tsf_adapter.forecast.neural.nets import ForecastNet, NetConfig, reset_parameters
from tsf_adapter.forecast.neural.state import (
    FitReport,
    ModelState,
    StopReason,
    TrainConfig,
    category_ids,
    n_chunks,
    net_config,
    plain,
    series_seed,
    state_config,
)


@dataclass(frozen=True, slots=True, eq=False)
class FitInput:
    """What one fit trains on, checked by ``fit``: the same for both scopes.

    ``values`` is [series, steps] on the grid ``start_s + i * step_s`` (NaN = gap), ``extra``
    [series, channels, steps] or None; the origins index the grid (see :func:`split_origins`).
    """

    labels: tuple[Labels, ...]
    values: npt.NDArray[np.float64]
    start_s: float
    step_s: float
    extra: npt.NDArray[np.float64] | None
    previous: ModelState | None
    train_origins: torch.Tensor
    val_origins: torch.Tensor

    @property
    def n_extra(self) -> int:
        """Input channels beyond the series' own."""
        return 0 if self.extra is None else int(np.shape(self.extra)[1])


def split_origins(n_steps: int, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation origins; every validation target lies after every training target."""
    f = cfg.features
    split = n_steps - validation_steps(n_steps, f.horizon_steps, cfg.validation_fraction)
    train_at = window_origins(split, f.input_steps, f.horizon_steps, cfg.window_stride)
    val = window_origins(n_steps, f.input_steps, f.horizon_steps, cfg.window_stride)
    val = val[val >= split]
    if train_at.size == 0:
        need = min_train_steps(f.input_steps, f.horizon_steps, cfg.validation_fraction)
        raise TrainingError(f"history too short: {n_steps} steps, need at least {need} to train and validate")
    return torch.from_numpy(train_at), torch.from_numpy(val)


def compatible(previous: ModelState | None, cfg: TrainConfig, net_cfg: NetConfig) -> bool:
    """Whether ``previous`` can warm-start a network of ``net_cfg``: same scope, shapes and features."""
    if previous is None or previous.scope != cfg.scope:
        return False
    old = dict(previous.config["net"])
    new = plain(net_cfg)
    # Global nets may grow their vocabularies; everything else must match exactly.
    old.pop("category_sizes")
    new.pop("category_sizes")
    return bool(old == new and previous.config["features"] == plain(cfg.features))


def fit_per_series(run: Run, inp: FitInput) -> tuple[ModelState, FitReport]:
    """One network per series, trained in chunks of stacked networks; warm and cold series apart."""
    cfg = run.config
    labels, previous = inp.labels, inp.previous
    net_cfg = net_config(cfg, inp.n_extra)
    prev_rows = {}
    if previous is not None and compatible(previous, cfg, net_cfg):
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
        for idx in np.array_split(group, n_chunks(group, cfg.chunk_size))
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
        run.series_done, run.series_in_stack = n - remaining, len(idx)
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
        ext = None if inp.extra is None else np.asarray(inp.extra, np.float64)[idx]
        src = WindowSource(
            inp.values[idx], inp.start_s, inp.step_s, cfg.features, extra=ext, device=run.device
        )
        lr = cfg.learning_rate * (cfg.warm_start_lr_factor if warm_idx else 1.0)
        res = train(run, net.to(run.device), PerSeriesBatches(src), inp.train_origins, inp.val_origins, lr)
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
        config=state_config(cfg, net_cfg), labels=tuple(labels[kept[i]] for i in order), tensors=tensors
    )
    report = FitReport(
        stopped=stopped,
        epochs=max((len(t) for t in train_loss), default=0),
        steps=run.steps,
        elapsed_s=run.clock() - t0,
        train_loss=merge_epochs(train_loss, n),
        val_loss=merge_epochs(val_loss, n),
        best_epoch=best_epoch,
        warm_started=warm,
        untrained=n - len(kept),
        device=str(run.device),
    )
    return state, report


def merge_epochs(chunks: list[list[npt.NDArray[np.float64]]], n: int) -> npt.NDArray[np.float64]:
    """Chunks ran different epoch counts; stack to [max_epochs, n], each chunk filling its columns."""
    epochs = max((len(c) for c in chunks), default=0)
    out = np.full((epochs, n), np.nan)
    for chunk in chunks:
        for e, row in enumerate(chunk):
            sel = ~np.isnan(row)
            out[e, sel] = row[sel]
    return out


def fit_global(run: Run, inp: FitInput) -> tuple[ModelState, FitReport]:
    """One network for all series, its label embeddings grown from the previous model's vocabulary."""
    cfg = run.config
    labels = inp.labels
    previous = inp.previous
    old_vocab: list[list[str]] = []
    probe = net_config(cfg, inp.n_extra)
    if (
        previous is not None
        and compatible(previous, cfg, probe)
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
    net_cfg = net_config(cfg, inp.n_extra, tuple(len(v) + 1 for v in vocab))
    state_cfg = state_config(cfg, net_cfg, vocab)
    net = ForecastNet(net_cfg, 1)
    reset_parameters(net, [series_seed(cfg.seed, ())])
    if previous is not None:
        with torch.no_grad():
            for name, p in net.state_dict(keep_vars=True).items():
                old = previous.tensors[name]
                p[tuple(slice(0, s) for s in old.shape)] = old.to(p.dtype)  # grown tables keep old rows
    t0 = run.clock()
    src = WindowSource(inp.values, inp.start_s, inp.step_s, cfg.features, extra=inp.extra, device=run.device)
    cats = category_ids(state_cfg, labels).to(run.device)  # [S, K]
    lr = cfg.learning_rate * (cfg.warm_start_lr_factor if previous is not None else 1.0)
    res = train(run, net.to(run.device), GlobalBatches(src, cats), inp.train_origins, inp.val_origins, lr)
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
