"""``tsf-adapter run`` as a real process, against a fake Prometheus served by this test.

The fake answers remote-read with a little history (encoded with our own read codec) and
records every remote-write it is sent. The test feeds live samples to the daemon's receiver
and watches the forecasts arrive. Timing never decides a pass: every wait polls for a state
with a generous guard against hangs only.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.daemon_config import connection_yaml
from tests.live_daemon import HANG_GUARD, FakePrometheus, daemon_factory, http, wait_for
from tests.prometheus import free_port
from tsf_adapter.cli import main
from tsf_adapter.core.series import SeriesSamples, make_labels, stale_mask
from tsf_adapter.remote.codec import encode_write_request

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["daemon_factory"]  # a fixture, used by name


def history(now_ms: int) -> list[SeriesSamples]:
    """100 s of one-second samples: two load series (a trend plus a wave) and one disk series."""
    ts = [now_ms - 1000 * k for k in range(100, 0, -1)]
    out = []
    for inst, base in (("a", 100.0), ("b", 50.0)):
        values = [base + 0.5 * i + 3 * math.sin(i / 4) for i in range(len(ts))]
        out.append(SeriesSamples(make_labels({"__name__": "load", "job": "j", "instance": inst}), ts, values))
    out.append(
        SeriesSamples(make_labels({"__name__": "disk", "job": "j"}), ts, [1e9 - 1e6 * i for i in range(100)])
    )
    return out


def config_text(port: int, fake: FakePrometheus, state: Path, *, mode: str, disk_horizons: str) -> str:
    neural = """
  - name: neural
    selector: 'load{job="j"}'
    step: 1s
    history: 2m
    horizons: [2s, 4s]
    model: {kind: lstm}
    retrain_every: 10s
    forecast_every: 1s
"""
    connection = connection_yaml(port, f"{fake.url}/api/v1/read", f"{fake.url}/api/v1/write", state)
    return (
        connection
        + f"""
output:
  mode: {mode}
targets:
{neural if mode == "remote_write" else ""}
  - name: base
    selector: 'disk'
    step: 1s
    history: 1m
    horizons: {disk_horizons}
    model: {{kind: last_value}}
    retrain_every: 1m
    forecast_every: 1s
    threshold: {{value: 0, direction: below}}
"""
    )


class Pusher:
    """Sends the current value of some series to the daemon's receiver about twice a second."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.instances = ["a", "b"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            now = int(time.time() * 1000)
            series = [
                SeriesSamples(make_labels({"__name__": "load", "job": "j", "instance": i}), [now], [150.0])
                for i in list(self.instances)
            ]
            series.append(SeriesSamples(make_labels({"__name__": "disk", "job": "j"}), [now], [9e8]))
            with contextlib.suppress(OSError):
                http("POST", f"{self.url}/api/v1/write", encode_write_request(series))
            self.stop.wait(0.5)


