"""Ingest throughput: Prometheus-shaped remote-write requests through the receive path.

Usage::

    python -m bench.ingest [--seconds 2] [--http-seconds 5]

Shapes (10 labels per series, like a node-exporter filesystem series):

* ``2000x1``: 2,000 series × 1 sample, what Prometheus sends (one sample per series per request);
* ``100x100``: 100 series × 100 samples, a backfill-like request.

Measured in one run, each as samples per CPU-second on one core (``time.process_time``, best of
repeats, so other load on the machine matters less than for wall time):

* ``floor``: snappy decompress + ``WriteRequest.ParseFromString`` alone: no path can beat it;
* ``naive``: floor + a label dict and tuple key per series, dict lookup, append to lists;
* ``full``: what the receiver runs per request (size checks, decompress, ``Ingester`` fast path,
  append into a real ``Store``), HTTP excluded;
* ``http``: the same over real HTTP: ``tsf-adapter receive`` as a subprocess, requests posted from
  this process; samples per CPU-second *of the receiver process* (read from /proc), plus wall rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
import snappy

from tsf_adapter._pb import remote_pb2
from tsf_adapter.config import TargetConfig
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.remote.codec import decompress
from tsf_adapter.remote.ingest import Ingester
from tsf_adapter.store.store import Store

SELECTOR = "storage_used_bytes"
START_MS = 1_790_000_000_000
MAX_DECOMPRESSED = 64 << 20


def make_requests(n_series: int, n_samples: int, rounds: int) -> list[bytes]:
    """``rounds`` snappy bodies; timestamps advance each round like successive scrapes."""
    bodies = []
    rng = np.random.default_rng(0)
    for r in range(rounds):
        req = remote_pb2.WriteRequest()
        for i in range(n_series):
            ts = req.timeseries.add()
            labels = [
                ("__name__", SELECTOR),
                ("cluster", f"c{i % 3}"),
                ("group", f"g{i % 20}"),
                ("instance", f"node-{i % 50}:9100"),
                ("job", "storage"),
                ("path", f"/data/vol{i}"),
                ("region", "eu-west-1"),
                ("storage_type", "ssd"),
                ("tenant", f"t{i % 7}"),
                ("user", f"user{i}"),
            ]
            for name, value in labels:
                ts.labels.add(name=name, value=value)
            for k in range(n_samples):
                t = START_MS + (r * n_samples + k) * 15_000
                ts.samples.add(value=float(9e11 + rng.integers(0, 10**9)), timestamp=t)
        bodies.append(snappy.compress(req.SerializeToString()))
    return bodies


def cpu_rate(
    samples_per_call: int, bodies: list[bytes], fn: Callable[[bytes], None], seconds: float
) -> float:
    """Best samples per CPU-second over repeats of at least ``seconds / 5`` each."""
    best = 0.0
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        calls = 0
        start = time.process_time()
        while True:
            fn(bodies[i % len(bodies)])
            i += 1
            calls += 1
            spent = time.process_time() - start
            if spent >= seconds / 5:
                break
        best = max(best, calls * samples_per_call / spent)
    return best


def floor_fn(body: bytes) -> None:
    remote_pb2.WriteRequest().ParseFromString(snappy.uncompress(body))


def naive_fn_factory() -> Callable[[bytes], None]:
    series: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}

    def naive(body: bytes) -> None:
        req = remote_pb2.WriteRequest()
        req.ParseFromString(snappy.uncompress(body))
        for ts in req.timeseries:
            labels = {lb.name: lb.value for lb in ts.labels}
            key = tuple(sorted(labels.items()))
            rows = series.setdefault(key, [])
            for s in ts.samples:
                rows.append((s.timestamp, s.value))

    return naive


def full_fn_factory() -> tuple[Callable[[bytes], None], Store]:
    selector = parse_selector(SELECTOR)
    store = Store([TargetConfig(name="bench", selector=selector, step=15, history=86_400)])
    ingester = Ingester(store, [selector])

    def full(body: bytes) -> None:
        if len(body) > 16 << 20:
            raise ValueError("too large")
        ingester.ingest(decompress(body, MAX_DECOMPRESSED))

    return full, store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def post_all(url: str, bodies: list[bytes], seconds: float, concurrency: int) -> int:
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    sent = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:

        async def worker(offset: int) -> None:
            nonlocal sent
            i = offset
            while time.monotonic() < deadline:
                async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as resp:
                    if resp.status != 204:
                        raise RuntimeError(f"receiver answered {resp.status}: {await resp.text()}")
                i += concurrency
                sent += 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return sent


def http_rate(samples_per_call: int, bodies: list[bytes], seconds: float) -> tuple[float, float]:
    """(samples per receiver CPU-second, samples per wall second) over real HTTP."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tsf_adapter",
            "--log-level",
            "warning",
            "receive",
            "--listen",
            f"127.0.0.1:{port}",
            "--selector",
            SELECTOR,
            "--step",
            "15",
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        asyncio.run(post_all(f"{url}/api/v1/write", bodies[:2], 0.5, 2))  # warm the series cache
        cpu0, wall0 = proc_cpu_seconds(proc.pid), time.monotonic()
        calls = asyncio.run(post_all(f"{url}/api/v1/write", bodies, seconds, 4))
        cpu, wall = proc_cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
    finally:
        proc.terminate()
        proc.wait(10)
    return calls * samples_per_call / cpu, calls * samples_per_call / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per in-process measurement")
    parser.add_argument("--http-seconds", type=float, default=5.0, help="wall seconds per HTTP measurement")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(
        "| shape | floor (decompress+parse) | naive | full path, no HTTP | full / floor "
        "| HTTP, per receiver core | HTTP / floor | HTTP wall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n_series, n_samples in ((2000, 1), (100, 100)):
        bodies = make_requests(n_series, n_samples, rounds=40)
        per_call = n_series * n_samples
        full, store = full_fn_factory()
        full(bodies[0])
        floor = cpu_rate(per_call, bodies, floor_fn, args.seconds)
        naive = cpu_rate(per_call, bodies, naive_fn_factory(), args.seconds)
        fast = cpu_rate(per_call, bodies, full, args.seconds)
        assert store.n_series == n_series
        http_cpu, http_wall = http_rate(per_call, bodies, args.http_seconds)
        print(
            f"| {n_series}x{n_samples} | {floor:,.0f} | {naive:,.0f} ({naive / floor:.0%}) | {fast:,.0f} "
            f"| {fast / floor:.0%} | {http_cpu:,.0f} | {http_cpu / floor:.0%} | {http_wall:,.0f} |"
        )


if __name__ == "__main__":
    main()
