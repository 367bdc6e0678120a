"""Rolling-origin backtest: forecasts at many past origins, written as CSV, scored against what happened.

For each input series the origins are ``first + F * (last - first)`` rounded UP
to a multiple of ``origin_every`` (unix time), then every ``origin_every``
while ``origin + horizon <= last`` (or they start at a given unix time). At
each origin every model gets a window of the series on a regular grid and
forecasts the grid steps that cover the horizon.

Series are run as the daemon runs a target: the inputs that share a grid step
and a first origin form one group, and each model is fitted once per group, on
all of its series side by side (one stacked fit of per-series networks, or one
network for all with ``scope="global"``), then forecasts every series of the
group at each origin in one call. Groups of one are the plain per-series run.

No leakage, by construction: the grid of an origin is built from the samples
with ``timestamp <= origin`` only (:func:`grid_values` never sees the others),
and a model that learns is fitted on the samples up to the first origin, or
up to the latest retraining origin with ``retrain_every``; the series of a
group share their origins, so a group's fit sees no series past that origin.

Grid: as in the daemon's store, grid step ``k`` has timestamp ``k * step`` and
holds the last sample in ``(k*step - step, k*step]``; a step without a sample
is a gap (NaN). The last column of an origin's window is the last grid step at
or before the origin.

Mapping forecasts to samples: rows are written at the INPUT samples'
timestamps in ``(origin, origin + horizon]``, each the linear interpolation
between the two forecast grid steps around it; a sample before the first
forecast step takes that step's value (no value is invented at the origin).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.errors import ConfigError, InputError, TrainingError
from tsf_adapter.core.grid import GridBatch, grid_values
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.series import Labels, format_labels, make_labels
from tsf_adapter.forecast.base import Forecaster, check_forecast
from tsf_adapter.forecast.neural.headroom import HeadroomBatch, headroom
from tsf_adapter.forecast.options import DEFAULT_QUANTILES, ModelOptions, ScopeSetting
from tsf_adapter.forecast.registry import check_models, create_model, model_window_s
from tsf_adapter.tools.csvio import ForecastRows, ForecastWriter, InputSeries, iter_inputs
from tsf_adapter.tools.scoring import score_all, summary_table

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

TARGET = "backtest"
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestSpec:
    """The backtest's settings, validated; durations in seconds, ``ConfigError`` for bad ones.

    >>> BacktestSpec(history_s=43200, horizon_s=21600, origin_every_s=3600, start_frac=0.6,
    ...              models=("last_value",)).quantiles
    (0.1, 0.5, 0.9)
    """

    history_s: float
    horizon_s: float
    origin_every_s: float
    models: tuple[str, ...]
    start_frac: float | None = None
    start_origin_s: float | None = None
    step_s: float | None = None
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    retrain_every: int | None = None
    device: str = "cpu"
    # per_series: a network per series (trained stacked, per group); global: one per group; auto: as
    # the daemon chooses, by the size of the group (forecast.neural.model.auto_scope).
    scope: ScopeSetting = "auto"
    # Seconds one training run may take, per series of the group it trains (not a command-line flag:
    # benchmarks bound their runtime).
    train_budget_s: float | None = None
    # Training settings of the learning models (not a command-line flag either; see ModelOptions).
    train_settings: tuple[tuple[str, Any], ...] = ()
    # Each input's limit by input name, a fixed value or a limit series: the neural models then read
    # the headroom (value / (limit * limit_ratio), see forecast.neural.headroom) as the daemon's do
    # with `model: {headroom: true}`. Only limit samples at or before an origin are seen; an input
    # without an entry has no known limit. None: no headroom channel.
    limits: Mapping[str, float | InputSeries] | None = field(default=None, compare=False)
    limit_ratio: float = 1.0
    limit_direction: Literal["above", "below"] = "above"

    def __post_init__(self) -> None:
        for name in ("history_s", "horizon_s", "origin_every_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name[:-2].replace('_', '-')} must be > 0")
        if self.step_s is not None and not self.step_s >= 1:
            raise ConfigError(f"--step must be at least 1s (got {self.step_s}s)")
        if (self.start_frac is None) == (self.start_origin_s is None):
            raise ConfigError("give exactly one of --start-frac and --start-origin")
        if self.start_frac is not None and not 0.0 <= self.start_frac <= 1.0:
            raise ConfigError(f"--start-frac must be within [0, 1] (got {self.start_frac})")
        if self.retrain_every is not None and self.retrain_every < 1:
            raise ConfigError(f"--retrain-every must be >= 1 (got {self.retrain_every})")
        qs = self.quantiles
        if list(qs) != sorted(set(qs)) or not all(0.0 < q < 1.0 for q in qs) or 0.5 not in qs:
            raise ConfigError(f"--quantiles must be increasing, within (0, 1) and include 0.5 (got {qs})")
        check_models(self.models)
        if not (0.0 < self.limit_ratio < math.inf):
            raise ConfigError(f"limit_ratio must be a finite number > 0 (got {self.limit_ratio})")


# --- origins and grids: pure functions --------------------------------------------------------


def origins(timestamps_ms: IntArray, spec: BacktestSpec) -> IntArray:
    """Forecast origins (unix ms) of one series, per the rule in the module docstring.

    >>> spec = BacktestSpec(history_s=60, horizon_s=600, origin_every_s=300, start_frac=0.5,
    ...                     models=("last_value",))
    >>> origins(np.array([0, 1_000_000, 2_100_000]), spec).tolist()  # 1.05e6 rounds up to 1.2e6
    [1200000, 1500000]
    """
    first, last = int(timestamps_ms[0]), int(timestamps_ms[-1])
    every = round(spec.origin_every_s * 1000)
    if spec.start_frac is not None:
        at = first + spec.start_frac * (last - first)
        start = math.ceil(at / every) * every
    else:
        assert spec.start_origin_s is not None
        start = round(spec.start_origin_s * 1000)
    horizon = round(spec.horizon_s * 1000)
    if start + horizon > last:
        return np.zeros(0, dtype=np.int64)
    out = np.arange(start, last - horizon + 1, every, dtype=np.int64)
    return out[out >= first]


def median_step_ms(timestamps_ms: IntArray) -> int:
    """The median sample interval rounded to a whole second (at least 1s): the default grid step."""
    if len(timestamps_ms) < 2:
        return 1000
    return max(1000, round(float(np.median(np.diff(timestamps_ms))) / 1000) * 1000)


def at_samples(grid_ts_ms: IntArray, forecast: FloatArray, sample_ts_ms: IntArray) -> FloatArray:
    """``forecast[quantile, step]`` on the grid → ``[quantile, sample]`` by linear interpolation."""
    out = np.empty((forecast.shape[0], len(sample_ts_ms)))
    x = sample_ts_ms.astype(np.float64)
    xp = grid_ts_ms.astype(np.float64)
    for q in range(forecast.shape[0]):
        out[q] = np.interp(x, xp, forecast[q])
    return out


# --- the run ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Collected:
    """Rows of one (series, model) kept for the summary."""

    quantiles: tuple[float, ...]
    origins: list[IntArray] = field(default_factory=list)
    stamps: list[IntArray] = field(default_factory=list)
    values: list[FloatArray] = field(default_factory=list)  # [sample, quantile]

    def rows(self, series: str, model: str) -> ForecastRows:
        return ForecastRows(
            series,
            model,
            self.quantiles,
            np.concatenate(self.origins),
            np.concatenate(self.stamps),
            np.concatenate(self.values),
        )


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """What a run produced: every (series, model)'s rows, the inputs, and the first origin of each series."""

    forecasts: list[ForecastRows]
    inputs: dict[str, InputSeries]
    rows_written: int
    elapsed_s: float


