"""Forecast accuracy on real data and on the storage-quota simulator, scored from the forecasts files.

Usage::

    python -m bench.accuracy                        # all models that can run here
    python -m bench.accuracy --models lstm,predict_linear,last_value --default lstm
    python -m bench.accuracy --skip-real --models lstm,predict_linear --train-setting weight_decay=0.01

Real data (/work/shared/data/real, read at run time, never copied): series longer
than 4 days get 12h history / 6h horizon / hourly origins from 0.6 of each
series; shorter ones 3h / 1h / 15-minute origins. The simulator (seeded) gets
12h / 6h / hourly origins from 0.6.

Everything is computed from the forecasts CSVs the backtest writes (the same
files a user gets), joined to the inputs by timestamp:

* geometric mean over series of MAE(model) / MAE(predict_linear over the
  history range) and / MAE(last value);
* p10–p90 coverage (mean over series);
* quota alerts on the simulator (:mod:`bench.quota_alerts`): at each origin where
  the user is not already at the quota, "crosses the quota within the horizon" is
  predicted when the forecast's highest quantile (p90 for quantile models, the
  point forecast otherwise) reaches the quota anywhere in the horizon, and by a
  plain PromQL "sustained climb" rule on the same origins; scored against the
  simulator's ground truth per origin (precision / recall / F1) and per quota
  fill (lead time, false alert episodes per 100 series-days);
* the published crossing probability on the simulator (:mod:`bench.crossing_probability`):
  Brier score and reliability, raw and calibrated as the daemon calibrates it.

Prints markdown tables for BENCHMARKS.md and checks the goals for the default model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench.crossing_probability import probability_scores, probability_table
from bench.quota_alerts import AlertRow, alerts_table, floors, quota_alerts
from bench.statsforecast_peer import PEERS
from bench.statsforecast_peer import register as register_peers
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.forecast.metrics import geometric_mean
from tsf_adapter.forecast.options import ModelOptions
from tsf_adapter.forecast.registry import MODELS, NEURAL_MODELS, check_models, create_model
from tsf_adapter.tools.backtest import BacktestSpec, run_backtest
from tsf_adapter.tools.csvio import ForecastRows, InputSeries, read_forecasts_csv, read_series_csv
from tsf_adapter.tools.scoring import score_all
from tsf_adapter.tools.simulate import SimConfig, simulate

REAL = Path("/work/shared/data/real")
LONG_S = 4 * 86_400
H = 3600.0
DEFAULT_MODELS = ("lstm", "predict_linear", "holt_winters", "last_value", "seasonal_naive")


def available_models() -> list[str]:
    """Every registered model that can be built in this environment (neural ones need their engine)."""
    options = ModelOptions(history_s=H, horizon_s=H, step_s=60.0)
    out = []
    for name in MODELS:
        try:
            create_model(name, options)
        except ConfigError:
            continue
        out.append(name)
    return out


def run_set(
    inputs: Sequence[InputSeries], spec: BacktestSpec, out: Path
) -> tuple[list[ForecastRows], dict[str, InputSeries]]:
    """Backtest to ``out``, then read the file back: every number below comes from the file."""
    with out.open("w", encoding="utf-8", newline="") as handle:
        run_backtest(inputs, spec, handle)
    return read_forecasts_csv(out), {s.name: s for s in inputs}


@dataclass(frozen=True, slots=True)
class Accuracy:
    model: str
    series: int
    vs_predict_linear: float
    vs_last_value: float
    coverage: float


def accuracy(
    forecasts: list[ForecastRows], inputs: dict[str, InputSeries], models: Sequence[str]
) -> list[Accuracy]:
    scores = score_all(forecasts, inputs)
    mae = {(s.series, s.model): s.mae for s in scores}
    cov = {(s.series, s.model): s.coverage for s in scores}
    names = sorted({s.series for s in scores})
    out = []
    for m in models:

        def ratio(base: str, m: str = m) -> float:
            r = [mae[(n, m)] / mae[(n, base)] for n in names if (n, m) in mae and (n, base) in mae]
            return geometric_mean([x for x in r if math.isfinite(x)])

        c = [cov[(n, m)] for n in names if (n, m) in cov and not math.isnan(cov[(n, m)])]
        out.append(
            Accuracy(
                m,
                len(names),
                ratio("predict_linear"),
                ratio("last_value"),
                float(np.mean(c)) if c else math.nan,
            )
        )
    return out


def _f(x: float, digits: int = 3) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def accuracy_table(title: str, rows: list[Accuracy]) -> str:
    lines = [
        f"**{title}** ({rows[0].series if rows else 0} series)",
        "",
        "| model | MAE ÷ predict_linear | MAE ÷ last_value | p10–p90 coverage |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.model} | {_f(r.vs_predict_linear)} | {_f(r.vs_last_value)} | {_f(r.coverage)} |" for r in rows
    ]
    return "\n".join(lines)


T = TypeVar("T", int, float)


def positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type: ``kind`` of the text, refused with argparse's usage line unless > 0.

    >>> positive(int)("6"), positive(float)("0.5")
    (6, 0.5)
    """

    def parse(text: str) -> T:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
        return value

    return parse


