"""Pathological series never break a target: every model kind trains and forecasts on them
beside a normal series, nothing escapes the runner, and nothing non-finite is written.

The one value allowed to be infinite is ``m:forecast_threshold_seconds``: ``+Inf`` says that
the quantile does not reach the threshold within the longest horizon (the output contract).
A series whose model forecast is not finite is served by ``predict_linear``; one whose
``predict_linear`` is not finite either has no forecast rows at all, and both are counted in
``tsf_adapter_forecast_nonfinite_series_total``.

The runners are driven as ``test_scheduler.py`` drives them: a fake clock, a tiny grid of
1-second steps, and ``retrain_every: 1s`` so a neural training stops on its 0.8 s budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from tests.pipeline.test_scheduler import T0, Env, env, pools, target
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.pipeline import adhoc
from tsf_adapter.pipeline.output import ForecastOutput, ForecastOutputBuilder
from tsf_adapter.pipeline.runner import TargetRunner

__all__ = ["env", "pools"]  # fixtures, used by name

FloatArray = npt.NDArray[np.float64]
STEPS = 90  # of history before the first forecast: enough to train a 24-step window
LATER = 4  # forecasts after the training, one new sample each
NORMAL = "normal"


def _normal(k: FloatArray) -> FloatArray:
    return 50.0 + 0.5 * k + 3.0 * np.sin(k / 4.0)


def _infinite(k: FloatArray) -> FloatArray:
    v = _normal(k)
    v[k % 7 == 3] = np.inf
    v[k % 11 == 5] = -np.inf
    return v


# Each maps the step numbers 0, 1, 2, ... of the samples to their values (NaN: no sample).
PATHOLOGIES: dict[str, Callable[[FloatArray], FloatArray]] = {
    "constant": lambda k: np.full(k.shape, 42.0),
    "all_nan": lambda k: np.full(k.shape, np.nan),
    "one_sample": lambda k: np.where(k == STEPS - 1, 7.0, np.nan),
    "huge": lambda k: 1e300 * (1.0 + 0.1 * np.sin(k / 3.0)),
    "max_float": lambda k: np.where(k % 2 == 0, 1.7e308, -1.7e308),
    "steps_of_1e15": lambda k: 1e15 * (k // 10),
    "counter_reset": lambda k: np.where(k < 60, 1000.0 + 10.0 * k, 10.0 * (k - 60)),
    "infinite_samples": _infinite,
    "all_infinite": lambda k: np.full(k.shape, np.inf),
    "alternating_huge_tiny": lambda k: np.where(k % 2 == 0, 1e300, 1e-300),
}
# What a network cannot forecast in float64, nor predict_linear: left out. Every other series,
# however odd, is the network's once it has trained (its values fit float64 once scaled).
UNFORECASTABLE = {"all_nan", "max_float", "all_infinite"}
BASELINES = ("predict_linear", "last_value", "holt_winters", "seasonal_naive")
NEURAL = ("lstm", "gru", "transformer", "auto")
ARCHITECTURES = {"lstm", "gru", "transformer"}


def _fill(env: Env, names: list[str], first: int, count: int) -> None:
    """Samples ``first .. first + count - 1`` of every named series, a gap for each NaN."""
    k = np.arange(first, first + count, dtype=np.float64)
    for name in names:
        values = _normal(k) if name == NORMAL else PATHOLOGIES[name](k)
        for step, value in zip(k.tolist(), values.tolist(), strict=True):
            if not np.isnan(value) or name == "all_nan":  # a NaN sample, as Prometheus has them
                env.put(name, T0 - STEPS + step, value)


def _served(out: ForecastOutput | None) -> dict[str, str]:
    """The model of every series written; first, that every value written is finite but
    ``:forecast_threshold_seconds`` (never NaN)."""
    assert out is not None
    for name, value in zip(out.names, out.values.tolist(), strict=True):
        if name.endswith(":forecast_threshold_seconds"):
            assert not np.isnan(value), name
        else:
            assert np.isfinite(value), (name, value)
    for path in out.paths:
        assert isinstance(path, SeriesSamples)
        assert np.isfinite(path.values).all(), path.labels
    return {
        dict(lab)["instance"]: dict(lab)["model"]
        for lab in out.labels
        if dict(lab)["__name__"] == "m:forecast_model_info"
    }


async def _drive(env: Env, kind: str, names: list[str], **model: object) -> list[dict[str, str]]:
    """Forecast, train, then forecast on as new samples arrive: the models of every forecast.

    Nothing escapes, no forecast fails, and every series left out is counted."""
    env.deps.device = "cpu"
    env.deps.future_timestamps = True
    cfg = target(
        model={"kind": kind, **model},
        history="2m",
        horizons=["1s", "2s"],
        retrain_every="1s",
        threshold={"value": 100.0},
    )
    env.store.reconfigure([cfg])
    r = TargetRunner(cfg, env.deps)
    _fill(env, names, 0, STEPS)
    served = [_served(await r.forecast_once())]
    await r.train_once()
    for j in range(LATER):  # the trained model's forecasts, and past forecasts' errors maturing
        _fill(env, names, STEPS + j, 1)
        env.clock.now = T0 + j + 1
        served.append(_served(await r.forecast_once()))
    assert env.value("tsf_adapter_forecast_errors_total") in (None, 0.0)
    stored = [n for n in names if n != "all_nan"]  # a series of NaN alone is no series to the store
    left_out = sum(len(stored) - len(s) for s in served)
    counted = env.registry.get_sample_value(
        "tsf_adapter_forecast_nonfinite_series_total", {"target": "t", "outcome": "left_out"}
    )
    assert (counted or 0.0) == left_out
    return served


@pytest.mark.parametrize("kind", BASELINES)
@pytest.mark.parametrize("pathology", sorted(PATHOLOGIES))
async def test_a_baseline_writes_only_finite_forecasts(env: Env, kind: str, pathology: str) -> None:
    served = await _drive(env, kind, [NORMAL, pathology])
    # A day back lies beyond a 2-minute history: seasonal_naive has nothing to say, predict_linear serves.
    serves = "predict_linear" if kind == "seasonal_naive" else kind
    assert all(s[NORMAL] == serves for s in served)
    assert all(s.get(pathology, serves) in (serves, "predict_linear") for s in served)


@pytest.mark.parametrize("scope", ["per_series", "global"])
@pytest.mark.parametrize("kind", NEURAL)
async def test_a_network_trains_and_forecasts_beside_every_pathology(env: Env, kind: str, scope: str) -> None:
    served = await _drive(env, kind, [NORMAL, *PATHOLOGIES], scope=scope)
    assert env.value("tsf_adapter_training_failures_total") in (None, 0.0)
    # Untrained, predict_linear serves: as in PromQL, it has no value for one sample or with an Inf.
    assert set(served[0]) == set(PATHOLOGIES) - UNFORECASTABLE - {"one_sample", "infinite_samples"} | {NORMAL}
    assert set(served[0].values()) == {"predict_linear"}
    trained = served[-1]
    assert set(trained) == set(PATHOLOGIES) - UNFORECASTABLE | {NORMAL}
    assert set(trained.values()) <= ARCHITECTURES if kind == "auto" else set(trained.values()) == {kind}


async def test_a_baseline_forecast_that_is_not_finite_falls_back_and_is_counted(env: Env) -> None:
    # last_value holds +Inf flat; predict_linear cannot forecast a series of +Inf either.
    served = await _drive(env, "last_value", [NORMAL, "all_infinite"])
    assert all("all_infinite" not in s for s in served)
    fallback = {"target": "t", "outcome": "fallback"}
    assert env.registry.get_sample_value("tsf_adapter_forecast_nonfinite_series_total", fallback) == 1 + LATER


class _Overflowing:
    """A trained model whose forecast of one series overflows: a model defect the output must not show."""

    NEEDS_FIT: ClassVar[bool] = True
    QUANTILES: ClassVar[bool] = True
    name = "lstm"
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)

    def fit(self, batch: GridBatch) -> None:
        pass

    def predict(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        out = np.full((batch.n_series, 3, horizon_steps), 100.0)
        out[[i for i, lab in enumerate(batch.labels) if dict(lab)["instance"] == "bad"], 2, -1] = np.inf
        return out


async def _overflowing_runner(env: Env) -> TargetRunner:
    """A runner trained on a good and a bad series, whose model overflows on the bad one."""
    for k in range(10):
        env.put("good", T0 - 9 + k, float(k))
        env.put("bad", T0 - 9 + k, float(k))
    r = TargetRunner(target(), env.deps, forecaster=_Overflowing())
    assert await r.train_once()
    return r


async def test_a_model_forecast_that_is_not_finite_is_replaced_by_predict_linear(env: Env) -> None:
    r = await _overflowing_runner(env)
    out = await r.forecast_once()
    assert _served(out) == {"good": "lstm", "bad": "predict_linear"}
    assert out is not None and env.value("tsf_adapter_target_model_series") == 1.0
    fallback = {"target": "t", "outcome": "fallback"}
    assert env.registry.get_sample_value("tsf_adapter_forecast_nonfinite_series_total", fallback) == 1.0
    bad = {t: v for t, v in zip(out.texts, out.values.tolist(), strict=True) if 'instance="bad"' in t}
    assert bad['m:forecast{horizon="2s",instance="bad",quantile="0.9"}'] == pytest.approx(11.0)


async def test_an_ad_hoc_forecast_falls_back_the_same_but_counts_nothing(env: Env) -> None:
    r = await _overflowing_runner(env)
    batch = env.store.batch("t")
    assert batch is not None
    result = adhoc.forecast(r, batch, 2)
    served = {
        dict(labels)["instance"]: model
        for labels, (model, _) in zip(batch.labels, result.models, strict=True)
    }
    assert served == {"good": "lstm", "bad": "predict_linear"}
    fallback = {"target": "t", "outcome": "fallback"}
    assert env.registry.get_sample_value("tsf_adapter_forecast_nonfinite_series_total", fallback) in (
        None,
        0.0,
    )


def test_the_builder_leaves_out_series_without_a_finite_forecast_and_counts_them() -> None:
    cfg = target(horizons=["1s", "2s"], threshold={"value": 5.0})
    labels = tuple(make_labels({"__name__": "m", "instance": i}) for i in "abcd")
    history = np.array([[1.0, 2.0], [1.0, np.inf], [1.0, 2.0], [np.nan, np.nan]])
    batch = GridBatch("t", labels, history, 1_000, 1_000)
    prediction = np.full((4, 3, 2), 3.0)
    prediction[1] = 9.0  # its last sample was +Inf: the crossing is read from the path alone
    prediction[2, 0, 1] = np.inf
    prediction[3] = np.nan
    out = ForecastOutputBuilder(cfg, future_timestamps=True).build(batch, prediction, now_ms=3_000)
    assert (out.left_out, out.skipped) == (2, 0)
    assert {dict(lab)["instance"] for lab in out.labels} == {"a", "b"}
    written = dict(zip(out.texts, out.values.tolist(), strict=True))
    assert written['m:forecast_threshold_seconds{instance="a",quantile="0.5"}'] == np.inf
    assert written['m:forecast_threshold_seconds{instance="b",quantile="0.5"}'] == 0.0
    assert written['m:forecast_threshold_probability{instance="b",within="1s"}'] == 1.0
    assert all(np.isfinite(v) for t, v in written.items() if "threshold_seconds" not in t)
    assert len(out.paths) == 6