class Progress:
    """A line on stderr at most every ``every_s`` seconds, so long runs show they are alive."""

    def __init__(self, total: int, out: TextIO | None, every_s: float = 2.0) -> None:
        self.total = max(1, total)
        self.done = 0
        self._out = out
        self._every = every_s
        self._start = time.monotonic()
        self._last = self._start
        self._printed = False

    def advance(self, units: int, where: str) -> None:
        self.done += units
        now = time.monotonic()
        if self._out is not None and now - self._last >= self._every:
            self._last = now
            self._printed = True
            elapsed = now - self._start
            left = elapsed * (self.total - self.done) / max(1, self.done)
            pct = 100 * self.done / self.total
            print(f"backtest: {pct:3.0f}% {where}, {elapsed:.0f}s elapsed, ~{left:.0f}s left", file=self._out)

    def finish(self, rows: int) -> float:
        elapsed = time.monotonic() - self._start
        if self._out is not None and self._printed:
            print(f"backtest: done, {rows} rows in {elapsed:.1f}s", file=self._out)
        return elapsed


def plan(inputs: Sequence[InputSeries], spec: BacktestSpec) -> dict[str, IntArray]:
    """Origins per series; ``InputError`` for a series too short to have any."""
    out: dict[str, IntArray] = {}
    for s in inputs:
        if len(s) < 2:
            raise InputError(f"{s.name}: too short: {len(s)} sample(s), a backtest needs at least 2")
        found = origins(s.timestamps_ms, spec)
        if len(found) == 0:
            span_h = (int(s.timestamps_ms[-1]) - int(s.timestamps_ms[0])) / 3.6e6
            raise InputError(
                f"{s.name}: too short: {span_h:.1f}h of samples leave no origin with "
                f"origin + horizon ({spec.horizon_s / 3600:g}h) <= last sample"
            )
        out[s.name] = found
    return out


