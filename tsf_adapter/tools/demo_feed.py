"""The demo's data source: a simulated storage cluster served the way a Prometheus would serve it.

Why this shape: the daemon gets its history by remote-read at start and its new samples by
remote-write, and answers writes with 503 until that backfill is done. So the demo plays
Prometheus on both sides, over real HTTP and real protobuf, and the daemon runs unchanged:

* :func:`make_history_app` is a tiny remote-read endpoint (``SAMPLES`` answers built with
  :mod:`tsf_adapter.remote.read_codec`) that serves the simulated **past**, every sample up to
  the live start ``t0``; the daemon's own backfill reads it;
* :class:`LiveFeed` sends everything after ``t0`` to the daemon's receiver with our own
  remote-write sender (:class:`~tsf_adapter.remote.queue.WriteQueue`), once the daemon is ready,
  as fast as the simulated clock advances.

Time: :class:`SimClock` starts at ``t0``, some hours before the wall clock, and runs ``speed``
times faster until it reaches the wall clock, then with it. A runaway job that takes hours to
fill a quota thus plays out in minutes, while no sample is ever stamped in the future (which
Prometheus-compatible stores reject). The daemon's scheduler runs on the same clock, so its
forecast times, horizons and time-to-quota answers are all in simulated time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
import numpy as np
import numpy.typing as npt
from aiohttp import web

from tsf_adapter.config import QueueConfig, RemoteWriteConfig
from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.series import METRIC_NAME_LABEL, Labels, SeriesSamples
from tsf_adapter.remote.queue import WriteQueue
from tsf_adapter.remote.read_codec import (
    SAMPLES_CONTENT_TYPE,
    ReadQuery,
    ResponseType,
    decode_read_request,
    encode_samples_response,
)
from tsf_adapter.remote.write_client import RemoteWriteClient
from tsf_adapter.tools.simulate import DAY_S, QUOTA_METRIC, USED_METRIC, SimConfig, Simulation, simulate

logger = logging.getLogger("tsf_adapter.demo")

HISTORY_S: Final = 7 * DAY_S
# Simulated time kept after the clock has caught up with the wall clock: a day of real-time demo.
TAIL_S: Final = DAY_S
# A quota hit must come at least this long after t0, so the daemon has forecast before it.
MIN_LEAD_S: Final = 3600.0
# Seeds tried (from the requested one on) to find a cluster with a quota hit while the demo runs.
SEED_TRIES: Final = 200


class SimClock:
    """Simulated time: ``start_s`` at creation, ``speed`` x faster than the wall clock until it
    reaches it, then equal to it; never ahead of it.

    Implements the scheduler's ``Clock`` protocol: ``sleep`` sleeps simulated seconds.

    >>> clock = SimClock(start_s=time.time() - 3600, speed=60.0)
    >>> clock.time() < time.time()
    True
    """

    def __init__(
        self,
        *,
        start_s: float,
        speed: float,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 1:
            raise ValueError(f"speed must be >= 1 (got {speed})")
        self.start_s = start_s
        self.speed = speed
        self._wall = wall
        self._monotonic = monotonic
        self._origin = monotonic()

    def time(self) -> float:
        return min(self.start_s + self.speed * (self._monotonic() - self._origin), self._wall())

    def monotonic(self) -> float:
        return self._monotonic()

    @property
    def caught_up(self) -> bool:
        """Running with the wall clock now (no longer accelerated)."""
        return self.time() >= self._wall()

    async def sleep(self, seconds: float) -> None:
        # Accelerated, a simulated second lasts 1/speed of a real one; a sleep that reaches past
        # the catch-up point is only shortened up to it, which the callers' loops re-check anyway.
        real = seconds if self.caught_up else seconds / self.speed
        await asyncio.sleep(max(0.0, real))


@dataclass(frozen=True, slots=True)
class DemoCluster:
    """The simulated cluster with its metric labels, and where the live part starts (``t0_ms``)."""

    sim: Simulation
    t0_ms: int
    seed: int
    used_labels: tuple[Labels, ...]
    quota_labels: tuple[Labels, ...]
    hits: tuple[tuple[int, int], ...]  # (series, timestamp_ms) of every quota fill (Simulation.fills)

    def live_hits(self, end_ms: int) -> list[tuple[int, int]]:
        """``(series, timestamp_ms)`` of every quota-full episode starting after ``t0``, up to ``end_ms``."""
        return [(s, t) for s, t in self.hits if self.t0_ms < t <= end_ms]


def _named(name: str, labels: Labels) -> Labels:
    return tuple(sorted(((METRIC_NAME_LABEL, name), *labels)))


def make_cluster(
    *,
    now_s: float,
    lag_s: float,
    seed: int,
    clusters: int,
    groups: int,
    users: int,
    step_s: float = 60.0,
) -> DemoCluster:
    """A week of history before ``t0 = now - lag``, then ``lag`` plus a day of live samples.

    Tries seeds from ``seed`` on until a quota is hit after ``t0`` and before the simulated clock
    catches up with the wall clock (with no lag: within the day after ``t0``), so the demo always
    has a runaway to tell about; the seed used is kept.
    """
    t0_s = (now_s - lag_s) // step_s * step_s
    live_s = lag_s if lag_s >= 2 * MIN_LEAD_S else TAIL_S
    names = tuple(f"c{i + 1}" for i in range(clusters))
    sim: Simulation | None = None
    hits: list[tuple[int, int]] = []
    for candidate in range(seed, seed + SEED_TRIES):
        cfg = SimConfig(
            seed=candidate,
            clusters=names,
            groups_per_cluster=groups,
            users_per_group=users,
            start_s=int(t0_s - HISTORY_S),
            span_s=HISTORY_S + lag_s + TAIL_S,
            step_s=step_s,
        )
        sim = simulate(cfg)
        hits = sorted(((f.series, f.at_ms) for f in sim.fills()), key=lambda h: h[1])
        lo, hi = (t0_s + MIN_LEAD_S) * 1000, (t0_s + live_s) * 1000
        if any(lo <= t <= hi for _, t in hits):
            seed = candidate
            break
    assert sim is not None
    return DemoCluster(
        sim=sim,
        t0_ms=round(t0_s * 1000),
        seed=seed,
        used_labels=tuple(_named(USED_METRIC, lab) for lab in sim.labels),
        quota_labels=tuple(_named(QUOTA_METRIC, lab) for lab in sim.labels),
        hits=tuple(hits),
    )


def _select(cluster: DemoCluster, query: ReadQuery, until_ms: int) -> list[SeriesSamples]:
    """The samples of every matching series in ``[start, min(end, until)]``."""
    ts = cluster.sim.timestamps_ms
    lo = int(np.searchsorted(ts, query.start_ms, side="left"))
    hi = int(np.searchsorted(ts, min(query.end_ms, until_ms), side="right"))
    if hi <= lo:
        return []
    selector = Selector(query.matchers)
    out: list[SeriesSamples] = []
    for labels_set, values in (
        (cluster.used_labels, cluster.sim.used),
        (cluster.quota_labels, cluster.sim.quota),
    ):
        for i, labels in enumerate(labels_set):
            if selector.matches(labels):
                out.append(SeriesSamples(labels, ts[lo:hi], values[i, lo:hi]))
    return out


def make_history_app(cluster: DemoCluster) -> web.Application:
    """``POST /api/v1/read``: the simulated past (up to ``t0``), answered as ``SAMPLES``.

    Like Prometheus, it answers 400 when the client does not accept ``SAMPLES`` (the only type
    served here) or sends a body that does not decode.
    """

    async def read(request: web.Request) -> web.Response:
        try:
            queries, types = decode_read_request(await request.read())
        except DecodeError as exc:
            return web.Response(status=400, text=str(exc))
        if types and ResponseType.SAMPLES not in types:
            return web.Response(status=400, text="none of the accepted response types is supported")
        results = [_select(cluster, q, cluster.t0_ms) for q in queries]
        body = await asyncio.to_thread(encode_samples_response, results)
        headers = {"Content-Type": SAMPLES_CONTENT_TYPE, "Content-Encoding": "snappy"}
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_post("/api/v1/read", read)
    return app


class LiveFeed:
    """Sends the simulated samples after ``t0`` to the daemon's receiver as the clock reaches them."""

    def __init__(
        self,
        cluster: DemoCluster,
        clock: SimClock,
        session: aiohttp.ClientSession,
        write_url: str,
    ) -> None:
        self.cluster = cluster
        self.clock = clock
        # The samples are stamped in simulated time, hours behind the queue's wall clock, and the
        # receiver is the daemon, which keeps them at any age: no age limit.
        queue = QueueConfig(flush_deadline=2.0, sample_age_limit=0.0)
        cfg = RemoteWriteConfig(url=write_url, queue=queue)
        self.queue = WriteQueue(RemoteWriteClient(cfg, session), cfg.queue)
        self.sent_until_ms = cluster.t0_ms

    async def run(self) -> None:
        """Until cancelled, or until the simulation ends (logged)."""
        ts = self.cluster.sim.timestamps_ms
        step_s = float(ts[1] - ts[0]) / 1000.0 if ts.size > 1 else 60.0
        self.queue.start()
        try:
            while True:
                now_ms = int(self.clock.time() * 1000)
                lo = int(np.searchsorted(ts, self.sent_until_ms, side="right"))
                hi = int(np.searchsorted(ts, now_ms, side="right"))
                if hi > lo:
                    await self.queue.put(self._series(lo, hi))
                    self.sent_until_ms = int(ts[hi - 1])
                if hi >= ts.size:
                    logger.warning("demo: the simulation has ended; no more live samples")
                    return
                await self.clock.sleep(step_s)
        finally:
            await self.queue.close()

    def _series(self, lo: int, hi: int) -> list[SeriesSamples]:
        sim = self.cluster.sim
        ts: npt.NDArray[np.int64] = sim.timestamps_ms[lo:hi]
        out = [SeriesSamples(lab, ts, sim.used[i, lo:hi]) for i, lab in enumerate(self.cluster.used_labels)]
        out += [
            SeriesSamples(lab, ts, sim.quota[i, lo:hi]) for i, lab in enumerate(self.cluster.quota_labels)
        ]
        return out
