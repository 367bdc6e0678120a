"""A daemon for the REST API and status page tests: two targets over a fake Prometheus's history.

``disk`` (three falling series, ``predict_linear``, a threshold at 0) gives the series table an
order to check; ``load`` (two series, ``lstm``) gives a model that trains, saves and retrains.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.daemon_config import connection_yaml
from tests.live_daemon import Daemon, FakePrometheus, wait_for
from tests.prometheus import free_port
from tsf_adapter.core.series import SeriesSamples, make_labels


def history(now_ms: int) -> list[SeriesSamples]:
    """100 one-second samples: three falling disks (threshold 0 below) and two load series."""
    ts = [now_ms - 1000 * k for k in range(100, 0, -1)]
    out = []
    # Reach 0 two minutes after the end, four minutes after, and not within the 5m horizon (a
    # forecast made later is that much closer: the test has minutes before the order could change).
    for mount, start, slope in (("a", 219.0, 1.0), ("b", 699.0, 1.0), ("c", 169.5, 0.5)):
        labels = make_labels({"__name__": "disk", "job": "j", "mount": mount})
        out.append(SeriesSamples(labels, ts, [start - slope * i for i in range(100)]))
    for inst, base in (("a", 100.0), ("b", 50.0)):
        values = [base + 0.5 * i + 3 * math.sin(i / 4) for i in range(100)]
        out.append(SeriesSamples(make_labels({"__name__": "load", "job": "j", "instance": inst}), ts, values))
    return out


TARGETS = """
output:
  mode: exposition
targets:
  - name: disk
    selector: 'disk{job="j"}'
    step: 1s
    history: 10m
    horizons: [1m, 5m]
    model: {kind: predict_linear}
    forecast_every: 1s
    threshold: {value: 0, direction: below}
  - name: load
    selector: 'load{job="j"}'
    step: 1s
    history: 2m
    horizons: [2s, 4s]
    model: {kind: lstm}
    retrain_every: 1h
    forecast_every: 1s
"""


class Live:
    def __init__(self, url: str, daemon: Daemon, fake: FakePrometheus) -> None:
        self.url = url
        self.daemon = daemon
        self.fake = fake

    def call(self, method: str, path: str, body: object = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


@contextlib.contextmanager
def running(tmp: Path) -> Iterator[Live]:
    """A daemon with the two targets above, its first model trained and forecasting."""
    port = free_port()
    with FakePrometheus(history(int(time.time() * 1000))) as fake:
        fake.read_gate.set()
        config = tmp / "config.yaml"
        connection = connection_yaml(port, f"{fake.url}/api/v1/read", f"{fake.url}/api/v1/write", tmp / "s")
        config.write_text(connection + TARGETS)
        daemon = Daemon(config, tmp / "daemon.log")
        daemon.start()
        live = Live(f"http://127.0.0.1:{port}", daemon, fake)

        def trained() -> bool:
            try:
                status, body = live.call("GET", "/api/v1/models")
            except OSError:
                return False
            return status == 200 and any(m["fitted"] for m in body["data"] if m["target"] == "load")

        try:
            wait_for("a trained model", trained, daemon.log)
            wait_for("lstm forecasts", lambda: models_of(live, "load") == {"lstm"}, daemon.log)
            yield live
        finally:
            daemon.stop()


def models_of(live: Live, target: str) -> set[str]:
    """The models forecasting ``target``'s series now."""
    status, body = live.call("GET", f"/api/v1/series?target={target}")
    return {row["model"] for row in body["data"]["series"]} if status == 200 else set()
