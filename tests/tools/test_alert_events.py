"""Event scoring of quota alerts: lead times, false episodes and origin counts on hand-made grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tsf_adapter.tools.alert_events import HOUR_MS, episodes, lead_time, score_alerts
from tsf_adapter.tools.simulate import Fill

H6 = 6 * HOUR_MS
ORIGINS = np.arange(10, dtype=np.int64) * HOUR_MS


def _row(*on: int, n: int = 10) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(on)] = True
    return out


def test_episodes_are_maximal_runs() -> None:
    assert episodes(_row(0, 1, 2, 5, 9)) == [(0, 2), (5, 5), (9, 9)]
    assert episodes(np.zeros(4, dtype=bool)) == []


def test_lead_counts_from_the_episode_that_stays_on_until_the_fill() -> None:
    scored = np.ones(10, dtype=bool)
    fill_at = 6 * HOUR_MS + 1_800_000  # 6h30
    # On at 1h (an earlier, ended episode), then from 4h to 6h: warned 2h30 ahead.
    assert lead_time(ORIGINS, _row(1, 4, 5, 6), scored, fill_at, H6) == 2 * HOUR_MS + 1_800_000
    # Off at the last origin before the fill: not warned, however long it was on before.
    assert lead_time(ORIGINS, _row(2, 3, 4, 5), scored, fill_at, H6) == 0


def test_lead_is_at_most_the_horizon() -> None:
    on = np.ones(10, dtype=bool)
    assert lead_time(ORIGINS, on, on, 9 * HOUR_MS + 1, 3 * HOUR_MS) == 3 * HOUR_MS


def test_a_fill_without_a_scored_origin_just_before_it_is_not_scored() -> None:
    scored = np.ones(10, dtype=bool)
    assert lead_time(ORIGINS, scored, scored, 0, H6) is None  # before the first origin
    assert lead_time(ORIGINS, scored, scored, 12 * HOUR_MS, H6) is None  # past the grid
    assert lead_time(ORIGINS, scored, _row(0, 1, 2), 3 * HOUR_MS + 1, H6) is None  # full at 3h


def test_unscored_origins_break_an_episode() -> None:
    scored = ~_row(3)
    # On at 1-6h, but 3h is not scored (already full): the episode that reaches the fill starts at 4h.
    assert lead_time(ORIGINS, _row(1, 2, 3, 4, 5, 6), scored, 7 * HOUR_MS, H6) == 3 * HOUR_MS


def test_score_alerts_counts_false_episodes_and_origins() -> None:
    # Two series over 10 hourly origins; series 0 fills at 7h30, series 1 never.
    alert = np.stack([_row(1, 5, 6, 7), _row(2, 3, 8)])
    scored = np.ones_like(alert)
    ahead = np.stack([_row(2, 3, 4, 5, 6, 7), np.zeros(10, dtype=bool)])
    s = score_alerts(ORIGINS, alert, scored, ahead, [Fill(0, 7 * HOUR_MS + 1_800_000, 0)], horizon_ms=H6)
    assert s.leads_ms == (2 * HOUR_MS + 1_800_000,)
    assert s.warned == 1 and s.median_lead_h == pytest.approx(2.5)
    # False: series 0's episode at 1h (no fill within 6h of 1h), series 1's at 2-3h and 8h.
    assert s.false_episodes == 3
    assert (s.tp, s.fp, s.fn) == (3, 4, 3)
    assert s.precision == pytest.approx(3 / 7) and s.recall == pytest.approx(0.5)
    assert s.f1 == pytest.approx(2 * (3 / 7) * 0.5 / (3 / 7 + 0.5))
    assert s.series_days == pytest.approx(20 / 24)
    assert s.false_per_100_series_days == pytest.approx(300 / (20 / 24))


def test_unscored_origins_count_nowhere() -> None:
    alert = np.ones((1, 10), dtype=bool)
    scored = ~_row(4, 5)
    ahead = _row(3)[None, :]
    s = score_alerts(ORIGINS, alert, scored[None, :], ahead, [], horizon_ms=H6)
    assert (s.tp, s.fp, s.fn) == (1, 7, 0)
    # Episodes 0-3 (ends before a fill: true) and 6-9 (false).
    assert s.false_episodes == 1
    assert s.series_days == pytest.approx(8 / 24)


def test_runaways_warned_counts_only_long_runaways() -> None:
    alert = np.stack([_row(5, 6), _row(6), _row(6)])
    scored = np.ones_like(alert)
    fills = [
        Fill(0, 7 * HOUR_MS, 3 * HOUR_MS),  # 4h runaway, warned 2h ahead
        Fill(1, 7 * HOUR_MS, 4 * HOUR_MS),  # 3h runaway, warned 1h ahead: counts (>= 1h)
        Fill(2, 7 * HOUR_MS, 6 * HOUR_MS),  # 1h runaway: not in the set
    ]
    s = score_alerts(ORIGINS, alert, scored, alert, fills, horizon_ms=H6)
    assert s.leads_ms == (2 * HOUR_MS, HOUR_MS, HOUR_MS)
    assert s.runaways_warned() == (2, 2)
    assert s.runaways_warned(lead_h=1.5) == (1, 2)


def test_nothing_to_score_gives_nan_not_an_error() -> None:
    none = np.zeros((1, 10), dtype=bool)
    s = score_alerts(ORIGINS, none, none, none, [], horizon_ms=H6)
    assert math.isnan(s.precision) and math.isnan(s.median_lead_h)
    assert math.isnan(s.false_per_100_series_days) and s.f1 == 0.0
