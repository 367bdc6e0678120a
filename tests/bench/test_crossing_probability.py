"""The probability benchmark calibrates as the daemon would: only on windows that had passed."""

from __future__ import annotations

import numpy as np

from bench.crossing_probability import calibrate_online, reliability

H = 3_600_000


def test_an_origin_is_calibrated_only_on_outcomes_known_by_then() -> None:
    rng = np.random.default_rng(0)
    n_series, n_origins = 200, 12
    origins = np.arange(n_origins, dtype=np.int64) * H
    raw = np.full((n_series, n_origins), 0.5)
    reached = rng.uniform(size=(n_series, n_origins)) < 0.2
    reached[:, -1] = True  # the last origin's outcome must never leak into anything
    usable = np.ones_like(reached)
    calibrated, ready = calibrate_online(raw, reached, usable, ~usable, origins, horizon_ms=2 * H)
    # At origin j the windows of origins 0..j-2 have passed: 200 pairs each, 500 needed.
    assert ready.tolist() == [False] * 4 + [True] * 8
    for j in range(4, n_origins):
        known = reached[:, : j - 1]
        np.testing.assert_allclose(calibrated[:, j], known.mean())
    np.testing.assert_array_equal(calibrated[:, :4], raw[:, :4])  # raw until ready


def test_unusable_pairs_are_left_out() -> None:
    origins = np.arange(6, dtype=np.int64) * H
    raw = np.full((300, 6), 0.5)
    reached = np.zeros((300, 6), dtype=bool)
    reached[:100] = True
    usable = np.ones_like(reached)
    usable[:100] = False  # e.g. full already: their crossings must not count
    _, ready = calibrate_online(raw, reached, usable, np.zeros_like(usable), origins, horizon_ms=H)
    assert not ready.any()  # no crossing among the usable pairs: not enough evidence


def test_reliability_bins_include_one_and_count_each_value_once() -> None:
    prob = np.array([0.0, 0.04, 0.05, 0.5, 0.99, 1.0])
    hit = np.array([False, False, True, True, True, True])
    rows = reliability(prob, hit)
    assert sum(r[2] for r in rows) == len(prob)
    assert rows[0][2:] == (2, 0.02, 0.0)
    assert rows[-1][2] == 2 and rows[-1][4] == 1.0