def goals(default: str, real: list[Accuracy], sim: list[Accuracy], alerts: list[AlertRow]) -> list[str]:
    mine = next((r for r in real if r.model == default), None)
    on_sim = next((r for r in sim if r.model == default), None)
    by = {m: a for m, _, a in alerts}
    out = [f"Goals for {default}:"]
    if mine is not None:
        r = mine.vs_predict_linear
        out.append("- real data, > 4 days:")
        out.append(f"  - MAE ÷ predict_linear ≤ 0.6: {_f(r)} {_ok(r <= 0.6)}")
        out.append(f"  - MAE ÷ last_value ≤ 0.85: {_f(mine.vs_last_value)} {_ok(mine.vs_last_value <= 0.85)}")
        out.append(f"  - coverage 0.75–0.85: {_f(mine.coverage)} {_ok(0.75 <= mine.coverage <= 0.85)}")
    if on_sim is not None:
        out.append(
            f"- simulator coverage 0.75–0.85: {_f(on_sim.coverage)} {_ok(0.75 <= on_sim.coverage <= 0.85)}"
        )
    if default in by:
        out.append("- quota alerts (the alert floors, on seeds 0 and 1 each):")
        out += ["  " + line for line in floors(default, alerts)]
    return out


def _ok(flag: bool) -> str:
    return "(met)" if flag else "(NOT met)"


