"""The storage simulator: deterministic, realistic levels, quota hits only from runaways, CSVs readable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tsf_adapter.tools.csvio import read_series_csv
from tsf_adapter.tools.simulate import DAY_S, Fill, SimConfig, Simulation, simulate

SMALL = SimConfig(seed=3, clusters=("c1",), groups_per_cluster=2, users_per_group=2, span_s=4 * DAY_S)


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    a, b = simulate(SMALL), simulate(SMALL)
    assert np.array_equal(a.used, b.used) and np.array_equal(a.quota, b.quota)
    assert a.runaway_starts_ms == b.runaway_starts_ms
    assert not np.array_equal(a.used, simulate(replace(SMALL, seed=4)).used)


def test_labels_and_shapes() -> None:
    sim = simulate(SMALL)
    assert sim.n_series == 1 * 2 * 2 * 3
    assert sim.used.shape == sim.quota.shape == (12, int(4 * DAY_S // 300))
    assert {dict(lab)["storage_type"] for lab in sim.labels} == {"ssd", "hdd", "object"}
    assert len({sim.name(i) for i in range(sim.n_series)}) == sim.n_series
    assert all(set(dict(lab)) == {"cluster", "group", "user", "storage_type"} for lab in sim.labels)
    assert np.all(np.diff(sim.timestamps_ms) == 300_000)


def test_usage_sits_near_the_quota_and_never_above() -> None:
    sim = simulate(replace(SMALL, runaways_per_day=0.0))
    fraction = sim.used / sim.quota
    assert fraction.max() <= 1.0
    assert 0.85 <= float(np.median(fraction)) <= 0.95
    assert np.mean((fraction >= 0.83) & (fraction <= 0.97)) > 0.95
    # Bursts alone never fill a quota: every hit comes from a runaway job.
    assert sim.hits() == []


def test_day_is_fuller_than_night() -> None:
    sim = simulate(replace(SMALL, bursts_per_day=0.0, runaways_per_day=0.0, span_s=8 * DAY_S))
    hour = ((sim.timestamps_ms // 1000) % 86_400) // 3600
    fraction = sim.used / sim.quota
    afternoon = fraction[:, (hour >= 12) & (hour < 18)].mean(axis=1)
    night = fraction[:, (hour >= 0) & (hour < 6)].mean(axis=1)
    assert np.all(afternoon > night)


def test_runaways_fill_the_quota_and_hits_are_the_rising_edges() -> None:
    sim = simulate(replace(SMALL, runaways_per_day=1.0))
    hits = sim.hits()
    assert hits
    for series, at in hits:
        col = int(np.searchsorted(sim.timestamps_ms, at))
        assert sim.full[series, col] and (col == 0 or not sim.full[series, col - 1])
        # A hit follows the start of one of that series' runaway jobs.
        assert any(start <= at for start in sim.runaway_starts_ms[series])


def test_crossings_match_a_direct_scan() -> None:
    sim = simulate(replace(SMALL, runaways_per_day=1.0))
    origins = sim.timestamps_ms[::7] + 1000  # between steps too
    horizon = 3 * 3600 * 1000
    ahead, full_now = sim.crossings(origins, horizon)
    ts = sim.timestamps_ms
    for i in range(sim.n_series):
        for j, o in enumerate(origins):
            window = (ts > o) & (ts <= o + horizon)
            assert ahead[i, j] == bool(sim.full[i, window].any())
            assert full_now[i, j] == bool(sim.full[i, ts <= o][-1])


def test_write_csvs_round_trip(tmp_path: Path) -> None:
    sim = simulate(SMALL)
    paths = sim.write_csvs(tmp_path)
    assert len(paths) == sim.n_series
    back = read_series_csv(paths[5])
    assert back.name == sim.name(5)
    assert np.array_equal(back.timestamps_ms, sim.timestamps_ms)
    assert np.array_equal(back.values, sim.used[5])
    quota = read_series_csv(tmp_path / "quota" / f"{sim.name(5)}.csv")
    assert np.array_equal(quota.values, sim.quota[5])


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown storage types"):
        SimConfig(storage_types=("tape",))
    with pytest.raises(ValueError, match="step_s"):
        SimConfig(step_s=0)


def test_fills_merge_flicker_and_name_the_runaway_that_filled() -> None:
    sim = simulate(replace(SMALL, runaways_per_day=1.0))
    fills = sim.fills()
    assert fills and {(f.series, f.at_ms) for f in fills} <= set(sim.hits())
    gap_ms = 6 * 3600 * 1000
    for f in fills:
        before = sim.full[f.series, : int(np.searchsorted(sim.timestamps_ms, f.at_ms))]
        full_times = sim.timestamps_ms[: before.size][before]
        # Not full in the gap before a fill: every other hit is flicker of an earlier fill.
        assert not full_times.size or f.at_ms - int(full_times[-1]) > gap_ms
        assert f.runaway_start_ms is not None
        i = sim.runaway_starts_ms[f.series].index(f.runaway_start_ms)
        assert f.runaway_start_ms <= f.at_ms < sim.runaway_ends_ms[f.series][i]
    merged = {(f.series, f.at_ms) for f in sim.fills(gap_s=0.0)}
    assert merged == set(sim.hits())


def test_fill_of_overlapping_runaways_counts_from_the_first() -> None:
    ts = np.arange(6, dtype=np.int64) * 3_600_000
    full = np.array([[False, False, False, False, True, True]])
    sim = Simulation(
        labels=((("user", "u"),),),
        timestamps_ms=ts,
        used=np.where(full, 100.0, 90.0),
        quota=np.full((1, 6), 100.0),
        full=full,
        # Started at 0h (still writing at the fill), 1h (deleted before it), 3h (writing).
        runaway_starts_ms=((0, 3_600_000, 10_800_000),),
        runaway_ends_ms=((20_000_000, 7_200_000, 20_000_000),),
    )
    assert sim.fills() == [Fill(0, 4 * 3_600_000, 0)]
    assert replace(sim, runaway_ends_ms=()).fills() == [Fill(0, 4 * 3_600_000, None)]
