"""Our predict_linear / holt_winters kernels against a real Prometheus 2.x, bit for bit.

The samples go into a fresh, non-scraping Prometheus with one remote-write
request (a fresh head accepts hours-old samples in its first request), then
the same expressions are evaluated by Prometheus's HTTP API and by our kernels
at several evaluation times, on samples and between them.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import snappy

from tests.prometheus import PrometheusProcess
from tsf_adapter._pb import remote_pb2
from tsf_adapter.config import TargetConfig
from tsf_adapter.core.selector import Matcher, MatchOp, Selector
from tsf_adapter.core.series import STALE_NAN, make_labels
from tsf_adapter.forecast.baselines import PredictLinear, holt_winters, predict_linear, select_range
from tsf_adapter.store.store import Store

pytestmark = pytest.mark.integration

STEP_MS = 60_000


def make_series(end_ms: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    i = np.arange(781)
    regular = (end_ms - 780 * STEP_MS + i * STEP_MS, 1000 + 2.5 * i + 50 * np.sin(i / 7))
    # Irregular: random intervals with ms jitter, a 40-minute hole, a staleness marker and a restart.
    rng = np.random.default_rng(7)
    gaps = rng.integers(1_000, 90_000, size=600)
    gaps[300] = 40 * 60_000
    ts = end_ms - 5_000 - np.cumsum(gaps)[::-1]
    vs = np.round(rng.normal(0, 1e4, size=600).cumsum(), 3) + 1e6
    vs[450] = STALE_NAN
    return {"pl_test": regular, "irregular": (ts.astype(np.int64), vs)}


def write_request(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    req = remote_pb2.WriteRequest()
    for name, (ts, vs) in series.items():
        s = req.timeseries.add()
        s.labels.add(name="__name__", value=name)
        s.labels.add(name="job", value="baseline")
        for t, v in zip(ts.tolist(), vs.tolist(), strict=True):
            s.samples.add(timestamp=t, value=v)
    return bytes(snappy.compress(req.SerializeToString()))


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.status)


def seconds(ms: int) -> str:
    """Prometheus parses ``time=`` as float seconds rounded to ms; three decimals are exact."""
    return f"{ms // 1000}.{ms % 1000:03d}"


def prom_value(prom: PrometheusProcess, expr: str, eval_ms: int) -> float | None:
    result: list[dict[str, Any]] = prom.api("query", query=expr, time=seconds(eval_ms))["result"]
    assert len(result) <= 1
    return float(result[0]["value"][1]) if result else None


def same(a: float | None, b: float | None) -> bool:
    """Bit-exact, with NaN equal to NaN."""
    if a is None or b is None:
        return a is b
    return np.float64(a).tobytes() == np.float64(b).tobytes()


Kernel = Callable[[np.ndarray, np.ndarray, int], float | None]

CASES: list[tuple[str, Kernel]] = [
    ("predict_linear({m}[12h], 21600)", lambda t, v, e: predict_linear(t, v, e, 12 * 3_600_000, 21600)),
    ("predict_linear({m}[1h], 600)", lambda t, v, e: predict_linear(t, v, e, 3_600_000, 600)),
    ("predict_linear({m}[5m], -90.5)", lambda t, v, e: predict_linear(t, v, e, 300_000, -90.5)),
    ("holt_winters({m}[12h], 0.3, 0.1)", lambda t, v, e: holt_winters(t, v, e, 12 * 3_600_000, 0.3, 0.1)),
    ("holt_winters({m}[30m], 0.5, 0.9)", lambda t, v, e: holt_winters(t, v, e, 1_800_000, 0.5, 0.9)),
]


def test_kernels_equal_prometheus_bit_for_bit(prometheus_factory: Callable[..., PrometheusProcess]) -> None:
    prom = prometheus_factory()
    end_ms = (int(time.time() * 1000) // STEP_MS - 1) * STEP_MS
    series = make_series(end_ms)
    assert post(f"{prom.url}/api/v1/write", write_request(series)) == 204

    ts, vs = series["pl_test"]
    # The numbers measured in PROTOCOL.md §7d, now on this Prometheus.
    assert prom_value(prom, "predict_linear(pl_test[12h], 6*3600)", end_ms) == 3851.4486797798086
    assert prom_value(prom, "holt_winters(pl_test[12h], 0.3, 0.1)", end_ms) == 2897.20657143293

    eval_offsets = [0, 30_000, -450_000, -17_250, -3 * 3_600_000 - 12_345, -12 * 3_600_000 - 1]
    compared = 0
    for name, (ts, vs) in series.items():
        for offset in eval_offsets:
            eval_ms = end_ms + offset
            for template, kernel in CASES:
                expr = template.format(m=name)
                ours = kernel(ts, vs, eval_ms)
                theirs = prom_value(prom, expr, eval_ms)
                assert same(ours, theirs), (
                    f"{expr} at {seconds(eval_ms)}: ours {ours!r}, prometheus {theirs!r}"
                )
                compared += theirs is not None
    assert compared >= 40

    # A range query evaluates at every step: same answers.
    data = prom.api(
        "query_range",
        query="predict_linear(irregular[20m], 3600)",
        start=seconds(end_ms - 3 * 3_600_000),
        end=seconds(end_ms),
        step="299.5",
    )["result"]
    ts, vs = series["irregular"]
    points = data[0]["values"]
    assert len(points) > 20
    for t_s, value in points:
        eval_ms = round(float(t_s) * 1000)
        assert same(predict_linear(ts, vs, eval_ms, 20 * 60_000, 3600), float(value))

    # And the samples Prometheus stored are the ones our range selection sees.
    raw = prom.range_samples("irregular", end_ms / 1000, 3600)[0]["values"]
    sel_ts, sel_vs = select_range(ts, vs, end_ms, 3_600_000)
    assert [round(float(t) * 1000) for t, _ in raw] == sel_ts.tolist()
    assert [float(v) for _, v in raw] == sel_vs.tolist()


def test_store_and_forecaster_reproduce_prometheus(
    prometheus_factory: Callable[..., PrometheusProcess],
) -> None:
    """Samples through the store's grid, forecast by ``PredictLinear``, equal PromQL at each horizon."""
    prom = prometheus_factory()
    end_ms = (int(time.time() * 1000) // STEP_MS - 1) * STEP_MS
    series = {"pl_test": make_series(end_ms)["pl_test"]}
    assert post(f"{prom.url}/api/v1/write", write_request(series)) == 204

    selector = Selector((Matcher("__name__", MatchOp.EQ, "pl_test"),))
    store = Store([TargetConfig(name="pl", selector=selector, history=86_400)])
    ref = store.series_ref(make_labels({"__name__": "pl_test", "job": "baseline"}))
    assert ref is not None
    ts, vs = series["pl_test"]
    store.append(np.full(ts.size, ref, dtype=np.int64), ts, vs)
    batch = store.batch("pl")
    assert batch is not None and batch.end_ms == end_ms
    forecast = PredictLinear(range_s=12 * 3600).predict(batch, 360)[0, 0]
    for k in (1, 60, 360):
        theirs = prom_value(prom, f"predict_linear(pl_test[12h], {k * 60})", end_ms)
        assert same(float(forecast[k - 1]), theirs)