def groups(
    inputs: Sequence[InputSeries], spec: BacktestSpec, all_origins: dict[str, IntArray]
) -> list[list[InputSeries]]:
    """Inputs that share a grid step and a first origin, in input order: each is trained as one target.

    >>> spec = BacktestSpec(history_s=60, horizon_s=60, origin_every_s=60, start_origin_s=120,
    ...                     models=("last_value",), step_s=60)
    >>> ts = np.arange(0, 600_000, 60_000)
    >>> a, b, c = (InputSeries(n, ts, ts * 1.0) for n in "abc")
    >>> [[s.name for s in g] for g in groups([a, b, c], spec, {n: origins(ts, spec) for n in "abc"})]
    [['a', 'b', 'c']]
    """
    found: dict[tuple[int, int], list[InputSeries]] = {}
    for s in inputs:
        step_ms = _step_ms(s, spec)
        found.setdefault((step_ms, int(all_origins[s.name][0])), []).append(s)
    return list(found.values())


def _step_ms(series: InputSeries, spec: BacktestSpec) -> int:
    return round(spec.step_s * 1000) if spec.step_s is not None else median_step_ms(series.timestamps_ms)


def run_backtest(
    inputs: Sequence[InputSeries],
    spec: BacktestSpec,
    out: TextIO,
    *,
    labels: dict[str, Labels] | None = None,
    progress: TextIO | None = sys.stderr,
) -> BacktestResult:
    """Run every model at every origin of every series; stream rows to ``out``; keep them for scoring.

    ``labels`` gives the label set a series is shown to models with (Prometheus
    inputs); otherwise ``{series="<name>"}``. Rows come group by group, origin by
    origin, series by series within an origin.
    """
    all_origins = plan(inputs, spec)
    meter = Progress(sum(len(o) for o in all_origins.values()) * len(spec.models), progress)
    writer = ForecastWriter(out)
    collected: dict[str, dict[str, _Collected]] = {}
    for n, group in enumerate(groups(inputs, spec, all_origins), start=1):
        group_labels = [(labels or {}).get(s.name) or make_labels({"series": s.name}) for s in group]
        runner = _GroupRun(group, group_labels, spec, _step_ms(group[0], spec), writer)
        counts = [len(all_origins[s.name]) for s in group]
        name = group[0].name if len(group) == 1 else f"{group[0].name} and {len(group) - 1} more"
        # The group shares its first origin and spacing: the longest series' origins hold every other's.
        longest = max(group, key=lambda s: len(all_origins[s.name]))
        for i, origin in enumerate(all_origins[longest.name]):
            active = [j for j, c in enumerate(counts) if c > i]
            runner.forecast(i, int(origin), active)
            meter.advance(len(spec.models) * len(active), f"group {n} ({name}) origin {i + 1}/{max(counts)}")
        for s, by_model in zip(group, runner.collected, strict=True):
            collected[s.name] = by_model
    elapsed = meter.finish(writer.rows)
    forecasts = [c.rows(s.name, m) for s in inputs for m, c in collected[s.name].items()]
    return BacktestResult(forecasts, {s.name: s for s in inputs}, writer.rows, elapsed)


