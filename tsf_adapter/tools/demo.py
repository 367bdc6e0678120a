"""``tsf-adapter demo``: the whole pipeline on a simulated storage cluster, with no Prometheus.

What runs, all in this process and over real HTTP:

1. a simulated cluster (:mod:`tsf_adapter.tools.simulate`): users' storage at 85-95% of their quotas,
   a day/night rhythm, write bursts that are deleted again, and runaway jobs that fill a quota;
   a week of history is generated up front;
2. the daemon (:class:`~tsf_adapter.server.daemon.Daemon`), unchanged, with a config built here: one
   target, ``storage_used_bytes`` per user and storage type, its threshold joined on
   ``storage_quota_bytes``, output served at ``/forecasts``;
3. the feed (:mod:`tsf_adapter.tools.demo_feed`): the past served by a small remote-read endpoint that
   the daemon's backfill reads, then live samples sent to the daemon's receiver by remote-write;
4. the terminal: a banner with the URLs, then a status line every ``status_every`` seconds, read
   back from ``/forecasts`` and ``/metrics`` (:mod:`tsf_adapter.tools.demo_status`), a line for
   every quota the simulation fills, saying whether the recommended alert warned and how far
   ahead, and at the end that alert's precision and recall over the run.

The recommended alert is the shipped ``StorageQuotaForecastFull``: the forecast's 0.98 quantile
reaches the quota within 6h while the usage climbs. The demo has no Prometheus to evaluate it, so
it evaluates the rule's climb guard itself on the samples sent so far
(:func:`~tsf_adapter.pipeline.climb.climb_guard`, checked against promtool in the tests) and reads
the forecast part from ``/forecasts``; the target is configured as ``deploy/tsf-adapter.yml``'s
(one network for all users, the 0.98 quantile).

Simulated time runs ``speed`` times faster than the wall clock for ``catch_up`` seconds (it starts
that much behind), then at the wall clock's pace; see :class:`~tsf_adapter.tools.demo_feed.SimClock`.
The daemon's log goes to ``demo.log`` in the state directory; warnings also go to stderr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO, get_args

import aiohttp
import numpy as np
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tsf_adapter.config import Config, config_from_dict
from tsf_adapter.config.target import TrainedKind
from tsf_adapter.core.address import split_host_port
from tsf_adapter.pipeline.climb import climb_guard
from tsf_adapter.server.daemon import Daemon
from tsf_adapter.server.logs import LineFormatter
from tsf_adapter.tools.alert_events import AlertScores, score_alerts
from tsf_adapter.tools.demo_feed import DemoCluster, LiveFeed, SimClock, make_cluster, make_history_app
from tsf_adapter.tools.demo_status import (
    WARN_QUANTILE,
    WarningTracker,
    at_threshold,
    format_eta,
    model_counts,
    read_forecasts,
    series_name,
    soonest,
)
from tsf_adapter.tools.simulate import QUOTA_METRIC, USED_METRIC

logger = logging.getLogger("tsf_adapter.demo")

TARGET: Final = "storage-used"
# Ten-minute steps: what the trainer's defaults suit on a CPU, and 1h/6h horizons of 6/36 steps.
STEP_S: Final = 600.0
# How often the status loop reads /forecasts; milestones and warnings are timed to this.
POLL_S: Final = 1.0
# The recommended alert's horizon: the forecast must reach the quota within it.
ALERT_HORIZON_S: Final = 6 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """The ``demo`` command's flags; every default is the full demo."""

    listen: str = "127.0.0.1:9201"
    state_dir: Path | None = None  # None: a temporary directory, removed at exit
    duration: float | None = None  # seconds until the demo stops by itself; None: until Ctrl-C
    # 60: one real second is a simulated minute, so a runaway filling a quota in hours takes minutes.
    speed: float = 60.0
    # Real seconds of accelerated time; the simulated clock starts (speed - 1) x this behind.
    catch_up: float = 600.0
    seed: int = 0
    clusters: int = 2
    groups: int = 2
    users: int = 3
    model: str = "lstm"
    status_every: float = 10.0


def demo_config(options: DemoOptions, *, read_url: str) -> Config:
    """The daemon's config, built in code and validated like a file's."""
    # Retrain about every two real minutes while accelerated, at least hourly in simulated time.
    retrain_every = max(3600.0, options.speed * 120.0)
    data: dict[str, Any] = {
        "server": {"listen_address": options.listen},
        "prometheus": {"remote_read": {"url": read_url, "prefer_streamed": False}},
        "targets": [
            {
                "name": TARGET,
                "selector": USED_METRIC,
                "step": STEP_S,
                "history": "2d",
                "horizons": ["1h", "6h"],
                # As deploy/tsf-adapter.yml: the recommended alert reads the 0.98 quantile of one
                # network trained on every user, its bands calibrated after each training.
                "quantiles": [0.1, 0.5, 0.9, float(WARN_QUANTILE)],
                "model": {
                    "kind": options.model,
                    "scope": "global",
                    "calibrate": options.model in get_args(TrainedKind),
                },
                "forecast_every": STEP_S,
                "retrain_every": retrain_every,
                "threshold": {
                    "selector": QUOTA_METRIC,
                    "on": ["cluster", "group", "user", "storage_type"],
                    "ratio": 1.0,
                },
            }
        ],
        "output": {"mode": "exposition"},
        "state_dir": str(options.state_dir),
    }
    return config_from_dict(data, "<demo>")


