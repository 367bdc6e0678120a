"""The per-target runner: cycles driven by a fake clock, small data, fake models at the model seam."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tsf_adapter.config import TargetConfig, decode_section
from tsf_adapter.core.errors import TrainingError
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import Labels, SampleBlock, WriteItem, make_labels
from tsf_adapter.forecast.neural.state import EpochProgress
from tsf_adapter.pipeline.metrics import DaemonMetrics
from tsf_adapter.pipeline.models import candidate_scores, watch_training
from tsf_adapter.pipeline.output import ForecastOutput
from tsf_adapter.pipeline.runner import RunnerDeps, TargetRunner, Workers
from tsf_adapter.pipeline.scheduler import Scheduler
from tsf_adapter.store.store import Store

T0 = 1_700_000_000.0  # a whole number of seconds: grid steps line up with the fake clock


class FakeClock:
    """Wall time that moves only when the runner sleeps; past ``stop_at`` sleeping never returns."""

    def __init__(self, now: float = T0, stop_at: float = float("inf")) -> None:
        self.now = now
        self.stop_at = stop_at

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if self.now + seconds > self.stop_at:
            await asyncio.Event().wait()
        self.now += seconds
        await asyncio.sleep(0)


class FakeModel:
    """Learns which series it saw; forecasts ``100 + step`` for those, NaN for the rest."""

    NEEDS_FIT: ClassVar[bool] = True
    QUANTILES: ClassVar[bool] = True
    name = "fake"

    def __init__(self, quantiles: tuple[float, ...]) -> None:
        self.quantiles = quantiles
        self.trained: set[Labels] = set()
        self.gate: threading.Event | None = None  # fit waits on it when set
        self.fail_fit = False
        self.fail_predict = False

    def fit(self, batch: GridBatch) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail_fit:
            raise TrainingError("history too short: 3 steps")
        self.trained = set(batch.labels)

    def predict(self, batch: GridBatch, horizon_steps: int) -> np.ndarray:
        if self.fail_predict:
            raise RuntimeError("boom")
        out = np.full((batch.n_series, len(self.quantiles), horizon_steps), np.nan)
        for i, lab in enumerate(batch.labels):
            if lab in self.trained:
                out[i] = 100.0 + np.arange(horizon_steps)
        return out


def target(**extra: object) -> TargetConfig:
    data = {
        "name": "t",
        "selector": "m",
        "step": "1s",
        "history": "1m",
        "horizons": ["1s", "2s"],
        "forecast_every": "1s",
        "retrain_every": "5s",
        **extra,
    }
    return decode_section(TargetConfig, data)


@dataclass
class Env:
    store: Store
    deps: RunnerDeps
    clock: FakeClock
    registry: CollectorRegistry
    # What each forecast handed to the write queue.
    sent: list[Sequence[WriteItem]] = field(default_factory=list)

    def put(self, instance: str, ts_s: float, value: float) -> None:
        labels = make_labels({"__name__": "m", "instance": instance})
        ref = self.store.series_ref(labels)
        assert ref is not None
        self.store.append(np.array([ref]), np.array([round(ts_s * 1000)]), np.array([value]))

    def value(self, name: str) -> float | None:
        return self.registry.get_sample_value(name, {"target": "t"})


@pytest.fixture
def pools() -> Iterator[Workers]:
    made = [ThreadPoolExecutor(max_workers=1) for _ in range(3)]
    yield Workers(ingest=made[0], forecast=made[1], train=made[2])
    for pool in made:
        pool.shutdown(wait=True)


@pytest.fixture
async def env(pools: Workers) -> AsyncIterator[Env]:
    registry = CollectorRegistry()
    clock = FakeClock()
    store = Store([target()])
    sent: list[Sequence[WriteItem]] = []

    async def send(items: Sequence[WriteItem]) -> None:
        sent.append(items)

    deps = RunnerDeps(
        store=store,
        workers=pools,
        metrics=DaemonMetrics(registry),
        send=send,
        clock=clock,
        jitter=lambda: 0.0,
    )
    yield Env(store, deps, clock, registry, sent)


def rows_block(items: Sequence[WriteItem]) -> SampleBlock:
    """The block of one forecast's rows: what a forecast sends first."""
    block = items[0]
    assert isinstance(block, SampleBlock)
    return block


