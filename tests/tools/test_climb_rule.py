"""The PromQL climb rule in numpy: deriv as PromQL computes it, and which shapes raise the alert."""

from __future__ import annotations

import numpy as np
import pytest

from tsf_adapter.forecast.baselines import predict_linear
from tsf_adapter.pipeline.climb import ClimbGuard, climb_guard, deriv
from tsf_adapter.tools.climb_rule import ClimbRule, climb_alerts

STEP_MS = 300_000
HOUR_MS = 3_600_000
T = np.arange(0, 12 * HOUR_MS + 1, STEP_MS, dtype=np.int64)


def test_deriv_is_promql_slope_over_the_closed_range() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, len(T))).cumsum(axis=1)
    at = 5 * HOUR_MS
    got = deriv(values, T, at, HOUR_MS)
    for row in range(3):
        # predict_linear(x[r], h) - predict_linear(x[r], 0) = deriv * h, with the same samples.
        one = predict_linear(T, values[row], at, HOUR_MS, 1.0)
        zero = predict_linear(T, values[row], at, HOUR_MS, 0.0)
        assert one is not None and zero is not None
        assert got[row] == pytest.approx(one - zero, rel=1e-9)


def test_steady_climb_alerts_once_the_extrapolation_reaches_the_quota() -> None:
    used = (50.0 + 5.0 * T / HOUR_MS)[None, :]  # +5 per hour: reaches 100 at 10h
    quota = np.full_like(used, 100.0)
    origins = np.arange(1, 12, dtype=np.int64) * HOUR_MS
    alert = climb_alerts(T, used, quota, origins)[0]
    # used + 30 >= 100 from 4h on.
    assert alert.tolist() == [t >= 4 for t in range(1, 12)]


def test_a_burst_then_flat_does_not_alert() -> None:
    # Up 40 within 30 minutes at 3h, flat after: the 2h slope extrapolates to the quota for a
    # while, but the climb was not sustained.
    up = np.clip((T - 3 * HOUR_MS) / (1_800_000), 0.0, 1.0)
    used = (55.0 + 40.0 * up)[None, :]
    alert = climb_alerts(T, used, np.full_like(used, 100.0), np.arange(1, 12, dtype=np.int64) * HOUR_MS)
    assert not alert.any()
    # Without the sustain condition (a 5-minute "sustain"), the extrapolation alone fires.
    loose = ClimbRule(sustain_s=300.0)
    assert climb_alerts(T, used, np.full_like(used, 100.0), np.array([3 * HOUR_MS + 1_800_000]), loose).any()


def test_one_dip_in_the_climb_resets_it() -> None:
    used = 50.0 + 5.0 * T / HOUR_MS
    dip = (T > 5 * HOUR_MS) & (T <= 5 * HOUR_MS + 1_800_000)
    used = np.where(dip, used[np.searchsorted(T, 5 * HOUR_MS)], used)[None, :]  # flat for 30 min
    origins = np.array([6 * HOUR_MS, 8 * HOUR_MS], dtype=np.int64)
    # At 6h the 30-minute slope was 0 within the last 2h; by 8h the dip has left the subquery.
    assert climb_alerts(T, used, np.full_like(used, 100.0), origins)[0].tolist() == [False, True]


def test_no_samples_no_alert() -> None:
    used = np.full((1, len(T)), np.nan)
    assert not climb_alerts(T, used, np.full_like(used, 1.0), np.array([6 * HOUR_MS])).any()
    assert not climb_alerts(T, used[:, :1], used[:, :1], np.array([-HOUR_MS])).any()


def test_promql_text_matches_the_durations() -> None:
    rule = ClimbRule(trend_s=3600, horizon_s=3 * 3600, slope_s=900, sustain_s=5400, step_s=60)
    expected = "u + deriv(u[1h]) * 10800 >= q and min_over_time(deriv(u[15m])[90m:1m]) > 0"
    assert rule.promql("u", "q") == expected


def test_guard_passes_a_sustained_climb_and_not_a_burst_or_the_day() -> None:
    quota = 1000.0
    climb = 900.0 + 20.0 * T / HOUR_MS  # 2% of the quota per hour, all along
    burst = 900.0 + 40.0 * np.clip((T - 3 * HOUR_MS) / 900_000, 0.0, 1.0)  # +4% in 15 minutes, then flat
    day = 900.0 + 15.0 * np.sin(2 * np.pi * T / (24 * HOUR_MS))  # at most 0.39%/h: under the floor
    used = np.stack([climb, burst, day])
    origins = np.arange(1, 12, dtype=np.int64) * HOUR_MS
    ok = climb_guard(T, used, np.full_like(used, quota), origins)
    assert ok[0].all()
    # The burst's 30-minute slope is above the floor for under 30 minutes: never 30 minutes long.
    assert not ok[1].any()
    assert not ok[2].any()
    # Without a rate floor the day's rising half passes ("> 0" alone).
    assert climb_guard(T, used, np.full_like(used, quota), origins, ClimbGuard(min_rate_per_h=0))[2].any()


def test_guard_needs_the_quota_for_its_floor() -> None:
    used = (900.0 + 20.0 * T / HOUR_MS)[None, :]
    origin = np.array([6 * HOUR_MS])
    assert not climb_guard(T, used, np.full_like(used, np.nan), origin).any()
    assert climb_guard(T, used, np.full_like(used, np.nan), origin, ClimbGuard(min_rate_per_h=0)).all()


def test_guard_promql_text() -> None:
    guard = ClimbGuard(sustain_s=2700, slope_s=1800, step_s=300, min_rate_per_h=0.01)
    assert guard.promql("u", "q", ("user", "cluster")) == (
        "min_over_time(deriv(u[30m])[45m:5m]) > on(user, cluster) group_left 0.01 / 3600 * q"
    )
