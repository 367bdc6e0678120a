"""Soak: Prometheus-shaped remote-write at a steady rate for minutes while the daemon trains and forecasts.

    python -m bench.soak                                  # 50,000 samples/s for 10 minutes (+1 warm-up)
    python -m bench.soak --rate 5000 --minutes 0.5 --warmup 0.2 --series 5000 --target-series 200

``tsf-adapter run`` runs as a process with one LSTM target of ``--target-series`` storage series
(10 s steps, an hour of history backfilled by remote-read from this process, horizons 5m and 15m,
forecasts every 30 s, a retrain every 5 minutes), writing its forecasts by remote-write back to
this process. A sender process writes ``--series`` series (the target's and as many others, which
the daemon turns away, as a Prometheus without ``write_relabel_configs`` would send) once a second
each, in requests of 2,000 samples (Prometheus's ``max_samples_per_send`` since 3.0), paced to
``--rate`` samples a second.

Reported: requests by status, receive latency (p50, p99, max) as the sender saw it, the rate
reached, the daemon's RSS (after the warm-up and at the end: flat means the last is within 10% of
the first), every forecast cycle's start against its schedule (late = more than ``forecast_every``
plus 10 s after the previous one), trainings done and how long they took, and forecast samples
received back.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import multiprocessing as mp
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from bench.daemon_log import events, start_daemon
from bench.fuzz_receiver import rss_kib
from tests.live_daemon import FakePrometheus
from tests.prometheus import free_port
from tsf_adapter.core.series import SampleBlock, SeriesSamples, make_labels
from tsf_adapter.remote.codec import decode_write_request, decompress, encode_write_request

BATCH = 2000
STEP_S = 10
FORECAST_EVERY_S = 30
RETRAIN_EVERY_S = 300
LATE_SLACK_S = 10.0

CONFIG = """
server:
  listen_address: "127.0.0.1:{port}"
prometheus:
  remote_read: {{url: "{read}", prefer_streamed: false}}
  remote_write:
    url: "{write}"
    queue: {{batch_send_deadline: 1s}}
state_dir: "{state}"
targets:
  - name: storage
    selector: 'storage_used_bytes'
    step: {step}s
    history: 1h
    horizons: [5m, 15m]
    forecast_every: {forecast}s
    retrain_every: {retrain}s
"""


class Sink(FakePrometheus):
    """Remote-read of the target's backfill; remote-write that counts forecast samples, keeps none."""

    def __init__(self, history: list[SeriesSamples]) -> None:
        super().__init__(history)
        self.samples = 0

    async def _write(self, request: web.Request) -> web.Response:
        decoded = decode_write_request(decompress(await request.read(), 1 << 27))
        with self.lock:
            self.samples += sum(len(s) for s in decoded.series)
        return web.Response(status=204)


def labels(i: int, n_target: int) -> tuple[tuple[str, str], ...]:
    """Storage series for the first ``n_target``, node metrics (not selected) for the rest."""
    common = {"cluster": f"c{i % 4}", "instance": f"node-{i // 20}:9100", "job": "node"}
    if i < n_target:
        return make_labels({"__name__": "storage_used_bytes", "user": f"u{i}", **common})
    return make_labels({"__name__": "node_metric", "series": str(i), **common})


def value(i: int, t: float) -> float:
    return 1e12 * (1 + i % 7) * (0.85 + 0.05 * math.sin(t / 3600 + i) + 1e-6 * (t % 86400))


def history(n_target: int, now: float) -> list[SeriesSamples]:
    stamps = np.arange(now - 3600, now, STEP_S)
    return [
        SeriesSamples(labels(i, n_target), (stamps * 1000).astype(np.int64), [value(i, t) for t in stamps])
        for i in range(n_target)
    ]


def sender(url: str, n_series: int, n_target: int, rate: float, until: float, out: Any) -> None:
    """Process: send every series once a second in BATCH-sample requests, paced to ``rate``."""
    asyncio.run(_send(url, n_series, n_target, rate, until, out))


