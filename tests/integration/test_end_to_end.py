"""End to end: a real Prometheus 2.42, ``tsf-adapter run`` as a process, and a storage quota filling up.

The world runs fast. One grid step of the daemon is 5 real seconds and stands for 30 minutes
(``SCALE`` = 360 simulated seconds per real second), so a simulated day of usage passes in 4
minutes and every duration of the deployed alert rules is divided by ``SCALE`` before Prometheus
loads them (6h becomes 60s, 12h becomes 2m, ``for: 15m`` becomes 2.5s). Nothing else changes:
the rules are read from ``deploy/rules/``, the forecasts are what the daemon writes.

The script of the world (:class:`StorageWorld`), served as a scrape target on a thread:

* two users with a 1000 GiB quota; their usage follows a day/night cycle (±12 GiB around
  850 GiB for alice, 650 GiB for bob) plus a little wiggle, all deterministic and smooth, and
  slower than the alert's climb guard (0.5% of the quota per hour) even where the day rises;
* three simulated days of that history are written as TSDB blocks with ``promtool tsdb
  create-blocks-from openmetrics`` before Prometheus starts, so the daemon backfills them by
  remote-read and trains its LSTM on them (a few seconds on this CPU);
* once the trained model's forecasts are in Prometheus, alice's usage runs away: an accelerating
  fill on top of her cycle (``RUNAWAY_GIB_PER_STEP2`` x steps², about 10 simulated hours to full).

What is asserted: the deployed forecast alert fires for alice before her usage reaches the
quota, never for bob, and the daemon then stops cleanly with every sample delivered. Whether it
also fires before the deployed straight-line alert (``predict_linear`` over 12h) depends on the
phase of the day at which the runaway starts and on what two series teach a network. That
comparison is a property of the alert signal, measured over
many runaways by ``bench/quota_alerts.py`` (BENCHMARKS.md), not by one run here; this test
prints where the line stood when the forecast alert fired. Waits poll for a state under a guard
against hangs; no wall-clock speed is asserted.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import grafana
from tests.prometheus import PrometheusProcess, find_prometheus, free_port
from tsf_adapter.core.units import format_duration, parse_duration

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "rules" / "tsf-adapter.rules.yml"
HANG_GUARD = 120.0  # seconds; only against a hang, never a speed assertion

STEP_S = 5.0  # one grid step of the daemon, in real seconds
SCALE = 360.0  # simulated seconds per real second: a step is 30 simulated minutes
DAY_S = 86_400.0 / SCALE  # a simulated day: 240 real seconds
HISTORY_DAYS = 3
GIB = float(1 << 30)
QUOTA = 1000 * GIB
RUNAWAY_GIB_PER_STEP2 = 0.4
USERS = {"alice": 850.0, "bob": 650.0}  # GiB around which each user's day swings
QUANTILES = ("0.1", "0.5", "0.9", "0.98")
# 3h and 6h simulated. "60s", not Prometheus's canonical "1m": labels keep the config's spelling.
HORIZONS = ("30s", "60s")
assert [parse_duration(h) * SCALE for h in HORIZONS] == [3 * 3600, 6 * 3600]
LABELS = {"group": "research", "storage_type": "ssd", "cluster": "c1"}


# --- the simulated world -------------------------------------------------------------------------


@dataclass
class StorageWorld:
    """Storage usage as a deterministic function of real time; ``runaway_at`` starts alice's incident.

    ``phase0`` is when a simulated day begins (usage at its mean and rising): put near the
    moment the runaway is expected, so the incident starts in the morning.
    """

    phase0: float
    runaway_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def usage_gib(self, user: str, t: float) -> float:
        day = 12.0 * math.sin(2 * math.pi * (t - self.phase0) / DAY_S)
        wiggle = 0.5 * math.sin(1.7 * t / STEP_S)
        value = USERS[user] + day + wiggle
        with self.lock:
            start = self.runaway_at
        if user == "alice" and start is not None and t > start:
            value += RUNAWAY_GIB_PER_STEP2 * ((t - start) / STEP_S) ** 2
        return value

    def usage(self, user: str, t: float) -> float:
        return self.usage_gib(user, t) * GIB

    def start_runaway(self, t: float) -> None:
        with self.lock:
            self.runaway_at = t

    def full_at(self, user: str, after: float) -> float:
        """The first time (to 0.1 s) at or after ``after`` when the script's usage reaches the quota."""
        t = after
        while self.usage(user, t) < QUOTA:
            t += 0.1
            if t > after + 3600:
                return math.inf
        return t

    def exposition(self, t: float) -> str:
        lines = ["# TYPE storage_used_bytes gauge", "# TYPE storage_quota_bytes gauge"]
        for user in USERS:
            labels = _labels({**LABELS, "user": user})
            lines.append(f"storage_used_bytes{labels} {self.usage(user, t)!r}")
            lines.append(f"storage_quota_bytes{labels} {QUOTA!r}")
        return "\n".join(lines) + "\n"

    def openmetrics_history(self, start: float, end: float, instance: str) -> str:
        """Samples every step in [start, end) with the labels Prometheus's scrape will add."""
        lines = ["# TYPE storage_used_bytes gauge", "# TYPE storage_quota_bytes gauge"]
        used, quota = [], []
        t = math.ceil(start / STEP_S) * STEP_S
        while t < end:
            for user in USERS:
                labels = _labels({**LABELS, "user": user, "job": "storage", "instance": instance})
                used.append(f"storage_used_bytes{labels} {self.usage(user, t)!r} {t:.3f}")
                quota.append(f"storage_quota_bytes{labels} {QUOTA!r} {t:.3f}")
            t += STEP_S
        return "\n".join([lines[0], *used, lines[1], *quota, "# EOF"]) + "\n"


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


