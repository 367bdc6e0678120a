"""A storage cluster simulator: per-user usage against quotas, with known times of hitting the quota.

Why: the question our forecasts must answer for storage is "will this user hit
the quota within the horizon?", and real data with quota hits and ground truth
is rare. The simulator gives that ground truth, deterministically from a seed,
and is also the built-in demo's data source.

The cluster: ``clusters`` × ``groups_per_cluster`` groups × ``users_per_group``
users, each with a quota on every storage type (ssd, hdd, object), so one
series per (cluster, group, user, storage_type). Each usage series, as a
fraction of its quota, is the sum of:

* a base level of 85–90% with a slow drift (so most of the time usage sits at
  85–95%, where a fixed percentage alert is useless);
* a day/night rhythm (temporary data written during working hours);
* fast write bursts (minutes) that are deleted again hours later: they look
  like the start of a runaway to a linear extrapolation, but never fill the quota;
* occasional runaway jobs that write steadily (slightly accelerating) for
  hours until the quota is full; usage then stays at the quota (writes fail)
  until the job is stopped and its data deleted.

Usage is capped at the quota; ``full`` marks the steps where it is reached.
All of it is vectorised numpy over [series, events, steps]. Besides the usage,
a simulation carries its ground truth: when each runaway started and when its
data was deleted, and from those :meth:`Simulation.fills`, the quota-fill events
with the start of the climb that caused each.

>>> cfg = SimConfig(seed=1, span_s=86_400, clusters=("c1",), groups_per_cluster=1, users_per_group=2)
>>> sim = simulate(cfg)
>>> sim.used.shape, sim.labels[0]
((6, 288), (('cluster', 'c1'), ('group', 'group-1'), ('storage_type', 'ssd'), ('user', 'user-1-1')))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.series import Labels, make_labels
from tsf_adapter.tools.csvio import write_series_csv

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

USED_METRIC = "storage_used_bytes"
QUOTA_METRIC = "storage_quota_bytes"
TIB = 2.0**40
DAY_S = 86_400.0
# Quota ranges per storage type, in TiB: fast storage is small, object storage large.
QUOTA_TIB: dict[str, tuple[float, float]] = {"ssd": (1.0, 8.0), "hdd": (10.0, 80.0), "object": (50.0, 400.0)}
# Usage held at the quota flickers across it with noise: a hit within this long of the last full
# step is the same fill, not a new one (the forecast horizon the quota alerts are scored on).
FILL_GAP_S: Final = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class Fill:
    """One quota-fill event of series ``series`` at ``at_ms``, and the start of the runaway that
    filled it (None when no runaway was writing then, e.g. a burst on top of a high level)."""

    series: int
    at_ms: int
    runaway_start_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Size, time axis and event rates of a simulated cluster; every default is a realistic middle."""

    seed: int = 0
    clusters: tuple[str, ...] = ("eu-1", "us-1")
    storage_types: tuple[str, ...] = ("ssd", "hdd", "object")
    groups_per_cluster: int = 2
    users_per_group: int = 3
    # 2023-11-15 00:00 UTC: a whole day, so the day/night rhythm starts at midnight.
    start_s: int = 1_700_006_400
    span_s: float = 8 * DAY_S
    step_s: float = 300.0
    bursts_per_day: float = 1.0
    # A runaway every ~5 days per series: rare, as they are, but enough of them to score alerts.
    runaways_per_day: float = 0.2

    def __post_init__(self) -> None:
        if self.step_s <= 0 or self.span_s < self.step_s:
            raise ValueError(f"need 0 < step_s <= span_s (got step {self.step_s}, span {self.span_s})")
        unknown = set(self.storage_types) - set(QUOTA_TIB)
        if unknown:
            raise ValueError(f"unknown storage types {sorted(unknown)} (known: {', '.join(QUOTA_TIB)})")


