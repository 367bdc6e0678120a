"""The crossing probability's calibration: the isotonic fit, its ring of outcomes, the tracker of windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import make_labels
from tsf_adapter.pipeline.crossings import CrossingTracker, WindowCalibration
from tsf_adapter.pipeline.output.calibration import IsotonicCalibration, pool_adjacent_violators

STEP = 60_000


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0.1, 10)), min_size=1, max_size=60))
def test_pav_is_non_decreasing_and_keeps_the_weighted_mean(points: list[tuple[float, float]]) -> None:
    y = np.array([p[0] for p in points])
    w = np.array([p[1] for p in points])
    means, weights, starts = pool_adjacent_violators(y, w)
    assert np.all(np.diff(means) >= -1e-12)
    assert weights.sum() == pytest.approx(w.sum())
    assert (means * weights).sum() == pytest.approx((y * w).sum())
    assert starts[0] == 0
    assert np.all(np.diff(starts) > 0)


def test_pav_leaves_an_ordered_sequence_alone() -> None:
    means, _, starts = pool_adjacent_violators(np.array([0.0, 0.2, 0.7]), np.ones(3))
    assert means.tolist() == [0.0, 0.2, 0.7] and starts.tolist() == [0, 1, 2]


def test_raw_values_pass_through_until_there_is_enough_evidence() -> None:
    cal = IsotonicCalibration(min_pairs=10, min_events=2)
    raw = np.array([0.1, 0.9])
    cal.add(np.full(9, 0.5), np.arange(9) % 2 == 0)
    assert (cal.ready, cal(raw).tolist()) == (False, [0.1, 0.9])
    cal.add(np.array([0.5]), np.array([True]))
    assert (cal.ready, cal.n_pairs, cal.n_events) == (True, 10, 6)


def test_all_one_outcome_is_not_enough_evidence() -> None:
    cal = IsotonicCalibration(min_pairs=10, min_events=1)
    cal.add(np.full(50, 0.3), np.zeros(50, dtype=bool))
    assert not cal.ready


def test_an_underconfident_reading_is_mapped_to_the_observed_frequency() -> None:
    # The raw reading is half the true probability (as a peak-of-quantiles reading can be).
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 40_000)
    cal = IsotonicCalibration()
    cal.add(p / 2, rng.uniform(0, 1, p.size) < p)
    got = cal(np.array([0.05, 0.15, 0.25, 0.35, 0.45]))
    np.testing.assert_allclose(got, [0.1, 0.3, 0.5, 0.7, 0.9], atol=0.05)
    assert np.all(np.diff(cal(np.linspace(0, 1, 101))) >= 0)


def test_a_calibrated_reading_stays_about_where_it_is() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 40_000)
    cal = IsotonicCalibration()
    cal.add(p, rng.uniform(0, 1, p.size) < p)
    grid = np.linspace(0.1, 0.9, 9)
    np.testing.assert_allclose(cal(grid), grid, atol=0.05)


def test_only_the_newest_pairs_are_kept() -> None:
    cal = IsotonicCalibration(max_pairs=100, min_pairs=10, min_events=1)
    cal.add(np.full(100, 0.5), np.zeros(100, dtype=bool))
    cal.add(np.full(60, 0.5), np.ones(60, dtype=bool))
    assert cal.n_pairs == 100 and cal.n_events == 60
    assert cal(np.array([0.5]))[0] == pytest.approx(0.6)
    cal.add(np.full(250, 0.5), np.ones(250, dtype=bool))  # more than the ring holds at once
    assert cal.n_pairs == 100 and cal.n_events == 100


def test_nan_is_neither_learned_nor_invented() -> None:
    cal = IsotonicCalibration(min_pairs=2, min_events=1)
    cal.add(np.array([np.nan, 0.2, 0.8]), np.array([True, False, True]))
    assert cal.n_pairs == 2
    assert np.isnan(cal(np.array([np.nan]))[0])
    with pytest.raises(ValueError, match="differ"):
        cal.add(np.array([0.1]), np.array([True, False]))


def labels(name: str) -> tuple[tuple[str, str], ...]:
    return make_labels({"__name__": "used", "user": name})


def grid(rows: dict[str, list[float]], start_step: int = 0) -> GridBatch:
    names = list(rows)
    values = np.array([rows[n] for n in names], dtype=np.float64)
    return GridBatch("t", tuple(labels(n) for n in names), values, start_step * STEP, STEP)


def record(
    t: CrossingTracker, origin: int, now: dict[str, float], raw: list[float], thr: list[float]
) -> None:
    """Record a forecast at grid step ``origin`` whose newest values are ``now``."""
    batch = grid({n: [v] for n, v in now.items()}, start_step=origin)
    t.record(batch, np.arange(len(now)), np.array(raw)[:, None], np.array(thr))


def pooled(t: CrossingTracker) -> tuple[int, int]:
    cal = t.calibrations[0].pooled
    return cal.n_pairs, cal.n_events


def test_a_window_resolves_once_it_has_passed_and_counts_its_last_step() -> None:
    t = CrossingTracker((3,), STEP, lag_steps=0)
    # Origin step 1 (values 5): the window is steps 2..4.
    record(t, 1, {"a": 5, "b": 5}, [0.2, 0.7], [10, 10])
    t.observe(grid({"a": [5, 5, 6, 7], "b": [5, 5, 6, 7]}))  # window not over yet
    assert pooled(t) == (0, 0) and t.n_pending == 1
    t.observe(grid({"a": [5, 5, 6, 7, 10], "b": [5, 5, 6, 7, 9]}))  # a reaches on the last step
    assert pooled(t) == (2, 1) and t.n_pending == 0
    t.observe(grid({"a": [5, 5, 6, 7, 10, 11], "b": [5, 5, 6, 7, 9, 9]}))  # never scored twice
    assert pooled(t) == (2, 1)


def test_the_lag_waits_for_late_samples() -> None:
    t = CrossingTracker((1,), STEP, lag_steps=1)
    record(t, 0, {"a": 5}, [0.5], [10])
    t.observe(grid({"a": [5, 12]}))
    assert pooled(t) == (0, 0)
    t.observe(grid({"a": [5, 12, 3]}))
    assert pooled(t) == (1, 1)


def test_what_cannot_be_scored_is_left_out() -> None:
    t = CrossingTracker((2,), STEP, lag_steps=0)
    now = {"past": 11.0, "gap": 5.0, "gone": 5.0, "nothr": 5.0, "ok": 5.0}  # "past" is there already
    record(t, 0, now, [0.5] * 5, [10, 10, 10, np.nan, 10])
    t.observe(grid({"past": [11, 12, 12], "gap": [5, np.nan, np.nan], "nothr": [5, 20, 20], "ok": [5, 6, 6]}))
    assert pooled(t) == (1, 0)


def test_a_window_older_than_the_grid_is_dropped_unscored() -> None:
    t = CrossingTracker((2,), STEP, lag_steps=0)
    record(t, 0, {"a": 5}, [0.5], [10])
    t.observe(grid({"a": [9, 9, 9]}, start_step=5))
    assert pooled(t) == (0, 0) and t.n_pending == 0


def test_below_thresholds_are_reached_from_above() -> None:
    t = CrossingTracker((1,), STEP, direction="below", lag_steps=0)
    record(t, 0, {"a": 50, "b": 50}, [0.1, 0.1], [10, 10])
    t.observe(grid({"a": [50, 10], "b": [50, 11]}))
    assert pooled(t) == (2, 1)


def test_an_older_origin_is_not_remembered_twice() -> None:
    t = CrossingTracker((1,), STEP, lag_steps=0)
    for origin in (1, 1, 0):
        record(t, origin, {"a": 5}, [0.5], [10])
    assert t.n_pending == 1
    with pytest.raises(ValueError, match="raw shape"):
        t.record(grid({"a": [5.0]}, 2), np.array([0]), np.array([0.5]), np.array([10.0]))


def ready(raw: float, outcomes: list[bool]) -> IsotonicCalibration:
    cal = IsotonicCalibration(min_pairs=2, min_events=1)
    cal.add(np.full(len(outcomes), raw), np.array(outcomes))
    return cal


def test_calibrated_values_keep_certainty_and_grow_with_the_window() -> None:
    short = WindowCalibration(pooled=ready(0.0, [True, True, True, False]))  # 0 -> 0.75
    long = WindowCalibration(pooled=ready(0.0, [True, False]))  # 0 -> 0.5
    t = CrossingTracker((1, 2), STEP, calibrations=[short, long])
    batch = grid({"a": [5.0], "b": [10.0], "c": [np.nan]})
    raw = np.array([[0.0, 0.0], [1.0, 1.0], [np.nan, np.nan]])
    got = t.calibrate(batch, np.arange(3), raw, np.array([10.0, 10.0, np.nan]))
    assert got[0].tolist() == [0.75, 0.75]  # the longer window holds the shorter one
    assert got[1].tolist() == [1.0, 1.0]  # at the threshold already
    assert np.isnan(got[2]).all()


def climb(rate_per_h: float, steps: int = 60, level: float = 80.0) -> list[float]:
    """A 1-minute series rising ``rate_per_h`` per hour."""
    return [level + rate_per_h * k / 60 for k in range(steps)]


def test_climbing_is_the_alert_guard_read_on_the_grid() -> None:
    t = CrossingTracker((1,), STEP)
    # Threshold 100: the guard asks for at least 0.5/h over the last 20 minutes of 15-minute slopes.
    batch = grid(
        {
            "fast": climb(2.0),
            "slow": climb(0.2),
            "flat": [80.0] * 60,
            "burst": climb(20.0, steps=40) + [93.0] * 20,
        }
    )
    got = t.climbing(batch, np.arange(4), np.full(4, 100.0))
    assert got.tolist() == [True, False, False, False]
    falling = CrossingTracker((1,), STEP, direction="below")
    down = grid({"down": climb(-2.0, level=50.0), "up": climb(2.0, level=50.0)})
    assert falling.climbing(down, np.arange(2), np.full(2, 10.0)).tolist() == [True, False]


def test_climbing_and_steady_series_are_calibrated_apart_once_each_has_evidence() -> None:
    cal = WindowCalibration(
        pooled=IsotonicCalibration(min_pairs=4, min_events=1),
        climbing=IsotonicCalibration(min_pairs=4, min_events=1),
        steady=IsotonicCalibration(min_pairs=4, min_events=1),
    )
    raw = np.full(8, 0.2)
    climbing = np.array([True] * 4 + [False] * 4)
    cal.add(raw, np.array([True, True, True, False, False, False, False, True]), climbing)
    got = cal(np.array([0.2, 0.2]), np.array([True, False]))
    assert got.tolist() == [0.75, 0.25]
    # A group short of evidence falls back to the pooled calibration.
    cal.steady = IsotonicCalibration(min_pairs=100)
    assert cal(np.array([0.2, 0.2]), np.array([True, False])).tolist() == [0.75, 0.5]


def test_publish_calibrates_and_remembers_with_the_guard_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    t = CrossingTracker((1,), STEP, lag_steps=0)
    reads = []
    real = t.climbing

    def counted(*args: object) -> np.ndarray:
        reads.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(t, "climbing", counted)
    batch = grid({"a": [5.0], "b": [6.0]})
    raw = np.array([[0.2], [0.4]])
    got = t.publish(batch, np.arange(2), raw, np.array([10.0, 10.0]))
    assert got.tolist() == raw.tolist()  # nothing resolved yet: published raw
    assert t.n_pending == 1 and len(reads) == 1
    t.observe(grid({"a": [5.0, 11.0], "b": [6.0, 7.0]}))
    assert pooled(t) == (2, 1)
