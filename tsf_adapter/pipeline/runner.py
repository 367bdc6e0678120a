"""One target's schedule: forecast every ``forecast_every``, retrain every ``retrain_every``.

One :class:`TargetRunner` per target (the scheduler holds them), one asyncio task each, so a
slow or broken target never delays another. Every cycle of a runner is wrapped: an exception is
logged on one line with the target's name and counted in a metric, and the loop goes on
(``asyncio.CancelledError`` alone ends it).

Threads, and why:

* the **ingest** thread (the receiver's single worker) owns the store, so every
  ``Store.batch`` read runs there and no lock is needed; ``batch()`` returns
  copies, which are then free to cross to the other threads;
* the **forecast** thread runs the forecast itself (model and baseline predict,
  forecast-error tracking, output rows); the error tracker and output builder of
  a target are only ever touched there, one forecast of a target at a time. The
  builder makes there what the remote-write queue sends, staleness markers
  included, so the event loop only hands it on (``RunnerDeps.send``);
* the **train** thread runs ``fit`` and saves the model. Training is a background
  task of the runner: forecasts keep coming (from the previous model, or the
  ``predict_linear`` baseline) while it runs, and a training that is still
  running when the next one is due makes that cycle skip, counted in
  ``tsf_adapter_training_skipped_total{reason="overrun"}``.

Waiting for history is not a failure: a training cycle whose stored grid is still shorter
than the model needs (:attr:`TargetConfig.train_steps`: one input window and one horizon
before the validation split) is skipped without counting a failure, logged once at INFO
with the steps it has and needs, counted in
``tsf_adapter_training_skipped_total{reason="waiting_for_history"}``, and shown by
``tsf_adapter_target_waiting_for_history`` (1 until a cycle finds enough history). The
target keeps forecasting with what it has meanwhile (``predict_linear``, or a loaded model).

A neural target forecasts each series with its own model once that series has
one, and with ``predict_linear`` over the stored history until then (a series
seen for the first time, or every series before the first training); the
``model`` label of ``m:forecast_model_info`` says which (for ``auto``, the architecture chosen
for that series; ``tsf_adapter_target_auto_series`` counts them, so the target's kind shows in
the daemon's metrics). A point forecast (every
baseline) is written at every configured quantile: a band of zero width, which
keeps every quantile's series and threshold alert alive, and the model label
tells that it is a point forecast.

Schedules use the injected clock's wall time. Each next due time is the previous
one plus the period shortened by up to ``JITTER`` of it (never lengthened, so a
``forecast_every`` of 5m still beats Prometheus's 5m lookback); a runner that
fell behind starts afresh from now instead of catching up in a burst.

Stopping: ``fit`` reads time from the runner's training clock, which jumps to
infinity when the daemon stops or the runner is aborted, so a long training
ends at its next step with its best weights so far (the trainer treats that
as a spent budget, not an error). On daemon shutdown that model is still saved,
and it is never worse than the saved one: series whose training did not start
keep their previous weights. A runner aborted by a reload saves nothing.

Memory: the forecast errors and the crossing calibration (what the target learned from its own
past forecasts) are written to ``state_dir/<target>.memory.npz`` every ten minutes, after every
saved training and at a clean stop, and read back when the runner is created
(:mod:`tsf_adapter.pipeline.memory`), so a restart does not reset ``m:forecast_error`` or the
calibration to nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from tsf_adapter.config import TargetConfig
from tsf_adapter.core.clock import Clock, SystemClock
from tsf_adapter.core.errors import TsfAdapterError
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import WriteItem
from tsf_adapter.forecast.base import Forecaster
from tsf_adapter.forecast.baselines import PredictLinear
from tsf_adapter.forecast.neural.headroom import HeadroomBatch, headroom
from tsf_adapter.pipeline.crossings import CrossingTracker
from tsf_adapter.pipeline.forecast_error import ForecastErrorTracker
from tsf_adapter.pipeline.memory import SAVE_EVERY_S as MEMORY_SAVE_EVERY_S
from tsf_adapter.pipeline.memory import load_memory, memory_path, save_memory
from tsf_adapter.pipeline.metrics import (
    AUTO_CANDIDATES,
    NONFINITE_FALLBACK,
    NONFINITE_LEFT_OUT,
    SKIP_OVERRUN,
    SKIP_WAITING,
    DaemonMetrics,
)
from tsf_adapter.pipeline.models import (
    fit_summary,
    is_neural,
    make_forecaster,
    model_config_hash,
    neural_parts,
    restore,
    serving_models,
    serving_scope,
    snapshot,
    watch_training,
)
from tsf_adapter.pipeline.output import ForecastOutput, ForecastOutputBuilder, ModelInfo, horizon_label
from tsf_adapter.pipeline.output.thresholds import limit_grid
from tsf_adapter.pipeline.status import Outcome, RunnerStatus, describe
from tsf_adapter.pipeline.targets import threshold_target
from tsf_adapter.store.store import Store

if TYPE_CHECKING:
    from tsf_adapter.forecast.neural.state import EpochProgress  # torch: only where a model trains

logger = logging.getLogger("tsf_adapter.scheduler")

FloatArray = npt.NDArray[np.float64]
_T = TypeVar("_T")

# Each period is shortened by up to this fraction, so targets with equal periods drift apart.
JITTER: Final = 0.1
# The share of retrain_every one training may take: the rest is slack for the forecast thread.
TRAIN_BUDGET_FRACTION: Final = 0.8
# A training's progress is logged at info at most this often (every epoch at debug).
PROGRESS_LOG_EVERY_S: Final = 60.0
# What forecasts a series that has no model of its own yet.
FALLBACK_MODEL: Final = "predict_linear"

Send = Callable[[Sequence[WriteItem]], Awaitable[None]]
"""Where remote-write output goes: ``WriteQueue.put``."""


class Prediction(NamedTuple):
    """A target's forecast of a batch, before it is built into rows."""

    values: FloatArray  # [series, quantiles, longest horizon]
    models: list[ModelInfo]  # each series' (model, scope)
    by_model: int  # series the model served
    broken: int  # series whose model forecast was there but not finite: predict_linear served


