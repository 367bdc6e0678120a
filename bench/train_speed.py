"""Training throughput on this machine: series·epochs per second, batched stack vs a per-model loop.

Both modes run the same trainer on the same data in the same process: "batched" fits all
series as one stacked program, "loop" calls ``fit`` once per series (a stack of one).
Early stopping is disabled so both do exactly ``--epochs`` epochs per series.

    python -m bench.train_speed                       # 10 and 100 series, LSTM, 1 thread
    python -m bench.train_speed --series 10 100 1000 --epochs 1 --models lstm gru transformer

The loop mode is skipped above ``--loop-max`` series (it is only a reference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tsf_adapter.core.series import Labels, make_labels
from tsf_adapter.forecast.neural.features import FeatureConfig
from tsf_adapter.forecast.neural.state import TrainConfig
from tsf_adapter.forecast.neural.trainer import fit

STEP_S = 300.0  # 5-minute grid


def make_data(n_series: int, n_steps: int, seed: int = 0) -> tuple[list[Labels], np.ndarray]:
    """Daily cycles with trend and noise, different level per series."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps)
    per_day = 86_400 / STEP_S
    level = rng.uniform(1e3, 1e9, (n_series, 1))
    wave = np.sin(2 * np.pi * t / per_day + rng.uniform(0, 6.3, (n_series, 1)))
    values = level * (1 + 0.1 * wave + 1e-4 * t + 0.01 * rng.standard_normal((n_series, n_steps)))
    labels = [make_labels({"__name__": "bench", "instance": f"i{i}"}) for i in range(n_series)]
    return labels, values


def config(model: str, epochs: int, hidden: int) -> TrainConfig:
    return TrainConfig(
        model=model,  # type: ignore[arg-type]
        features=FeatureConfig(input_steps=48, horizon_steps=12),
        hidden_size=hidden,
        max_epochs=epochs,
        patience=epochs + 1,
        window_stride=4,
        batch_size=32,
        device="cpu",
    )


def run(model: str, n_series: int, mode: str, args: argparse.Namespace) -> float:
    """Best of ``--repeat`` runs: the machine is shared, the minimum is the least disturbed."""
    labels, values = make_data(n_series, args.steps)
    cfg = config(model, args.epochs, args.hidden)
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        if mode == "batched":
            fit(labels, values, 0.0, STEP_S, cfg)
        else:
            for i in range(n_series):
                fit(labels[i : i + 1], values[i : i + 1], 0.0, STEP_S, cfg)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--models", nargs="+", default=["lstm"], choices=["lstm", "gru", "transformer"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=576, help="history length (576 = 2 days of 5 min)")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--loop-max", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), history {args.steps} steps, input 48, "
        f"horizon 12, stride 4, hidden {args.hidden}, {args.epochs} epochs"
    )
    for model in args.models:  # first-call costs (allocator, kernels) stay out of the table
        labels, values = make_data(2, args.steps)
        fit(labels, values, 0.0, STEP_S, config(model, 1, args.hidden))
    print(f"{'model':<12}{'series':>7}{'mode':>9}{'seconds':>10}{'series·ep/s':>13}{'batched/loop':>14}")
    for model in args.models:
        for n in args.series:
            batched = run(model, n, "batched", args)
            loop = run(model, n, "loop", args) if n <= args.loop_max else float("nan")
            for mode, secs in (("batched", batched), ("loop", loop)):
                if secs != secs:
                    continue
                ratio = f"{loop / batched:.2f}x" if mode == "batched" and loop == loop else ""
                rate = n * args.epochs / secs
                print(f"{model:<12}{n:>7}{mode:>9}{secs:>10.2f}{rate:>13.1f}{ratio:>14}")


if __name__ == "__main__":
    main()