class ScrapeTarget:
    """The world's /metrics on a thread, read at the time of each scrape."""

    def __init__(self, world: StorageWorld) -> None:
        self.port = free_port()
        self.instance = f"127.0.0.1:{self.port}"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = world.exposition(time.time()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScrapeTarget:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


# --- the deployed rules, scaled ------------------------------------------------------------------


def scaled_rules(scale: float) -> dict[str, Any]:
    """deploy/'s storage rules with every duration divided by ``scale``.

    Scaled: ``for``, range selectors ``[12h]`` and subqueries ``[20m:5m]``, the seconds written as
    ``6 * 3600``, and the per-hour rates written as ``/ 3600``.
    """

    def seconds(value: float) -> str:
        return format_duration(round(value / scale * 1000) / 1000)

    def expr(text: str) -> str:
        def window(m: re.Match[str]) -> str:
            parts = [seconds(parse_duration(part)) for part in m.group(1).split(":")]
            return "[" + ":".join(parts) + "]"

        text = re.sub(r"\[(\w+(?::\w+)?)\]", window, text)
        text = re.sub(r"(\d+) \* 3600", lambda m: repr(int(m.group(1)) * 3600 / scale), text)
        return text.replace("/ 3600 ", f"/ {3600 / scale!r} ")

    groups = yaml.safe_load(RULES.read_text())["groups"]
    (storage,) = [g for g in groups if g["name"] == "tsf-adapter-storage"]
    for rule in storage["rules"]:
        rule["expr"] = expr(rule["expr"])
        if "for" in rule:
            rule["for"] = seconds(parse_duration(rule["for"]))
    return {"groups": [storage]}


# --- processes -----------------------------------------------------------------------------------


def _require(binary: str | None, name: str) -> str:
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} missing in CI: .ci/run must apt-get install prometheus")
        pytest.skip(f"{name} not found (apt-get install prometheus)")
    return binary