def infos(out: ForecastOutput) -> dict[str, str]:
    """instance -> model label of the ``m:forecast_model_info`` rows."""
    rows = [dict(lab) for lab in out.labels if dict(lab)["__name__"] == "m:forecast_model_info"]
    return {r["instance"]: r["model"] for r in rows}


def runner(env: Env, fake: FakeModel | None = None, **extra: object) -> TargetRunner:
    cfg = target(**extra)
    return TargetRunner(cfg, env.deps, forecaster=fake)


async def test_a_series_uses_the_baseline_until_its_model_is_trained(env: Env) -> None:
    for k in range(5):
        env.put("a", T0 - 4 + k, 10.0 + k)
    model = FakeModel((0.1, 0.5, 0.9))
    r = runner(env, model)
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "predict_linear"}
    # predict_linear over 10..14 at one per second: 15 one step ahead, at every quantile.
    forecast = dict(zip(out.texts, out.values.tolist(), strict=True))
    assert forecast['m:forecast{horizon="1s",instance="a",quantile="0.9"}'] == pytest.approx(15.0)

    assert await r.train_once()
    env.put("b", T0 - 1, 1.0)  # seen only after the training
    env.put("b", T0, 1.0)  # (two samples: predict_linear has no forecast from one)
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "fake", "b": "predict_linear"}
    forecast = dict(zip(out.texts, out.values.tolist(), strict=True))
    assert forecast['m:forecast{horizon="2s",instance="a",quantile="0.5"}'] == 101.0
    assert env.value("tsf_adapter_target_model_series") == 1.0
    assert env.value("tsf_adapter_target_series") == 2.0


async def test_a_baseline_target_never_trains(env: Env) -> None:
    env.put("a", T0, 3.0)
    r = runner(env, None, model={"kind": "last_value"})
    assert not r.trains
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "last_value"}


async def test_training_that_overruns_skips_the_next_cycle_and_counts_it(env: Env) -> None:
    env.put("a", T0, 1.0)
    model = FakeModel((0.1, 0.5, 0.9))
    model.gate = threading.Event()
    r = runner(env, model)
    assert r.start_training()
    assert not r.start_training()  # still running
    skipped = {"target": "t", "reason": "overrun"}
    assert env.registry.get_sample_value("tsf_adapter_training_skipped_total", skipped) == 1.0
    model.gate.set()
    assert r.training is not None and await r.training
    assert r.start_training()  # the next cycle trains again
    assert r.training is not None and await r.training


async def test_exceptions_are_counted_and_the_loop_goes_on(env: Env) -> None:
    env.put("a", T0, 1.0)
    model = FakeModel((0.1, 0.5, 0.9))
    r = runner(env, model)
    model.fail_fit = True
    assert not await r.train_once()
    assert env.value("tsf_adapter_training_failures_total") == 1.0
    model.fail_fit = False
    assert await r.train_once()
    model.fail_predict = True
    assert await r.forecast_once() is None
    assert env.value("tsf_adapter_forecast_errors_total") == 1.0
    model.fail_predict = False
    assert await r.forecast_once() is not None
    assert env.sent and len(env.sent) == 1


async def test_forecast_error_is_scored_once_the_horizon_has_passed(env: Env) -> None:
    # last_value forecasts v_k for step k+1, which turns out to be v_k + 1: an error of exactly 1.
    r = runner(env, None, model={"kind": "last_value"}, horizons=["1s"])
    outputs = []
    for k in range(6):
        env.put("a", T0 + k, float(k))
        env.clock.now = T0 + k
        outputs.append(await r.forecast_once())
    out = outputs[-1]
    assert out is not None
    errors = [
        v for lab, v in zip(out.labels, out.values.tolist(), strict=True) if "m:forecast_error" in str(lab)
    ]
    assert errors == [1.0]
    assert ("horizon", "1s") in next(lab for lab in out.labels if "m:forecast_error" in str(lab))