def test_run_backfills_forecasts_reloads_and_flushes_on_sigterm(tmp_path: Path, daemon_factory) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with FakePrometheus(history(int(time.time() * 1000))) as fake:
        config = tmp_path / "config.yaml"
        config.write_text(
            config_text(port, fake, tmp_path / "state", mode="remote_write", disk_horizons="[2s]")
        )
        daemon = daemon_factory(config)
        daemon.start()

        def probe(path: str) -> int:
            try:
                return http("GET", url + path)[0]
            except OSError:
                return -1

        # Backfill is held by the fake: healthy, not ready, and writes are turned away for later.
        wait_for("healthy", lambda: probe("/-/healthy") == 200, daemon.log)
        assert probe("/-/ready") == 503
        assert http("POST", f"{url}/api/v1/write", encode_write_request([]))[0] == 503
        fake.read_gate.set()
        wait_for("ready", lambda: probe("/-/ready") == 200, daemon.log)
        pusher = Pusher(url)
        pusher.thread.start()
        try:
            # The neural target's series get a model of their own after the first training.
            wait_for(
                "lstm forecasts", lambda: ("a", "lstm") in fake.infos("load:forecast_model_info"), daemon.log
            )
            # The baseline's model_info series of "a" ends with a staleness marker at once.
            wait_for(
                "marker",
                lambda: ("a", "predict_linear") in _ended(fake, "load:forecast_model_info"),
                daemon.log,
            )
            # A series seen for the first time is forecast by the baseline until it is trained.
            pusher.instances.append("c")
            wait_for(
                "c", lambda: any(i == "c" for i, _ in fake.infos("load:forecast_model_info")), daemon.log
            )
            assert ("c", "predict_linear") in fake.infos("load:forecast_model_info")
            assert fake.infos("disk:forecast_model_info") == {("", "last_value")}
            wait_for("forecast errors", lambda: _names(fake) >= {"load:forecast_error"}, daemon.log)

            names = _names(fake)
            assert {"load:forecast", "disk:forecast", "disk:forecast_threshold_seconds"} <= names
            rows = {_key(s) for s in fake.series() if dict(s.labels)["__name__"] == "load:forecast"}
            assert ("a", "2s", "0.1") in rows and ("b", "4s", "0.9") in rows
            # Never a future timestamp: every sample is stamped at or before the time we read it.
            now_ms = int(time.time() * 1000)
            assert all(int(s.timestamps.max()) <= now_ms for s in fake.series())

            status, metrics = http("GET", f"{url}/metrics")
            assert status == 200
            for family in (
                "tsf_adapter_target_series",
                "tsf_adapter_train_duration_seconds",
                "tsf_adapter_forecast_duration_seconds",
                "tsf_adapter_remote_write_queue_length",
                "tsf_adapter_remote_write_retries_total",
                "tsf_adapter_forecast_last_success_timestamp_seconds",
                "tsf_adapter_forecast_errors_total",
                "tsf_adapter_training_skipped_total",
                "tsf_adapter_training_failures_total",
                "tsf_adapter_receiver_samples_dropped_total",
                'tsf_adapter_target_stored_series{target="neural"} 3.0',
                'tsf_adapter_target_series_refused_total{target="neural"} 0.0',
                # What every Prometheus component exports about itself.
                "tsf_adapter_build_info",
                "tsf_adapter_config_last_reload_successful 1.0",
                "tsf_adapter_config_last_reload_success_timestamp_seconds",
                "process_resident_memory_bytes",
                "process_open_fds",
                "python_info",
                "python_gc_objects_collected_total",
            ):
                assert f"\n{family}" in metrics, family
            assert 'tsf_adapter_target_series{target="neural"} 3.0' in metrics

            # A bad config on POST /-/reload (a config-reloader sidecar's call): 500 with the reason,
            # logged, the running config kept, and the metric says so.
            good = config.read_text()
            config.write_text(good.replace("step: 1s", "step: -1s", 1))
            status, text = http("POST", f"{url}/-/reload")
            assert status == 500 and text.startswith(f"failed to reload config: {config}: targets[0].step")
            assert "reload failed, keeping the running config" in daemon.log()
            assert "\ntsf_adapter_config_last_reload_successful 0.0" in http("GET", f"{url}/metrics")[1]
            assert http("GET", f"{url}/-/reload")[0] == 405
            # Change only the baseline target (SIGHUP this time): the neural one keeps its runner.
            config.write_text(good.replace("horizons: [2s]", "horizons: [2s, 3s]"))
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            wait_for("reload", lambda: "1 targets kept, 1 started, 0 stopped" in daemon.log(), daemon.log)
            wait_for(
                "reload metric",
                lambda: "\ntsf_adapter_config_last_reload_successful 1.0" in http("GET", f"{url}/metrics")[1],
                daemon.log,
            )
            wait_for(
                "new horizon",
                lambda: any(_key(s)[1] == "3s" for s in fake.series() if "disk:forecast" in str(s.labels)),
                daemon.log,
            )
            assert daemon.log().count("target neural: loaded") == 0  # never replaced, so never reloaded
        finally:
            pusher.stop.set()
            pusher.thread.join(5)

        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(HANG_GUARD) == 0
        log = daemon.log()
        closed = re.search(r"write queue closed: (\d+) samples sent, (\d+) dropped", log)
        assert closed is not None, log
        assert int(closed.group(2)) == 0
        assert int(closed.group(1)) == sum(len(s) for s in fake.series())
        assert log.index("stopping: no longer ready") < log.index("write queue closed")
        assert (tmp_path / "state" / "neural.pt").exists()
        assert "Traceback" not in log