class _GroupRun:
    """All models on one group of series (same step, same origins), origin after origin."""

    def __init__(
        self,
        series: Sequence[InputSeries],
        labels: Sequence[Labels],
        spec: BacktestSpec,
        step_ms: int,
        writer: ForecastWriter,
    ) -> None:
        self.series = list(series)
        self.labels = tuple(labels)
        self.spec = spec
        self.step_ms = step_ms
        self.writer = writer
        budget = None if spec.train_budget_s is None else spec.train_budget_s * len(self.series)
        options = ModelOptions(
            history_s=spec.history_s,
            horizon_s=spec.horizon_s,
            step_s=step_ms / 1000,
            quantiles=spec.quantiles,
            device=spec.device,
            train_budget_s=budget,
            scope=spec.scope,
            train_settings=spec.train_settings,
            headroom=spec.limits is not None,
        )
        self.models: dict[str, Forecaster] = {m: create_model(m, options) for m in spec.models}
        self.window_steps = {m: int(model_window_s(m, options) * 1000 // step_ms) + 1 for m in spec.models}
        self.collected = [{m: _Collected(self.models[m].quantiles) for m in spec.models} for _ in self.series]
        first_step = min(-(-int(s.timestamps_ms[0]) // step_ms) for s in self.series)
        self.first_ms = first_step * step_ms

    def batch(self, rows: Sequence[int], cutoff_ms: int, first_ms: int, end_ms: int) -> GridBatch:
        """Rows ``rows`` of the group on the grid ``[first_ms, end_ms]``, samples ``<= cutoff_ms`` only."""
        n = (end_ms - first_ms) // self.step_ms + 1
        values = np.empty((len(rows), n))
        for r, j in enumerate(rows):
            s = self.series[j]
            values[r] = grid_values(s.timestamps_ms, s.values, cutoff_ms, first_ms, n, self.step_ms)
        batch = GridBatch(TARGET, tuple(self.labels[j] for j in rows), values, first_ms, self.step_ms)
        if self.spec.limits is None:
            return batch
        limits = np.stack([self._limit(self.series[j].name, cutoff_ms, first_ms, n) for j in rows])
        channel = headroom(values, limits, ratio=self.spec.limit_ratio, direction=self.spec.limit_direction)
        return HeadroomBatch.of(batch, channel)

    def _limit(self, name: str, cutoff_ms: int, first_ms: int, n: int) -> FloatArray:
        """The limit of input ``name`` on the grid ``first_ms + j * step``, samples ``<= cutoff_ms`` only.

        A limit series' last sample before the grid starts holds at its first step (a limit
        exported rarely still applies), as the daemon's store keeps a limit's history.
        """
        assert self.spec.limits is not None
        limit = self.spec.limits.get(name)
        if limit is None:
            return np.full(n, np.nan)
        if not isinstance(limit, InputSeries):
            return np.full(n, float(limit))
        out = grid_values(limit.timestamps_ms, limit.values, cutoff_ms, first_ms, n, self.step_ms)
        before = int(np.searchsorted(limit.timestamps_ms, min(cutoff_ms, first_ms), side="right"))
        if np.isnan(out[0]) and before:
            out[0] = limit.values[before - 1]
        return out

    def forecast(self, index: int, origin_ms: int, active: Sequence[int]) -> None:
        step = self.step_ms
        end = origin_ms // step * step
        horizon_end = origin_ms + round(self.spec.horizon_s * 1000)
        h_steps = -(-(horizon_end - end) // step)
        retrain = index == 0 or (self.spec.retrain_every is not None and index % self.spec.retrain_every == 0)
        for name, model in self.models.items():
            if model.NEEDS_FIT and retrain:
                try:
                    model.fit(self.batch(range(len(self.series)), origin_ms, self.first_ms, end))
                except TrainingError as exc:
                    # Not fatal: the model forecasts NaN (counted as missing) until a retrain works.
                    names = ", ".join(self.series[j].name for j in range(len(self.series)))
                    logger.warning("%s: %s: training failed at origin %d: %s", names, name, origin_ms, exc)
            batch = self.batch(active, origin_ms, end - (self.window_steps[name] - 1) * step, end)
            pred = model.predict(batch, h_steps)
            check_forecast(model, batch, h_steps, pred)
            grid_ts = batch.horizon_timestamps_ms(h_steps)
            for r, j in enumerate(active):
                s = self.series[j]
                lo, hi = np.searchsorted(s.timestamps_ms, [origin_ms, horizon_end], side="right")
                sample_ts = s.timestamps_ms[lo:hi]
                values = at_samples(grid_ts, pred[r], sample_ts)  # [q, sample]
                self.writer.write_block(s.name, name, origin_ms, sample_ts, model.quantiles, values)
                c = self.collected[j][name]
                c.origins.append(np.full(len(sample_ts), origin_ms, dtype=np.int64))
                c.stamps.append(sample_ts)
                c.values.append(values.T)


# --- Prometheus as the input ----------------------------------------------------------------------


ReadApi = Literal["remote_read", "export"]
"""How the inputs are read: Prometheus's remote-read, or a JSON-lines export (VictoriaMetrics)."""


def read_url(url: str, api: ReadApi = "remote_read") -> str:
    """``http://host:9090`` → ``http://host:9090/api/v1/read`` (``/api/v1/export`` for ``export``);
    a URL with a path is kept as given.

    >>> read_url("http://vm:8428", "export"), read_url("http://p:9090/prefix/api/v1/read")
    ('http://vm:8428/api/v1/export', 'http://p:9090/prefix/api/v1/read')
    """
    base = url.rstrip("/")
    path = "/api/v1/export" if api == "export" else "/api/v1/read"
    return base if base.count("/") > 2 else base + path


async def read_prometheus(
    url: str, selector: Selector, start_ms: int, end_ms: int, api: ReadApi = "remote_read"
) -> tuple[list[InputSeries], dict[str, Labels]]:
    """Each series the selector matches becomes one input, named by its labels; staleness markers
    (and any NaN) are gaps, so they are dropped here."""
    import aiohttp

    from tsf_adapter.config import RemoteReadConfig
    from tsf_adapter.remote.read_client import RemoteReadClient

    async with aiohttp.ClientSession() as session:
        cfg = RemoteReadConfig(url=read_url(url, api), timeout=300.0, api=api)
        client = RemoteReadClient(cfg, session)
        found = await client.read(selector, start_ms, end_ms)
    inputs: list[InputSeries] = []
    labels: dict[str, Labels] = {}
    for s in found:
        keep = ~np.isnan(s.values)
        name = format_labels(s.labels)
        inputs.append(InputSeries(name, s.timestamps[keep], s.values[keep]))
        labels[name] = s.labels
    if not inputs:
        raise InputError(f"{url}: no series match {selector} between the given --start and --end")
    return inputs, labels


# --- the command ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestRun:
    """One ``tsf-adapter backtest``: the spec, where the inputs come from, where forecasts go.

    The command line fills it (``cli``); inputs are CSV files or a Prometheus read with a
    selector over ``[start_ms, end_ms]``, exactly one of the two.
    """

    spec: BacktestSpec
    out: Path
    inputs: tuple[Path, ...] = ()
    prometheus: str | None = None
    selector: Selector | None = None
    start_ms: int = 0
    end_ms: int = 0
    read_api: ReadApi = "remote_read"


def load_inputs(run: BacktestRun) -> tuple[list[InputSeries], dict[str, Labels]]:
    """CSV files (``inputs``) or a Prometheus (``prometheus`` with ``selector``)."""
    if run.inputs:
        return list(iter_inputs(run.inputs)), {}
    assert run.prometheus is not None and run.selector is not None
    return asyncio.run(read_prometheus(run.prometheus, run.selector, run.start_ms, run.end_ms, run.read_api))


def run_command(run: BacktestRun, stdout: TextIO | None = None) -> int:
    """``tsf-adapter backtest``: forecasts to ``out``, the summary table to stdout."""
    inputs, labels = load_inputs(run)
    plan(inputs, run.spec)  # a too-short series fails before anything is written
    try:
        handle = run.out.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{run.out}: cannot write: {exc.strerror}") from None
    with handle:
        result = run_backtest(inputs, run.spec, handle, labels=labels)
    stdout = stdout or sys.stdout
    print(summary_table(score_all(result.forecasts, result.inputs)), file=stdout)
    print(f"\n{result.rows_written} rows written to {run.out} in {result.elapsed_s:.1f}s", file=stdout)
    return 0