def free_port(host: str) -> int:
    """A port that was free a moment ago, for ``--listen host:0`` (the banner must name the port)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Terminal:
    """The demo's own lines on stdout: the banner, status lines, milestones, quota hits."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


def _clock_text(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%a %H:%M")


class DemoRun:
    """One demo: the cluster, the clock, the daemon and the feed; :meth:`run` returns the exit code."""

    def __init__(self, options: DemoOptions, term: Terminal) -> None:
        self.options = options
        self.term = term
        self.started = time.monotonic()
        self.tracker = WarningTracker()
        self.reported_hits: set[tuple[int, int]] = set()
        # The alert on a grid of simulated origins (one per STEP_S), for the summary's scores.
        self.origins_ms: list[int] = []
        self.alert_rows: list[np.ndarray[Any, np.dtype[np.bool_]]] = []
        self.cluster: DemoCluster | None = None
        self.first_forecast_s: float | None = None
        self.first_model_s: float | None = None
        self.base_url = ""
        self._stopping = asyncio.Event()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> None:
        """Ctrl-C, SIGTERM or ``duration``: stop the feed first, then the daemon (see :meth:`run`)."""
        self._stopping.set()

    async def run(self) -> int:
        opts = self.options
        lag_s = (opts.speed - 1.0) * opts.catch_up
        cluster = await asyncio.to_thread(
            make_cluster,
            now_s=time.time(),
            lag_s=lag_s,
            seed=opts.seed,
            clusters=opts.clusters,
            groups=opts.groups,
            users=opts.users,
        )
        if self._stopping.is_set():
            return 0
        self.cluster = cluster
        clock = SimClock(start_s=cluster.t0_ms / 1000.0, speed=opts.speed)
        async with AsyncExitStack() as stack:
            read_runner = web.AppRunner(make_history_app(cluster), access_log=None)
            await read_runner.setup()
            stack.push_async_callback(read_runner.cleanup)
            await web.TCPSite(read_runner, "127.0.0.1", 0).start()
            read_host, read_port = read_runner.addresses[0][:2]
            config = demo_config(opts, read_url=f"http://{read_host}:{read_port}/api/v1/read")
            assert opts.state_dir is not None
            daemon = Daemon(opts.state_dir / "demo.yaml", config, clock=clock)
            host, port = split_host_port(opts.listen)
            self.base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
            self._banner(cluster, clock)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            feed = LiveFeed(cluster, clock, session, f"{self.base_url}/api/v1/write")
            serving = asyncio.create_task(daemon.run(handle_signals=False), name="demo daemon")
            helpers = [
                asyncio.create_task(self._feed_when_ready(session, feed), name="demo feed"),
                asyncio.create_task(self._status(session, daemon, cluster, clock), name="demo status"),
            ]
            stopping = asyncio.create_task(self._stopping.wait(), name="demo stop")
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            # The feed goes first, flushing what it holds while the receiver still takes it.
            for task in helpers:
                task.cancel("demo stopping")
                with suppress(asyncio.CancelledError):
                    await task
            daemon.request_stop()
            code = await serving
            self._summary()
            return code

    def _banner(self, cluster: DemoCluster, clock: SimClock) -> None:
        opts, sim, url = self.options, cluster.sim, self.base_url
        t = self.term.line
        t("tsf-adapter demo: forecasting a simulated storage cluster, no Prometheus needed")
        t(
            f"  cluster: {sim.n_series} series ({opts.clusters} clusters x {opts.groups} groups x"
            f" {opts.users} users x ssd/hdd/object), 85-95% of quota, seed {cluster.seed}"
        )
        if opts.speed > 1:
            t(
                f"  time: a week of history, then simulated time at {opts.speed:g}x for"
                f" {format_eta(opts.catch_up)} until it reaches now ({_clock_text(clock.time())} UTC ->"
                f" {_clock_text(time.time())} UTC)"
            )
        t(f"  status:     {url}/  (the status page: targets, series, charts)")
        t(f"  API:        {url}/api/v1/openapi.json")
        t(f"  forecasts:  {url}/forecasts")
        t(f"  metrics:    {url}/metrics")
        t(f"  readiness:  {url}/-/ready")
        t(f"  daemon log: {opts.state_dir}/demo.log")
        t("  first forecasts come from predict_linear; each series switches to its own")
        t(f"  {opts.model} model once trained. Ctrl-C stops.")
        t()

    async def _feed_when_ready(self, session: aiohttp.ClientSession, feed: LiveFeed) -> None:
        # The receiver answers 503 until the backfill is in; polled like a load balancer would.
        while True:
            if await _ok(session, f"{self.base_url}/-/ready"):
                break
            await asyncio.sleep(0.2)
        self.term.line(f"[{self.elapsed():5.1f}s] daemon ready (history backfilled); streaming live samples")
        await feed.run()

    async def _status(
        self, session: aiohttp.ClientSession, daemon: Daemon, cluster: DemoCluster, clock: SimClock
    ) -> None:
        last_print = -math.inf
        while True:
            await asyncio.sleep(POLL_S)
            text = await _get(session, f"{self.base_url}/forecasts")
            if text is None:
                continue
            now_ms = int(clock.time() * 1000)
            views = read_forecasts(text, USED_METRIC)
            sim = cluster.sim
            # A few ms of numpy over every series: off the loop the daemon shares with this demo.
            guard = await asyncio.to_thread(
                climb_guard, sim.timestamps_ms, sim.used, sim.quota, np.array([now_ms])
            )
            climbing_now = guard[:, 0]
            climbing = {sim.labels[i]: bool(c) for i, c in enumerate(climbing_now)}
            self.tracker.observe(views, now_ms, climbing)
            self._record(cluster, now_ms)
            self._milestones(views)
            self._hits(cluster, now_ms)
            if self.elapsed() - last_print >= self.options.status_every and views:
                last_print = self.elapsed()
                metrics = await _get(session, f"{self.base_url}/metrics")
                self._status_line(views, daemon, clock, metrics or "", climbing)

    def _record(self, cluster: DemoCluster, now_ms: int) -> None:
        """The alert at every grid origin the simulated clock has passed since the last poll."""
        step_ms = round(STEP_S * 1000)
        origin = now_ms // step_ms * step_ms
        if self.origins_ms and origin <= self.origins_ms[-1]:
            return
        row = np.array([self.tracker.on(key) for key in cluster.sim.labels])
        first = origin if not self.origins_ms else self.origins_ms[-1] + step_ms
        for at in range(first, origin + 1, step_ms):  # a slow poll holds its state over the steps missed
            self.origins_ms.append(at)
            self.alert_rows.append(row)

    def _milestones(self, views: dict[Any, Any]) -> None:
        counts = model_counts(views.values())
        if self.first_forecast_s is None and views:
            self.first_forecast_s = self.elapsed()
            self.term.line(
                f"[{self.first_forecast_s:5.1f}s] first forecasts served at /forecasts"
                f" ({len(views)} series: {_counts_text(counts)})"
            )
        if self.first_model_s is None and counts.get(self.options.model, 0) > 0:
            self.first_model_s = self.elapsed()
            self.term.line(
                f"[{self.first_model_s:5.1f}s] first {self.options.model} forecasts served"
                f" ({_counts_text(counts)})"
            )

    def _status_line(
        self, views: dict[Any, Any], daemon: Daemon, clock: SimClock, metrics: str, climbing: dict[Any, bool]
    ) -> None:
        counts = model_counts(views.values())
        trainings = _metric_value(metrics, "tsf_adapter_train_duration_seconds_count", TARGET)
        runner = daemon.scheduler.runners.get(TARGET) if daemon.scheduler is not None else None
        training = runner is not None and runner.training is not None and not runner.training.done()
        train = f"trainings: {int(trainings)} done" + (", 1 running" if training else "")
        self.term.line(
            f"[{self.elapsed():5.1f}s] sim {_clock_text(clock.time())} UTC"
            f"{'' if clock.caught_up else f' ({self.options.speed:g}x)'} | models: {_counts_text(counts)}"
            f" | {train}"
        )
        full = at_threshold(views.values())
        if full:
            names = ", ".join(series_name(v.key) for v in full[:3]) + (", ..." if len(full) > 3 else "")
            self.term.line(f"         at quota now: {names}")
        top = soonest(views.values())
        if not top:
            self.term.line("         no other user's p98 forecast reaches the quota within 6h")
        for i, view in enumerate(top, 1):
            alert = "ALERT (climbing)" if climbing.get(view.key, False) else "no alert (not climbing)"
            self.term.line(
                f"         {i}. {series_name(view.key)}: p98 reaches the quota {_when(view.seconds)}"
                f" (median: {_when(view.median_seconds)}); {alert}"
            )

    def _hits(self, cluster: DemoCluster, now_ms: int) -> None:
        for series, hit_ms in cluster.live_hits(now_ms):
            if (series, hit_ms) in self.reported_hits:
                continue
            self.reported_hits.add((series, hit_ms))
            key = cluster.sim.labels[series]
            lead = self.tracker.lead_s(key, hit_ms)
            verdict = (
                "NOT warned by the recommended alert"
                if lead is None
                else f"warned {format_eta(lead)} ahead by the recommended alert (p98 forecast & climbing)"
            )
            self.term.line(
                f"[{self.elapsed():5.1f}s] QUOTA FULL at sim {_clock_text(hit_ms / 1000)} UTC:"
                f" {series_name(key)}; {verdict}"
            )

    def _summary(self) -> None:
        first = "-" if self.first_forecast_s is None else f"{self.first_forecast_s:.1f}s"
        model = "-" if self.first_model_s is None else f"{self.first_model_s:.1f}s"
        self.term.line(
            f"demo stopped after {self.elapsed():.1f}s: first forecasts at {first},"
            f" first {self.options.model} forecasts at {model}, {len(self.reported_hits)} quota hits seen"
        )
        scores = self.scores()
        if scores is None:
            self.term.line("recommended alert over the run: not scored (no forecasts were served)")
            return
        leads = [lead / 3_600_000 for lead in scores.leads_ms if lead > 0]
        self.term.line(
            f"recommended alert over the run ({scores.scored} series-origins, every 10 simulated minutes):"
            f" precision {_ratio(scores.precision)}, recall {_ratio(scores.recall)};"
            f" quotas filled {len(scores.fills)}, warned {scores.warned}"
            + (
                f" (median {np.median(leads):.1f}h ahead, {sum(x >= 1 for x in leads)} at least 1h)"
                if leads
                else ""
            )
            + f"; false alert episodes {scores.false_episodes}"
        )

    def scores(self) -> AlertScores | None:
        """The recommended alert scored against the simulator's truth over the origins seen."""
        if self.cluster is None or not self.origins_ms:
            return None
        sim = self.cluster.sim
        origins = np.array(self.origins_ms, dtype=np.int64)
        alert = np.stack(self.alert_rows, axis=1)
        horizon_ms = round(ALERT_HORIZON_S * 1000)
        ahead, full_now = sim.crossings(origins, horizon_ms)
        fills = [f for f in sim.fills() if origins[0] < f.at_ms <= origins[-1]]
        return score_alerts(origins, alert, ~full_now, ahead, fills, horizon_ms=horizon_ms)


def _ratio(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def _when(seconds: float) -> str:
    if seconds == 0:
        return "now"
    return f"in {format_eta(seconds)}" if math.isfinite(seconds) else "not within 6h"


def _counts_text(counts: Any) -> str:
    return ", ".join(f"{n} by {model}" for model, n in sorted(counts.items())) or "none yet"


def _metric_value(text: str, name: str, target: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("target") == target:
                return float(sample.value)
    return 0.0


async def _get(session: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return await resp.text() if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _ok(session: aiohttp.ClientSession, url: str) -> bool:
    return await _get(session, url) is not None


def _log_to(path: Path) -> Callable[[], None]:
    """Daemon logs to ``path`` (info) and warnings to stderr; returns the undo."""
    root = logging.getLogger()
    old = list(root.handlers), root.level
    for handler in old[0]:
        root.removeHandler(handler)
    fmt = LineFormatter()
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(fmt)
    to_err = logging.StreamHandler(sys.stderr)
    to_err.setLevel(logging.WARNING)
    to_err.setFormatter(fmt)
    root.addHandler(to_file)
    root.addHandler(to_err)
    root.setLevel(logging.INFO)

    def undo() -> None:
        for ours in (to_file, to_err):
            root.removeHandler(ours)
        to_file.close()
        for theirs in old[0]:
            root.addHandler(theirs)
        root.setLevel(old[1])

    return undo


async def run_demo(options: DemoOptions, term: Terminal | None = None) -> int:
    """Run the demo until ``duration``, SIGINT or SIGTERM; 0 after a clean stop."""
    term = term or Terminal()
    with tempfile.TemporaryDirectory(prefix="tsf-adapter-demo-") as tmp:
        state_dir = options.state_dir or Path(tmp)
        state_dir.mkdir(parents=True, exist_ok=True)
        host, port = split_host_port(options.listen)
        if port == 0:
            port = free_port(host)
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        opts = dataclasses.replace(options, state_dir=state_dir, listen=listen)
        undo = _log_to(state_dir / "demo.log")
        demo = DemoRun(opts, term)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, demo.stop)
        if opts.duration is not None:
            loop.call_later(opts.duration, demo.stop)
        try:
            return await demo.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            undo()
