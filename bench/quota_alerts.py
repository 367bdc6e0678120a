"""Quota alerts on the simulator, from the forecasts files and from the PromQL climb rule.

A forecast model alerts at an origin when its highest quantile (p90 for quantile
models, the point forecast otherwise: ``predict_linear(used[12h], t) >= quota``
for predict_linear) reaches the quota anywhere in the horizon; a quantile model is
also scored on its median (p50), and on the crossing probability the daemon
publishes (``m:forecast_threshold_probability``, from the quantiles' peaks within the
horizon) at a few levels. Every model's first row is its main signal behind the
climb guard (:class:`~tsf_adapter.pipeline.climb.ClimbGuard`: the usage has climbed
at least 0.5% of its quota per hour, its 15-minute slope, for the last 20 minutes), the form of the shipped
``StorageQuotaForecastFull`` rule; the floors read that row. Peers from the usage itself,
on the same origins: the guard alone, and the "sustained climb" rule
(:mod:`tsf_adapter.tools.climb_rule`). Every signal is scored the same way
(:mod:`tsf_adapter.tools.alert_events`): origin-based precision / recall / F1 and,
per quota fill, the lead time of the alert that stayed on until it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tsf_adapter.pipeline.climb import ClimbGuard, climb_guard
from tsf_adapter.pipeline.output.thresholds import threshold_probability
from tsf_adapter.tools.alert_events import AlertScores, score_alerts
from tsf_adapter.tools.climb_rule import ClimbRule, climb_alerts
from tsf_adapter.tools.csvio import ForecastRows
from tsf_adapter.tools.simulate import Simulation

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
CLIMB_RULE = "sustained_climb"
GUARD_ONLY = "climb_guard"
GUARDED = " & climbing"
# The guard of the shipped rule (deploy/rules/tsf-adapter.rules.yml): its defaults.
GUARD = ClimbGuard()
# Levels of m:forecast_threshold_probability{within="6h"} scored as alerts, after the quantile signals.
PROBABILITY_LEVELS = (0.2, 0.3, 0.5)
AlertRow = tuple[str, str, AlertScores]  # model, signal, scores


def forecast_alerts(
    forecasts: list[ForecastRows], sim: Simulation
) -> tuple[npt.NDArray[np.int64], dict[tuple[str, str], BoolArray]]:
    """Every origin of the run, and per (model, signal) ``alert[series, origin]``."""
    index = {sim.name(i): i for i in range(sim.n_series)}
    origins = np.unique(np.concatenate([f.origins_ms for f in forecasts]))
    alerts: dict[tuple[str, str], BoolArray] = {}
    for f in forecasts:
        columns = [
            (len(f.quantiles) - 1, f"p{round(100 * f.quantiles[-1])}" if len(f.quantiles) > 1 else "point")
        ]
        if len(f.quantiles) > 1 and 0.5 in f.quantiles:
            columns.append((f.quantiles.index(0.5), "p50"))
        i = index[f.series]
        # Peak of every quantile per origin [quantile, origin]: any row reaching the quota counts.
        peaks = window_peaks(f, origins)
        for col, signal in columns:
            alert = alerts.setdefault((f.model, signal), np.zeros((sim.n_series, len(origins)), dtype=bool))
            alert[i] = peaks[col] >= sim.quota[i, 0]
        if len(f.quantiles) > 1:
            prob = peak_probability(peaks, f.quantiles, sim.quota[i, 0])
            for level in PROBABILITY_LEVELS:
                alert = alerts.setdefault(
                    (f.model, f"P≥{level:g}"), np.zeros((sim.n_series, len(origins)), dtype=bool)
                )
                alert[i] = np.nan_to_num(prob, nan=0.0) >= level
    return origins, alerts


def window_peaks(f: ForecastRows, origins: npt.NDArray[np.int64]) -> FloatArray:
    """Peak of every quantile of ``f`` within each origin's window: ``[quantile, origin]`` (-inf: none)."""
    pos = np.searchsorted(origins, f.origins_ms)
    peaks = np.full((len(f.quantiles), len(origins)), -np.inf)
    for q in range(len(f.quantiles)):
        np.maximum.at(peaks[q], pos, np.where(np.isnan(f.values[:, q]), -np.inf, f.values[:, q]))
    return peaks


