"""``tsf-adapter demo``: as a real process (banner, /forecasts, clean exits), and its parts.

The process tests use tiny clusters and poll for states; timing never decides a pass
(``HANG_GUARD`` only stops a hung run). The parts are tested with real objects: the history
endpoint is read back by the daemon's own remote-read client, the status reader parses what
the daemon's own exposition renderer writes.
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from tsf_adapter.config import RemoteReadConfig, TargetConfig, decode_section
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.pipeline.output import ForecastOutputBuilder, render_exposition
from tsf_adapter.remote.read_client import RemoteReadClient
from tsf_adapter.tools.demo import DemoOptions, demo_config
from tsf_adapter.tools.demo_feed import SimClock, make_cluster, make_history_app
from tsf_adapter.tools.demo_status import (
    SeriesView,
    WarningTracker,
    at_threshold,
    format_eta,
    read_forecasts,
    soonest,
)
from tsf_adapter.tools.simulate import Simulation

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 90.0  # seconds; only against a hang, never a speed assertion
SMALL = ["--clusters", "1", "--groups", "1", "--users", "2", "--listen", "127.0.0.1:0"]
ID_LABELS = {"cluster", "group", "user", "storage_type"}


# --- the process --------------------------------------------------------------------------------


class DemoProcess:
    """``python -m tsf_adapter demo ...`` with its stdout collected line by line on a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tsf_adapter", "demo", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines) + self.stderr())

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return "\nstderr:\n" + self.proc.stderr.read()

    def wait(self) -> int:
        code = self.proc.wait(HANG_GUARD)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def demo_process() -> Iterator[list[DemoProcess]]:
    started: list[DemoProcess] = []
    yield started
    for proc in started:
        proc.stop()


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: bytes = resp.read()
            return body.decode()
    except (urllib.error.URLError, OSError):
        return None