async def test_the_loop_forecasts_every_period_and_trains_when_due(env: Env) -> None:
    env.put("a", T0, 1.0)
    model = FakeModel((0.1, 0.5, 0.9))
    env.clock.stop_at = T0 + 5.5
    r = runner(env, model)
    r.start()
    for _ in range(1000):
        if len(env.sent) == 6 and r.training is not None and r.training.done():
            break
        await asyncio.sleep(0.01)
    await r.stop()
    assert [rows_block(s).timestamp_ms for s in env.sent] == [round((T0 + k) * 1000) for k in range(6)]
    # Trained at once (no saved model), next due after retrain_every (5s).
    assert model.trained
    assert r.next_train == T0 + 10.0  # the one at T0 + 5 started already


async def test_jitter_only_ever_shortens_a_period(env: Env) -> None:
    env.deps.jitter = lambda: 1.0
    r = runner(env, FakeModel((0.1, 0.5, 0.9)))
    assert r._after(T0, 60.0, T0) == pytest.approx(T0 + 54.0)
    # Far behind: start afresh from now rather than catching up.
    assert r._after(T0, 60.0, T0 + 600) == pytest.approx(T0 + 654.0)


async def test_scheduler_remove_stops_a_runner_and_forgets_its_metrics(env: Env) -> None:
    env.put("a", T0, 1.0)
    scheduler = Scheduler(env.deps)
    r = scheduler.add(target(model={"kind": "last_value"}), load=False)
    await r.forecast_once()
    assert env.value("tsf_adapter_target_series") == 1.0
    r.start()
    await scheduler.remove("t")
    assert "t" not in scheduler.runners
    assert env.value("tsf_adapter_target_series") is None


async def test_the_runner_sends_its_rows_and_holds_the_only_latest_forecast(env: Env) -> None:
    env.put("a", T0, 1.0)
    scheduler = Scheduler(env.deps)
    r = scheduler.add(target(model={"kind": "last_value"}), load=False)
    assert scheduler.latest() == []
    out = await r.forecast_once()
    assert out is not None and r.latest is out and scheduler.latest() == [out]
    [items] = env.sent
    assert items == out.writes()
    block = rows_block(items)
    assert block.labels is out.labels and block.values is out.values


async def test_exposition_mode_sends_nothing_and_keeps_the_latest(env: Env) -> None:
    env.put("a", T0, 1.0)
    env.deps.send = None
    r = runner(env, None, model={"kind": "last_value"})
    out = await r.forecast_once()
    assert out is not None and r.latest is out
    assert r.builder.staleness is None and env.sent == []


async def test_a_replaced_target_ends_what_only_the_old_config_wrote(env: Env) -> None:
    env.put("a", T0, 1.0)
    scheduler = Scheduler(env.deps)
    old = scheduler.add(target(model={"kind": "last_value"}), load=False)
    await old.forecast_once()
    await scheduler.remove("t")
    # A reload changed the horizons: the 2s series end with the new runner's first forecast.
    new = scheduler.add(target(model={"kind": "last_value"}, horizons=["1s"]), load=False)
    out = await new.forecast_once()
    assert out is not None
    assert {dict(lab)["horizon"] for lab in out.ended} == {"2s"} and len(out.ended) == 3
    assert scheduler.end_series("t") == []  # the running target is not ended
    # Removed for good: everything it wrote last, once.
    await scheduler.remove("t")
    ended = scheduler.end_series("t")
    assert sorted(ended) == sorted(out.labels)
    assert scheduler.end_series("t") == []


async def test_a_trained_model_is_saved_and_loaded_only_with_matching_settings(
    env: Env, tmp_path: Path
) -> None:
    for k in range(90):
        env.put("a", T0 - 90 + k, 50.0 + 0.5 * k + 3 * np.sin(k / 4))
    env.deps.state_dir = tmp_path
    env.deps.device = "cpu"
    # A small budget (80% of retrain_every): a model exists either way, trained to the end or not.
    neural = {"model": {"kind": "lstm"}, "history": "2m", "horizons": ["2s"], "retrain_every": "2s"}
    r = runner(env, None, **neural)
    assert await r.train_once()
    assert (tmp_path / "t.pt").exists()
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "lstm"}

    again = runner(env, None, **neural)
    assert again.load() and again.fitted
    out = await again.forecast_once()
    assert out is not None and infos(out) == {"a": "lstm"}
    # Another horizon changes the network's output size: the saved model is not used.
    other = runner(env, None, **{**neural, "horizons": ["2s", "4s"]})
    assert not other.load() and not other.fitted


