"""Scale: one daemon, N storage series, a week of history in a real Prometheus, the shipped target.

    python -m bench.scale --series 10000            # the floors' size
    python -m bench.scale --series 100 --cycles 1   # a quick look

What it does, in this order:

1. simulates N storage series and their quotas (``tsf_adapter.tools.simulate``: day/night rhythm,
   bursts, runaways) over 7 days at 5 minutes, ending now, and writes them as OpenMetrics;
2. turns that into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` and starts
   Prometheus 2.42 on them (remote-write receiver on, for the forecasts);
3. starts ``tsf-adapter run`` with the storage target exactly as ``deploy/tsf-adapter.yml`` ships it
   (5m step, 7d history, horizons 1h/6h/24h, four quantiles, one LSTM for all series, calibrated
   bands, retrain every 6h, forecast every 5m), pointed at that Prometheus;
4. remote-writes the series' next values to the daemon every minute, as Prometheus would;
5. runs until the first training has ended and ``--cycles`` forecasts have followed it.

Reported, from the daemon's JSON log, its ``/metrics`` and ``/proc``: backfill time and samples,
RSS after the backfill and at its peak, every forecast cycle's duration and the gap between
cycles against ``forecast_every`` (late: a gap over 5m + 30s), the training's duration against
``retrain_every``, how it stopped and after how many epochs, samples written per cycle, and the
write queue's largest backlog.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing as mp
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.daemon_log import events, start_daemon
from bench.fuzz_receiver import rss_kib
from tests.prometheus import PrometheusProcess, free_port
from tsf_adapter.config import read_yaml
from tsf_adapter.core.series import SampleBlock, make_labels
from tsf_adapter.remote.codec import encode_write_request
from tsf_adapter.tools.simulate import SimConfig, Simulation, simulate

ROOT = Path(__file__).resolve().parents[1]
STEP_S = 300
DAYS = 7
LIVE_EVERY_S = 60.0
LATE_SLACK_S = 30.0


def cluster(n: int, hours_ahead: float) -> tuple[Simulation, int]:
    """A simulated cluster of at least ``n`` series over the week before now and ``hours_ahead`` after;
    returns it and the column of now."""
    users = max(1, math.ceil(n / (2 * 4 * 3)))
    now = int(time.time()) // STEP_S * STEP_S
    cfg = SimConfig(
        seed=0,
        clusters=("c1", "c2"),
        groups_per_cluster=4,
        users_per_group=users,
        start_s=now - DAYS * 86_400,
        span_s=DAYS * 86_400 + hours_ahead * 3600,
        step_s=STEP_S,
    )
    sim = simulate(cfg)
    return sim, DAYS * 86_400 // STEP_S


def write_openmetrics(sim: Simulation, n: int, until: int, path: Path) -> int:
    """The usage of the first ``n`` series (every step up to ``until``) and their quotas (every half
    hour: limits change rarely, and the daemon reads the last hour of them)."""
    stamps = (sim.timestamps_ms[:until] // 1000).astype(np.int64)
    lines = 0
    with path.open("w") as f:
        f.write("# TYPE storage_used_bytes gauge\n")
        for i in range(n):
            labels = ",".join(f'{k}="{v}"' for k, v in sim.labels[i])
            head = f"storage_used_bytes{{{labels}}} "
            f.write(
                "".join(
                    f"{head}{v!r} {t}\n"
                    for v, t in zip(sim.used[i, :until].tolist(), stamps.tolist(), strict=True)
                )
            )
            lines += until
        f.write("# TYPE storage_quota_bytes gauge\n")
        for i in range(n):
            labels = ",".join(f'{k}="{v}"' for k, v in sim.labels[i])
            head = f"storage_quota_bytes{{{labels}}} "
            every = slice((until - 1) % 6, until, 6)  # ending at the newest step
            f.write(
                "".join(
                    f"{head}{v!r} {t}\n"
                    for v, t in zip(sim.quota[i, every].tolist(), stamps[every].tolist(), strict=True)
                )
            )
            lines += len(range((until - 1) % 6, until, 6))
        f.write("# EOF\n")
    return lines


def feeder(url: str, n: int, hours_ahead: float, start_col: int, stop_at: float) -> None:
    """Process: every minute, the current step's usage and quota of every series, by remote-write."""
    sim, _ = cluster(n, hours_ahead)
    used = [make_labels({"__name__": "storage_used_bytes", **dict(lab)}) for lab in sim.labels[:n]]
    quota = [make_labels({"__name__": "storage_quota_bytes", **dict(lab)}) for lab in sim.labels[:n]]
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    while time.time() < stop_at:
        now = time.time()
        col = min(
            start_col + int((now - sim.timestamps_ms[start_col] / 1000) // STEP_S), sim.used.shape[1] - 1
        )
        ms = int(now * 1000)
        for chunk in range(0, n, 2000):
            rows = slice(chunk, min(n, chunk + 2000))
            blocks = [
                SampleBlock(used[rows], ms, sim.used[rows, col]),
                SampleBlock(quota[rows], ms, sim.quota[rows, col]),
            ]
            req = urllib.request.Request(
                url, data=encode_write_request(blocks), headers=headers, method="POST"
            )
            # Starting or busy: Prometheus would retry; the next minute sends again.
            with contextlib.suppress(OSError):
                urllib.request.urlopen(req, timeout=30).close()
        time.sleep(max(0.0, LIVE_EVERY_S - (time.time() - now)))


def daemon_config(port: int, prom: str, state: Path) -> str:
    """``deploy/tsf-adapter.yml`` as shipped, pointed at this Prometheus, this port and state dir."""
    # Read as the daemon reads it (YAML 1.2: the threshold's `on` is a key, not a boolean).
    config = read_yaml(ROOT / "deploy" / "tsf-adapter.yml")
    assert isinstance(config, dict)
    config["server"]["listen_address"] = f"127.0.0.1:{port}"
    config["prometheus"]["remote_read"]["url"] = f"{prom}/api/v1/read"
    config["prometheus"]["remote_write"]["url"] = f"{prom}/api/v1/write"
    config["state_dir"] = str(state)
    return json.dumps(config)  # JSON is YAML, and writes every key as a string


def metric(url: str, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=3, help="forecasts to watch after the first training")
    parser.add_argument("--max-minutes", type=float, default=240.0, help="give up after this long")
    args = parser.parse_args()
    hours_ahead = args.max_minutes / 60 + 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.monotonic()
        sim, now_col = cluster(args.series, hours_ahead)
        om = tmp / "history.om"
        lines = write_openmetrics(sim, args.series, now_col, om)
        made = time.monotonic() - t0
        (tmp / "prom").mkdir()
        t0 = time.monotonic()
        subprocess.run(
            [
                "promtool",
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=24h",
                str(om),
                str(tmp / "prom" / "data"),
            ],
            check=True,
            capture_output=True,
        )
        blocks = time.monotonic() - t0
        om.unlink()
        print(
            f"history: {args.series:,} series x {now_col:,} steps, {lines:,} samples written in {made:.0f} s,"
            f" blocks made in {blocks:.0f} s"
        )
        with PrometheusProcess(tmp / "prom") as prom:
            return run(args, tmp, prom, hours_ahead, now_col)


def run(
    args: argparse.Namespace, tmp: Path, prom: PrometheusProcess, hours_ahead: float, now_col: int
) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp / "config.yaml"
    config.write_text(daemon_config(port, prom.url, tmp / "state"))
    log_path = tmp / "daemon.log"
    started = time.time()
    daemon = start_daemon(config, log_path)
    rss: list[tuple[float, int]] = []
    queue: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        k = 0
        while not stop.wait(2.0):
            rss.append((time.time(), rss_kib(daemon.pid)))
            k += 1
            if k % 5 == 0:
                held = metric(url, "tsf_adapter_remote_write_queue_length")
                if held is not None:
                    queue.append(held)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    stop_at = time.time() + 60 * args.max_minutes
    feed = mp.Process(target=feeder, args=(f"{url}/api/v1/write", args.series, hours_ahead, now_col, stop_at))
    feed.start()
    try:
        while time.time() < stop_at and daemon.poll() is None:
            log = events(log_path.read_text(errors="replace"))
            trained = [t for t, m in log if re.match(r"target \S+: trained", m)]
            if trained and sum(1 for t, m in log if " forecast " in m and t > trained[0]) >= args.cycles:
                break
            time.sleep(5)
    finally:
        feed.terminate()
        feed.join()
        daemon.terminate()
        code = daemon.wait(600)
        stop.set()
        watcher.join()
    return report(events(log_path.read_text(errors="replace")), rss, queue, started, code)


def report(
    log: list[tuple[float, str]], rss: list[tuple[float, int]], queue: list[float], started: float, code: int
) -> int:
    ready = next((t for t, m in log if m.startswith("ready:")), None)
    backfill = next((m for _, m in log if m.startswith("backfill done")), "no backfill line")
    forecasts = [(t, m) for t, m in log if re.match(r"target \S+: forecast \d+ series", m)]
    trainings = [(t, m) for t, m in log if re.match(r"target \S+: trained", m)]
    print(f"{backfill}; ready {ready - started:.0f} s after start" if ready else backfill)
    if ready:
        after = [kib for t, kib in rss if t >= ready]
        if after:
            peak = max(kib for _, kib in rss) / 1024
            print(f"RSS after the backfill {after[0] / 1024:.0f} MiB, peak {peak:.0f} MiB")
    durations = [float(m.rsplit(" in ", 1)[1].rstrip("s")) for _, m in forecasts]
    samples = [int(re.search(r"(\d+) samples in", m).group(1)) for _, m in forecasts]  # type: ignore[union-attr]
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(forecasts)]
    late = [g for g in gaps if g > STEP_S + LATE_SLACK_S]
    if durations:
        print(
            f"forecast cycles: {len(durations)}, duration median {np.median(durations):.1f} s, max"
            f" {max(durations):.1f} s (every {STEP_S} s); gaps max {max(gaps, default=0):.0f} s,"
            f" late {len(late)};"
            f" {max(samples):,} samples written per cycle"
        )
    for _, m in trainings:
        print(m)
    if queue:
        print(f"write queue: largest backlog {max(queue):,.0f} samples")
    print(f"daemon exit {code}")
    return 0 if code == 0 and trainings and not late else 1


if __name__ == "__main__":
    sys.exit(main())