@dataclass(frozen=True, slots=True)
class Workers:
    """The three executors a runner uses (see the module docstring for why three)."""

    ingest: Executor
    forecast: Executor
    train: Executor


@dataclass(slots=True, kw_only=True)
class RunnerDeps:
    """What every runner shares: the store, the threads, the metrics and where outputs go.

    ``send`` is the remote-write queue's ``put``; without it (``output.mode: exposition``) a
    forecast is only kept as its runner's ``latest``, which ``/forecasts`` serves.
    """

    store: Store
    workers: Workers
    metrics: DaemonMetrics
    send: Send | None = None
    clock: Clock = field(default_factory=SystemClock)
    state_dir: Path | None = None
    future_timestamps: bool = False
    jitter: Callable[[], float] = random.random
    # Set when the daemon stops: running fits end at their next step.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Training device; "auto" uses CUDA when present.
    device: str = "auto"


class TargetRunner:
    """Forecasts and trains one target on its schedule; see the module docstring.

    ``forecaster`` replaces the model the target's config names (tests use it to plug in
    small fakes), and with it that model's least history to train on: a replacement trains on
    whatever there is. By default it comes from :func:`~tsf_adapter.pipeline.models.make_forecaster`.
    """

    def __init__(
        self, target: TargetConfig, deps: RunnerDeps, *, forecaster: Forecaster | None = None
    ) -> None:
        self.target = target
        self.name = target.name
        self.deps = deps
        self._abort = threading.Event()
        budget = TRAIN_BUDGET_FRACTION * target.retrain_every
        self.forecaster = forecaster or make_forecaster(
            target, budget_s=budget, clock=self._train_clock, device=deps.device
        )
        self.trains = self.forecaster.NEEDS_FIT
        # When the last training progress line was logged at info (monotonic seconds).
        self._progress_logged = -math.inf
        watch_training(self.forecaster, self._on_epoch)
        # The fewest grid steps a training needs; fewer is waiting for history, not a failure.
        self.train_steps = target.train_steps if forecaster is None and self.trains else 0
        self.waiting_for_history = False
        self.fallback = PredictLinear()
        self.builder = ForecastOutputBuilder(
            target, future_timestamps=deps.future_timestamps, end_series=deps.send is not None
        )
        self.tracker = ForecastErrorTracker(target.horizon_steps, target.step_ms)
        # With a threshold: past crossing probabilities and what happened, to calibrate the next ones.
        self.crossings = (
            None
            if target.threshold is None
            else CrossingTracker(target.horizon_steps, target.step_ms, direction=target.threshold.direction)
        )
        self.horizon_steps = max(target.horizon_steps)
        self._horizon_cols = np.asarray(target.horizon_steps, dtype=np.intp) - 1
        self._median = target.quantiles.index(0.5)
        limits = threshold_target(target)
        self._limits_name = None if limits is None else limits.name
        # The model reads the threshold's headroom: every batch it fits and forecasts on carries it.
        self.headroom = target.model.headroom and target.threshold is not None
        self.fitted = False  # a model exists (trained here or loaded)
        self.status = RunnerStatus()
        self.next_forecast = -math.inf
        self.next_train = -math.inf
        self.training: asyncio.Task[bool] | None = None
        # The target's latest forecast: the one copy, served by /forecasts in exposition mode.
        self.latest: ForecastOutput | None = None
        self._task: asyncio.Task[None] | None = None
        self.model_path = None if deps.state_dir is None else deps.state_dir / f"{self.name}.pt"
        self.memory_path = None if deps.state_dir is None else memory_path(deps.state_dir, self.name)
        self._memory_saved = time.monotonic()  # the last save (or load) of the forecast memory

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the runner's loop. Does not block."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"target {self.name}")

    async def stop(self, *, abort: bool = False) -> None:
        """Stop the loop and wait for a running training; ``abort`` also discards its result.

        Without ``abort`` (daemon shutdown, ``deps.stopping`` set) the training ends early and
        saves what it has; with it (a reload replaced this target) nothing is saved.
        """
        if abort:
            self._abort.set()
        if self._task is not None:
            self._task.cancel(f"target {self.name} stopping")
            await asyncio.gather(self._task, return_exceptions=True)
        if self.training is not None:
            await asyncio.gather(self.training, return_exceptions=True)
        if not abort:
            await self._call(self.deps.workers.forecast, self.save_memory)

    def load_memory(self) -> bool:
        """Take back the forecast errors and crossing calibration kept by a previous run (any thread,
        before the runner starts; logs why not when a file is there but unusable)."""
        if self.memory_path is None:
            return False
        kept = load_memory(self.memory_path, self.tracker, self.crossings)
        if kept is None:
            return False
        self.tracker, self.crossings = kept
        self._memory_saved = time.monotonic()
        logger.info(
            "target %s: loaded forecast memory of %d series from %s",
            self.name,
            self.tracker.n_series,
            self.memory_path,
        )
        return True

    def save_memory(self) -> None:
        """Forecast thread (which owns the trackers): write them to ``memory_path``; never raises."""
        self._memory_saved = time.monotonic()
        if self.memory_path is None:
            return
        try:
            save_memory(self.memory_path, self.tracker, self.crossings)
        except Exception as exc:
            log_failure(f"target {self.name}: saving the forecast memory failed", exc)

    def _train_clock(self) -> float:
        return math.inf if self._abort.is_set() or self.deps.stopping.is_set() else time.monotonic()

    def load(self) -> bool:
        """Load the saved model when it fits this target's settings (on any thread; logs why not)."""
        if self.model_path is None or not is_neural(self.target.model):
            return False
        from tsf_adapter.forecast.neural.persist import load_model

        found = load_model(self.model_path, expected_hash=model_config_hash(self.target))
        if found is None:
            return False
        if not restore(self.forecaster, found, self.target.model.scope):
            logger.warning(
                "target %s: model file %s does not fit the model, will retrain", self.name, self.model_path
            )
            return False
        self.fitted = True
        self.status.trained_at = found.meta.saved_at
        self.deps.metrics.model_trained.labels(self.name).set(found.meta.saved_at)
        logger.info(
            "target %s: loaded %s model of %d series from %s%s",
            self.name,
            found.meta.kind,
            max(len(s.labels) for s in found.states.values()),
            self.model_path,
            _choice_summary(serving_models(self.forecaster, [c.labels for c in found.choices])),
        )
        return True

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Forecast and retrain when due, until cancelled."""
        clock = self.deps.clock
        now = clock.time()
        self.next_forecast = now
        # A target without a model trains at once; one with a loaded model waits its period.
        self.next_train = now if not self.fitted else self._after(now, self.target.retrain_every, now)
        while True:
            now = clock.time()
            due = min(self.next_forecast, self.next_train if self.trains else math.inf)
            if due > now:
                await clock.sleep(due - now)
                continue
            await self.step()

    async def step(self) -> None:
        """Do what is due at the clock's current time: start a training, then forecast."""
        now = self.deps.clock.time()
        if self.trains and now >= self.next_train:
            self.next_train = self._after(self.next_train, self.target.retrain_every, now)
            self.start_training()
        if now >= self.next_forecast:
            self.next_forecast = self._after(self.next_forecast, self.target.forecast_every, now)
            await self.forecast_once()

    def _after(self, due: float, period: float, now: float) -> float:
        nxt = due + period * (1.0 - JITTER * self.deps.jitter())
        if nxt <= now:  # fell behind (a long stall): start afresh, no burst of catch-up cycles
            nxt = now + period * (1.0 - JITTER * self.deps.jitter())
        return nxt

    # --- training ------------------------------------------------------------------------------

    def start_training(self) -> bool:
        """Start a training in the background, or skip (counted) while the previous one runs."""
        if self.training is not None and not self.training.done():
            self.deps.metrics.training_skipped.labels(self.name, SKIP_OVERRUN).inc()
            logger.warning(
                "target %s: previous training still running after retrain_every, skipping this cycle",
                self.name,
            )
            return False
        self.training = asyncio.get_running_loop().create_task(
            self.train_once(), name=f"target {self.name} training"
        )
        return True

    async def train_once(self) -> bool:
        """One training: read the grid, fit on the train thread, save. Never raises (but cancel)."""
        self.deps.metrics.training_in_progress.labels(self.name).set(1)
        self.status.training_since = self.deps.clock.time()
        try:
            return await self._train_once()
        finally:
            self.deps.metrics.training_in_progress.labels(self.name).set(0)
            self.status.training_since = None
            self.status.epoch = None

    async def _train_once(self) -> bool:
        metrics = self.deps.metrics
        start = time.monotonic()
        try:
            batch, limits = await self._call(self.deps.workers.ingest, self._read_training)
            if batch is None or batch.n_series == 0:
                logger.info("target %s: no series yet, nothing to train", self.name)
                return False
            if self._waits_for_history(batch.n_steps):
                return False
            logger.info(
                "target %s: training %s on %d series", self.name, self.forecaster.name, batch.n_series
            )
            saved = await self._call(self.deps.workers.train, self._fit_and_save, batch, limits)
        except Exception as exc:
            metrics.training_failures.labels(self.name).inc()
            log_failure(f"target {self.name}: training failed", exc)
            self.status.last_training = Outcome(
                self.deps.clock.time(), time.monotonic() - start, error=describe(exc)
            )
            return False
        elapsed = time.monotonic() - start
        now = self.deps.clock.time()
        metrics.train_duration.labels(self.name).observe(elapsed)
        metrics.train_last_success.labels(self.name).set(now)
        metrics.model_trained.labels(self.name).set(now)
        reports = [m.last_report for m in neural_parts(self.forecaster) if m.last_report is not None]
        if reports:
            metrics.training_epochs.labels(self.name).set(max(r.epochs for r in reports))
        for report in reports:
            metrics.training_stopped.labels(self.name, report.stopped).inc()
        if saved:
            # A checkpoint of what the target learned of its forecasts beside its model: a kill
            # then loses at most what came after the last training (or the last ten minutes).
            await self._call(self.deps.workers.forecast, self.save_memory)
        summary = fit_summary(self.forecaster)
        self.status.last_training = Outcome(now, elapsed, detail=summary)
        self.status.trained_at = now
        logger.info(
            "target %s: trained %d series in %.1fs%s%s",
            self.name,
            batch.n_series,
            elapsed,
            f" ({summary})" if summary else "",
            f", saved to {self.model_path}" if saved else "",
        )
        return True

    def _on_epoch(self, model: str, p: EpochProgress) -> None:
        """Train thread, after every epoch: a log line at most every ``PROGRESS_LOG_EVERY_S`` (info),
        every epoch at debug."""
        self.status.epoch = (model, p)
        now = time.monotonic()
        level = logging.DEBUG
        if now - self._progress_logged >= PROGRESS_LOG_EVERY_S:
            level, self._progress_logged = logging.INFO, now
        if not logger.isEnabledFor(level):
            return
        if p.series_in_stack < p.series_total:
            first = p.series_done + 1
            where = f"series {first}-{p.series_done + p.series_in_stack} of {p.series_total}"
        else:
            where = f"{p.series_total} series"
        budget = "" if p.budget_s is None else f" of a {p.budget_s:.0f}s budget"
        logger.log(
            level,
            "target %s: training %s: epoch %d (%s), loss %.4g train, %.4g validation, %.0fs%s",
            self.name,
            model,
            p.epoch,
            where,
            p.train_loss,
            p.val_loss,
            p.elapsed_s,
            budget,
        )

    def _waits_for_history(self, n_steps: int) -> bool:
        """Whether a grid of ``n_steps`` is too short to train on; keeps the waiting state and its metrics."""
        metrics = self.deps.metrics
        waiting = n_steps < self.train_steps
        if waiting:
            metrics.training_skipped.labels(self.name, SKIP_WAITING).inc()
            if not self.waiting_for_history:
                logger.info(
                    "target %s: waiting for history: %d steps stored, %s needs %d to train; "
                    "%s forecasts meanwhile",
                    self.name,
                    n_steps,
                    self.forecaster.name,
                    self.train_steps,
                    self.forecaster.name if self.fitted else FALLBACK_MODEL,
                )
        self.waiting_for_history = waiting
        metrics.waiting_for_history.labels(self.name).set(int(waiting))
        return waiting

    def _fit_and_save(self, batch: GridBatch, limits: GridBatch | None = None) -> bool:
        """Train thread: fit (with the headroom channel when the model reads it), then save unless a
        reload aborted this runner."""
        self.forecaster.fit(self.model_batch(batch, limits))
        self.fitted = True
        if self.target.model.kind == "auto":
            logger.info(
                "target %s: auto chose%s",
                self.name,
                _choice_summary(serving_models(self.forecaster, batch.labels)),
            )
        if self._abort.is_set() or self.model_path is None:
            return False
        from tsf_adapter.forecast.neural.persist import save_model

        saved = snapshot(self.forecaster, self.target, batch.start_ms, batch.end_ms)
        if saved is None:
            return False
        save_model(self.model_path, saved)
        return True

    # --- forecasting ---------------------------------------------------------------------------

    async def forecast_once(self) -> ForecastOutput | None:
        """One forecast: read, predict, build rows, hand them to ``send``. Never raises (but cancel)."""
        metrics = self.deps.metrics
        start = time.monotonic()
        try:
            batch, limits = await self._call(self.deps.workers.ingest, self._read_batches)
            if batch is None or batch.n_series == 0:
                logger.debug("target %s: no series yet, nothing to forecast", self.name)
                return None
            now_ms = int(self.deps.clock.time() * 1000)
            out, by_model, served = await self._call(
                self.deps.workers.forecast, self._compute, batch, limits, now_ms
            )
            if self.deps.send is not None:
                await self.deps.send(out.writes())
            if self.target.model.kind == "auto":
                for model in AUTO_CANDIDATES:
                    metrics.auto_series.labels(self.name, model).set(served[model])
        except Exception as exc:
            metrics.forecast_errors.labels(self.name).inc()
            log_failure(f"target {self.name}: forecast failed", exc)
            self.status.last_forecast = Outcome(
                self.deps.clock.time(), time.monotonic() - start, error=describe(exc)
            )
            return None
        self.latest = out
        elapsed = time.monotonic() - start
        self.status.last_forecast = Outcome(now_ms / 1000.0, elapsed)
        metrics.series.labels(self.name).set(batch.n_series)
        metrics.model_series.labels(self.name).set(by_model)
        metrics.forecast_samples.labels(self.name).inc(len(out) + sum(len(p) for p in out.paths))
        metrics.forecast_nonfinite.labels(self.name, NONFINITE_LEFT_OUT).inc(out.left_out)
        metrics.forecast_duration.labels(self.name).observe(elapsed)
        metrics.forecast_last_success.labels(self.name).set(now_ms / 1000.0)
        if self.crossings is not None:
            for h, cal in zip(self.target.horizons, self.crossings.calibrations, strict=True):
                metrics.set_calibration(self.name, horizon_label(h), cal.pooled.n_pairs, cal.ready)
        logger.info(
            "target %s: forecast %d series (%d by %s, %d by %s), %d samples in %.3fs",
            self.name,
            batch.n_series,
            by_model,
            self.forecaster.name if self.trains else self.target.model.kind,
            batch.n_series - by_model,
            FALLBACK_MODEL,
            len(out),
            elapsed,
        )
        return out

    def _read_training(self) -> tuple[GridBatch | None, GridBatch | None]:
        """Ingest thread: the target's grid, and its limits' grid when the model reads the headroom."""
        if self.headroom:
            return self._read_batches()
        return self.deps.store.batch(self.name), None

    def _read_batches(self) -> tuple[GridBatch | None, GridBatch | None]:
        """Ingest thread: the target's grid and, with a threshold selector, its limits' grid."""
        limits = None if self._limits_name is None else self.deps.store.batch(self._limits_name)
        return self.deps.store.batch(self.name), limits

    def _compute(
        self, batch: GridBatch, limits: GridBatch | None, now_ms: int
    ) -> tuple[ForecastOutput, int, Counter[str]]:
        """Forecast thread: score past forecasts, predict, remember, build what is written."""
        self.tracker.observe(batch)
        crossings = self.crossings
        if crossings is not None:
            crossings.observe(batch)
        prediction, models, by_model, broken = self.predict(self.model_batch(batch, limits))
        if broken:
            self.deps.metrics.forecast_nonfinite.labels(self.name, NONFINITE_FALLBACK).inc(broken)
        medians = prediction[:, self._median, self._horizon_cols]  # [series, horizons]
        self.tracker.record(batch.labels, batch.end_ms, medians)
        errors = self.tracker.errors(batch.labels)
        out = self.builder.build(
            batch,
            prediction,
            now_ms=now_ms,
            models=models,
            errors=errors,
            limits=limits,
            calibrate=None if crossings is None else crossings.publish,
        )
        if time.monotonic() - self._memory_saved >= MEMORY_SAVE_EVERY_S:
            self.save_memory()
        return out, by_model, Counter(name for name, _ in models)

    def model_batch(self, batch: GridBatch, limits: GridBatch | None) -> GridBatch:
        """What the model fits and forecasts on: ``batch``, with its headroom when the model reads it.

        Train or forecast thread. The headroom is computed the same way for both (one function,
        :func:`~tsf_adapter.forecast.neural.headroom.headroom`), from the threshold's fixed value
        or from the limit series at every step; a series without a known limit gets NaN there.
        """
        threshold = self.target.threshold
        if not self.headroom or threshold is None:
            return batch
        if threshold.value is not None:
            lim = np.full((batch.n_series, 1), threshold.value)
        else:
            lim = limit_grid(batch, limits, threshold.on)
        channel = headroom(batch.values, lim, ratio=threshold.ratio, direction=threshold.direction)
        return HeadroomBatch.of(batch, channel)

    def predict(self, batch: GridBatch) -> Prediction:
        """The target's model over ``batch``, with ``predict_linear`` where the model has nothing finite.

        The model serves the series it forecasts with finite values at every step: a baseline
        every series it can, a learning model (once it has one) the series it has a model for
        (rows that are not all NaN). Every other series gets ``predict_linear``; one whose model
        forecast was there but not finite (an overflow, an infinite sample) is ``broken``, which
        the target's own forecast counts in
        ``tsf_adapter_forecast_nonfinite_series_total{outcome="fallback"}``. What even
        ``predict_linear`` cannot forecast (a single sample) stays NaN, and the builder leaves
        it out.
        """
        scope = serving_scope(self.forecaster, self.target.model)
        n = batch.n_series
        if self.fitted or not self.trains:
            out = self._spread(self.forecaster.predict(batch, self.horizon_steps))
        else:
            out = np.full((n, len(self.target.quantiles), self.horizon_steps), np.nan)
        own = np.asarray(np.isfinite(out).all(axis=(1, 2)), dtype=bool)
        redo = np.flatnonzero(~own)
        broken = 0
        if redo.size and self.forecaster.name != FALLBACK_MODEL:
            broken = int((~np.isnan(out[redo]).all(axis=(1, 2))).sum())
            out[redo] = self._spread(self.fallback.predict(batch.rows(redo), self.horizon_steps))
        names = serving_models(self.forecaster, batch.labels) if self.trains else [self.target.model.kind] * n
        models: list[ModelInfo] = [
            (name, scope) if o else (FALLBACK_MODEL, scope)
            for name, o in zip(names, own.tolist(), strict=True)
        ]
        return Prediction(out, models, int(own.sum()), broken)

    def _spread(self, prediction: FloatArray) -> FloatArray:
        """A point forecast ``[series, 1, h]`` repeated at every quantile; quantile forecasts as they are."""
        n_q = len(self.target.quantiles)
        if prediction.shape[1] == n_q:
            return prediction
        if prediction.shape[1] == 1:
            return np.repeat(prediction, n_q, axis=1)
        raise TsfAdapterError(
            f"target {self.name}: model gave {prediction.shape[1]} quantiles, the target has {n_q}"
        )

    async def _call(self, executor: Executor, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


def _choice_summary(names: list[str]) -> str:
    """``" lstm for 3, gru for 1 series"`` for an auto model's choices, "" otherwise."""
    counts = Counter(names)
    if not counts:
        return ""
    return " " + ", ".join(f"{name} for {n}" for name, n in sorted(counts.items())) + " series"


def log_failure(what: str, exc: Exception) -> None:
    """Our own errors are expected conditions: one line. Anything else is a bug: with traceback."""
    if isinstance(exc, TsfAdapterError):
        logger.warning("%s: %s", what, exc)
    else:
        logger.error("%s: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
