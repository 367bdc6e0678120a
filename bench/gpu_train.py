"""Prepared GPU check: train 10,000 per-series models as stacked programs; goal under 60 s.

Run on a machine with CUDA (the whole script is one short job):

    python -m bench.gpu_train                     # 10,000 series, LSTM, 2 epochs, on CUDA
    python -m bench.gpu_train --models lstm gru transformer --json $OUT/gpu_train.json
    python -m bench.gpu_train --tiny              # CPU smoke check of this script: 20 series

Per model it reports: batched fit time over all series (CUDA warm-up excluded and shown
apart), series·epochs per second, peak device memory, predict time for all series, and a
per-model loop over ``--loop-series`` series (same trainer, a stack of one) extrapolated to
all series, so the batching gain is measured in the same run on the same card.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch

from bench.train_speed import STEP_S, make_data
from tsf_adapter.forecast.neural.features import FeatureConfig
from tsf_adapter.forecast.neural.state import TrainConfig, select_device
from tsf_adapter.forecast.neural.trainer import fit, predict

GOAL_SERIES = 10_000
GOAL_SECONDS = 60.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    cfg = TrainConfig(
        model=model,  # type: ignore[arg-type]
        features=FeatureConfig(input_steps=args.input_steps, horizon_steps=args.horizon),
        hidden_size=args.hidden,
        max_epochs=args.epochs,
        patience=args.epochs + 1,  # fixed work: every series runs every epoch
        window_stride=args.stride,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=str(device),
    )
    labels, values = make_data(args.series, args.steps)
    t0 = time.perf_counter()
    fit(labels[:2], values[:2], 0.0, STEP_S, cfg)  # CUDA context, kernels, allocator
    _sync(device)
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    state, report = fit(labels, values, 0.0, STEP_S, cfg)
    _sync(device)
    fit_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    t0 = time.perf_counter()
    pred = predict(state, labels, values, 0.0, STEP_S, device=str(device), chunk_size=args.chunk_size)
    _sync(device)
    predict_s = time.perf_counter() - t0
    n_loop = min(args.loop_series, args.series)
    t0 = time.perf_counter()
    for i in range(n_loop):
        fit(labels[i : i + 1], values[i : i + 1], 0.0, STEP_S, cfg)
    _sync(device)
    # The loop is timed on a few series and scaled to all of them; --loop-series 0 skips it.
    loop_s = (time.perf_counter() - t0) / n_loop * args.series if n_loop else None
    return {
        "model": model,
        "series": args.series,
        "epochs": report.epochs,
        "steps": report.steps,
        "warmup_s": round(warmup_s, 3),
        "fit_s": round(fit_s, 3),
        "series_epochs_per_s": round(args.series * report.epochs / fit_s, 1),
        "peak_mem_gib": round(peak / 2**30, 2),
        "predict_s": round(predict_s, 3),
        "finite_forecasts": float((pred == pred).all(axis=(1, 2)).mean()),
        "loop_extrapolated_s": None if loop_s is None else round(loop_s, 1),
        "batched_vs_loop": None if loop_s is None else round(loop_s / fit_s, 1),
        "goal_met": args.series >= GOAL_SERIES and fit_s < GOAL_SECONDS,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="20 series, 1 epoch, CPU: checks the script")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", default=["lstm"], choices=["lstm", "gru", "transformer"])
    parser.add_argument("--series", type=int, default=GOAL_SERIES)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=576, help="history length (576 = 2 days of 5 min)")
    parser.add_argument("--input-steps", type=int, default=48)
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=5000, help="series per stacked program")
    parser.add_argument("--loop-series", type=int, default=20)
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on Ampere+")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs only)")
    parser.add_argument("--json", help="also write the results here (default: $OUT/gpu_train.json if set)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.series, args.epochs, args.device = 20, 1, "cpu"
        args.loop_series = min(args.loop_series, 3)
    device = select_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}; {args.series} series, history {args.steps}, ", end="")
    print(f"{args.epochs} epochs, chunks of {args.chunk_size}")
    out = args.json or (os.path.join(os.environ["OUT"], "gpu_train.json") if os.environ.get("OUT") else None)
    results: list[dict[str, Any]] = []
    for model in args.models:
        results.append(measure(model, args, device))
        if out:  # after each model, so a run cut short by its time limit still leaves what it measured
            with open(out, "w") as f:
                json.dump({"device": name, "args": vars(args), "results": results}, f, indent=2)
    cols = ["model", "series", "fit_s", "series_epochs_per_s", "peak_mem_gib", "predict_s", "batched_vs_loop"]
    print(" ".join(f"{c:>20}" for c in cols))
    for r in results:
        print(" ".join(f"{r[c]!s:>20}" for c in cols))
        if r["series"] == GOAL_SERIES:
            verdict = "met" if r["goal_met"] else "NOT met"
            print(
                f"  goal ({GOAL_SERIES} models < {GOAL_SECONDS:.0f} s): {verdict}; warm-up {r['warmup_s']} s"
            )
        else:
            print(f"  goal: judged at {GOAL_SERIES} series only; warm-up {r['warmup_s']} s")


if __name__ == "__main__":
    main()