async def test_too_little_history_waits_without_failing_and_trains_once_it_has_arrived(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tsf_adapter.scheduler")
    env.deps.device = "cpu"
    neural = {"model": {"kind": "lstm"}, "history": "2m", "horizons": ["2s"], "retrain_every": "2s"}
    env.deps.metrics.add_target("t")  # as the scheduler does: every series exported from the start
    assert env.value("tsf_adapter_target_waiting_for_history") == 0.0
    r = runner(env, None, **neural)
    # A 24-step input window, a 2-step horizon, and the newest fifth (7 steps) for validation.
    assert r.train_steps == 33
    for k in range(32):
        env.put("a", T0 - 40 + k, 50.0 + 0.5 * k + 3 * np.sin(k / 4))
    assert not await r.train_once()
    assert not await r.train_once()
    waiting = {"target": "t", "reason": "waiting_for_history"}
    assert env.registry.get_sample_value("tsf_adapter_training_skipped_total", waiting) == 2.0
    assert env.value("tsf_adapter_training_failures_total") == 0.0
    assert env.value("tsf_adapter_target_waiting_for_history") == 1.0
    assert (r.waiting_for_history, r.fitted) == (True, False)
    said = "target t: waiting for history: 32 steps stored, lstm needs 33 to train; predict_linear forecasts"
    assert [m for m in caplog.messages if "waiting for history" in m] == [f"{said} meanwhile"]
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "predict_linear"}

    env.put("a", T0 - 8, 70.0)  # the 33rd step: exactly the least the trainer takes
    assert await r.train_once()
    assert env.value("tsf_adapter_target_waiting_for_history") == 0.0
    assert env.value("tsf_adapter_training_failures_total") == 0.0
    assert env.registry.get_sample_value("tsf_adapter_training_skipped_total", waiting) == 2.0
    assert (r.waiting_for_history, r.fitted) == (False, True)
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "lstm"}


