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
    python -m bench.train_daemon --config deploy/tsf-adapter.yml --target storage-quota \
        --series 10000 --device cuda --json $OUT/train_daemon.json   # a shipped target, on a GPU

It prints the wall time, why the fit stopped (``early_stopping``: every series converged;
``budget``: the budget ran out first, best weights kept), the epochs run and best epochs, and
how many series were left untrained, then times one forecast of every series (what each
``forecast_every`` costs once the network is trained).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from tsf_adapter.config import TargetConfig, config_from_dict, decode_section, read_yaml
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import make_labels
from tsf_adapter.forecast.neural import nets
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


def summary(name: str, report: FitReport | None) -> dict[str, Any]:
    if report is None:
        return {"model": name}
    return {
        "model": name,
        "stopped": report.stopped,
        "epochs": report.epochs,
        "steps": report.steps,
        "fit_s": round(report.elapsed_s, 1),
        "untrained": report.untrained,
        "best_epoch_median": float(np.median(report.best_epoch)),
        "best_epoch_max": int(report.best_epoch.max()),
    }


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


def main(argv: list[str] | None = None) -> None:
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
    parser.add_argument("--config", help="take the target from this config file instead (with --target)")
    parser.add_argument("--target", help="the target's name in --config")
    parser.add_argument("--history", help="override the target's history (e.g. 14d): cost against history")
    parser.add_argument(
        "--horizons",
        type=lambda text: text.split(","),
        help="override the target's horizons, comma-separated (e.g. 1h,6h,72h): cost against horizon",
    )
    parser.add_argument("--device", default="cpu", help="cpu (the default), cuda or auto")
    parser.add_argument(
        "--stepwise",
        action="store_true",
        help="run one network's recurrence step by step, not in torch's fused kernel (to compare)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    section: dict[str, object] = {
        "name": "bench",
        "selector": "bench",
        "model": {"kind": args.kind, "scope": args.scope},
    }
    if args.config:
        # The whole file checked as the daemon checks it, then the target's section as written,
        # decoded on its own below with the overrides, so they are checked too.
        try:
            data = read_yaml(args.config)
            config_from_dict(data, args.config, base_dir=Path(args.config).absolute().parent)
        except ConfigError as err:
            parser.error(str(err))
        shipped = {str(t["name"]): t for t in data["targets"]}  # type: ignore[index]
        if args.target not in shipped:
            parser.error(f"--target must name one of {sorted(shipped)} in {args.config}")
        section = dict(shipped[args.target])
    elif args.quantiles is not None:
        section["quantiles"] = args.quantiles
    if args.history:
        section["history"] = args.history
    if args.horizons:
        section["horizons"] = args.horizons
    try:
        target = decode_section(TargetConfig, section, source=args.config or "<command line>")
    except ConfigError as err:
        parser.error(str(err))
    nets.FUSED_RECURRENCE = not args.stepwise
    budget = args.budget if args.budget is not None else TRAIN_BUDGET_FRACTION * target.retrain_every
    threads = set_torch_threads()
    batch = make_batch(target, args.series)
    model = make_forecaster(target, budget_s=budget, device=args.device)
    print(
        f"{args.series} series x {batch.n_steps} steps ({target.step:g}s step), horizons "
        f"{[int(h) for h in target.horizons]}s, input {target.input_steps} steps, "
        f"kind {target.model.kind} ({target.model.scope}{', stepwise' if args.stepwise else ''}), "
        f"quantiles {list(target.quantiles)}, "
        f"budget {budget:.0f}s of retrain_every {target.retrain_every:.0f}s, torch threads {threads}"
    )
    t0 = time.perf_counter()
    model.fit(batch)
    wall = time.perf_counter() - t0
    candidates = getattr(model, "candidates", [model])
    fits: list[dict[str, Any]] = []
    for cand in candidates:
        assert isinstance(cand, NeuralForecaster)
        scope = "untrained" if cand.state is None else cand.state.scope
        print(describe(f"{cand.name} ({scope})", cand.last_report))
        fits.append(summary(f"{cand.name} ({scope})", cand.last_report))
    horizon_steps = max(target.horizon_steps)
    t0 = time.perf_counter()
    forecast = model.predict(batch, horizon_steps)
    predict_s = time.perf_counter() - t0
    finite = float(np.isfinite(forecast).mean())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    verdict = "fits" if wall <= target.retrain_every else "does NOT fit"
    print(f"wall {wall:.0f}s for {args.series} series: {verdict} in retrain_every; peak RSS {rss:.0f} MiB")
    print(f"forecast of {args.series} series x {horizon_steps} steps: {predict_s:.2f}s ({finite:.0%} finite)")
    if args.json:
        with open(args.json, "w") as f:
            result = {
                "series": args.series,
                "target": target.name,
                "history_steps": target.history_steps,
                "input_steps": target.input_steps,
                "horizon_steps": max(target.horizon_steps),
                "device": args.device,
                "fused_recurrence": nets.FUSED_RECURRENCE,
                "torch_threads": threads,
                "budget_s": budget,
                "retrain_every_s": target.retrain_every,
                "fit_wall_s": round(wall, 1),
                "fits": fits,
                "predict_s": round(predict_s, 3),
                "finite_fraction": finite,
                "peak_rss_mib": round(rss),
            }
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
