"""A forecasting target's section: which series, on which grid, which horizons, which model.

The ``TargetConfig`` is the one description of a target: the store keeps its grid
from it, the scheduler runs it, the models are built from it. Every default lives
here, commented with why, and the decoder checks every rule before anything else
sees it, so no later layer checks again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from tsf_adapter.config.fields import (
    PositiveFloat,
    PositiveInt,
    PositiveSeconds,
    Problems,
    Seconds,
    label_name_problems,
    show,
    show_seconds,
)
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.series import METRIC_NAME_LABEL
from tsf_adapter.core.windows import min_train_steps, validation_steps

# The kinds that learn from the history (trained, saved, loaded); the others are baselines.
TrainedKind = Literal["lstm", "gru", "transformer", "auto"]
ModelKind = Literal[TrainedKind, "predict_linear", "holt_winters", "last_value", "seasonal_naive"]
ModelScope = Literal["auto", "per_series", "global"]
AggregationOp = Literal["sum", "avg", "max", "min", "count"]

# A target needs some past on its grid before any model (even predict_linear) says anything useful.
MIN_HISTORY_STEPS: Final = 10
# A trained model's input window: twice the longest horizon within these bounds, and at most a third
# of the history. Fewer than 24 steps hold too little of the recent past to read a trend from; more
# than 288 make every recurrent step slower on a CPU for little gain (a 2-day window of 1-minute
# steps would also leave a single training window).
MIN_INPUT_STEPS: Final = 24
MAX_INPUT_STEPS: Final = 288
# Prometheus's default --query.lookback-delta: an instant query finds a series only when its newest
# sample is at most this old, so forecasts written less often than this flicker in and out.
LOOKBACK_S: Final = 300.0
_TARGET_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateConfig:
    """``op by (by...)`` applied as series arrive, like a recording rule ``sum by (...) (selector)``."""

    op: AggregationOp
    # No labels: one series for the whole selector, as `sum(x)` gives.
    by: tuple[str, ...] = ()
    # Prometheus's default --query.lookback-delta: a member counts while its last sample is this recent.
    lookback: PositiveSeconds = 300.0
    # How long a step waits for late samples before it is final (remote-write delivers in seconds).
    settle: Seconds = 120.0

    def problems(self) -> Problems:
        yield from label_name_problems("by", self.by)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    # LSTM: the model this daemon exists for; per series, the trainer fits every series of a target
    # as one stacked program, so per-series costs one tensor program, not one Python loop per series.
    kind: ModelKind = "lstm"
    # `auto`: a network per series for targets of up to 128 series, where they measured most
    # accurate, and one shared network (`global`) above that, where a network each cannot converge
    # within an hour's budget on a CPU (forecast.neural.model.auto_scope). Or either one, always.
    scope: ModelScope = "auto"
    # Read the threshold's headroom (value / threshold, per step) as an input channel, so "85% and
    # climbing" differs from "40% and climbing". Needs a threshold and a model that trains. Off by
    # default until the quota alerts measure better with it (bench/accuracy.py); models trained
    # without it keep being loaded, and turning it on retrains them.
    headroom: bool = False
    # After each training, widen or narrow each quantile's distance from the median so that it holds
    # on the validation windows (the newest part of the history, which no training step saw). Off by
    # default: on the real series the bands already hold; the storage-quota target turns it on.
    calibrate: bool = False

    @property
    def initial_scope(self) -> Literal["per_series", "global"]:
        """The scope before any training: ``auto`` starts per series, as a baseline's forecasts are."""
        return "per_series" if self.scope == "auto" else self.scope

    @property
    def trains(self) -> bool:
        """Whether the kind learns from the history, and so needs enough of it to train."""
        return self.kind in get_args(TrainedKind)


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdConfig:
    """What a forecast is compared with: a constant ``value``, or a limit series joined ``on`` labels.

    The threshold is ``value * ratio`` or ``latest limit * ratio``; e.g. ratio 0.9 warns at 90% of a quota.
    """

    value: float | None = None
    selector: Selector | None = None
    # Labels that pair a forecast series with its limit series (many-to-one). Empty: one limit for all.
    on: tuple[str, ...] = ()
    ratio: PositiveFloat = 1.0
    # "above": time until the forecast rises to the threshold (quotas, capacity); "below": until it
    # falls to it (free space, remaining budget).
    direction: Literal["above", "below"] = "above"

    def problems(self) -> Problems:
        if (self.value is None) == (self.selector is None):
            got = "neither" if self.value is None else "both"
            yield "", f"exactly one of value, selector must be set (got {got})"
        if self.value is not None and not math.isfinite(self.value):
            yield "value", f"must be a finite number (got {show(self.value)})"
        if self.value is not None and self.on:
            yield "on", "only applies with selector (a constant value has no labels to join on)"
        yield from label_name_problems("on", self.on)
        if not math.isfinite(self.ratio):
            yield "ratio", f"must be a finite number (got {show(self.ratio)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetConfig:
    """One forecasting target: which series, on which grid, which horizons, which model.

    >>> from tsf_adapter.config.decoder import decode_section
    >>> t = decode_section(TargetConfig, {"name": "disk", "selector": "node_filesystem_avail_bytes"})
    >>> t.horizons, t.quantiles, t.step_ms
    ((3600.0, 21600.0), (0.1, 0.5, 0.9), 60000)
    """

    # Names the target in logs, self-metrics and the store; letters, digits, '_', '.', '-'.
    name: str
    selector: Selector
    aggregate: AggregateConfig | None = None
    # One minute: a whole number of scrape intervals for the usual 15s-1m, fine enough for hour-scale
    # horizons, and 1,440 steps a day for the models to learn daily patterns from.
    step: PositiveSeconds = 60.0
    # Two days on the grid (2,880 steps, 23 KiB per series): two daily cycles for the models and
    # seasonal_naive, and far more than predict_linear over the longest default horizon needs.
    history: PositiveSeconds = 2 * 86_400.0
    # 1h for "soon", 6h for "plan today"; longer horizons need a longer history (2x, checked).
    horizons: tuple[PositiveSeconds, ...] = (3600.0, 6 * 3600.0)
    # The median and an 80% interval: wide enough to act on, not so wide that it says nothing.
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    model: ModelConfig = field(default_factory=ModelConfig)
    # New series wait at most this long for a model of their own (predict_linear until then), and an
    # hour of new data is about the least that changes a model trained on two days.
    retrain_every: PositiveSeconds = 3600.0
    # Under Prometheus's 5m lookback, so the forecast series never drop out of instant queries; a
    # forecast from a trained model is about 1 ms per series, so each minute costs little.
    forecast_every: PositiveSeconds = 60.0
    threshold: ThresholdConfig | None = None
    # Input series this target keeps (members, for an aggregate); a new one beyond it is refused
    # and counted, the ones it has keep working (a target of 10,000 series fits well within it).
    max_series: PositiveInt = 50_000

    @property
    def step_ms(self) -> int:
        return round(self.step * 1000)

    @property
    def horizon_steps(self) -> tuple[int, ...]:
        """Each horizon in grid steps (a whole number: validated)."""
        return tuple(round(h * 1000) // self.step_ms for h in self.horizons)

    @property
    def history_steps(self) -> int:
        """The steps of the grid the history holds."""
        return round(self.history * 1000) // self.step_ms

    @property
    def input_steps(self) -> int:
        """A trained model's input window in steps (rule at ``MIN_INPUT_STEPS``).

        >>> from tsf_adapter.config.decoder import decode_section
        >>> decode_section(TargetConfig, {"name": "d", "selector": "disk"}).input_steps  # 1m step, 6h, 2d
        288
        """
        return _input_steps(self.history_steps, max(self.horizon_steps))

    @property
    def train_steps(self) -> int:
        """The fewest grid steps a trained model of this target learns from (see ``core.windows``)."""
        return min_train_steps(self.input_steps, max(self.horizon_steps))

    @property
    def metric_name(self) -> str | None:
        """The name the selector pins with ``=``: what aggregated forecast series are named after."""
        return self.selector.metric_name

    def summary(self) -> str:
        """One line: what the target reads, on which grid, forecast how and against what.

        >>> from tsf_adapter.config.decoder import decode_section
        >>> section = {"name": "disk", "selector": "node_filesystem_avail_bytes", "horizons": ["1h", "24h"]}
        >>> print(decode_section(TargetConfig, {**section, "history": "3d"}).summary().replace(", ", "\\n"))
        disk: node_filesystem_avail_bytes
        step 1m
        history 3d
        horizons 1h 24h
        quantiles 0.1 0.5 0.9
        model lstm (scope auto)
        retrain every 1h
        forecast every 1m
        no threshold
        """
        parts = [f"{self.name}: {self.selector}"]
        if self.aggregate is not None:
            parts.append(f"{self.aggregate.op} by ({', '.join(self.aggregate.by)})")
        parts += [
            f"step {show_seconds(self.step)}",
            f"history {show_seconds(self.history)}",
            "horizons " + " ".join(show_seconds(h) for h in self.horizons),
            "quantiles " + " ".join(f"{q:g}" for q in self.quantiles),
        ]
        model = self.model
        options = [f"scope {model.scope}"] if model.trains else []
        options += [name for name, on in (("headroom", model.headroom), ("calibrate", model.calibrate)) if on]
        parts.append(f"model {model.kind}" + (f" ({', '.join(options)})" if options else ""))
        parts += [f"retrain every {show_seconds(self.retrain_every)}"] if model.trains else []
        parts.append(f"forecast every {show_seconds(self.forecast_every)}")
        parts.append(_threshold_summary(self.threshold))
        return ", ".join(parts)

    def problems(self) -> Problems:
        if not _TARGET_NAME.fullmatch(self.name):
            rule = "must be letters, digits, '_', '.' or '-', starting with a letter or digit"
            yield "name", f"{rule} (got {show(self.name)})"
        step_ms = self.step * 1000
        if step_ms != round(step_ms):
            yield "step", f"must be a whole number of milliseconds (got {self.step}s)"
            return
        yield from self._horizon_problems()
        yield from self._quantile_problems()
        if self.retrain_every < self.forecast_every:
            got = f"{show_seconds(self.retrain_every)} < {show_seconds(self.forecast_every)}"
            yield "retrain_every", f"must be >= forecast_every (got {got})"
        agg = self.aggregate
        if agg is not None and METRIC_NAME_LABEL not in agg.by and self.metric_name is None:
            yield (
                "aggregate.by",
                (
                    "aggregated series have no metric name to name the forecasts after: "
                    "pin one in the selector (name{...}) or add __name__ to by"
                ),
            )
        if self.threshold is not None:
            yield from self._threshold_problems(self.threshold)
        if self.model.headroom and self.threshold is None:
            yield "model.headroom", "needs a threshold to measure the headroom to (got no threshold)"
        elif self.model.headroom and not self.model.trains:
            yield "model.headroom", f"only applies to a model that trains (got kind {self.model.kind})"
        if self.model.calibrate and not self.model.trains:
            yield "model.calibrate", f"only applies to a model that trains (got kind {self.model.kind})"

    def _horizon_problems(self) -> Problems:
        if not self.horizons:
            yield "horizons", "must list at least one horizon (got [])"
            return
        step = show_seconds(self.step)
        for i, h in enumerate(self.horizons):
            if round(h * 1000) % self.step_ms:
                yield (
                    f"horizons[{i}]",
                    f"must be a whole number of steps (got {show_seconds(h)}, step {step})",
                )
            if i and h <= self.horizons[i - 1]:
                got = f"{show_seconds(h)} after {show_seconds(self.horizons[i - 1])}"
                yield f"horizons[{i}]", f"must be greater than the one before it (got {got})"
        longest = max(self.horizons)
        if self.history < 2 * longest:
            got = f"{show_seconds(self.history)} < 2 x {show_seconds(longest)}"
            yield "history", f"must be at least twice the longest horizon (got {got})"
        elif self.history < MIN_HISTORY_STEPS * self.step:
            got = f"{show_seconds(self.history)} < {MIN_HISTORY_STEPS} x {step}"
            yield "history", f"must hold at least {MIN_HISTORY_STEPS} steps (got {got})"
        elif self.model.trains and self.history_steps < self.train_steps:
            yield "history", self._too_short_to_train()

    def _too_short_to_train(self) -> str:
        """Why the history can never hold a training window, and the least history that can."""
        horizon = max(self.horizon_steps)
        # The window grows with the history, so the least history that trains is the first n whose own
        # window fits in it; climbing from the configured history reaches it (both only grow with n).
        n = self.history_steps
        while (need := min_train_steps(_input_steps(n, horizon), horizon)) > n:
            n = need
        window, val = _input_steps(n, horizon), validation_steps(n, horizon)
        parts = f"{window} input + {horizon} horizon + {val} validation"
        got = f"{show_seconds(self.history)} = {self.history_steps} steps of {show_seconds(self.step)}"
        return (
            f"must hold at least {n} steps ({show_seconds(n * self.step)}) for model {self.model.kind} "
            f"to train: {parts} (got {got})"
        )

    def _quantile_problems(self) -> Problems:
        for i, q in enumerate(self.quantiles):
            if not 0 < q < 1:
                yield f"quantiles[{i}]", f"must be strictly between 0 and 1 (got {show(q)})"
            elif i and q <= self.quantiles[i - 1]:
                got = f"{show(q)} after {show(self.quantiles[i - 1])}"
                yield f"quantiles[{i}]", f"must be greater than the one before it (got {got})"
        if 0.5 not in self.quantiles:
            # The median is the point forecast: forecast_error and the baselines are scored on it.
            yield "quantiles", f"must include 0.5, the median (got {list(self.quantiles)})"

    def _threshold_problems(self, threshold: ThresholdConfig) -> Problems:
        if threshold.selector is None:
            return
        agg = self.aggregate
        if agg is not None:
            missing = [name for name in threshold.on if name not in agg.by]
            if missing:
                got = f"{', '.join(missing)} not in [{', '.join(agg.by)}]"
                yield "threshold.on", f"must be labels of aggregate.by, the only labels left (got {got})"
        name = threshold.selector.metric_name
        if name is not None and name == self.metric_name:
            yield "threshold.selector", f"must select another metric than the target's own (got {name!r})"


def _input_steps(history_steps: int, horizon_steps: int) -> int:
    wanted = min(max(2 * horizon_steps, MIN_INPUT_STEPS), MAX_INPUT_STEPS)
    return max(1, min(wanted, history_steps // 3))


def _threshold_summary(threshold: ThresholdConfig | None) -> str:
    """``threshold above 0.9 x storage_quota_bytes on (user)``, ``threshold below 0``, ``no threshold``."""
    if threshold is None:
        return "no threshold"
    of = f"{threshold.value:g}" if threshold.selector is None else str(threshold.selector)
    ratio = "" if threshold.ratio == 1.0 else f"{threshold.ratio:g} x "
    on = f" on ({', '.join(threshold.on)})" if threshold.on else ""
    return f"threshold {threshold.direction} {ratio}{of}{on}"
