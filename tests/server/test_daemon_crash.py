"""SIGKILL at any moment: the next start with the same ``state_dir`` loads the last good model and
forecast memory, backfills by remote-read, forecasts with it, and exits 0 on SIGTERM.

Models are saved atomically, so a kill during a training or its save leaves the last model that
was saved whole; what else it leaves (a temporary file) is removed at the next start. Where a kill
lands is up to chance here: once, deliberately, while a training runs, then at a random moment of
the next run, which must start, load and forecast again. Kills in the middle of a save itself are
made many times over, and cheaply, in ``tests/forecast/test_persist_kill.py``.
"""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

import numpy as np

from tests.daemon_config import connection_yaml
from tests.live_daemon import HANG_GUARD, Daemon, FakePrometheus, daemon_factory, wait_for
from tests.prometheus import free_port
from tsf_adapter.core.series import SeriesSamples, make_labels

__all__ = ["daemon_factory"]  # a fixture, used by name

SERIES = 10
# A training takes its whole 8 s budget (80% of retrain_every) on this hour of 1 s samples, so
# the second one is still running when the test kills the daemon.
TARGET = """
targets:
  - name: busy
    selector: 'busy{job="j"}'
    step: 1s
    history: 1h
    horizons: [30s, 60s]
    model: {kind: lstm}
    retrain_every: 10s
    forecast_every: 1s
"""
LOADED = re.compile(r'target busy: loaded lstm model of \d+ series from ([^\s"]+)')


def _history() -> list[SeriesSamples]:
    now_ms = int(time.time() * 1000)
    ts = np.arange(now_ms - 3600 * 1000, now_ms, 1000, dtype=np.int64)
    return [
        SeriesSamples(
            make_labels({"__name__": "busy", "job": "j", "instance": f"i{k}"}),
            ts,
            100.0 + k + 10 * np.sin(np.arange(ts.size) / (60 + k)),
        )
        for k in range(SERIES)
    ]


def _kill(daemon: Daemon) -> None:
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGKILL)
    assert daemon.proc.wait(HANG_GUARD) == -signal.SIGKILL


def _restarts_with_the_model(daemon: Daemon, fake: FakePrometheus, state: Path) -> None:
    """The start after a kill: the saved model loads (no retraining first), and it forecasts."""
    with fake.lock:
        fake.written.clear()
    daemon.start()
    wait_for("ready", lambda: 'msg="ready: 1 targets' in daemon.log(), daemon.log)
    log = daemon.log()
    assert "unusable" not in log and "Traceback" not in log, log
    (path,) = LOADED.findall(log)
    assert path == str(state / "busy.pt")
    # What the target learned of its own forecasts, kept beside the model after its training.
    assert f"target busy: loaded forecast memory of {SERIES} series from {state / 'busy.memory.npz'}" in log
    assert not list(state.glob(".busy.pt.*"))  # what a killed save left is gone
    (samples,) = re.findall(rf"backfill: target busy: {SERIES} series, (\d+) samples", log)
    assert int(samples) > SERIES * 3000  # the history, read again (the last hour's, less the test's age)
    wait_for(
        "a forecast by the loaded model",
        lambda: ("i0", "lstm") in fake.infos("busy:forecast_model_info"),
        daemon.log,
    )


def test_a_daemon_killed_while_training_or_saving_starts_again_with_its_last_model(
    tmp_path: Path, daemon_factory
) -> None:
    state = tmp_path / "state"
    with FakePrometheus(_history()) as fake:
        fake.read_gate.set()
        config = tmp_path / "config.yaml"
        read, write = f"{fake.url}/api/v1/read", f"{fake.url}/api/v1/write"
        config.write_text(connection_yaml(free_port(), read, write, state) + TARGET)
        first = daemon_factory(config)
        first.start()
        # The first training saves a model; kill the daemon once the second one has begun.
        wait_for("a saved model", lambda: "saved to" in first.log(), first.log)
        wait_for(
            "a second training",
            lambda: first.log().count("target busy: training lstm on") == 2,
            first.log,
        )
        time.sleep(random.uniform(0.0, 2.0))
        _kill(first)
        assert first.log().count("target busy: trained") == 1, first.log()

        second = daemon_factory(config)
        _restarts_with_the_model(second, fake, state)
        # Then a kill at a random moment of its first 10 s: while it forecasts, trains or saves.
        time.sleep(random.uniform(0.0, 10.0))
        _kill(second)
        second = daemon_factory(config)
        _restarts_with_the_model(second, fake, state)
        assert second.proc is not None
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(HANG_GUARD) == 0, second.log()