def peak_probability(peaks: FloatArray, quantiles: Sequence[float], quota: float) -> FloatArray:
    """The published crossing probability at each origin, from the window's quantile peaks (NaN: none)."""
    n = peaks.shape[1]
    seen = np.isfinite(peaks).all(axis=0)
    paths = np.where(seen, peaks, np.nan).T[:, :, None]  # [origin, quantile, 1]
    prob = threshold_probability(np.full(n, np.nan), paths, np.full(n, quota), quantiles, [1])
    return prob[:, 0]


def quota_alerts(forecasts: list[ForecastRows], sim: Simulation, horizon_ms: int) -> list[AlertRow]:
    """``(model, signal, scores)`` per forecast model, then the climb rule, on the same origins."""
    origins, plain = forecast_alerts(forecasts, sim)
    climbing = climb_guard(sim.timestamps_ms, sim.used, sim.quota, origins, GUARD)
    alerts: dict[tuple[str, str], BoolArray] = {}
    for (model, signal), alert in plain.items():
        if not any(m == model for m, _ in alerts):  # a model's first signal is its main one
            alerts[model, signal + GUARDED] = alert & climbing
        alerts[model, signal] = alert
    rule = ClimbRule(horizon_s=horizon_ms / 1000)
    alerts[GUARD_ONLY, "PromQL"] = climbing
    alerts[CLIMB_RULE, "PromQL"] = climb_alerts(sim.timestamps_ms, sim.used, sim.quota, origins, rule)
    ahead, full_now = sim.crossings(origins, horizon_ms)
    fills = sim.fills()
    return [
        (m, signal, score_alerts(origins, a, ~full_now, ahead, fills, horizon_ms=horizon_ms))
        for (m, signal), a in alerts.items()
    ]


def _f(x: float, digits: int = 3) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def alerts_table(rows: list[AlertRow], title: str) -> str:
    first = rows[0][2] if rows else None
    lines = [
        f"**{title}**"
        + (
            f" ({first.scored} origins, {first.tp + first.fn} of them crossings; "
            f"{len(first.fills)} fills, {first.series_days:.1f} series-days)"
            if first
            else ""
        ),
        "",
        "| model | signal | precision | recall | F1 | fills warned | median lead (h) "
        "| ≥2h runaways warned ≥1h ahead | false episodes / 100 series-days |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, signal, s in rows:
        ok, total = s.runaways_warned()
        lines.append(
            f"| {model} | {signal} | {_f(s.precision)} | {_f(s.recall)} | {_f(s.f1)} "
            f"| {s.warned}/{len(s.fills)} | {_f(s.median_lead_h, 2)} "
            f"| {ok}/{total} ({_f(ok / total if total else math.nan, 2)}) "
            f"| {_f(s.false_per_100_series_days, 1)} |"
        )
    return "\n".join(lines)


def floors(default: str, rows: list[AlertRow]) -> list[str]:
    """The alert floors for the default model's recommended alert (its guarded main signal), with figures."""
    by: dict[str, AlertScores] = {}
    for m, _, scores in rows:
        by.setdefault(m, scores)  # a model's first signal
    if default not in by:
        return []
    s = by[default]
    ok, total = s.runaways_warned()
    share = ok / total if total else math.nan
    out = [
        f"- precision ≥ 0.6: {_f(s.precision)} {_ok(s.precision >= 0.6)}",
        f"- F1 ≥ 0.5: {_f(s.f1)} {_ok(s.f1 >= 0.5)}",
        f"- median lead of warned fills ≥ 2h: {_f(s.median_lead_h, 2)}h {_ok(s.median_lead_h >= 2)}",
        f"- ≥2h runaways warned ≥1h ahead ≥ 70%: {_f(share, 2)} {_ok(share >= 0.7)}",
    ]
    plain_hw = [scores for m, signal, scores in rows if m == "holt_winters" and not signal.endswith(GUARDED)]
    if plain_hw:
        mine, hw = s.false_per_100_series_days, plain_hw[0].false_per_100_series_days
        out.append(
            f"- false episodes / 100 series-days < holt_winters' ({_f(hw, 1)}): "
            f"{_f(mine, 1)} {_ok(mine < hw)}"
        )
    return out


def _ok(flag: bool) -> str:
    return "(met)" if flag else "(NOT met)"