class Daemon:
    """``tsf-adapter run`` as a subprocess, its output in a log file; killed if a test leaves it running."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log_path = log
        with log.open("wb") as out:
            args = [sys.executable, "-m", "tsf_adapter", "run", "--config", str(config)]
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_for(what: str, check: Callable[[], bool], log: Callable[[], str], interval: float = 0.25) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}:\n{log()[-6000:]}")


@dataclass
class Stack:
    world: StorageWorld
    prometheus: PrometheusProcess
    daemon: Daemon

    def logs(self) -> str:
        return f"--- daemon ---\n{self.daemon.log()[-4000:]}\n--- prometheus ---\n{self.prometheus.log()}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    promtool = _require(shutil.which("promtool"), "promtool")
    _require(find_prometheus(), "prometheus")
    now = time.time()
    # Phase 0 (morning) about when the daemon is expected to be ready; any phase works, see above.
    world = StorageWorld(phase0=now + 20.0)
    with ScrapeTarget(world) as target:
        daemon_port = free_port()
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        rules = workdir / "rules.yml"
        rules.write_text(yaml.safe_dump(scaled_rules(SCALE)))
        prometheus = PrometheusProcess(
            workdir,
            global_config={"scrape_interval": "1s", "evaluation_interval": "1s"},
            scrape_configs=[
                {"job_name": "storage", "static_configs": [{"targets": [target.instance]}]},
                {"job_name": "tsf-adapter", "static_configs": [{"targets": [f"127.0.0.1:{daemon_port}"]}]},
            ],
            remote_write=[
                {
                    "url": f"http://127.0.0.1:{daemon_port}/api/v1/write",
                    "name": "tsf-adapter",
                    "write_relabel_configs": [
                        {
                            "source_labels": ["__name__"],
                            "regex": "storage_(used|quota)_bytes",
                            "action": "keep",
                        }
                    ],
                    # Prompt delivery; 503s while the daemon backfills are retried soon.
                    "queue_config": {
                        "batch_send_deadline": "1s",
                        "min_backoff": "100ms",
                        "max_backoff": "1s",
                    },
                    "metadata_config": {"send": False},
                }
            ],
            rule_files=[str(rules)],
        )
        # Days of history as blocks, ending just before the first scrape.
        history = tmp_path / "history.om"
        history.write_text(
            world.openmetrics_history(now - (HISTORY_DAYS + 0.5) * DAY_S, now - STEP_S, target.instance)
        )
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(history), str(workdir / "data")],
            check=True,
            capture_output=True,
        )
        config = tmp_path / "tsf-adapter.yml"
        config.write_text(daemon_config(daemon_port, prometheus.url, tmp_path / "state"))
        with prometheus:
            daemon = Daemon(config, tmp_path / "daemon.log")
            try:
                yield Stack(world, prometheus, daemon)
            finally:
                daemon.kill()


def daemon_config(port: int, prometheus_url: str, state: Path) -> str:
    """deploy/tsf-adapter.yml's storage-quota target on the fast grid: 30-minute steps, 6h horizon."""
    return f"""
server:
  listen_address: "127.0.0.1:{port}"
prometheus:
  remote_read:
    url: "{prometheus_url}/api/v1/read"
  remote_write:
    url: "{prometheus_url}/api/v1/write"
    queue:
      batch_send_deadline: 100ms
      flush_deadline: 10s
state_dir: "{state}"
targets:
  - name: storage-quota
    selector: 'storage_used_bytes'
    step: {format_duration(STEP_S)}
    history: {format_duration(HISTORY_DAYS * DAY_S)}
    horizons: [{", ".join(HORIZONS)}]
    quantiles: [0.1, 0.5, 0.9, 0.98]
    model: {{kind: lstm, scope: global, calibrate: true}}
    retrain_every: 10m
    forecast_every: {format_duration(STEP_S)}
    threshold:
      selector: 'storage_quota_bytes'
      on: [group, user, storage_type, cluster]
"""


# --- the test ------------------------------------------------------------------------------------


# Dashboard queries that may rightly be empty in this run, and why.
MAY_BE_EMPTY = {
    "tsf_adapter_remote_write_samples_dropped_total": "nothing is dropped in a healthy run",
}


