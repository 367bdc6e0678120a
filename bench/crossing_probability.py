"""Is ``m:forecast_threshold_probability`` calibrated? Brier score and reliability on the simulator.

For every quantile model, the probability the daemon publishes for ``within="6h"`` is read at
each origin from the window's quantile peaks (:func:`bench.quota_alerts.peak_probability`, the
same reading as the daemon's). It is scored raw and calibrated the way the daemon calibrates it
(:class:`~tsf_adapter.pipeline.crossings.WindowCalibration`: isotonic maps fitted on every earlier
origin whose window had passed by then, pooled over the series, apart for series climbing at the
origin by the shipped alert's guard and the rest): an origin is never calibrated on its own
outcome or on any outcome not yet known at the time. Only origins where the calibration
had enough evidence are scored, both ways, so raw and calibrated are compared on the same
origins; origins already full are left out (their probability is 1 by definition).

The Brier score is the mean squared difference between probability and outcome (lower is
better); the base rate's Brier score (always answering the frequency of crossings seen on the
scored origins) is the bar a useful probability must be under. The reliability table bins the
probabilities and shows, per bin, how often the quota was then reached.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench.quota_alerts import GUARD, peak_probability, window_peaks
from tsf_adapter.pipeline.climb import climb_guard
from tsf_adapter.pipeline.crossings import WindowCalibration
from tsf_adapter.tools.csvio import ForecastRows
from tsf_adapter.tools.simulate import Simulation

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
BIN_EDGES = (0.0, 0.05, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class ProbabilityScores:
    model: str
    scored: int  # origin x series pairs scored
    events: int  # of them, crossings
    first_origin_ms: int  # the first origin scored (the calibration was ready from there on)
    brier_raw: float
    brier_calibrated: float
    brier_base_rate: float
    brier_pooled: float  # calibrated with one map for all series, climbing or not
    crossed_climbing: float  # share of the scored windows that began with the guard on and crossed
    crossed_steady: float  # the same for the rest
    # Per bin of the published probability: (low, high, count, mean raw, observed) and the same calibrated.
    reliability_raw: list[tuple[float, float, int, float, float]]
    reliability_calibrated: list[tuple[float, float, int, float, float]]


def raw_probabilities(
    forecasts: list[ForecastRows], sim: Simulation
) -> tuple[npt.NDArray[np.int64], dict[str, FloatArray]]:
    """Every origin of the run, and per quantile model the published probability ``[series, origin]``."""
    index = {sim.name(i): i for i in range(sim.n_series)}
    origins = np.unique(np.concatenate([f.origins_ms for f in forecasts]))
    out: dict[str, FloatArray] = {}
    for f in forecasts:
        if len(f.quantiles) < 2:
            continue
        i = index[f.series]
        prob = out.setdefault(f.model, np.full((sim.n_series, len(origins)), np.nan))
        prob[i] = peak_probability(window_peaks(f, origins), f.quantiles, sim.quota[i, 0])
    return origins, out


def calibrate_online(
    raw: FloatArray,
    reached: BoolArray,
    usable: BoolArray,
    climbing: BoolArray,
    origins: npt.NDArray[np.int64],
    horizon_ms: int,
) -> tuple[FloatArray, BoolArray]:
    """Calibrated ``[series, origin]`` as the daemon would have published them, and where it was ready.

    At origin ``j`` the calibration holds every usable pair of the origins whose window
    ``(o, o + horizon]`` had passed by ``origins[j]``.
    """
    cal = WindowCalibration()
    out = np.full(raw.shape, np.nan)
    ready = np.zeros(len(origins), dtype=bool)
    added = 0
    for j, now in enumerate(origins.tolist()):
        while added < len(origins) and origins[added] + horizon_ms <= now:
            ok = usable[:, added]
            cal.add(raw[ok, added], reached[ok, added], climbing[ok, added])
            added += 1
        ready[j] = cal.ready
        out[:, j] = cal(raw[:, j], climbing[:, j])
    return out, ready


def reliability(prob: FloatArray, hit: BoolArray) -> list[tuple[float, float, int, float, float]]:
    rows = []
    for lo, hi in itertools.pairwise(BIN_EDGES):
        sel = (prob >= lo) & ((prob < hi) if hi < 1.0 else (prob <= hi))
        n = int(sel.sum())
        rows.append(
            (lo, hi, n, float(prob[sel].mean()) if n else math.nan, float(hit[sel].mean()) if n else math.nan)
        )
    return rows


def probability_scores(
    forecasts: list[ForecastRows], sim: Simulation, horizon_ms: int
) -> list[ProbabilityScores]:
    """Raw and online-calibrated crossing probability, scored on the same origins, per quantile model."""
    origins, probs = raw_probabilities(forecasts, sim)
    reached, full_now = sim.crossings(origins, horizon_ms)
    climbing = climb_guard(sim.timestamps_ms, sim.used, sim.quota, origins, GUARD)
    out = []
    for model, raw in probs.items():
        usable = ~full_now & ~np.isnan(raw)
        calibrated, ready = calibrate_online(raw, reached, usable, climbing, origins, horizon_ms)
        pooled, _ = calibrate_online(raw, reached, usable, np.zeros_like(climbing), origins, horizon_ms)
        scored = usable & ready[None, :]
        if not scored.any():
            continue
        r, c, y = raw[scored], calibrated[scored], reached[scored].astype(np.float64)
        base = float(y.mean())
        out.append(
            ProbabilityScores(
                model=model,
                scored=int(scored.sum()),
                events=int(y.sum()),
                first_origin_ms=int(origins[np.argmax(ready)]),
                brier_raw=float(np.mean((r - y) ** 2)),
                brier_calibrated=float(np.mean((c - y) ** 2)),
                brier_base_rate=float(np.mean((base - y) ** 2)),
                brier_pooled=float(np.mean((pooled[scored] - y) ** 2)),
                crossed_climbing=_share(reached[scored & climbing]),
                crossed_steady=_share(reached[scored & ~climbing]),
                reliability_raw=reliability(r, y > 0),
                reliability_calibrated=reliability(c, y > 0),
            )
        )
    return out


def _share(hits: BoolArray) -> float:
    return float(hits.mean()) if hits.size else math.nan


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def probability_table(rows: list[ProbabilityScores], title: str, start_ms: int) -> str:
    lines = [f"**{title}**", ""]
    for s in rows:
        lines += [
            f"{s.model}: {s.scored} origin x series pairs scored from "
            f"{(s.first_origin_ms - start_ms) / 3_600_000:.0f}h into the run, {s.events} crossings; "
            f"Brier score raw {_f(s.brier_raw)}, calibrated {_f(s.brier_calibrated)}, "
            f"base rate {_f(s.brier_base_rate)}, one pooled map {_f(s.brier_pooled)}; crossed: "
            f"{_f(s.crossed_climbing)} of the windows that began climbing, "
            f"{_f(s.crossed_steady)} of the rest",
            "",
            "| published probability | pairs raw | mean raw | crossed "
            "| pairs calibrated | mean calibrated | crossed |",
            "|---|---|---|---|---|---|---|",
        ]
        for raw, cal in zip(s.reliability_raw, s.reliability_calibrated, strict=True):
            lo, hi = raw[0], raw[1]
            lines.append(
                f"| [{lo:g}, {hi:g}{']' if hi == 1.0 else ')'} | {raw[2]} | {_f(raw[3])} | {_f(raw[4])} "
                f"| {cal[2]} | {_f(cal[3])} | {_f(cal[4])} |"
            )
        lines.append("")
    return "\n".join(lines)
