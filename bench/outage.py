"""What a Prometheus outage costs the forecasts, by design: the write queue over virtual time.

Run: ``python -m bench.outage [--series 36,1000] [--outages 1,10,60] [--capacity N]`` (about
15 s; ``--capacity`` replaces the shipped default, to compare).

A target shaped like the storage-quota example (5m step, horizons 1h/6h/24h, quantiles
0.1/0.5/0.9, a threshold: 19 rows per series) forecasts every 5 minutes through the real
``ForecastOutputBuilder`` and hands each forecast to the real ``WriteQueue`` with the shipped
``QueueConfig``. The receiver is a simulated Prometheus 2.42: down for the outage (every request
fails as a refused connection would), and once back it refuses a whole request with 400 when one
sample is over an hour older than now ("out of bounds") or older than what a series already holds
("out of order"). Time is virtual (``SimClock``): the queue's backoffs, its partial-batch deadline
and the forecasts are events on one clock, so an hour's outage takes seconds and every run gives
the same numbers.

Reported per outage: samples produced while Prometheus was down, how many of them reached it,
what was dropped and why, whether every series arrived in order, the queue's peak length and
memory, and how long after recovery the queue was empty again. Memory is the peak length times
the bytes a queued forecast row costs, measured with tracemalloc on real forecasts.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np

from bench.output_build import storage_labels, storage_target
from tsf_adapter.config import QueueConfig
from tsf_adapter.core.errors import RecoverableError, WriteRejected
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import Labels, WriteItem
from tsf_adapter.pipeline.output import ForecastOutputBuilder
from tsf_adapter.remote.codec import decode_write_request, decompress
from tsf_adapter.remote.queue import WriteQueue

FORECAST_EVERY: Final = 300.0
# Virtual time starts at a real Unix time, so forecasts are stamped as the daemon would stamp them.
START: Final = 1_700_000_100.0
# The outage begins 30 s before a forecast is due, after three forecasts were delivered.
DOWN_AT: Final = START + 3 * FORECAST_EVERY - 30.0
# What Prometheus 2.42 accepts: samples no older than its newest (now, as it scrapes) minus 1h.
HEAD_WINDOW_S: Final = 3600.0
# Yields with nothing changing before the sender counts as blocked (see SimClock.settle).
SETTLE_YIELDS: Final = 12


class SimClock:
    """Virtual time for the queue (``Clock``): sleepers wake only when ``advance_to`` passes them."""

    def __init__(self, start: float) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self.now + seconds, self._seq, fut))
        await fut

    def live(self) -> int:
        """Sleepers still waiting (a cancelled sleep's entry stays until it reaches the top)."""
        return sum(not fut.done() for _, _, fut in self._sleepers)

    def next_wake(self) -> float:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else math.inf

    def advance_to(self, t: float) -> None:
        self.now = t
        while self._sleepers and self._sleepers[0][0] <= t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)


async def settle(clock: SimClock, queue: WriteQueue, sink: SimPrometheus) -> None:
    """Yield until the sender is blocked: asleep on the clock, or idle with nothing held.

    Blocked means that state held for ``SETTLE_YIELDS`` turns of the loop: a sender that was
    just woken takes a few turns (``asyncio.wait`` and its callbacks) before it acts.
    """
    last: tuple[int, int, int] | None = None
    stable = 0
    for _ in range(100_000):
        await asyncio.sleep(0)
        state = (clock.live(), queue.stats.queue_length, sink.attempts)
        blocked = state[0] > 0 or state[1] == 0
        stable = stable + 1 if blocked and state == last else 0
        if stable >= SETTLE_YIELDS:
            return
        last = state
    raise RuntimeError("the sender never blocked")


@dataclass
class SimPrometheus:
    """A receiver that is down over ``[down_at, up_at)`` and otherwise judges like Prometheus 2.42."""

    clock: SimClock
    down_at: float
    up_at: float
    attempts: int = 0
    # Per series, the timestamps stored, in arrival order.
    stored: dict[Labels, list[int]] = field(default_factory=dict)
    out_of_order: int = 0

    async def store(self, body: bytes, *, samples: int) -> None:
        self.attempts += 1
        now = self.clock.now
        if self.down_at <= now < self.up_at:
            raise RecoverableError("connection refused (Prometheus is down)")
        series = decode_write_request(decompress(body, 1 << 28)).series
        oldest = min(int(s.timestamps.min()) for s in series)
        if oldest < (now - HEAD_WINDOW_S) * 1000:
            raise WriteRejected("server returned HTTP status 400: out of bounds", status=400)
        for s in series:
            held = self.stored.get(s.labels)
            if held and int(s.timestamps[0]) <= held[-1]:
                self.out_of_order += 1
                raise WriteRejected("server returned HTTP status 400: out of order sample", status=400)
        for s in series:
            self.stored.setdefault(s.labels, []).extend(s.timestamps.tolist())

    def count_between(self, start_s: float, end_s: float) -> int:
        lo, hi = start_s * 1000, end_s * 1000
        return sum(sum(lo <= t < hi for t in ts) for ts in self.stored.values())


