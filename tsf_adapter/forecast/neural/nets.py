"""Stacked networks: many independent forecasters evaluated as one tensor program.

Every parameter has a leading *model* dimension ``M``; model ``m`` only ever
touches row ``m``. A thousand per-series LSTMs are then one ``bmm`` per time
step instead of a thousand tiny matmuls, which is what keeps a GPU busy (on a
CPU it is merely as fast as a loop; see shared/MEASURED.md). Because the rows
never mix, and the loss is a sum of per-model losses, each model gets exactly
the gradient it would get alone; Adam is elementwise, and gradient clipping is
done per model by the trainer, so batched training follows the same trajectory
as training each model on its own. ``vmap`` over ``nn.LSTM`` has no batching
rule, hence these plain-op cells.

A *global* network is the same code with ``M == 1`` and all series as batch. A stack of one
runs its recurrence in torch's own LSTM and GRU kernels instead (cuDNN on a GPU, one C++ loop on
a CPU), with the same weights and the same arithmetic: a step-by-step loop costs a few small
kernels per time step, which is all a single model's step is (:func:`fused_recurrence`).

Outputs are direct multi-horizon quantiles ``[M, B, Q, H]`` that cannot cross:
the head predicts the quantile nearest the median plus softplus gaps that are
summed outwards (:func:`monotone_quantiles`).

Initialisation is per model from its own seed (:func:`reset_parameters`), so a
series' network starts the same whichever other series share its batch.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tsf_adapter.forecast.options import NetKind

# ("uniform", bound) | ("normal", std) | ("constant", value)
InitSpec = tuple[Literal["uniform", "normal", "constant"], float]

# cuDNN copies weights that are not one flat buffer into one at each call, and says so each time.
# Ours are a model's row of a stack, a few KiB: the copy costs nothing worth a warning.
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")

# Whether a stack of one runs torch's fused LSTM/GRU kernel; off only to measure what it saves
# (``bench/train_daemon.py --stepwise``).
FUSED_RECURRENCE = True


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConfig:
    """Architecture of one forecaster; identical for every model in a stack.

    >>> NetConfig(kind="gru", n_features=7, input_steps=48, horizon_steps=12).quantiles
    (0.1, 0.5, 0.9)
    """

    kind: NetKind = "lstm"
    n_features: int
    input_steps: int
    horizon_steps: int
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    hidden_size: int = 32
    num_layers: int = 1
    # Transformer only: heads must divide hidden_size; the feed-forward is 2x hidden.
    num_heads: int = 2
    # Global scope: vocabulary size per embedded label (index 0 = value not seen in training).
    category_sizes: tuple[int, ...] = ()
    embed_dim: int = 4

    def __post_init__(self) -> None:
        qs = self.quantiles
        if not qs or any(not 0.0 < q < 1.0 for q in qs) or any(a >= b for a, b in itertools.pairwise(qs)):
            raise ValueError(f"quantiles must be strictly increasing in (0, 1), got {qs}")
        if self.kind == "transformer" and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")


class Stacked(nn.Module):
    """Base of stacked modules: parameters shaped [M, ...] with a recorded init rule each."""

    def __init__(self, n_models: int) -> None:
        super().__init__()
        self.n_models = n_models
        self.init_specs: dict[str, InitSpec] = {}

    def add(self, name: str, shape: Sequence[int], init: InitSpec) -> nn.Parameter:
        p = nn.Parameter(torch.zeros(self.n_models, *shape))
        self.register_parameter(name, p)
        self.init_specs[name] = init
        return p


class StackedLinear(Stacked):
    """``y = x @ W[m] + b[m]`` for each model; x is [M, ..., in]. Init as ``nn.Linear``."""

    def __init__(self, n_models: int, n_in: int, n_out: int) -> None:
        super().__init__(n_models)
        bound = 1.0 / math.sqrt(n_in)
        self.weight = self.add("weight", (n_in, n_out), ("uniform", bound))
        self.bias = self.add("bias", (n_out,), ("uniform", bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stacked_linear(x, self.weight, self.bias)  # [M, ..., out]


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [M, ..., in] @ weight [M, in, out] + bias [M, out] -> [M, ..., out], one ``baddbmm``."""
    m, *mid, n_in = x.shape
    flat = x.reshape(m, -1, n_in)  # [M, N, in]
    out = torch.baddbmm(bias[:, None, :], flat, weight)  # [M, N, out]
    return out.reshape(m, *mid, -1)  # [M, ..., out]


