"""VictoriaMetrics as the source and the sink: history backfilled through its export API (it serves
no remote-read), forecasts written back by remote-write, and a backtest read from it.

A real ``victoria-metrics`` and ``tsf-adapter run`` as a process. Waits poll for a state under a
guard against hangs; no speed is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.daemon_config import connection_yaml
from tests.prometheus import free_port
from tests.victoria import VictoriaMetricsProcess
from tsf_adapter.cli import main
from tsf_adapter.core.series import SeriesSamples, make_labels

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 90.0  # seconds; only against a hang, never a speed assertion


def history(now_ms: int, seconds: int = 150) -> list[SeriesSamples]:
    """A disk filling by 1 MB a second for two and a half minutes, one sample a second."""
    t = np.arange(now_ms - seconds * 1000, now_ms, 1000, dtype=np.int64)
    values = 5e8 + 1e6 * np.arange(t.size, dtype=np.float64)
    labels = make_labels({"__name__": "disk_used", "job": "node", "instance": "a"})
    return [SeriesSamples(labels, t, values)]


def wait_for(what: str, check: Callable[[], bool], log: Callable[[], str]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}:\n{log()}")


def metrics_text(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return ""


def test_backfill_from_victoria_metrics_and_forecasts_written_back(tmp_path: Path) -> None:
    with VictoriaMetricsProcess(tmp_path) as vm:
        now_ms = int(time.time() * 1000)
        vm.import_series(history(now_ms))
        port = free_port()
        config = tmp_path / "config.yaml"
        connection = connection_yaml(
            port, f"{vm.url}/api/v1/export", f"{vm.url}/api/v1/write", tmp_path / "state", read_api="export"
        )
        config.write_text(
            connection
            + """
targets:
  - name: disk
    selector: 'disk_used'
    step: 1s
    history: 2m
    horizons: [10s, 20s]
    model: {kind: predict_linear}
    forecast_every: 1s
    retrain_every: 1m
"""
        )
        log = tmp_path / "daemon.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tsf_adapter", "run", "--config", str(config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            # The history came through the export API: two minutes of it, at one sample a second.
            wait_for(
                "backfill",
                lambda: 'tsf_adapter_backfill_samples_total{target="disk"}' in metrics_text(url),
                log.read_text,
            )
            backfilled = [
                line
                for line in metrics_text(url).splitlines()
                if line.startswith("tsf_adapter_backfill_samples_total{")
            ]
            assert float(backfilled[0].rsplit(" ", 1)[1]) >= 100, backfilled
            # ... and the forecasts of that history are in VictoriaMetrics, per horizon and quantile.

            def forecasts() -> list[SeriesSamples]:
                return vm.export('{__name__="disk_used:forecast"}', now_ms / 1000 - 60, time.time() + 60)

            wait_for("forecasts in VictoriaMetrics", lambda: len(forecasts()) == 6, log.read_text)
            keys = sorted((dict(s.labels)["horizon"], dict(s.labels)["quantile"]) for s in forecasts())
            assert keys == [(h, q) for h in ("10s", "20s") for q in ("0.1", "0.5", "0.9")]
            for series in forecasts():
                assert dict(series.labels)["instance"] == "a"
                # predict_linear of a line rising 1 MB/s: above the last value it saw.
                assert float(series.values[-1]) > 5e8 + 1e6 * 140
        finally:
            proc.terminate()
            assert proc.wait(HANG_GUARD) == 0, log.read_text()
        assert "Traceback" not in log.read_text()


def test_backtest_reads_its_inputs_from_victoria_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with VictoriaMetricsProcess(tmp_path) as vm:
        now_ms = int(time.time() * 1000)
        vm.import_series(history(now_ms, seconds=600))
        out = tmp_path / "forecasts.csv"
        argv = [
            "backtest",
            *("--prometheus", vm.url, "--read-api", "export", "--selector", "disk_used"),
            *("--start", f"{(now_ms - 600_000) / 1000:.3f}", "--end", f"{now_ms / 1000:.3f}"),
            *("--history", "2m", "--horizon", "30s", "--origin-every", "30s", "--start-frac", "0.5"),
            *("--models", "last_value,predict_linear", "--out", str(out)),
        ]
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        assert printed.splitlines()[0] == "1 series; geometric means across series (coverage: mean)"
        rows = out.read_text().splitlines()
        assert rows[0] == "series,model,origin,timestamp,quantile,value" and len(rows) > 100