def _poll_forecasts(url: str, proc: DemoProcess) -> str:
    """/forecasts once it has forecast rows and threshold rows for every series."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline and proc.proc.poll() is None:
        text = _get(url)
        if text and "storage_used_bytes:forecast{" in text and "forecast_threshold_seconds{" in text:
            return text
        time.sleep(0.3)
    raise AssertionError("no forecasts at " + url + "\n" + "\n".join(proc.lines) + proc.stderr())


def test_demo_runs_for_its_duration_serves_forecasts_and_exits_0(
    demo_process: list[DemoProcess],
) -> None:
    proc = DemoProcess("--duration", "20", "--status-every", "2", *SMALL)
    demo_process.append(proc)
    url = proc.wait_for_line(r"forecasts:\s+(http://\S+/forecasts)").group(1)
    proc.wait_for_line(r"metrics:\s+http://\S+/metrics")
    proc.wait_for_line(r"readiness:\s+http://\S+/-/ready")
    text = _poll_forecasts(url, proc)

    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    forecasts = [s for s in samples if s.name == "storage_used_bytes:forecast"]
    # 1 cluster x 1 group x 2 users x 3 storage types, 2 horizons x 3 quantiles each.
    assert len(forecasts) == 6 * 2 * 4
    assert {s.labels["horizon"] for s in forecasts} == {"1h", "6h"}
    assert {s.labels["quantile"] for s in forecasts} == {"0.1", "0.5", "0.9", "0.98"}
    assert all(set(s.labels) == ID_LABELS | {"horizon", "quantile"} for s in forecasts)
    assert {s.labels["user"] for s in forecasts} == {"user-1-1", "user-1-2"}
    threshold = [s for s in samples if s.name == "storage_used_bytes:forecast_threshold_seconds"]
    assert len(threshold) == 6 * 4
    assert all(s.value >= 0 for s in threshold)
    info = [s for s in samples if s.name == "storage_used_bytes:forecast_model_info"]
    assert len(info) == 6 and {s.labels["model"] for s in info} <= {"lstm", "predict_linear"}
    assert _get(url.replace("/forecasts", "/-/ready")) is not None

    assert proc.wait() == 0, proc.stderr()
    out = "\n".join(proc.lines)
    assert out.startswith("tsf-adapter demo:")
    assert "first forecasts served at /forecasts" in out
    assert re.search(r"demo stopped after [\d.]+s", out)
    summary = (
        r"recommended alert over the run \((\d+) series-origins, every 10 simulated minutes\): "
        r"precision [-\d.]+, recall [-\d.]+; quotas filled \d+, warned \d+"
    )
    scored = re.search(summary, out)
    assert scored is not None and int(scored.group(1)) > 0, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_stops_cleanly_on_a_signal(demo_process: list[DemoProcess], sig: signal.Signals) -> None:
    proc = DemoProcess("--model", "predict_linear", *SMALL)
    demo_process.append(proc)
    url = proc.wait_for_line(r"forecasts:\s+(http://\S+/forecasts)").group(1)
    _poll_forecasts(url, proc)
    proc.proc.send_signal(sig)
    assert proc.wait() == 0, proc.stderr()
    assert proc.lines[-2].startswith("demo stopped after")
    assert proc.lines[-1].startswith("recommended alert over the run")
    assert proc.stderr().strip() == "stderr:"  # nothing logged at warning level or above


# --- the config ---------------------------------------------------------------------------------


def test_demo_config_joins_usage_on_its_quota() -> None:
    cfg = demo_config(DemoOptions(state_dir=Path("/tmp/x")), read_url="http://127.0.0.1:1/api/v1/read")
    (target,) = cfg.targets
    assert str(target.selector) == "storage_used_bytes"
    assert target.threshold is not None and str(target.threshold.selector) == "storage_quota_bytes"
    assert set(target.threshold.on) == ID_LABELS and target.threshold.ratio == 1.0
    assert cfg.output.mode == "exposition"
    assert cfg.prometheus.remote_read.url == "http://127.0.0.1:1/api/v1/read"


# --- the feed -----------------------------------------------------------------------------------


def test_sim_clock_runs_fast_until_it_reaches_the_wall_clock_and_is_never_ahead() -> None:
    now = {"wall": 10_000.0, "mono": 0.0}
    clock = SimClock(start_s=6_400.0, speed=60.0, wall=lambda: now["wall"], monotonic=lambda: now["mono"])
    assert clock.time() == 6_400.0 and not clock.caught_up
    now["wall"] += 30.0
    now["mono"] += 30.0
    assert clock.time() == 6_400.0 + 1_800.0
    now["wall"] += 60.0
    now["mono"] += 60.0  # 1.5 real minutes: 5,400 simulated seconds would pass the wall clock
    assert clock.time() == now["wall"] and clock.caught_up


def _sim_with_full(full_rows: list[list[bool]], step_ms: int = 60_000) -> Simulation:
    full = np.array(full_rows, dtype=bool)
    n, steps = full.shape
    used = np.where(full, 100.0, 90.0)
    return Simulation(
        labels=tuple(((("user", f"u{i}"),)) for i in range(n)),
        timestamps_ms=np.arange(steps, dtype=np.int64) * step_ms,
        used=used,
        quota=np.full((n, steps), 100.0),
        full=full,
        runaway_starts_ms=((),) * n,
    )


def test_cluster_hits_are_the_simulators_fills() -> None:
    cluster = make_cluster(now_s=1_800_000_000.0, lag_s=6 * 3600.0, seed=0, clusters=1, groups=1, users=2)
    fills = cluster.sim.fills()
    assert fills and sorted(cluster.hits) == sorted((f.series, f.at_ms) for f in fills)


def test_make_cluster_has_a_quota_hit_after_t0_and_names_its_metrics() -> None:
    now_s = 1_800_000_000.0
    cluster = make_cluster(now_s=now_s, lag_s=6 * 3600.0, seed=0, clusters=1, groups=1, users=2)
    assert cluster.sim.n_series == 6
    assert cluster.t0_ms <= (now_s - 6 * 3600) * 1000
    assert any(cluster.t0_ms + 3_600_000 <= t <= now_s * 1000 for _, t in cluster.hits)
    assert dict(cluster.used_labels[0])["__name__"] == "storage_used_bytes"
    assert dict(cluster.quota_labels[0])["__name__"] == "storage_quota_bytes"
    assert cluster.sim.timestamps_ms[0] == cluster.t0_ms - 7 * 86_400_000


async def test_history_endpoint_serves_the_past_to_the_daemons_remote_read_client() -> None:
    cluster = make_cluster(now_s=1_800_000_000.0, lag_s=3600.0, seed=3, clusters=1, groups=1, users=1)
    server = TestServer(make_history_app(cluster))
    await server.start_server()
    try:
        cfg = RemoteReadConfig(url=str(server.make_url("/api/v1/read")), prefer_streamed=False)
        async with aiohttp.ClientSession() as session:
            client = RemoteReadClient(cfg, session)
            start = cluster.t0_ms - 3 * 3_600_000
            # Asks past t0: the live part is not history, so the answer stops at t0.
            selector = parse_selector('storage_used_bytes{storage_type="ssd"}')
            got = await client.read(selector, start, cluster.t0_ms + 3_600_000)
    finally:
        await server.close()
    (series,) = got
    i = cluster.used_labels.index(series.labels)
    ts = cluster.sim.timestamps_ms
    keep = (ts >= start) & (ts <= cluster.t0_ms)
    assert series.timestamps.tolist() == ts[keep].tolist()
    assert series.values.tobytes() == cluster.sim.used[i, keep].tobytes()


# --- the status ---------------------------------------------------------------------------------


def test_status_reads_back_what_the_daemon_serves() -> None:
    target = decode_section(
        TargetConfig,
        {
            "name": "s",
            "selector": "storage_used_bytes",
            "step": "10m",
            "horizons": ["1h"],
            "quantiles": [0.1, 0.5, 0.9, 0.98],
            "threshold": {"value": 100.0},
        },
    )
    labels = tuple(
        (("__name__", "storage_used_bytes"), ("storage_type", "ssd"), ("user", u)) for u in ("a", "b", "c")
    )
    batch = GridBatch("s", labels, np.array([[90.0], [99.0], [100.0]]), 0, 600_000)
    # [series, quantiles 0.1/0.5/0.9/0.98, 6 steps]: a crosses nothing, b crosses at p98 only, c is full.
    prediction = np.stack(
        [
            np.full((4, 6), 90.0),
            np.stack([np.full(6, 99.5), np.full(6, 99.5), np.full(6, 99.6), np.linspace(100.5, 110, 6)]),
            np.full((4, 6), 100.0),
        ]
    )
    out = ForecastOutputBuilder(target).build(batch, prediction, now_ms=0, models=("lstm", "per_series"))
    views = read_forecasts(render_exposition([out]), "storage_used_bytes")
    a, b, c = (views[(("storage_type", "ssd"), ("user", u))] for u in ("a", "b", "c"))
    assert math.isinf(a.seconds) and a.model == "lstm"
    assert 0 < b.seconds <= 600 and math.isinf(b.median_seconds)
    assert c.seconds == 0
    assert soonest(views.values()) == [b]
    assert at_threshold(views.values()) == [c]


def test_warning_tracker_scores_the_recommended_alert_in_force_at_the_hit() -> None:
    key: tuple[tuple[str, str], ...] = (("user", "a"),)

    def view(seconds: float) -> dict[tuple[tuple[str, str], ...], SeriesView]:
        return {key: SeriesView(key, seconds, math.inf, "lstm")}

    up: dict[tuple[tuple[str, str], ...], bool] = {key: True}
    flat: dict[tuple[tuple[str, str], ...], bool] = {key: False}
    tracker = WarningTracker()
    tracker.observe(view(math.inf), now_ms=0, climbing=up)
    assert tracker.lead_s(key, hit_ms=10_000) is None
    tracker.observe(view(7200.0), now_ms=500, climbing=flat)  # forecast close, usage not climbing
    assert not tracker.on(key)
    tracker.observe(view(7200.0), now_ms=1_000, climbing=up)
    tracker.observe(view(math.nan), now_ms=2_000, climbing=flat)  # no threshold known: no opinion
    tracker.observe(view(3600.0), now_ms=3_000, climbing=up)
    assert tracker.lead_s(key, hit_ms=3_601_000) == 3600.0
    tracker.observe(view(3600.0), now_ms=4_000, climbing=flat)  # the climb stopped: that alert is over
    tracker.observe(view(60.0), now_ms=5_000, climbing=up)
    assert tracker.lead_s(key, hit_ms=65_000) == 60.0
    assert tracker.lead_s(key, hit_ms=4_000) is None  # an alert that began after the hit


@pytest.mark.parametrize(
    ("seconds", "text"), [(math.inf, "-"), (0.0, "0s"), (59.0, "59s"), (90.0, "2m"), (7500.0, "2h5m")]
)
def test_format_eta(seconds: float, text: str) -> None:
    assert format_eta(seconds) == text
