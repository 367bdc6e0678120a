"""A real Prometheus goes down while ``tsf-adapter run`` forecasts every second, then comes back.

The daemon runs as a process; a fake serves its remote-read history, and it remote-writes to a
real Prometheus 2.42, which is stopped with SIGTERM (its data directory kept) and started again
on the same port and data. Forecasts made while it was down must then be in its TSDB, the daemon's
metrics must show the retries, and the drops must be what the queue's bound says: none for a
short outage at the defaults, the oldest queued ones (``queue_full``) with a tiny ``capacity``,
which still delivers the newest.

The outage is counted in forecasts made while Prometheus was down, not in seconds, and every
wait polls for a state; nothing depends on how fast the machine is.
"""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_config import connection_yaml
from tests.live_daemon import Daemon, FakePrometheus, daemon_factory, http, wait_for
from tests.prometheus import PrometheusProcess, free_port
from tests.server.test_daemon import Pusher, history

pytestmark = pytest.mark.integration
__all__ = ["daemon_factory"]  # a fixture, used by name

# Forecasts the daemon makes while Prometheus is down.
OUTAGE_FORECASTS = 8
INFO = 'disk:forecast_model_info{model="last_value"}'


def config(port: int, fake: FakePrometheus, prom: PrometheusProcess, state: Path, **queue: Any) -> str:
    """One baseline target forecasting every second, writing to ``prom``; ``queue`` overrides."""
    cfg = yaml.safe_load(connection_yaml(port, f"{fake.url}/api/v1/read", f"{prom.url}/api/v1/write", state))
    cfg["prometheus"]["remote_write"]["queue"].update(queue)
    cfg["output"] = {"mode": "remote_write"}
    cfg["targets"] = [
        {
            "name": "base",
            "selector": "disk",
            "step": "1s",
            "history": "1m",
            "horizons": ["2s"],
            "model": {"kind": "last_value"},
            "retrain_every": "1m",
            "forecast_every": "1s",
            "threshold": {"value": 0, "direction": "below"},
        }
    ]
    return yaml.safe_dump(cfg)


class Metrics:
    """The daemon's ``/metrics``, read at once: ``value(name, **labels)`` sums the matching samples."""

    def __init__(self, url: str) -> None:
        status, text = http("GET", f"{url}/metrics")
        assert status == 200
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    @property
    def forecasts(self) -> float:
        return self.value("tsf_adapter_forecast_duration_seconds_count", target="base")

    @property
    def dropped(self) -> dict[str, float]:
        name = "tsf_adapter_remote_write_samples_dropped_total"
        return {s.labels["reason"]: s.value for s in self.samples if s.name == name and s.value}


def stamps(prom: PrometheusProcess, start_s: float, end_s: float) -> list[float]:
    """Timestamps (seconds) of the model-info samples Prometheus holds in ``[start_s, end_s]``."""
    result = prom.range_samples(INFO, end_s=end_s, range_s=max(1, round(end_s - start_s + 1)))
    return [float(t) for item in result for t, _ in item["values"] if float(t) >= start_s]


@contextmanager
def running(
    tmp_path: Path,
    daemon_factory: Callable[[Path], Daemon],
    prometheus_factory: Callable[..., PrometheusProcess],
    **queue: Any,
) -> Iterator[tuple[str, Daemon, PrometheusProcess]]:
    """Prometheus, the daemon writing to it with live input, and forecasts already arriving."""
    prom = prometheus_factory()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with FakePrometheus(history(int(time.time() * 1000))) as fake:
        fake.read_gate.set()
        path = tmp_path / "config.yaml"
        path.write_text(config(port, fake, prom, tmp_path / "state", **queue))
        daemon = daemon_factory(path)
        daemon.start()
        pusher = Pusher(url)
        pusher.thread.start()
        try:
            wait_for(
                "forecasts in Prometheus",
                lambda: bool(stamps(prom, time.time() - 60, time.time() + 1)),
                daemon.log,
            )
            yield url, daemon, prom
        finally:
            pusher.stop.set()
            pusher.thread.join(5)


def outage(url: str, daemon: Daemon, prom: PrometheusProcess) -> tuple[float, float, Metrics, Metrics]:
    """Stop Prometheus until the daemon made ``OUTAGE_FORECASTS`` forecasts, then start it again.

    Returns the outage window (from when it was down to just before it came back) and the
    daemon's metrics read at both ends of it.
    """
    prom.stop()
    down_at = time.time()
    at_down = Metrics(url)
    wait_for(
        "forecasts while Prometheus is down",
        lambda: Metrics(url).forecasts >= at_down.forecasts + OUTAGE_FORECASTS,
        daemon.log,
    )
    at_up = Metrics(url)
    up_at = time.time()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        prom.query("up")  # still down: everything stamped in the window was made while it was
    prom.start()
    return down_at, up_at, at_down, at_up


def test_a_short_outage_loses_nothing_and_delivers_in_order(
    tmp_path: Path,
    daemon_factory: Callable[[Path], Daemon],
    prometheus_factory: Callable[..., PrometheusProcess],
) -> None:
    with running(tmp_path, daemon_factory, prometheus_factory) as (url, daemon, prom):
        down_at, up_at, at_down, at_up = outage(url, daemon, prom)
        made = at_up.forecasts - at_down.forecasts
        wait_for(
            "the forecasts made while Prometheus was down",
            lambda: len(stamps(prom, down_at, up_at)) >= made - 1,
            daemon.log,
        )
        wait_for(
            "an empty queue",
            lambda: Metrics(url).value("tsf_adapter_remote_write_queue_length") == 0,
            daemon.log,
        )
        after = Metrics(url)
        held = stamps(prom, down_at, up_at)
        # One forecast each, in order, none missing: a forecast in progress at either end of the
        # window may fall on either side of it, hence the one either way.
        assert abs(len(held) - made) <= 1, (held, made)
        assert held == sorted(set(held))
        assert after.value("tsf_adapter_remote_write_retries_total", reason="network") >= 1
        assert after.dropped == {}


def test_a_tiny_capacity_drops_the_oldest_and_still_delivers_the_newest(
    tmp_path: Path,
    daemon_factory: Callable[[Path], Daemon],
    prometheus_factory: Callable[..., PrometheusProcess],
) -> None:
    # A forecast here is 9 rows: the queue holds the batch in flight (the first forecast of the
    # outage) and the newest one, and drops those between.
    with running(tmp_path, daemon_factory, prometheus_factory, capacity=10, max_samples_per_send=10) as (
        url,
        daemon,
        prom,
    ):
        down_at, up_at, at_down, at_up = outage(url, daemon, prom)
        newest = at_up.value("tsf_adapter_forecast_last_success_timestamp_seconds", target="base")
        wait_for(
            "a forecast at least as new as the last one made while down",
            lambda: max(stamps(prom, down_at, time.time() + 1), default=0.0) >= newest,
            daemon.log,
        )
        after = Metrics(url)
        held = stamps(prom, down_at, up_at)
        made = at_up.forecasts - at_down.forecasts
        assert len(held) < made - 2, (held, made)
        assert held == sorted(set(held))
        assert set(after.dropped) == {"queue_full"}
        assert after.value("tsf_adapter_remote_write_retries_total", reason="network") >= 1
