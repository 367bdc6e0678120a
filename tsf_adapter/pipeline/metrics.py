"""The daemon's own metrics, ``tsf_adapter_<subsystem>_<name>``.

A registry is passed in, never the global one, so tests and several apps in
one process keep their numbers apart (client_python's own tests do the same).
Queue statistics are kept by the queue itself and read at scrape time by a
collector, so the hot paths only touch plain integers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tsf_adapter.store.store import Store

NAMESPACE = "tsf_adapter"


# Why a forecast or training cycle of a target did not happen (tsf_adapter_training_skipped_total).
SKIP_OVERRUN = "overrun"  # the previous training of the target was still running
# The stored history is still shorter than the least the model trains on: not a failure, it fills up.
SKIP_WAITING = "waiting_for_history"
SKIP_REASONS = (SKIP_OVERRUN, SKIP_WAITING)
# Why a training ended (tsf_adapter_training_stopped_total; forecast.neural.state.StopReason).
STOP_REASONS = ("early_stopping", "max_epochs", "budget")
# What became of a series whose forecast was not finite (tsf_adapter_forecast_nonfinite_series_total).
NONFINITE_FALLBACK = "fallback"  # the model's forecast: predict_linear's served the series
NONFINITE_LEFT_OUT = "left_out"  # no finite forecast at all: the series' rows were not written
NONFINITE_OUTCOMES = (NONFINITE_FALLBACK, NONFINITE_LEFT_OUT)
# The architectures model kind auto chooses among (tsf_adapter.forecast.neural.model.KINDS, without torch).
AUTO_CANDIDATES = ("lstm", "gru", "transformer")


class DaemonMetrics:
    """What the scheduler does, per target: series, durations, successes, failures, skips.

    Failures are counted, never raised: one bad target must not stop the others, so these
    counters (and the log line beside each) are how a broken target shows itself.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        target = ["target"]
        # Training runs from seconds to most of retrain_every; forecasting from ms to seconds.
        train_buckets = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600)
        forecast_buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
        self.series = Gauge(
            "target_series",
            "Series in the target's latest forecast.",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.model_series = Gauge(
            "target_model_series",
            "Series of the target with a trained model of their own (the rest use a baseline).",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        # Only for model kind auto, one series per candidate: a target's kind shows in its metrics
        # while m:forecast_model_info names the architecture that serves each series.
        self.auto_series = Gauge(
            "target_auto_series",
            "Series of an auto target served by each candidate architecture (auto targets only).",
            [*target, "model"],
            namespace=NAMESPACE,
            registry=registry,
        )
        # 1 while the target's history is too short to train on (the target's baseline forecasts):
        # a new target, or one whose history the backfill could not fill, and never a failure.
        self.waiting_for_history = Gauge(
            "target_waiting_for_history",
            "1 while the target's stored history is shorter than its model needs to train, else 0.",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.train_duration = Histogram(
            "train_duration_seconds",
            "Wall time of one training of a target.",
            target,
            namespace=NAMESPACE,
            registry=registry,
            buckets=train_buckets,
        )
        self.forecast_duration = Histogram(
            "forecast_duration_seconds",
            "Wall time of one forecast of a target, from store read to queued output.",
            target,
            namespace=NAMESPACE,
            registry=registry,
            buckets=forecast_buckets,
        )
        self.forecast_last_success = Gauge(
            "forecast_last_success_timestamp_seconds",
            "Unix time of the target's last successful forecast.",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.train_last_success = Gauge(
            "train_last_success_timestamp_seconds",
            "Unix time of the target's last successful training.",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.training_in_progress = Gauge(
            "training_in_progress",
            "1 while a training of the target runs, else 0.",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.model_trained = Gauge(
            "model_trained_timestamp_seconds",
            "Unix time the target's current model was trained (also set from a saved model loaded at start).",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.training_epochs = Gauge(
            "training_epochs",
            "Epochs the target's last training ran (the most of auto's candidates).",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.training_stopped = Counter(
            "training_stopped_total",
            "Trainings by why they ended: early_stopping (converged), max_epochs, or budget (cut off at"
            " its share of retrain_every, best weights kept).",
            [*target, "reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.forecast_errors = Counter(
            "forecast_errors_total",
            "Forecast cycles of a target that failed with an error (logged).",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        # A model forecast that is not finite (an overflow, an infinite sample) is a model or data
        # defect the output hides: counted, so that it shows instead of a forecast quietly gone.
        self.forecast_nonfinite = Counter(
            "forecast_nonfinite_series_total",
            "Series whose forecast was not finite, by outcome (fallback: the model's, so predict_linear"
            " forecast the series instead; left_out: no finite forecast at all, so no rows were written).",
            [*target, "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.training_failures = Counter(
            "training_failures_total",
            "Trainings of a target that failed with an error (logged); its previous model is kept.",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.training_skipped = Counter(
            "training_skipped_total",
            "Training cycles not started, by reason (overrun: the previous one was still running; "
            "waiting_for_history: too little history to train on yet).",
            [*target, "reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.forecast_samples = Counter(
            "forecast_samples_total",
            "Forecast output samples produced (queued for remote-write or served at /forecasts).",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.backfill_samples = Counter(
            "backfill_samples_total",
            "Samples read by remote-read to backfill a target's history.",
            target,
            namespace=NAMESPACE,
            registry=registry,
        )
        # Targets with a threshold: how much evidence the crossing probability's calibration has.
        self.calibration_pairs = Gauge(
            "probability_calibration_pairs",
            "Resolved crossing-probability windows the calibration of m:forecast_threshold_probability"
            " is fitted on (newest kept), per window.",
            [*target, "within"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.calibrated = Gauge(
            "probability_calibrated",
            "1 when m:forecast_threshold_probability is published calibrated on resolved windows,"
            " 0 while it is still the raw probability read from the quantiles.",
            [*target, "within"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._withins: dict[str, set[str]] = {}

    def set_calibration(self, name: str, within: str, pairs: int, calibrated: bool) -> None:
        """The calibration state of one target's crossing probability for one window."""
        self._withins.setdefault(name, set()).add(within)
        self.calibration_pairs.labels(name, within).set(pairs)
        self.calibrated.labels(name, within).set(int(calibrated))

    def add_target(self, name: str) -> None:
        """Create a target's series at zero, so a dashboard sees 0 rather than nothing."""
        for counter in (self.forecast_errors, self.training_failures, self.forecast_samples):
            counter.labels(name)
        for reason in SKIP_REASONS:
            self.training_skipped.labels(name, reason)
        for reason in STOP_REASONS:
            self.training_stopped.labels(name, reason)
        for outcome in NONFINITE_OUTCOMES:
            self.forecast_nonfinite.labels(name, outcome)
        self.training_in_progress.labels(name).set(0)
        self.waiting_for_history.labels(name).set(0)
        self.backfill_samples.labels(name)

    def remove_target(self, name: str) -> None:
        """Forget a target that a reload removed, so its series stop being exported."""
        for metric in (
            self.series,
            self.model_series,
            self.waiting_for_history,
            self.train_duration,
            self.forecast_duration,
            self.forecast_last_success,
            self.train_last_success,
            self.training_in_progress,
            self.model_trained,
            self.training_epochs,
            self.forecast_errors,
            self.training_failures,
            self.forecast_samples,
            self.backfill_samples,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(name)
        for reason in SKIP_REASONS:
            with contextlib.suppress(KeyError):
                self.training_skipped.remove(name, reason)
        for reason in STOP_REASONS:
            with contextlib.suppress(KeyError):
                self.training_stopped.remove(name, reason)
        for model in AUTO_CANDIDATES:
            with contextlib.suppress(KeyError):
                self.auto_series.remove(name, model)
        for outcome in NONFINITE_OUTCOMES:
            with contextlib.suppress(KeyError):
                self.forecast_nonfinite.remove(name, outcome)
        for within in self._withins.pop(name, set()):
            for gauge in (self.calibration_pairs, self.calibrated):
                with contextlib.suppress(KeyError):
                    gauge.remove(name, within)


class StoreCollector(Collector):
    """The store's per-target series counts, read at scrape time (the ingest thread keeps them)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        kept = GaugeMetricFamily(
            f"{NAMESPACE}_target_stored_series",
            "Input series the target keeps (members, for an aggregate).",
            labels=["target"],
        )
        refused = CounterMetricFamily(
            f"{NAMESPACE}_target_series_refused",
            "New series the target selected but refused: its max_series, or ingest.max_series, was reached.",
            labels=["target"],
        )
        for name, target in list(self.store.targets.items()):
            kept.add_metric([name], target.stats.series)
            refused.add_metric([name], target.stats.refused)
        yield kept
        yield refused
        if self.store.shard is not None:
            shard = self.store.shard
            info = GaugeMetricFamily(
                f"{NAMESPACE}_shard_info",
                "This replica's shard: its index among the total, of the series split by these labels.",
                labels=["index", "total", "labels"],
            )
            info.add_metric([str(shard.index), str(shard.total), ",".join(shard.labels)], 1.0)
            yield info
            other = CounterMetricFamily(
                f"{NAMESPACE}_shard_series_skipped",
                "Series a target selected that belong to another replica's shard, and are not kept here.",
            )
            other.add_metric([], self.store.other_shards)
            yield other
