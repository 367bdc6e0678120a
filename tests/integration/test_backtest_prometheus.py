"""``tsf-adapter backtest --prometheus``: series read through remote-read give the same forecasts as CSVs.

Samples go into a fresh Prometheus 2.42 with one remote-write request (its
first append sets the head's range, so ~75 minutes of past samples are
accepted; PROTOCOL.md §7a/b). Each series the selector matches is one input,
named by its labels.
"""

from __future__ import annotations

import csv
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import snappy

from tests.prometheus import PrometheusProcess
from tsf_adapter import cli
from tsf_adapter._pb import remote_pb2, types_pb2
from tsf_adapter.tools.csvio import write_series_csv

pytestmark = pytest.mark.integration

FLAGS = [
    *("--history", "10m", "--horizon", "5m", "--origin-every", "5m", "--start-frac", "0.5"),
    *("--models", "predict_linear,last_value,holt_winters"),
]


def _push(url: str, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    request = remote_pb2.WriteRequest(
        timeseries=[
            types_pb2.TimeSeries(
                labels=[
                    types_pb2.Label(name="__name__", value="bt_test"),
                    types_pb2.Label(name="k", value=k),
                ],
                samples=[
                    types_pb2.Sample(timestamp=t, value=v)
                    for t, v in zip(ts.tolist(), vs.tolist(), strict=True)
                ],
            )
            for k, (ts, vs) in series.items()
        ]
    )
    body = snappy.compress(request.SerializeToString())
    req = urllib.request.Request(
        f"{url}/api/v1/write",
        data=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def _rows(path: Path) -> list[tuple[str, ...]]:
    with path.open() as f:
        return [tuple(r[1:]) for r in csv.reader(f)][1:]


def test_backtest_reads_prometheus_like_csv(
    prometheus_factory: Callable[..., PrometheusProcess], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prom = prometheus_factory()
    end_s = int(time.time()) - 60
    ts = (end_s - 15 * np.arange(300)[::-1]) * 1000
    rng = np.random.default_rng(7)
    series = {k: (ts, np.round(100 + np.cumsum(rng.normal(0, 1, 300)), 3)) for k in ("a", "b")}
    _push(prom.url, series)

    with pytest.raises(SystemExit) as exc:
        cli.main(
            [
                "backtest",
                *("--prometheus", prom.url, "--selector", "bt_test"),
                *("--start", str(end_s - 3 * 3600), "--end", str(end_s + 1)),
                *FLAGS,
                *("--out", str(tmp_path / "prom.csv")),
            ]
        )
    assert exc.value.code == 0, capsys.readouterr().err
    for k, (t, v) in series.items():
        write_series_csv(tmp_path / f"{k}.csv", t, v)
    with pytest.raises(SystemExit) as exc:
        cli.main(
            [
                "backtest",
                *("--input", str(tmp_path / "a.csv"), "--input", str(tmp_path / "b.csv")),
                *FLAGS,
                *("--out", str(tmp_path / "csv.csv")),
            ]
        )
    assert exc.value.code == 0
    with (tmp_path / "prom.csv").open() as f:
        names = {r[0] for r in list(csv.reader(f))[1:]}
    assert names == {'bt_test{k="a"}', 'bt_test{k="b"}'}
    assert _rows(tmp_path / "prom.csv") == _rows(tmp_path / "csv.csv")
    assert len(_rows(tmp_path / "csv.csv")) > 0