async def _send(url: str, n_series: int, n_target: int, rate: float, until: float, out: Any) -> None:
    keys = [labels(i, n_target) for i in range(n_series)]
    # One request's label sets per offset, built once: the sender's cost is then the encoding.
    scale = 1e12 * (1 + np.arange(n_series) % 7)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    interval = BATCH / rate
    start = time.monotonic()
    async with aiohttp.ClientSession() as session:
        k = 0
        while time.time() < until:
            due = start + k * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            first = (k * BATCH) % n_series
            rows = (first + np.arange(BATCH)) % n_series
            now = time.time()
            values = scale[rows] * (0.85 + 0.05 * np.sin(now / 3600 + rows) + 1e-6 * (now % 86400))
            block = SampleBlock([keys[r] for r in rows.tolist()], int(now * 1000), values)
            body = encode_write_request([block])
            t0 = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError:
                status = -1
            latencies.append(time.monotonic() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            if 200 <= status < 300:
                sent += BATCH
            k += 1
    elapsed = time.monotonic() - start
    out.send({"latencies": latencies, "statuses": statuses, "sent": sent, "elapsed": elapsed})


def _events(log: str, pattern: str) -> list[tuple[float, re.Match[str]]]:
    """The log records whose message matches ``pattern``, with their match."""
    return [(ts, m) for ts, msg in events(log) if (m := re.search(pattern, msg))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50_000.0, help="samples per second sent")
    parser.add_argument("--minutes", type=float, default=10.0, help="measured time, after the warm-up")
    parser.add_argument("--warmup", type=float, default=1.0, help="minutes before measuring")
    parser.add_argument("--series", type=int, default=50_000, help="series sent, each once a second")
    parser.add_argument("--target-series", type=int, default=2_000, help="of which the target forecasts")
    args = parser.parse_args(argv)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sink = Sink(history(args.target_series, time.time()))
    with tempfile.TemporaryDirectory() as tmp, sink:
        sink.read_gate.set()
        config = Path(tmp) / "config.yaml"
        config.write_text(
            CONFIG.format(
                port=port,
                read=f"{sink.url}/api/v1/read",
                write=f"{sink.url}/api/v1/write",
                state=Path(tmp) / "state",
                step=STEP_S,
                forecast=FORECAST_EVERY_S,
                retrain=RETRAIN_EVERY_S,
            )
        )
        log_path = Path(tmp) / "daemon.log"
        daemon = start_daemon(config, log_path)
        try:
            return _run(args, url, daemon, log_path, sink)
        finally:
            if daemon.poll() is None:
                daemon.terminate()
                daemon.wait(120)


def _ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _run(
    args: argparse.Namespace, url: str, daemon: subprocess.Popen[bytes], log_path: Path, sink: Sink
) -> int:
    deadline = time.monotonic() + 300
    while not _ready(url):
        if daemon.poll() is not None or time.monotonic() > deadline:
            print(log_path.read_text(), file=sys.stderr)
            return 1
        time.sleep(0.5)
    begin = time.time()
    measure_from = begin + 60 * args.warmup
    until = measure_from + 60 * args.minutes
    recv, send = mp.Pipe(duplex=False)
    proc = mp.Process(
        target=sender, args=(f"{url}/api/v1/write", args.series, args.target_series, args.rate, until, send)
    )
    proc.start()
    rss: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample_rss() -> None:
        while not stop.wait(5.0):
            rss.append((time.time(), rss_kib(daemon.pid)))

    watcher = threading.Thread(target=sample_rss, daemon=True)
    watcher.start()
    result = recv.recv()
    proc.join()
    stop.set()
    watcher.join()
    log = log_path.read_text()
    daemon.terminate()
    code = daemon.wait(120)

    lat: list[float] = sorted(result["latencies"])

    def p(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    measured = [kib for t, kib in rss if t >= measure_from]
    forecasts = [t for t, _ in _events(log, r"^target storage: forecast (\d+) series")]
    gaps = [b - a for a, b in itertools.pairwise(forecasts) if a >= begin]
    late = [g for g in gaps if g > FORECAST_EVERY_S + LATE_SLACK_S]
    trained = _events(log, r"^target storage: trained (\d+) series in ([\d.]+)s")
    statuses = result["statuses"]
    bad = sum(n for s, n in statuses.items() if not 200 <= s < 300)
    sent, elapsed = result["sent"], result["elapsed"]
    print(f"sent {sent:,} samples in {elapsed:.0f} s: {sent / elapsed:,.0f}/s")
    print(f"requests by status: {dict(sorted(statuses.items()))} ({bad} not 2xx)")
    print(f"receive latency: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms")
    if measured:
        first, last, peak = measured[0] / 1024, measured[-1] / 1024, max(measured) / 1024
        print(f"daemon RSS after warm-up {first:.0f} MiB, at the end {last:.0f} MiB, peak {peak:.0f} MiB")
    print(
        f"forecast cycles: {len(forecasts)}, gaps median {statistics.median(gaps) if gaps else 0:.1f} s,"
        f" max {max(gaps) if gaps else 0:.1f} s, late {len(late)}"
    )
    print(f"trainings: {len(trained)}, durations {[round(float(m.group(2)), 1) for _, m in trained]} s")
    print(f"forecast samples written back: {sink.samples:,}; daemon exit {code}")
    return 0 if bad == 0 and not late and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