def test_exposition_mode_serves_the_latest_forecasts(tmp_path: Path, daemon_factory) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with FakePrometheus(history(int(time.time() * 1000))) as fake:
        fake.read_gate.set()
        config = tmp_path / "config.yaml"
        config.write_text(
            config_text(port, fake, tmp_path / "state", mode="exposition", disk_horizons="[2s]")
        )
        daemon = daemon_factory(config)
        daemon.start()

        def forecasts() -> str:
            try:
                status, text = http("GET", f"{url}/forecasts")
            except OSError:
                return ""
            return text if status == 200 else ""

        wait_for("forecasts", lambda: "disk:forecast{" in forecasts(), daemon.log)
        text = forecasts()
        assert "# TYPE disk:forecast gauge" in text
        assert 'disk:forecast{horizon="2s",job="j",quantile="0.5"}' in text
        assert 'disk:forecast_model_info{job="j",model="last_value",scope="per_series"} 1.0' in text
        assert fake.series() == []  # nothing is pushed in this mode
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(HANG_GUARD) == 0
        # What the target learned of its own errors is kept, and taken back by the next run.
        assert (tmp_path / "state" / "base.memory.npz").exists()
        again = daemon_factory(config)
        again.start()
        wait_for(
            "memory", lambda: "target base: loaded forecast memory of 1 series" in again.log(), again.log
        )
        assert again.proc is not None
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(HANG_GUARD) == 0


def _names(fake: FakePrometheus) -> set[str]:
    return {dict(s.labels)["__name__"] for s in fake.series()}


def _ended(fake: FakePrometheus, name: str) -> set[tuple[str, str]]:
    """(instance, model) of every ``name`` series that got a staleness marker."""
    out = set()
    for s in fake.series():
        labels = dict(s.labels)
        if labels["__name__"] == name and stale_mask(s.values).any():
            out.add((labels.get("instance", ""), labels["model"]))
    return out


def _key(s: SeriesSamples) -> tuple[str, str, str]:
    labels = dict(s.labels)
    return labels.get("instance", ""), labels.get("horizon", ""), labels.get("quantile", "")


def test_run_with_a_bad_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "tests" / "testdata" / "config" / "state_dir_empty.bad.yaml"
    with pytest.raises(SystemExit) as exited:
        main(["run", "--config", str(path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"tsf-adapter: {path}: state_dir: must not be empty\n"


def test_sigterm_during_a_training_ends_it_saves_the_model_and_exits_0(
    tmp_path: Path, daemon_factory
) -> None:
    """The stop reaches a running fit through the training clock: it ends at its next step with
    the best weights so far, which are saved, and the process exits 0."""
    now_ms = int(time.time() * 1000)
    ts = np.arange(now_ms - 3 * 3600 * 1000, now_ms, 1000, dtype=np.int64)  # 3h of 1s samples
    busy = [
        SeriesSamples(
            make_labels({"__name__": "busy", "job": "j", "instance": f"i{k}"}),
            ts,
            100.0 + k + 10 * np.sin(np.arange(ts.size) / (60 + k)),
        )
        for k in range(30)
    ]
    port = free_port()
    with FakePrometheus(busy) as fake:
        fake.read_gate.set()
        config = tmp_path / "config.yaml"
        connection = connection_yaml(
            port, f"{fake.url}/api/v1/read", f"{fake.url}/api/v1/write", tmp_path / "state"
        )
        config.write_text(
            connection
            + """
targets:
  - name: busy
    selector: 'busy{job="j"}'
    step: 1s
    history: 3h
    horizons: [30s, 60s]
    model: {kind: lstm}
    retrain_every: 1h
    forecast_every: 5s
"""
        )
        daemon = daemon_factory(config)
        daemon.start()
        # The first epoch's progress line: the training is running, its budget 48 minutes away.
        wait_for(
            "a training in progress", lambda: "target busy: training lstm: epoch" in daemon.log(), daemon.log
        )
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(HANG_GUARD) == 0, daemon.log()
    log = daemon.log()
    (trained,) = [line for line in log.splitlines() if "target busy: trained 30 series" in line]
    # Cut off (the stop reads as a spent budget) well before its 30 epochs, and saved.
    match = re.search(r"lstm: budget after (\d+) epochs", trained)
    assert match is not None and int(match.group(1)) < 30, trained
    assert "saved to" in trained and (tmp_path / "state" / "busy.pt").exists()
    assert log.index("stopping: no longer ready") < log.index("target busy: trained 30 series")