@dataclass(frozen=True, slots=True, eq=False)
class Simulation:
    """Usage and quota per series on one time axis, and where usage reached the quota.

    ``used``/``quota`` are [series, steps] in bytes; ``full`` is ``used >= quota``.
    ``runaway_starts_ms[series]`` are the series' runaway starts, in order, and
    ``runaway_ends_ms[series]`` the times their data was deleted, pairwise (empty
    when unknown: then no fill is attributed to a runaway).
    """

    labels: tuple[Labels, ...]
    timestamps_ms: IntArray
    used: FloatArray
    quota: FloatArray
    full: BoolArray
    runaway_starts_ms: tuple[tuple[int, ...], ...]
    runaway_ends_ms: tuple[tuple[int, ...], ...] = ()

    @property
    def n_series(self) -> int:
        return len(self.labels)

    def name(self, i: int) -> str:
        """File-stem name of series ``i``: ``<cluster>_<group>_<user>_<storage_type>``."""
        d = dict(self.labels[i])
        return f"{d['cluster']}_{d['group']}_{d['user']}_{d['storage_type']}"

    def hits(self) -> list[tuple[int, int]]:
        """Ground truth: ``(series, timestamp_ms)`` of every time usage reached the quota from below."""
        rising = self.full[:, 1:] & ~self.full[:, :-1]
        first = self.full[:, :1]
        edges = np.concatenate([first, rising], axis=1)
        rows, cols = np.nonzero(edges)
        return [(int(r), int(self.timestamps_ms[c])) for r, c in zip(rows, cols, strict=True)]

    def fills(self, gap_s: float = FILL_GAP_S) -> list[Fill]:
        """Ground truth for event scoring: the hits after which the series had not been full for
        ``gap_s`` (a re-fill sooner is flicker of the same fill), in time order per series.

        A fill's runaway is the earliest one that was writing at the fill (started at or before
        it, data not yet deleted) and started after the series was last full: with two runaways
        overlapping, usage has been climbing since the first.
        """
        out: list[Fill] = []
        ts = self.timestamps_ms
        gap_ms = gap_s * 1000
        for series, at_ms in self.hits():
            col = int(np.searchsorted(ts, at_ms))
            before = np.flatnonzero(self.full[series, :col])
            last_full = int(ts[before[-1]]) if before.size else None
            if last_full is not None and at_ms - last_full <= gap_ms:
                continue
            starts = self.runaway_starts_ms[series] if self.runaway_ends_ms else ()
            ends = self.runaway_ends_ms[series] if self.runaway_ends_ms else ()
            writing = [
                s
                for s, e in zip(starts, ends, strict=True)
                if s <= at_ms < e and (last_full is None or s > last_full)
            ]
            out.append(Fill(series, at_ms, min(writing) if writing else None))
        return out

    def crossings(self, origins_ms: IntArray, horizon_ms: int) -> tuple[BoolArray, BoolArray]:
        """Per [series, origin]: does usage reach the quota in ``(origin, origin + horizon]``, and is
        it already full at the origin (then there is nothing left to predict)."""
        ts = self.timestamps_ms
        at = np.searchsorted(ts, origins_ms, side="right") - 1  # last step <= origin
        full_now = np.where(at >= 0, self.full[:, np.clip(at, 0, None)], False)
        # Cumulative count of full steps, so "any full step in a window" is one subtraction.
        count = np.concatenate([np.zeros((self.n_series, 1), np.int64), np.cumsum(self.full, axis=1)], axis=1)
        hi = np.searchsorted(ts, origins_ms + horizon_ms, side="right")
        ahead = count[:, hi] - count[:, at + 1] > 0
        return ahead, full_now

    def write_csvs(self, directory: Path) -> list[Path]:
        """``used/<name>.csv`` and ``quota/<name>.csv`` per series; returns the usage files."""
        out: list[Path] = []
        for sub in ("used", "quota"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        for i in range(self.n_series):
            path = directory / "used" / f"{self.name(i)}.csv"
            write_series_csv(path, self.timestamps_ms, self.used[i])
            write_series_csv(directory / "quota" / f"{self.name(i)}.csv", self.timestamps_ms, self.quota[i])
            out.append(path)
        return out


def _series_labels(cfg: SimConfig) -> list[Labels]:
    out = []
    for cluster in cfg.clusters:
        for g in range(1, cfg.groups_per_cluster + 1):
            for u in range(1, cfg.users_per_group + 1):
                for storage in cfg.storage_types:
                    out.append(
                        make_labels(
                            {
                                "cluster": cluster,
                                "group": f"group-{g}",
                                "user": f"user-{g}-{u}",
                                "storage_type": storage,
                            }
                        )
                    )
    return out


def _events(rng: np.random.Generator, n: int, rate: float, span_s: float) -> tuple[FloatArray, BoolArray]:
    """Poisson event start times per series, padded: ``starts [series, max]`` and a mask of real ones."""
    counts = rng.poisson(rate * span_s / DAY_S, size=n)
    width = max(1, int(counts.max(initial=0)))
    starts = rng.uniform(0.0, span_s, size=(n, width))
    real = np.arange(width)[None, :] < counts[:, None]
    return starts, real


def _ramp(t: FloatArray, start: FloatArray, duration: FloatArray) -> FloatArray:
    """0 before ``start``, rising linearly to 1 at ``start + duration``, 1 after; [series, events, steps]."""
    out: FloatArray = np.clip((t - start[..., None]) / duration[..., None], 0.0, 1.0)
    return out


def simulate(cfg: SimConfig) -> Simulation:
    """Generate the cluster described by ``cfg``; the same config always gives the same arrays."""
    rng = np.random.default_rng(cfg.seed)
    labels = _series_labels(cfg)
    n = len(labels)
    steps = int(cfg.span_s // cfg.step_s)
    t: FloatArray = np.arange(steps, dtype=np.float64) * cfg.step_s  # seconds since start [steps]
    tt: FloatArray = t[None, None, :]  # [1, 1, steps]

    lo_hi = np.array([QUOTA_TIB[dict(lab)["storage_type"]] for lab in labels])  # [series, 2]
    quota_bytes = np.round(rng.uniform(lo_hi[:, 0], lo_hi[:, 1]) * 1024) * 2.0**30  # whole GiB

    base = rng.uniform(0.85, 0.90, size=n)[:, None]
    # Slow drift: two low-frequency waves per series (periods of days), about ±1%.
    periods = rng.uniform(2.0, 9.0, size=(n, 2, 1)) * DAY_S
    phases = rng.uniform(0, 2 * np.pi, size=(n, 2, 1))
    drift = 0.005 * np.sin(2 * np.pi * t / periods + phases).sum(axis=1)
    # Day/night: up in working hours, peak mid-afternoon (UTC), down at night.
    amplitude = rng.uniform(0.005, 0.02, size=n)[:, None]
    time_of_day = ((cfg.start_s + t) % DAY_S) / DAY_S
    daily = amplitude * np.sin(2 * np.pi * (time_of_day - 0.375))
    noise = rng.normal(0.0, 0.001, size=(n, steps))

    # Bursts: up within 5-30 min, held 1-6 h, deleted within 5-15 min; 2-5% of the quota.
    b_start, b_real = _events(rng, n, cfg.bursts_per_day, cfg.span_s)
    b_size = rng.uniform(0.02, 0.05, size=b_start.shape) * b_real
    b_rise = rng.uniform(300, 1800, size=b_start.shape)
    b_hold = rng.uniform(3600, 6 * 3600, size=b_start.shape)
    b_fall = rng.uniform(300, 900, size=b_start.shape)
    b_up = _ramp(tt, b_start, b_rise)
    b_down = _ramp(tt, b_start + b_rise + b_hold, b_fall)
    bursts = (b_size[..., None] * (b_up - b_down)).sum(axis=1)

    # Runaways: 18% of the quota written over 2-10 h, slightly accelerating (so the quota is
    # reached from any base); stopped 0.5-3 h after reaching it, then deleted within 10 min.
    r_start, r_real = _events(rng, n, cfg.runaways_per_day, cfg.span_s)
    r_fill = rng.uniform(2 * 3600, 10 * 3600, size=r_start.shape)
    r_stop = r_start + r_fill + rng.uniform(1800, 3 * 3600, size=r_start.shape)
    r_up = _ramp(tt, r_start, r_fill) ** 1.3
    r_down = _ramp(tt, r_stop, np.full_like(r_stop, 600.0))
    runaways = (0.18 * r_real[..., None] * r_up * (1.0 - r_down)).sum(axis=1)

    fraction = np.clip(base + drift + daily + noise + bursts + runaways, 0.01, 1.0)
    used = np.round(fraction * quota_bytes[:, None])
    quota = np.repeat(quota_bytes[:, None], steps, axis=1)
    start_ms = round(cfg.start_s * 1000)
    timestamps = start_ms + np.round(t * 1000).astype(np.int64)
    r_end = r_stop + 600.0
    order = [np.argsort(row[mask], kind="stable") for row, mask in zip(r_start, r_real, strict=True)]
    starts = tuple(
        tuple(int(start_ms + round(s * 1000)) for s in row[mask][o])
        for row, mask, o in zip(r_start, r_real, order, strict=True)
    )
    ends = tuple(
        tuple(int(start_ms + round(e * 1000)) for e in row[mask][o])
        for row, mask, o in zip(r_end, r_real, order, strict=True)
    )
    return Simulation(tuple(labels), timestamps, used, quota, used >= quota, starts, ends)