def forecaster(n_series: int) -> Callable[[float], list[WriteItem]]:
    """One forecast of ``n_series`` per call, stamped at the given time, as the daemon sends it."""
    rng = np.random.default_rng(0)
    labels = storage_labels(n_series)
    step_ms = 300_000
    start_ms = int(START * 1000) // step_ms * step_ms - 12 * step_ms
    batch = GridBatch("storage", labels, rng.random((n_series, 12)) * 1e12, start_ms, step_ms)
    prediction = rng.random((n_series, 3, 288)) * 1.2e12
    errors = rng.random((n_series, 3))
    builder = ForecastOutputBuilder(storage_target())

    def forecast(now: float) -> list[WriteItem]:
        return builder.build(batch, prediction, now_ms=int(now * 1000), errors=errors).writes()

    return forecast


def bytes_per_queued_sample(n_series: int, rounds: int = 12) -> float:
    """What one queued forecast row costs in memory: ``rounds`` forecasts held, traced."""
    forecast = forecaster(n_series)
    forecast(START)  # fills the builder's label cache, which exists whether or not a queue holds rows
    tracemalloc.start()
    held = [forecast(START + k * FORECAST_EVERY) for k in range(rounds)]
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / sum(len(item) for items in held for item in items)


@dataclass(frozen=True)
class Outcome:
    series: int
    outage_s: float
    per_forecast: int
    produced: int  # samples of the forecasts made while Prometheus was down
    delivered: int  # of those, how many Prometheus stored
    dropped: dict[str, int]  # every drop of the run, by reason
    in_order: bool
    peak_length: int
    recovered_after_s: float  # from Prometheus's return until the queue was empty


async def simulate(n_series: int, outage_s: float, cfg: QueueConfig) -> Outcome:
    """One outage of ``outage_s`` seconds, forecasts every 5 minutes throughout, then recovery."""
    clock = SimClock(START)
    up_at = DOWN_AT + outage_s
    sink = SimPrometheus(clock, DOWN_AT, up_at)
    queue = WriteQueue(sink, cfg, clock=clock, jitter=lambda: 0.5)
    forecast = forecaster(n_series)
    queue.start()
    next_forecast, produced, per_forecast, peak = START, 0, 0, 0
    recovered_at = math.nan
    end = up_at + 2 * FORECAST_EVERY
    while True:
        await settle(clock, queue, sink)
        peak = max(peak, queue.stats.queue_length)
        if clock.now >= up_at and queue.stats.queue_length == 0 and math.isnan(recovered_at):
            recovered_at = clock.now
        if clock.now >= end and queue.stats.queue_length == 0:
            break
        t = min(next_forecast, clock.next_wake())
        clock.advance_to(t)
        if t == next_forecast:
            await settle(clock, queue, sink)  # sleepers due now act first, as they would
            items = forecast(t)
            per_forecast = sum(len(i) for i in items)
            if DOWN_AT <= t < up_at:
                produced += per_forecast
            await queue.put(items)
            next_forecast += FORECAST_EVERY
    await queue.close(deadline=0)
    in_order = sink.out_of_order == 0 and all(bool((np.diff(ts) > 0).all()) for ts in sink.stored.values())
    return Outcome(
        series=n_series,
        outage_s=outage_s,
        per_forecast=per_forecast,
        produced=produced,
        delivered=sink.count_between(DOWN_AT, up_at),
        dropped=dict(queue.stats.samples_dropped),
        in_order=in_order,
        peak_length=peak,
        recovered_after_s=recovered_at - up_at,
    )


def table(outcomes: Sequence[Outcome], bytes_per_sample: dict[int, float]) -> str:
    head = (
        "| series | outage | per forecast | made while down | delivered | dropped queue_full | "
        "dropped too_old | other drops | in order | peak queue | peak memory | queue empty after |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for o in outcomes:
        other = {k: v for k, v in o.dropped.items() if k not in ("queue_full", "too_old")}
        peak_mib = o.peak_length * bytes_per_sample[o.series] / 2**20
        delivered = f"{o.delivered:,} ({o.delivered / o.produced:.0%})" if o.produced else "0"
        rows.append(
            f"| {o.series:,} | {o.outage_s / 60:g} min | {o.per_forecast:,} | {o.produced:,} | {delivered} | "
            f"{o.dropped.get('queue_full', 0):,} | {o.dropped.get('too_old', 0):,} | {other or 'none'} | "
            f"{'yes' if o.in_order else 'NO'} | {o.peak_length:,} | {peak_mib:.1f} MiB | "
            f"{o.recovered_after_s:.1f} s |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--series", default="36,1000", help="series per target, comma-separated")
    parser.add_argument("--outages", default="1,10,60", help="outage lengths in minutes")
    parser.add_argument("--capacity", type=int, default=None, help="queue.capacity (default: shipped)")
    args = parser.parse_args(argv)
    cfg = QueueConfig()
    if args.capacity is not None:
        cfg = replace(cfg, capacity=args.capacity)
    sizes = [int(s) for s in args.series.split(",")]
    print(
        f"queue: capacity {cfg.capacity:,}, max_samples_per_send {cfg.max_samples_per_send}, "
        f"sample_age_limit {cfg.sample_age_limit:g}s, backoff {cfg.min_backoff:g}-{cfg.max_backoff:g}s; "
        f"a forecast every {FORECAST_EVERY:g}s"
    )
    per_sample = {n: bytes_per_queued_sample(n) for n in sizes}
    for n, b in per_sample.items():
        print(f"{n} series: {b:.1f} bytes per queued sample")
    outcomes = [
        asyncio.run(simulate(n, float(minutes) * 60, cfg))
        for n in sizes
        for minutes in args.outages.split(",")
    ]
    print(table(outcomes, per_sample))


if __name__ == "__main__":
    main()
