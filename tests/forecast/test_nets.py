"""One contract for every stacked network (LSTM, GRU, transformer), plus the cells against torch's own."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tsf_adapter.forecast.neural.loop import clip_grad_norm_per_model_
from tsf_adapter.forecast.neural.nets import (
    ForecastNet,
    NetConfig,
    StackedGRULayer,
    StackedLSTMLayer,
    monotone_quantiles,
    pinball_loss,
    reset_parameters,
)

KINDS = ["lstm", "gru", "transformer"]


# Every test here: tiny nets, one intra-op thread (see conftest).
pytestmark = pytest.mark.usefixtures("_one_thread")


QUANTILES = (0.1, 0.5, 0.9)


def _config(kind: Any, **kw: Any) -> NetConfig:
    base = {"kind": kind, "n_features": 5, "input_steps": 10, "horizon_steps": 4, "hidden_size": 8}
    return NetConfig(**(base | kw))


def _net(kind: Any, seeds: list[int], **kw: Any) -> ForecastNet:
    net = ForecastNet(_config(kind, **kw), n_models=len(seeds))
    reset_parameters(net, seeds)
    return net


def _inputs(m: int, b: int, seed: int = 0, steps: int = 10, features: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(m, b, steps, features, generator=gen)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_finite_and_quantiles_never_cross(kind: str) -> None:
    net = _net(kind, [1, 2, 3], num_layers=2)
    out = net(_inputs(3, 6) * 50)  # large inputs saturate cells; the order must still hold
    assert out.shape == (3, 6, len(QUANTILES), 4)
    assert torch.isfinite(out).all()
    assert (out.diff(dim=2) >= 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_init_is_repeatable_and_independent_of_the_stack(kind: str) -> None:
    a, b = _net(kind, [7, 8]), _net(kind, [7, 8])
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    alone = _net(kind, [8])
    for (name, pa), pb in zip(a.state_dict().items(), alone.state_dict().values(), strict=True):
        assert torch.equal(pa[1], pb[0]), name
    x = _inputs(2, 3)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x)[0], a(x)[1])  # different seeds, different models


def _train_steps(
    net: ForecastNet, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, steps: int
) -> torch.Tensor:
    """Adam with per-model clipping: what the trainer does, on fixed data."""
    quantiles = torch.tensor(QUANTILES)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    history = []
    for _ in range(steps):
        loss = pinball_loss(net(x), y, mask, quantiles)  # [M]
        opt.zero_grad()
        loss.sum().backward()  # type: ignore[no-untyped-call]
        clip_grad_norm_per_model_(list(net.parameters()), 0.5)
        opt.step()
        history.append(loss.detach())
    return torch.stack(history)  # [steps, M]


@pytest.mark.parametrize("kind", KINDS)
def test_batched_training_matches_training_each_model_alone(kind: str) -> None:
    seeds = [11, 12, 13]
    x = _inputs(3, 8, seed=1)
    y = torch.randn(3, 8, 4, generator=torch.Generator().manual_seed(2)) * 3
    mask = (torch.rand(3, 8, 4, generator=torch.Generator().manual_seed(3)) > 0.2).float()
    stacked = _net(kind, seeds)
    batched = _train_steps(stacked, x, y, mask, steps=8)
    for m, seed in enumerate(seeds):
        alone = _net(kind, [seed])
        losses = _train_steps(alone, x[m : m + 1], y[m : m + 1], mask[m : m + 1], steps=8)
        torch.testing.assert_close(batched[:, m], losses[:, 0], rtol=1e-4, atol=1e-5)
        for name, p in alone.state_dict().items():
            torch.testing.assert_close(stacked.state_dict()[name][m], p[0], rtol=1e-4, atol=1e-5)
    assert (batched[-1] < batched[0]).all()  # and it did learn


def test_per_model_clipping_matches_torch_for_each_model() -> None:
    grads = [torch.randn(3, 4, 5) * 10, torch.randn(3, 7)]
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    norms = clip_grad_norm_per_model_(params, 1.0)
    for m in range(3):
        single = [torch.zeros_like(g[m], requires_grad=True) for g in grads]
        for p, g in zip(single, grads, strict=True):
            p.grad = g[m].clone()
        norm = torch.nn.utils.clip_grad_norm_(single, 1.0)
        torch.testing.assert_close(norms[m], norm)
        for p, q in zip(params, single, strict=True):
            assert p.grad is not None
            torch.testing.assert_close(p.grad[m], q.grad)


@pytest.mark.parametrize(("cell", "reference"), [(StackedLSTMLayer, nn.LSTM), (StackedGRULayer, nn.GRU)])
def test_cells_compute_what_torch_computes(cell: Any, reference: Any) -> None:
    torch.manual_seed(0)
    ref = reference(input_size=5, hidden_size=6, batch_first=True)
    ours = cell(1, 5, 6)
    with torch.no_grad():
        ours.w_ih.copy_(ref.weight_ih_l0.T[None])
        ours.w_hh.copy_(ref.weight_hh_l0.T[None])
        ours.b_ih.copy_(ref.bias_ih_l0[None])
        ours.b_hh.copy_(ref.bias_hh_l0[None])
    x = _inputs(1, 4, steps=9)
    want, _ = ref(x[0])
    torch.testing.assert_close(ours(x)[0], want, rtol=1e-5, atol=1e-6)  # a stack of one: torch's kernel
    torch.testing.assert_close(ours.stepwise(x)[0], want, rtol=1e-5, atol=1e-6)  # what a stack runs


@pytest.mark.parametrize("cell", [StackedLSTMLayer, StackedGRULayer])
def test_a_stack_of_one_trains_as_the_stepwise_loop_does(cell: Any) -> None:
    """The fused kernel and the loop agree in values and in every gradient, to float rounding."""
    ours = cell(1, 5, 8)
    reset_parameters(ours, [7])
    x = _inputs(1, 16, steps=60).requires_grad_(True)
    weight = torch.randn(1, 16, 60, 8, generator=torch.Generator().manual_seed(4))
    params = [x, *ours.parameters()]
    fused = ours(x)
    stepwise = ours.stepwise(x)
    torch.testing.assert_close(fused, stepwise, rtol=1e-5, atol=1e-6)
    fused_grads = torch.autograd.grad((fused * weight).sum(), params)
    stepwise_grads = torch.autograd.grad((stepwise * weight).sum(), params)
    for got, want in zip(fused_grads, stepwise_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # a forecast: no graph, same values
        torch.testing.assert_close(ours(x), stepwise, rtol=1e-5, atol=1e-6)


def test_monotone_quantiles_keep_the_anchor_and_order() -> None:
    raw = torch.randn(2, 3, 4, 5) * 20  # [..., H, Q]
    out = monotone_quantiles(raw, anchor=2)  # [..., Q, H]
    assert out.shape == (2, 3, 5, 4)
    assert torch.equal(out[..., 2, :], raw[..., 2])
    assert (out.diff(dim=-2) >= 0).all()


def test_pinball_loss_ignores_masked_targets_per_model() -> None:
    pred = torch.zeros(2, 1, 3, 2)
    y = torch.tensor([[[1.0, 100.0]], [[-2.0, -2.0]]])
    mask = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    loss = pinball_loss(pred, y, mask, torch.tensor(QUANTILES))
    # Model 0: error +1 → (0.1 + 0.5 + 0.9) / 3. Model 1: error -2 → 2 * (0.9 + 0.5 + 0.1) / 3.
    torch.testing.assert_close(loss, torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("kind", KINDS)
def test_global_net_embeds_categories(kind: str) -> None:
    net = _net(kind, [5], category_sizes=(3, 2), embed_dim=2)
    x = _inputs(1, 4)
    cats = torch.tensor([[[0, 0], [1, 1], [2, 0], [2, 1]]])
    out = net(x, cats)
    assert out.shape == (1, 4, 3, 4) and torch.isfinite(out).all()
    other = net(x, torch.zeros_like(cats))
    assert not torch.equal(out[0, 1], other[0, 1])
    with pytest.raises(ValueError, match="categories"):
        net(x)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"quantiles": (0.5, 0.1)}, "increasing"),
        ({"quantiles": (0.0, 0.5)}, "increasing"),
        ({"quantiles": ()}, "increasing"),
        ({"kind": "transformer", "hidden_size": 6, "num_heads": 4}, "divisible"),
    ],
)
def test_bad_configs_are_rejected(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _config(kw.pop("kind", "lstm"), **kw)


def test_reset_parameters_wants_one_seed_per_model() -> None:
    net = ForecastNet(_config("lstm"), n_models=2)
    with pytest.raises(ValueError, match="1 seeds for a stack of 2"):
        reset_parameters(net, [1])