async def test_a_training_can_be_watched_in_the_log_and_the_metrics(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tsf_adapter.scheduler")
    for k in range(90):
        env.put("a", T0 - 90 + k, 50.0 + 0.5 * k + 3 * np.sin(k / 4))
    env.deps.state_dir = tmp_path
    env.deps.device = "cpu"
    env.deps.metrics.add_target("t")
    neural = {"model": {"kind": "lstm"}, "history": "2m", "horizons": ["2s"], "retrain_every": "5s"}
    r = runner(env, None, **neural)
    seen_running = []
    original = r._on_epoch

    def on_epoch(model: str, progress: EpochProgress) -> None:
        seen_running.append(env.value("tsf_adapter_training_in_progress"))
        original(model, progress)

    watch_training(r.forecaster, on_epoch)
    assert await r.train_once()
    assert seen_running and set(seen_running) == {1.0}  # 1 while it ran
    assert env.value("tsf_adapter_training_in_progress") == 0.0
    epochs = env.value("tsf_adapter_training_epochs")
    assert epochs is not None and epochs >= 1
    stopped = {
        reason: env.registry.get_sample_value(
            "tsf_adapter_training_stopped_total", {"target": "t", "reason": reason}
        )
        or 0.0
        for reason in ("early_stopping", "max_epochs", "budget")
    }
    assert sorted(stopped.values()) == [0.0, 0.0, 1.0]
    trained_at = env.value("tsf_adapter_model_trained_timestamp_seconds")
    assert trained_at == env.clock.time()

    progress = [m for m in caplog.messages if m.startswith("target t: training lstm: epoch")]
    assert len(progress) == epochs  # every epoch at debug, the first also at info
    assert progress[0].startswith("target t: training lstm: epoch 1 (1 series), loss ")
    assert progress[0].endswith(" of a 4s budget")
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum(m.startswith("target t: training lstm: epoch") for m in info) == 1
    (done,) = [m for m in info if m.startswith("target t: trained 1 series")]
    reason = next(k for k, v in stopped.items() if v == 1.0)
    assert f"(lstm: {reason} after {int(epochs)} epochs (best " in done

    # A saved model loaded at start says when it was trained.
    again = runner(env, None, **neural)
    assert again.load()
    saved_at = env.value("tsf_adapter_model_trained_timestamp_seconds")
    assert saved_at is not None and abs(saved_at - time.time()) < 600


def scopes(out: ForecastOutput) -> dict[str, str]:
    """instance -> scope label of the ``m:forecast_model_info`` rows."""
    rows = [dict(lab) for lab in out.labels if dict(lab)["__name__"] == "m:forecast_model_info"]
    return {r["instance"]: r["scope"] for r in rows}


async def test_scope_auto_says_which_scope_trained_and_saves_it_for_what_allows_it(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tsf_adapter.forecast.neural import model as neural_model
    from tsf_adapter.forecast.neural.persist import load_model

    monkeypatch.setattr(neural_model, "AUTO_GLOBAL_ABOVE", 1)  # two series: one network for both
    for k in range(90):
        env.put("a", T0 - 90 + k, 50.0 + 0.5 * k + 3 * np.sin(k / 4))
        env.put("b", T0 - 90 + k, 20.0 + (k % 7))
    env.deps.state_dir = tmp_path
    env.deps.device = "cpu"
    neural = {"model": {"kind": "gru"}, "history": "2m", "horizons": ["2s"], "retrain_every": "2s"}
    r = runner(env, None, **neural)
    out = await r.forecast_once()
    assert out is not None and scopes(out) == {"a": "per_series", "b": "per_series"}  # the baseline
    assert await r.train_once()
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "gru", "b": "gru"}
    assert scopes(out) == {"a": "global", "b": "global"}
    saved = load_model(tmp_path / "t.pt")
    assert saved is not None and saved.meta.scope == "global"

    again = runner(env, None, **neural)
    assert again.load()
    out = await again.forecast_once()
    assert out is not None and scopes(out) == {"a": "global", "b": "global"}
    # The saved network is one for all: a target fixed to a network each retrains instead.
    assert not runner(env, None, **{**neural, "model": {"kind": "gru", "scope": "per_series"}}).load()


AUTO = {"model": {"kind": "auto"}, "history": "2m", "horizons": ["2s"], "retrain_every": "3s"}


async def test_auto_serves_each_series_by_its_chosen_architecture_and_saves_the_choice(
    env: Env, tmp_path: Path
) -> None:
    for k in range(90):
        env.put("a", T0 - 90 + k, 50.0 + 0.5 * k + 3 * np.sin(k / 4))
        env.put("b", T0 - 90 + k, 20.0 + (k % 7))
    env.deps.state_dir = tmp_path
    env.deps.device = "cpu"
    r = runner(env, None, **AUTO)
    assert await r.train_once()
    out = await r.forecast_once()
    assert out is not None
    served = infos(out)
    assert set(served) == {"a", "b"} and set(served.values()) <= {"lstm", "gru", "transformer"}
    for model in ("lstm", "gru", "transformer"):
        count = env.registry.get_sample_value(
            "tsf_adapter_target_auto_series", {"target": "t", "model": model}
        )
        assert count == sum(1 for m in served.values() if m == model)

    from tsf_adapter.forecast.neural.model import AutoModel
    from tsf_adapter.forecast.neural.persist import load_model
    from tsf_adapter.pipeline.models import model_config_hash

    saved = load_model(tmp_path / "t.pt", expected_hash=model_config_hash(r.target))
    assert saved is not None
    assert saved.meta.kind == "auto" and saved.meta.chosen_by == "auto"
    assert saved.meta.score_metric == "backtest_pinball"
    chosen = {dict(c.labels)["instance"]: c for c in saved.choices}
    assert {i: c.model for i, c in chosen.items()} == served
    for c in chosen.values():  # the served candidate is the one with the lowest backtest error
        assert set(c.scores) == {"lstm", "gru", "transformer"}
        assert c.scores[c.model] == min(c.scores.values())
        # What the REST API shows of the series: the same scores.
        assert candidate_scores(r.forecaster, c.labels) == pytest.approx(c.scores)
    assert candidate_scores(runner(env, FakeModel((0.1, 0.5, 0.9))).forecaster, chosen["a"].labels) == {}

    again = runner(env, None, **AUTO)
    assert again.load() and again.fitted
    trained, restored = r.forecaster, again.forecaster
    assert isinstance(trained, AutoModel) and isinstance(restored, AutoModel)
    assert restored.scores == trained.scores and restored.choice == trained.choice
    out = await again.forecast_once()
    assert out is not None and infos(out) == served
    # A single-architecture target never loads auto's file (another config hash).
    assert not runner(env, None, **{**AUTO, "model": {"kind": "gru"}}).load()


async def test_a_corrupt_model_file_is_logged_and_the_target_retrains(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env.deps.state_dir = tmp_path
    (tmp_path / "t.pt").write_bytes(b"not a model")
    scheduler = Scheduler(env.deps)
    r = scheduler.add(target(**AUTO))
    assert not r.fitted
    assert "unusable, will retrain" in caplog.text
    assert r.trains  # so its first cycle trains afresh


HEADROOM = {
    "model": {"kind": "lstm", "headroom": True},
    "history": "2m",
    "horizons": ["2s"],
    "retrain_every": "2s",
    "threshold": {"selector": "quota", "on": ["instance"], "ratio": 0.9},
}


async def test_a_target_with_headroom_trains_and_forecasts_with_the_channel(env: Env, tmp_path: Path) -> None:
    from tsf_adapter.forecast.neural.headroom import HeadroomBatch
    from tsf_adapter.forecast.neural.trainer import NeuralForecaster
    from tsf_adapter.pipeline.models import model_config_hash
    from tsf_adapter.pipeline.targets import store_specs, threshold_target

    cfg = target(**HEADROOM)
    # The limits' grid keeps (at least) the target's history: every training window has its limit.
    limits_spec = threshold_target(cfg)
    assert limits_spec is not None and limits_spec.history >= cfg.history
    env.store = env.deps.store = Store(store_specs([cfg]))
    env.deps.state_dir = tmp_path
    env.deps.device = "cpu"
    quota = env.deps.store.series_ref(make_labels({"__name__": "quota", "instance": "a"}))
    assert quota is not None
    for k in range(90):
        env.put("a", T0 - 90 + k, 50.0 + 0.5 * k + 3 * np.sin(k / 4))
        env.put("b", T0 - 90 + k, 20.0 + (k % 7))
        if k >= 5 and k % 10 == 5:  # a quota exported now and then, first seen after the series
            env.deps.store.append(
                np.array([quota]), np.array([round((T0 - 90 + k) * 1000)]), np.array([200.0])
            )
    r = TargetRunner(cfg, env.deps)
    assert await r.train_once()
    assert isinstance(r.forecaster, NeuralForecaster) and r.forecaster.state is not None
    features = r.forecaster.state.config["features"]
    assert features["headroom"] is True
    assert r.forecaster.state.config["net"]["n_features"] == 8  # value, mask, headroom, 5 calendar
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "lstm", "b": "lstm"}

    # What the model reads: the one function over the stored values and the joined limits.
    batch, limits = r._read_batches()
    assert batch is not None and limits is not None
    seen = r.model_batch(batch, limits)
    assert isinstance(seen, HeadroomBatch)
    row = {dict(lab)["instance"]: i for i, lab in enumerate(batch.labels)}
    a, b = batch.values[row["a"]], seen.headroom
    first_limit = int(np.flatnonzero(batch.timestamps_ms() == round((T0 - 85) * 1000))[0])
    assert np.isnan(b[row["a"], :first_limit]).all()  # before the first quota sample: unknown
    np.testing.assert_allclose(b[row["a"], first_limit:], a[first_limit:] / (200.0 * 0.9))
    assert np.isnan(b[row["b"]]).all()  # no quota for b

    # The saved model carries the channel in its config hash: a target without it retrains.
    without = {**HEADROOM, "model": {"kind": "lstm"}}
    assert model_config_hash(cfg) != model_config_hash(target(**without))
    assert not runner(env, None, **without).load()
    again = TargetRunner(cfg, env.deps)
    assert again.load() and again.fitted
    out = await again.forecast_once()
    assert out is not None and infos(out) == {"a": "lstm", "b": "lstm"}


@pytest.mark.parametrize(("headroom", "kept"), [(True, 2 * 86_400.0), (False, 3600.0)])
def test_the_limits_keep_an_hour_unless_the_model_reads_the_headroom(headroom: bool, kept: float) -> None:
    from tsf_adapter.pipeline.targets import threshold_target

    two_days = {**HEADROOM, "history": "2d", "model": {"kind": "lstm", "headroom": headroom}}
    limits = threshold_target(target(**two_days))
    assert limits is not None and limits.history == kept


async def test_a_fixed_threshold_gives_every_series_the_same_limit(env: Env) -> None:
    from tsf_adapter.forecast.neural.headroom import HeadroomBatch

    fixed = {**HEADROOM, "threshold": {"value": 10.0, "direction": "below"}}
    r = runner(env, None, **fixed)
    batch = GridBatch(
        "t",
        (make_labels({"i": "a"}), make_labels({"i": "b"})),
        np.array([[40.0, 20.0], [10.0, 5.0]]),
        0,
        1000,
    )
    seen = r.model_batch(batch, None)
    assert isinstance(seen, HeadroomBatch)
    np.testing.assert_allclose(seen.headroom, [[0.25, 0.5], [1.0, 2.0]])
    # Without the switch the model gets the batch as it is.
    assert runner(env, None, **{**fixed, "model": {"kind": "lstm"}}).model_batch(batch, None) is batch


async def test_the_crossing_probability_is_calibrated_on_windows_that_have_passed(env: Env) -> None:
    from tsf_adapter.pipeline.crossings import WindowCalibration
    from tsf_adapter.pipeline.output.calibration import IsotonicCalibration

    # last_value forecasts flat: the raw probability is 0 below the threshold. Series "a" swings
    # across it every other step, "b" never reaches it.
    r = runner(env, None, model={"kind": "last_value"}, horizons=["1s"], threshold={"value": 10.0})
    assert r.crossings is not None
    r.crossings.calibrations = [WindowCalibration(pooled=IsotonicCalibration(min_pairs=4, min_events=2))]
    probability = {}
    for k in range(12):
        env.put("a", T0 + k, 12.0 if k % 2 else 5.0)
        env.put("b", T0 + k, 5.0)
        env.clock.now = T0 + k
        out = await r.forecast_once()
        assert out is not None
        probability[k] = {
            dict(lab)["instance"]: v
            for lab, v in zip(out.labels, out.values.tolist(), strict=True)
            if dict(lab)["__name__"] == "m:forecast_threshold_probability"
        }
    assert probability[0] == {"a": 0.0, "b": 0.0}  # raw, nothing resolved yet
    assert probability[11]["a"] == 1.0  # at the threshold now
    # Calibrated at step 10 on the windows resolved by then (one step of lag): a's from origins
    # 0, 2, .., 8 crossed, b's from origins 0..8 did not: 5 of 14 raw zeros were crossings.
    assert probability[10]["b"] == pytest.approx(5 / 14)
    labels = {"target": "t", "within": "1s"}
    assert env.registry.get_sample_value("tsf_adapter_probability_calibrated", labels) == 1.0
    pairs = env.registry.get_sample_value("tsf_adapter_probability_calibration_pairs", labels)
    assert pairs is not None and pairs >= 4


def test_a_target_of_baselines_never_loads_torch() -> None:
    """The default scope (auto) is resolved from a trained network; a baseline has none, and
    asking must not import torch (seconds and hundreds of MiB at start, for nothing)."""
    code = """
import asyncio, sys
from concurrent.futures import ThreadPoolExecutor
from prometheus_client import CollectorRegistry
from tsf_adapter.config import TargetConfig, decode_section
from tsf_adapter.pipeline.metrics import DaemonMetrics
from tsf_adapter.pipeline.runner import RunnerDeps, TargetRunner, Workers
from tsf_adapter.store.store import Store

target = decode_section(TargetConfig, {"name": "t", "selector": "m", "model": {"kind": "last_value"}})
pool = ThreadPoolExecutor(1)
deps = RunnerDeps(store=Store([target]), workers=Workers(ingest=pool, forecast=pool, train=pool),
                  metrics=DaemonMetrics(CollectorRegistry()))

async def main():
    runner = TargetRunner(target, deps)
    await runner.forecast_once()
    await runner.train_once()

asyncio.run(main())
pool.shutdown()
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