def check_dashboards(prometheus: PrometheusProcess) -> None:
    """Every query of deploy/grafana's dashboards parses in this Prometheus and, with the daemon's
    series present, returns data (but the few listed in ``MAY_BE_EMPTY``)."""
    values = {
        "metric": "storage_used_bytes",
        "limit": "storage_quota_bytes",
        "horizon": HORIZONS[1],
        "user": ".*",
        "job": ".*",
        "target": ".*",
        "__rate_interval": "1m",
        "__range_s": "3600",
    }
    empty = []
    for path in grafana.DASHBOARDS:
        for title, expr in grafana.queries(grafana.load(path)):
            query = grafana.fill(expr, values)
            result = prometheus.query(query)  # a parse error raises here
            if not result and not any(name in query for name in MAY_BE_EMPTY):
                empty.append(f"{path.name}: {title}: {query}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def _alerts(prometheus: PrometheusProcess) -> dict[tuple[str, str], str]:
    """(alertname, user) -> state of every active alert."""
    out = {}
    for alert in prometheus.api("alerts")["alerts"]:
        labels = alert["labels"]
        out[labels["alertname"], labels.get("user", "")] = alert["state"]
    return out


def _value(prometheus: PrometheusProcess, expr: str) -> float:
    (sample,) = prometheus.query(expr)
    return float(sample["value"][1])


def test_forecast_alert_fires_before_the_quota_is_reached(stack: Stack) -> None:
    prometheus, world, daemon = stack.prometheus, stack.world, stack.daemon
    started = time.monotonic()

    # Backfilled, trained on the history, and the trained model's forecasts are in Prometheus.
    wait_for(
        "forecasts of the trained model",
        lambda: len(prometheus.query('storage_used_bytes:forecast_model_info{model="lstm"}')) == len(USERS),
        stack.logs,
    )
    ready_s = time.monotonic() - started

    # The documented names and labels: input labels kept, horizon and quantile added.
    base = {**LABELS, "job": "storage"}
    forecasts = prometheus.query("storage_used_bytes:forecast")
    keys = {(s["metric"]["user"], s["metric"]["horizon"], s["metric"]["quantile"]) for s in forecasts}
    assert keys == {(u, h, q) for u in USERS for h in HORIZONS for q in QUANTILES}
    for sample in forecasts:
        assert base.items() <= sample["metric"].items(), sample
        assert sample["metric"]["instance"].startswith("127.0.0.1:")
    thresholds = prometheus.query("storage_used_bytes:forecast_threshold_seconds")
    assert {(s["metric"]["user"], s["metric"]["quantile"]) for s in thresholds} == {
        (u, q) for u in USERS for q in QUANTILES
    }
    assert all("horizon" not in s["metric"] for s in thresholds)
    chances = prometheus.query("storage_used_bytes:forecast_threshold_probability")
    assert {(s["metric"]["user"], s["metric"]["within"]) for s in chances} == {
        (u, h) for u in USERS for h in HORIZONS
    }
    # Each series' newest model_info says lstm. (The daemon ends the predict_linear one with a
    # staleness marker when a series changes model; checking the newest sample per user keeps this
    # test independent of when that marker lands.)
    newest: dict[str, tuple[float, tuple[str, str, str]]] = {}
    for sample in prometheus.query("timestamp(storage_used_bytes:forecast_model_info)"):
        m = sample["metric"]
        stamp = float(sample["value"][1])
        if m["user"] not in newest or stamp > newest[m["user"]][0]:
            newest[m["user"]] = (stamp, (m["model"], m["scope"], m.get("job", "")))
    assert {user: info for user, (_, info) in newest.items()} == {
        user: ("lstm", "global", "storage") for user in USERS
    }
    # A normal day: nobody is close to the quota, no alert of either kind.
    assert _alerts(prometheus) == {}

    # The incident: alice's usage starts to run away.
    runaway = time.time()
    world.start_runaway(runaway)
    full = world.full_at("alice", runaway)
    # Watch the alerts until ours fires: the quota must not be reached first.
    while True:
        now = time.time()
        alerts = _alerts(prometheus)
        linear_state = alerts.get(("StorageQuotaLinearFull", "alice"), "inactive")
        if alerts.get(("StorageQuotaForecastFull", "alice")) == "firing":
            break
        late = now - full
        assert late < 0, f"usage reached the quota {late:.1f}s ago; no forecast alert\n{stack.logs()}"
        time.sleep(0.25)
    fired_at = now
    used = _value(prometheus, 'storage_used_bytes{user="alice"}')
    line = _value(prometheus, 'storage_used_bytes:predict_linear_6h{user="alice"}')

    check_dashboards(prometheus)
    assert world.usage("alice", fired_at) < QUOTA
    assert used < QUOTA
    assert math.isfinite(line)  # the straight line is evaluated beside it, for the printout
    assert not any(user == "bob" for _, user in _alerts(prometheus))
    lead_s = full - fired_at
    print(
        f"ready after {ready_s:.1f}s; forecast alert fired {fired_at - runaway:.1f}s into the runaway, "
        f"{lead_s:.1f}s ({lead_s * SCALE / 3600:.1f} simulated hours) before the quota was reached; "
        f"usage then {used / QUOTA:.1%} of quota, straight line {line / QUOTA:.1%}, its alert {linear_state}"
    )

    # SIGTERM: exit 0 with every forecast sample sent, nothing dropped or left queued.
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(HANG_GUARD) == 0, stack.logs()
    log = daemon.log()
    closed = re.search(r"write queue closed: (\d+) samples sent, (\d+) dropped", log)
    assert closed is not None, log
    assert int(closed.group(1)) > 0 and int(closed.group(2)) == 0
    assert "Traceback" not in log
    # What Prometheus scraped from the daemon while it ran agrees: no sample ever dropped.
    # (Over a range: the scrapes went stale when it exited. A reason appears in the dropped
    # family only once something was dropped for it.)
    assert _value(prometheus, "max(max_over_time(tsf_adapter_remote_write_samples_sent_total[1m]))") > 0
    dropped = "sum(max_over_time(tsf_adapter_remote_write_samples_dropped_total[1m])) or vector(0)"
    assert _value(prometheus, dropped) == 0
