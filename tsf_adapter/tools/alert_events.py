"""Scoring a "reaches the quota within the horizon" alert by events, as an operator lives it.

The input is an alert evaluated on a grid of origins, one row per series
(``alert[series, origin]``), the origins where it is scored (``scored``: the
series is not already at its quota there, so there is something to predict), the
truth per origin (``ahead``: usage reaches the quota in ``(origin, origin +
horizon]``) and the fill events (:class:`~tsf_adapter.tools.simulate.Fill`).

Definitions, per series, on consecutive origins of the grid:

* an **alert episode** is a maximal run of consecutive scored origins where the
  alert is on; an origin where it is off, or that is not scored, ends it;
* the **lead time** of a fill at ``t`` comes from the episode that holds the last
  origin before ``t`` (the alert stays on until the fill): ``t`` minus that
  episode's first origin, at most the horizon (each origin claims a crossing
  within the horizon, so earlier ones claimed one that did not come). 0 when that
  origin's alert is off: the fill was not warned. A fill is scored when the grid
  has an origin before it within one origin step, and that origin is scored;
* an episode is **false** when no fill follows its last origin within the
  horizon (``ahead`` is false there); false episodes are counted per 100
  series-days of scored origins (each scored origin stands for one origin step);
* **origin-based** precision / recall / F1 count the scored origins: an alert
  at an origin is a true positive when ``ahead`` holds there.

>>> import numpy as np
>>> alert = np.array([[False, True, True, False, True]])
>>> ahead = np.array([[False, True, True, False, False]])
>>> s = score_alerts(np.arange(5) * 3_600_000, alert, np.ones_like(alert), ahead,
...                  [Fill(0, 9_000_000, None)], horizon_ms=21_600_000)
>>> s.leads_ms, s.false_episodes, (s.tp, s.fp, s.fn)
((5400000,), 1, (2, 1, 0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsf_adapter.tools.simulate import Fill

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class AlertScores:
    """Event and origin-based scores of one alert signal over a set of series.

    ``fills`` are the scored fill events and ``leads_ms`` their lead times, pairwise
    (0: not warned); ``scored`` counts the scored origins, each standing for ``step_ms``.
    """

    fills: tuple[Fill, ...]
    leads_ms: tuple[int, ...]
    false_episodes: int
    scored: int
    step_ms: int
    tp: int
    fp: int
    fn: int

    @property
    def series_days(self) -> float:
        return self.scored * self.step_ms / DAY_MS

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    @property
    def warned(self) -> int:
        """How many fills an alert episode stayed on until."""
        return sum(1 for lead in self.leads_ms if lead > 0)

    @property
    def median_lead_h(self) -> float:
        """Median lead time of the warned fills, in hours (NaN when none was warned)."""
        leads = [lead for lead in self.leads_ms if lead > 0]
        return float(np.median(leads)) / HOUR_MS if leads else math.nan

    def runaways_warned(self, runaway_h: float = 2.0, lead_h: float = 1.0) -> tuple[int, int]:
        """Of the fills whose runaway started at least ``runaway_h`` before the fill: how many
        were warned at least ``lead_h`` ahead, and how many there were."""
        long = [
            lead
            for fill, lead in zip(self.fills, self.leads_ms, strict=True)
            if fill.runaway_start_ms is not None and fill.at_ms - fill.runaway_start_ms >= runaway_h * HOUR_MS
        ]
        return sum(1 for lead in long if lead >= lead_h * HOUR_MS), len(long)

    @property
    def false_per_100_series_days(self) -> float:
        return 100 * self.false_episodes / self.series_days if self.series_days else math.nan


def episodes(on: BoolArray) -> list[tuple[int, int]]:
    """Maximal runs of True in one row: ``(first, last)`` indices, inclusive.

    >>> episodes(np.array([True, True, False, True]))
    [(0, 1), (3, 3)]
    """
    padded = np.concatenate([[False], on.astype(bool), [False]])
    change = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(change[::2], change[1::2], strict=True)]


def lead_time(
    origins_ms: IntArray, on: BoolArray, scored: BoolArray, at_ms: int, horizon_ms: int
) -> int | None:
    """Lead time (ms) of one fill at ``at_ms`` from one series' alert row; None when the fill is
    not scored (no scored origin within one origin step before it)."""
    j = int(np.searchsorted(origins_ms, at_ms, side="left")) - 1  # last origin before the fill
    if j < 0 or not scored[j]:
        return None
    step = int(origins_ms[1] - origins_ms[0]) if len(origins_ms) > 1 else horizon_ms
    if at_ms - int(origins_ms[j]) > step:
        return None
    alerting = on & scored
    if not alerting[j]:
        return 0
    first = j
    while first > 0 and alerting[first - 1]:
        first -= 1
    return min(at_ms - int(origins_ms[first]), horizon_ms)


def score_alerts(
    origins_ms: IntArray,
    alert: BoolArray,
    scored: BoolArray,
    ahead: BoolArray,
    fills: Sequence[Fill],
    *,
    horizon_ms: int,
) -> AlertScores:
    """Score ``alert[series, origin]`` on the regular grid ``origins_ms``, per the module docstring."""
    on = alert & scored
    step_ms = int(origins_ms[1] - origins_ms[0]) if len(origins_ms) > 1 else horizon_ms
    kept: list[Fill] = []
    leads: list[int] = []
    for fill in fills:
        lead = lead_time(origins_ms, alert[fill.series], scored[fill.series], fill.at_ms, horizon_ms)
        if lead is not None:
            kept.append(fill)
            leads.append(lead)
    false = sum(1 for row in range(on.shape[0]) for _, last in episodes(on[row]) if not ahead[row, last])
    return AlertScores(
        fills=tuple(kept),
        leads_ms=tuple(leads),
        false_episodes=false,
        scored=int(scored.sum()),
        step_ms=step_ms,
        tp=int((on & ahead).sum()),
        fp=int((on & ~ahead).sum()),
        fn=int((scored & ~alert & ahead).sum()),
    )
