"""Does a full retrain fit in ``retrain_every``? The daemon's own training, timed on this machine.

Builds the model exactly as the daemon does for a target with every default (1m step, 2d of
history, horizons 1h and 6h, ``lstm`` in scope ``auto``, retrain every 1h): the scheduler's budget
(``TRAIN_BUDGET_FRACTION`` of ``retrain_every``), the daemon's torch thread count, and
:func:`tsf_adapter.pipeline.models.make_forecaster`. The series are synthetic (daily cycle,
trend, noise, a different level each), as long as the default history.

    python -m bench.train_daemon                       # 1,000 series, the daemon's budget (one network)
    python -m bench.train_daemon --series 128          # the most series auto trains a network each for
    python -m bench.train_daemon --series 100 --budget 60 --kind auto
    python -m bench.train_daemon --scope per_series    # a network each for 1,000 (stops on the budget)

It prints the wall time, why the fit stopped (``early_stopping``: every series converged;
``budget``: the budget ran out first, best weights kept), the epochs run and best epochs, and
how many series were left untrained.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from tsf_adapter.config import TargetConfig, decode_section
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import make_labels
from tsf_adapter.forecast.neural.runtime import set_torch_threads
from tsf_adapter.forecast.neural.state import FitReport
from tsf_adapter.forecast.neural.trainer import NeuralForecaster
from tsf_adapter.pipeline.models import make_forecaster
from tsf_adapter.pipeline.runner import TRAIN_BUDGET_FRACTION

T0_MS = 1_700_000_000_000


def make_batch(target: TargetConfig, n_series: int, seed: int = 0) -> GridBatch:
    """``n_series`` series over the target's whole history: daily cycle, slow trend, noise."""
    rng = np.random.default_rng(seed)
    n_steps = round(target.history * 1000) // target.step_ms
    t = np.arange(n_steps)
    per_day = 86_400 / target.step
    level = rng.uniform(1e3, 1e9, (n_series, 1))
    wave = np.sin(2 * np.pi * t / per_day + rng.uniform(0, 6.3, (n_series, 1)))
    values = level * (1 + 0.1 * wave + 2e-5 * t + 0.01 * rng.standard_normal((n_series, n_steps)))
    labels = tuple(make_labels({"__name__": "bench", "instance": f"i{i}"}) for i in range(n_series))
    return GridBatch("bench", labels, values, T0_MS, target.step_ms)


def describe(name: str, report: FitReport | None) -> str:
    if report is None:
        return f"{name}: no report"
    best = report.best_epoch
    return (
        f"{name}: stopped={report.stopped} epochs={report.epochs} steps={report.steps} "
        f"fit={report.elapsed_s:.0f}s ({report.elapsed_s / max(1, report.steps):.1f}s/step) "
        f"untrained={report.untrained} "
        f"best epoch median={np.median(best):.0f} max={best.max()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--kind", default="lstm", choices=["lstm", "gru", "transformer", "auto"])
    parser.add_argument("--budget", type=float, default=None, help="seconds (default: the daemon's)")
    parser.add_argument(
        "--scope",
        default="auto",
        choices=["auto", "per_series", "global"],
        help="the daemon's default, auto, trains a network per series up to 128 series, one above",
    )
    parser.add_argument(
        "--quantiles",
        type=lambda text: [float(q) for q in text.split(",")],
        default=None,
        help="comma-separated (default: the target's 0.1,0.5,0.9)",
    )
    args = parser.parse_args()
    section: dict[str, object] = {
        "name": "bench",
        "selector": "bench",
        "model": {"kind": args.kind, "scope": args.scope},
    }
    if args.quantiles is not None:
        section["quantiles"] = args.quantiles
    target = decode_section(TargetConfig, section)
    budget = args.budget if args.budget is not None else TRAIN_BUDGET_FRACTION * target.retrain_every
    threads = set_torch_threads()
    batch = make_batch(target, args.series)
    model = make_forecaster(target, budget_s=budget, device="cpu")
    print(
        f"{args.series} series x {batch.n_steps} steps ({target.step:g}s step), horizons "
        f"{[int(h) for h in target.horizons]}s, input {target.input_steps} steps, kind {args.kind} "
        f"({args.scope}), quantiles {list(target.quantiles)}, "
        f"budget {budget:.0f}s of retrain_every {target.retrain_every:.0f}s, torch threads {threads}"
    )
    t0 = time.perf_counter()
    model.fit(batch)
    wall = time.perf_counter() - t0
    candidates = getattr(model, "candidates", [model])
    for cand in candidates:
        assert isinstance(cand, NeuralForecaster)
        scope = "untrained" if cand.state is None else cand.state.scope
        print(describe(f"{cand.name} ({scope})", cand.last_report))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fits = "fits" if wall <= target.retrain_every else "does NOT fit"
    print(f"wall {wall:.0f}s for {args.series} series: {fits} in retrain_every; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