class StackedLayerNorm(Stacked):
    def __init__(self, n_models: int, dim: int) -> None:
        super().__init__(n_models)
        self.weight = self.add("weight", (dim,), ("constant", 1.0))
        self.bias = self.add("bias", (dim,), ("constant", 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [M, B, L, D]
        z = F.layer_norm(x, x.shape[-1:])  # [M, B, L, D], no affine
        return z * self.weight[:, None, None, :] + self.bias[:, None, None, :]  # [M, B, L, D]


class StackedLSTMLayer(Stacked):
    """One LSTM layer with PyTorch's gate order (i, f, g, o) and its two separate biases.

    Weights are stored transposed ([in, 4H]) so each step is one ``baddbmm``.
    """

    def __init__(self, n_models: int, n_in: int, hidden: int) -> None:
        super().__init__(n_models)
        bound = 1.0 / math.sqrt(hidden)
        self.hidden = hidden
        self.w_ih = self.add("w_ih", (n_in, 4 * hidden), ("uniform", bound))
        self.w_hh = self.add("w_hh", (hidden, 4 * hidden), ("uniform", bound))
        self.b_ih = self.add("b_ih", (4 * hidden,), ("uniform", bound))
        self.b_hh = self.add("b_hh", (4 * hidden,), ("uniform", bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1 and FUSED_RECURRENCE:
            return fused_recurrence("lstm", x, self.w_ih, self.w_hh, self.b_ih, self.b_hh)
        return self.stepwise(x)

    def stepwise(self, x: torch.Tensor) -> torch.Tensor:
        """The recurrence one time step at a time, for every model of the stack at once."""
        m, b, steps, _ = x.shape  # x: [M, B, L, in]
        # unbind, not xp[:, :, t]: each indexing's backward would zero-fill all of xp (O(L^2)).
        xs = stacked_linear(x, self.w_ih, self.b_ih).unbind(dim=2)  # L x [M, B, 4H]
        h = x.new_zeros(m, b, self.hidden)  # [M, B, H]
        c = x.new_zeros(m, b, self.hidden)  # [M, B, H]
        outs = []
        for t in range(steps):
            gates = xs[t] + torch.baddbmm(self.b_hh[:, None, :], h, self.w_hh)  # [M, B, 4H]
            i, f, g, o = gates.chunk(4, dim=-1)  # 4 x [M, B, H]
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # [M, B, H]
            h = torch.sigmoid(o) * torch.tanh(c)  # [M, B, H]
            outs.append(h)
        return torch.stack(outs, dim=2)  # [M, B, L, H]


class StackedGRULayer(Stacked):
    """One GRU layer with PyTorch's gate order (r, z, n); ``r`` gates the hidden part of ``n``."""

    def __init__(self, n_models: int, n_in: int, hidden: int) -> None:
        super().__init__(n_models)
        bound = 1.0 / math.sqrt(hidden)
        self.hidden = hidden
        self.w_ih = self.add("w_ih", (n_in, 3 * hidden), ("uniform", bound))
        self.w_hh = self.add("w_hh", (hidden, 3 * hidden), ("uniform", bound))
        self.b_ih = self.add("b_ih", (3 * hidden,), ("uniform", bound))
        self.b_hh = self.add("b_hh", (3 * hidden,), ("uniform", bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1 and FUSED_RECURRENCE:
            return fused_recurrence("gru", x, self.w_ih, self.w_hh, self.b_ih, self.b_hh)
        return self.stepwise(x)

    def stepwise(self, x: torch.Tensor) -> torch.Tensor:
        """The recurrence one time step at a time, for every model of the stack at once."""
        m, b, steps, _ = x.shape  # x: [M, B, L, in]
        xs = stacked_linear(x, self.w_ih, self.b_ih).unbind(dim=2)  # L x [M, B, 3H]
        h = x.new_zeros(m, b, self.hidden)  # [M, B, H]
        outs = []
        for t in range(steps):
            hp = torch.baddbmm(self.b_hh[:, None, :], h, self.w_hh)  # [M, B, 3H]
            xr, xz, xn = xs[t].chunk(3, dim=-1)  # 3 x [M, B, H]
            hr, hz, hn = hp.chunk(3, dim=-1)  # 3 x [M, B, H]
            r = torch.sigmoid(xr + hr)  # [M, B, H]
            z = torch.sigmoid(xz + hz)  # [M, B, H]
            n = torch.tanh(xn + r * hn)  # [M, B, H]
            h = (1.0 - z) * n + z * h  # [M, B, H]
            outs.append(h)
        return torch.stack(outs, dim=2)  # [M, B, L, H]


def fused_recurrence(
    kind: Literal["lstm", "gru"],
    x: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
) -> torch.Tensor:
    """A stack of one model's LSTM or GRU layer in torch's own kernel: x [1, B, L, in] -> [1, B, L, H].

    Our weights are torch's transposed (``[in, 4H]`` against ``[4H, in]``) in the same gate order
    with the same two biases, so this is the same function as the step-by-step loop, to float
    rounding (tests compare both, values and gradients).
    """
    params = [w_ih[0].t(), w_hh[0].t(), b_ih[0], b_hh[0]]
    h0 = x.new_zeros(1, x.shape[1], w_hh.shape[1])  # [layers, B, H]
    # Positional: has_biases, num_layers, dropout, train, bidirectional, batch_first.
    if kind == "lstm":
        out, _, _ = torch.lstm(x[0], (h0, h0), params, True, 1, 0.0, torch.is_grad_enabled(), False, True)
    else:
        out, _ = torch.gru(x[0], h0, params, True, 1, 0.0, torch.is_grad_enabled(), False, True)
    return out[None]  # [1, B, L, H]


class StackedEncoderLayer(Stacked):
    """Pre-norm transformer encoder layer: self-attention then a GELU feed-forward."""

    def __init__(self, n_models: int, dim: int, heads: int) -> None:
        super().__init__(n_models)
        self.heads = heads
        self.norm1 = StackedLayerNorm(n_models, dim)
        self.qkv = StackedLinear(n_models, dim, 3 * dim)
        self.proj = StackedLinear(n_models, dim, dim)
        self.norm2 = StackedLayerNorm(n_models, dim)
        self.ff1 = StackedLinear(n_models, dim, 2 * dim)
        self.ff2 = StackedLinear(n_models, 2 * dim, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        m, b, steps, dim = z.shape  # z: [M, B, L, D]
        dh = dim // self.heads
        qkv = self.qkv(self.norm1(z)).reshape(m, b, steps, 3, self.heads, dh)  # [M, B, L, 3, h, dh]
        q, k, v = qkv.unbind(dim=3)  # 3 x [M, B, L, h, dh]
        scores = torch.einsum("mblhe,mbkhe->mbhlk", q, k) / math.sqrt(dh)  # [M, B, h, L, L]
        att = torch.softmax(scores, dim=-1)  # [M, B, h, L, L]
        mixed = torch.einsum("mbhlk,mbkhe->mblhe", att, v).reshape(m, b, steps, dim)  # [M, B, L, D]
        z = z + self.proj(mixed)  # [M, B, L, D]
        out: torch.Tensor = z + self.ff2(F.gelu(self.ff1(self.norm2(z))))  # [M, B, L, D]
        return out


class StackedTransformer(Stacked):
    """Input projection + learned positions + encoder layers; the last step summarises the window."""

    def __init__(self, n_models: int, n_in: int, steps: int, dim: int, heads: int, layers: int) -> None:
        super().__init__(n_models)
        self.embed = StackedLinear(n_models, n_in, dim)
        self.pos = self.add("pos", (steps, dim), ("normal", 0.02))
        self.layers = nn.ModuleList(StackedEncoderLayer(n_models, dim, heads) for _ in range(layers))
        self.norm = StackedLayerNorm(n_models, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x) + self.pos[:, None]  # [M, B, L, D]
        for layer in self.layers:
            z = layer(z)  # [M, B, L, D]
        out: torch.Tensor = self.norm(z)  # [M, B, L, D]
        return out


class StackedEmbedding(Stacked):
    """One table per embedded label: ids [M, B, K] -> vectors [M, B, K * dim]."""

    def __init__(self, n_models: int, sizes: Sequence[int], dim: int) -> None:
        super().__init__(n_models)
        self.sizes = tuple(sizes)
        self.tables = [self.add(f"table{k}", (size, dim), ("normal", 1.0)) for k, size in enumerate(sizes)]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(ids.shape[0], device=ids.device)[:, None]  # [M, 1]
        vecs = [table[rows, ids[..., k]] for k, table in enumerate(self.tables)]  # K x [M, B, dim]
        return torch.cat(vecs, dim=-1)  # [M, B, K * dim]


def monotone_quantiles(raw: torch.Tensor, anchor: int) -> torch.Tensor:
    """[..., H, Q] unconstrained -> [..., Q, H] non-decreasing along Q.

    ``raw[..., anchor]`` is taken as is; the others are the anchor plus (or minus) a
    running sum of softplus gaps, so quantile ``i + 1`` is never below quantile ``i``.

    >>> q = monotone_quantiles(torch.tensor([[[-5.0, 0.0, -5.0]]]), anchor=1)
    >>> bool((q.diff(dim=-2) >= 0).all()), tuple(q.shape)
    (True, (1, 3, 1))
    """
    mid = raw[..., anchor : anchor + 1]  # [..., H, 1]
    up = mid + torch.cumsum(F.softplus(raw[..., anchor + 1 :]), dim=-1)  # [..., H, Q-anchor-1]
    down = mid - torch.cumsum(F.softplus(raw[..., :anchor].flip(-1)), dim=-1)  # [..., H, anchor], outward
    return torch.cat([down.flip(-1), mid, up], dim=-1).transpose(-1, -2)  # [..., Q, H]


class ForecastNet(nn.Module):
    """Encoder (LSTM, GRU or transformer) + monotone quantile head, stacked over ``n_models``.

    >>> net = ForecastNet(NetConfig(n_features=7, input_steps=8, horizon_steps=3), n_models=2)
    >>> reset_parameters(net, [1, 2])
    >>> tuple(net(torch.zeros(2, 5, 8, 7)).shape)
    (2, 5, 3, 3)
    """

    def __init__(self, config: NetConfig, n_models: int) -> None:
        super().__init__()
        self.config = config
        self.n_models = n_models
        hidden = config.hidden_size
        n_in = config.n_features + len(config.category_sizes) * config.embed_dim
        self.embedding = (
            StackedEmbedding(n_models, config.category_sizes, config.embed_dim)
            if config.category_sizes
            else None
        )
        self.encoder: nn.Module
        if config.kind == "transformer":
            self.encoder = StackedTransformer(
                n_models, n_in, config.input_steps, hidden, config.num_heads, config.num_layers
            )
        else:
            cell = StackedLSTMLayer if config.kind == "lstm" else StackedGRULayer
            self.encoder = nn.Sequential(
                *(cell(n_models, n_in if i == 0 else hidden, hidden) for i in range(config.num_layers))
            )
        self.head = StackedLinear(n_models, hidden, config.horizon_steps * len(config.quantiles))
        self.anchor = min(range(len(config.quantiles)), key=lambda i: abs(config.quantiles[i] - 0.5))

    def forward(self, x: torch.Tensor, categories: torch.Tensor | None = None) -> torch.Tensor:
        m, b, steps, _ = x.shape  # x: [M, B, L, F]
        if self.embedding is not None:
            if categories is None:
                raise ValueError("this network embeds labels: pass categories [M, B, K]")
            emb = self.embedding(categories)  # [M, B, K*E]
            x = torch.cat([x, emb[:, :, None, :].expand(-1, -1, steps, -1)], dim=-1)  # [M, B, L, F+K*E]
        seq = self.encoder(x)  # [M, B, L, hidden]
        raw = self.head(seq[:, :, -1])  # [M, B, H*Q]
        raw = raw.reshape(m, b, self.config.horizon_steps, len(self.config.quantiles))  # [M, B, H, Q]
        return monotone_quantiles(raw, self.anchor)  # [M, B, Q, H]


def reset_parameters(net: nn.Module, seeds: Sequence[int]) -> None:
    """Initialise row ``m`` of every stacked parameter from ``seeds[m]`` alone.

    Filled on the CPU and copied once per parameter, so it is cheap for a model on a GPU too.
    """
    stacked = [mod for mod in net.modules() if isinstance(mod, Stacked)]
    params = [(getattr(mod, name), spec) for mod in stacked for name, spec in mod.init_specs.items()]
    if any(p.shape[0] != len(seeds) for p, _ in params):
        raise ValueError(f"{len(seeds)} seeds for a stack of {params[0][0].shape[0]} models")
    host = [torch.empty(p.shape, dtype=p.dtype) for p, _ in params]
    for m, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(seed)
        for buf, (_, (kind, arg)) in zip(host, params, strict=True):
            row = buf[m]
            if kind == "uniform":
                row.uniform_(-arg, arg, generator=gen)
            elif kind == "normal":
                row.normal_(0.0, arg, generator=gen)
            else:
                row.fill_(arg)
    with torch.no_grad():
        for buf, (p, _) in zip(host, params, strict=True):
            p.copy_(buf)


def pinball_loss(
    pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, quantiles: torch.Tensor
) -> torch.Tensor:
    """Mean pinball (quantile) loss per model over real targets: [M, B, Q, H] -> [M].

    Gaps (``mask == 0``) contribute nothing; a model without any real target gets 0.
    """
    err = y[:, :, None, :] - pred  # [M, B, Q, H]
    q = quantiles[None, None, :, None]  # [1, 1, Q, 1]
    loss = torch.maximum(q * err, (q - 1.0) * err) * mask[:, :, None, :]  # [M, B, Q, H]
    n = mask.sum(dim=(1, 2)).clamp_min(1.0) * quantiles.shape[0]  # [M]
    return loss.sum(dim=(1, 2, 3)) / n  # [M]