def train_setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` from the command line; VALUE as JSON (0.01, true, "min") or else the bare string.

    >>> train_setting("weight_decay=0.01"), train_setting("features.scale=min")
    (('weight_decay', 0.01), ('features.scale', 'min'))
    """
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    parser.add_argument("--default", default="lstm", help="the model the goals are checked for")
    parser.add_argument("--data", type=Path, default=REAL)
    parser.add_argument("--out-dir", type=Path, help="keep forecasts files here (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--train-budget", type=float, default=15.0, help="seconds per training run (default 15; 0 = none)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument(
        "--origin-spacing",
        type=positive(float),
        default=1.0,
        help="origins this many times further apart than each table's own (e.g. 6: every 6h on the long "
        "real series), for peers too slow to refit at every hourly origin",
    )
    parser.add_argument("--skip-short", action="store_true", help="real data: only the series > 4 days")
    parser.add_argument(
        "--retrain-every",
        type=positive(int),
        default=None,
        help="refit learning models every N origins, warm, as the daemon does (default: at the first only)",
    )
    parser.add_argument(
        "--scope",
        default="auto",
        choices=["auto", "per_series", "global"],
        help="neural models: a network per series, one for each group of series trained together, "
        "or (auto, the daemon's default) by the group's size",
    )
    parser.add_argument(
        "--quantiles",
        type=lambda text: tuple(float(q) for q in text.split(",")),
        default=None,
        help="comma-separated quantiles the models forecast (default: the backtest's 0.1,0.5,0.9)",
    )
    parser.add_argument(
        "--headroom",
        action="store_true",
        help="simulator: neural models also read usage / quota (the daemon's model.headroom)",
    )
    parser.add_argument(
        "--train-setting",
        action="append",
        default=[],
        type=train_setting,
        metavar="NAME=VALUE",
        help="change a training setting of the neural models, e.g. weight_decay=0.01 or "
        "features.scale=min (VALUE is read as JSON, else as a string; repeatable)",
    )
    args = parser.parse_args(argv)
    settings = tuple(args.train_setting)
    if settings:
        from tsf_adapter.forecast.neural.model import with_settings
        from tsf_adapter.forecast.neural.state import TrainConfig

        try:
            with_settings(TrainConfig(), settings)  # a typo fails now, not after the first series
        except ConfigError as exc:
            parser.error(str(exc))

    names = args.models.split(",")
    if any(name in PEERS for name in names):  # benchmark-only peers: pip install -e '.[bench]'
        register_peers()
    models = available_models() if args.models == "available" else check_models(names)
    if set(models) & set(NEURAL_MODELS):
        import torch

        torch.set_num_threads(args.threads)
    budget = args.train_budget or None
    quantiles = {} if args.quantiles is None else {"quantiles": args.quantiles}
    for base in ("predict_linear", "last_value"):
        if base not in models:
            models.append(base)
    default = args.default if args.default in models else models[0]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        report = [f"Models: {', '.join(models)}; default {default}"]
        if settings:
            report.append(f"Training settings: {', '.join(f'{k}={v!r}' for k, v in settings)}")
        report.append(
            f"Scope: {args.scope}; headroom on the simulator: {'on' if args.headroom else 'off'}; "
            f"retrained every {args.retrain_every or '-'} origins"
        )
        report.append("")
        started = time.monotonic()
        real_rows: list[Accuracy] = []
        if not args.skip_real:
            inputs = [read_series_csv(p) for p in sorted(args.data.glob("*.csv"))]
            long = [s for s in inputs if s.timestamps_ms[-1] - s.timestamps_ms[0] > LONG_S * 1000]
            short = [s for s in inputs if s not in long]
            sets = [
                ("Real data, > 4 days: 12h history, 6h horizon, hourly origins from 0.6", long, (12, 6, 1)),
                (
                    "Real data, ≤ 4 days: 3h history, 1h horizon, 15-minute origins from 0.6",
                    short,
                    (3, 1, 0.25),
                ),
            ]
            for title, group, (hist, hor, every) in sets[:1] if args.skip_short else sets:
                if args.origin_spacing != 1:
                    title += f" (origins {args.origin_spacing:g}x further apart)"
                spec = BacktestSpec(
                    history_s=hist * H,
                    horizon_s=hor * H,
                    origin_every_s=every * H * args.origin_spacing,
                    start_frac=0.6,
                    models=tuple(models),
                    device=args.device,
                    train_budget_s=budget,
                    train_settings=settings,
                    scope=args.scope,
                    retrain_every=args.retrain_every,
                    **quantiles,
                )
                tag = "long" if group is long else "short"
                forecasts, by_name = run_set(group, spec, out_dir / f"real_{tag}.csv")
                rows = accuracy(forecasts, by_name, models)
                if group is long:
                    real_rows = rows
                report += [accuracy_table(title, rows), ""]
        alert_rows: list[AlertRow] = []
        sim_rows: list[Accuracy] = []
        if not args.skip_sim:
            sim = simulate(SimConfig(seed=args.seed))
            paths = sim.write_csvs(out_dir / "sim")
            limits: dict[str, float | InputSeries] | None = None
            if args.headroom:
                limits = {
                    sim.name(i): InputSeries(sim.name(i), sim.timestamps_ms, sim.quota[i])
                    for i in range(sim.n_series)
                }
            spec = BacktestSpec(
                history_s=12 * H,
                horizon_s=6 * H,
                origin_every_s=H * args.origin_spacing,
                start_frac=0.6,
                models=tuple(models),
                device=args.device,
                train_budget_s=budget,
                train_settings=settings,
                scope=args.scope,
                retrain_every=args.retrain_every,
                **quantiles,
                limits=limits,
            )
            forecasts, by_name = run_set([read_series_csv(p) for p in paths], spec, out_dir / "sim.csv")
            sim_rows = accuracy(forecasts, by_name, models)
            report += [
                accuracy_table(
                    f"Quota simulator (seed {args.seed}): 12h / 6h / "
                    + ("hourly" if args.origin_spacing == 1 else f"every {args.origin_spacing:g}h")
                    + " from 0.6",
                    sim_rows,
                ),
                "",
            ]
            alert_rows = quota_alerts(forecasts, sim, round(6 * H * 1000))
            title = f"Quota simulator (seed {args.seed}): 'crosses the quota within 6h' alerts"
            report += [alerts_table(alert_rows, title), ""]
            title = f'Quota simulator (seed {args.seed}): m:forecast_threshold_probability{{within="6h"}}'
            start = int(sim.timestamps_ms[0])
            scores = probability_scores(forecasts, sim, round(6 * H * 1000))
            report += [probability_table(scores, title, start)]
        report += goals(default, real_rows, sim_rows, alert_rows)
        report.append(f"\n(ran in {time.monotonic() - started:.0f}s)")
        print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
