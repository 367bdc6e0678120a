"""The forecast memory: a target's forecast errors and crossing calibration, kept across restarts."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.pipeline.test_scheduler import T0, Env, env, pools, runner
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.pipeline.crossings import CrossingTracker, WindowCalibration
from tsf_adapter.pipeline.forecast_error import ForecastErrorTracker
from tsf_adapter.pipeline.memory import load_memory, memory_path, save_memory
from tsf_adapter.pipeline.output.calibration import IsotonicCalibration

__all__ = ["env", "pools"]  # fixtures, used by name

A = (("__name__", "x"), ("i", "a"))
B = (("__name__", "x"), ("i", "b"))


def _trackers() -> tuple[ForecastErrorTracker, CrossingTracker]:
    errors = ForecastErrorTracker(horizon_steps=(1, 3), step_ms=60_000, lag_steps=0)
    crossings = CrossingTracker(
        horizon_steps=(1, 3),
        step_ms=60_000,
        lag_steps=0,
        calibrations=[WindowCalibration(pooled=IsotonicCalibration(min_pairs=4, min_events=1)) for _ in "ab"],
    )
    return errors, crossings


def _feed(errors: ForecastErrorTracker, crossings: CrossingTracker, steps: range) -> None:
    """Series a swings across 10 every other step, b stays at 5; a forecast each step."""
    rng = np.random.default_rng(0)
    for k in steps:
        values = np.array([[12.0 if j % 2 else 5.0 for j in range(k + 1)], [5.0] * (k + 1)])
        batch = GridBatch("x", (A, B), values, 60_000, 60_000)
        errors.observe(batch)
        crossings.observe(batch)
        errors.record((A, B), batch.end_ms, values[:, -1:].repeat(2, axis=1) + rng.normal(size=(2, 2)))
        crossings.publish(batch, np.array([0, 1]), rng.uniform(size=(2, 2)), np.array([10.0, 10.0]))


def test_a_kept_memory_carries_on_exactly_as_if_never_stopped(tmp_path: Path) -> None:
    errors, crossings = _trackers()
    _feed(errors, crossings, range(12))
    path = tmp_path / "t.memory.npz"
    save_memory(path, errors, crossings)
    kept = load_memory(path, *_trackers())
    assert kept is not None
    again_errors, again_crossings = kept
    assert again_crossings is not None
    np.testing.assert_array_equal(again_errors.errors((A, B)), errors.errors((A, B)))
    assert again_crossings.n_pending == crossings.n_pending > 0
    # Both go on from there alike: the same errors and the same published probabilities.
    _feed(errors, crossings, range(12, 20))
    _feed(again_errors, again_crossings, range(12, 20))
    np.testing.assert_array_equal(again_errors.errors((A, B)), errors.errors((A, B)))
    for mine, theirs in zip(again_crossings.calibrations, crossings.calibrations, strict=True):
        assert mine.pooled.n_pairs == theirs.pooled.n_pairs and mine.ready == theirs.ready
        raw = np.linspace(0, 1, 11)
        np.testing.assert_array_equal(mine(raw, raw > 0.5), theirs(raw, raw > 0.5))


def _corrupt(path: Path, kind: str) -> None:
    errors, crossings = _trackers()
    _feed(errors, crossings, range(6))
    if kind == "other horizons":
        other = ForecastErrorTracker(horizon_steps=(1, 4), step_ms=60_000, lag_steps=0)
        save_memory(path, other, crossings)
        return
    save_memory(path, errors, crossings)
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif kind == "a directory":
        path.unlink()
        path.mkdir()
    elif kind == "an object array":  # a pickle inside: never loaded
        with path.open("wb") as f:
            np.savez(f, doc=np.array([{"x": 1}], dtype=object))
    elif kind == "another format":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("doc.npy", b"not an array")


@pytest.mark.parametrize(
    "kind",
    ["truncated", "empty", "garbage", "a directory", "an object array", "another format", "other horizons"],
)
def test_an_unusable_memory_is_one_log_line_and_a_fresh_start(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.memory.npz"
    _corrupt(path, kind)
    errors, crossings = _trackers()
    assert load_memory(path, errors, crossings) is None
    (record,) = [r for r in caplog.records if r.name == "tsf_adapter.memory"]
    assert record.getMessage().startswith(f"forecast memory {path} unusable, starting afresh: ")
    assert "\n" not in record.getMessage()
    assert errors.n_series == 0 and crossings.n_pending == 0  # the given trackers never change


def test_no_memory_file_is_no_memory(tmp_path: Path) -> None:
    assert load_memory(tmp_path / "none.memory.npz", *_trackers()) is None


async def test_a_runner_keeps_its_forecast_errors_across_a_restart(env: Env, tmp_path: Path) -> None:
    env.deps.state_dir = tmp_path
    r = runner(env, None, model={"kind": "last_value"}, threshold={"value": 10.0})
    for k in range(8):
        env.put("a", T0 + k, float(k))
        env.clock.now = T0 + k
        assert await r.forecast_once() is not None
    batch = env.store.batch("t")
    assert batch is not None
    labels = list(batch.labels)
    kept_errors = r.tracker.errors(labels)
    assert np.isfinite(kept_errors).any()
    await r.stop()  # a clean stop writes the memory
    assert memory_path(tmp_path, "t").exists()

    again = runner(env, None, model={"kind": "last_value"}, threshold={"value": 10.0})
    assert again.load_memory()
    np.testing.assert_array_equal(again.tracker.errors(labels), kept_errors)
    out = await again.forecast_once()
    assert out is not None
    names = {dict(lab)["__name__"] for lab in out.labels}
    assert "m:forecast_error" in names  # on the first forecast after the restart


def test_a_memory_write_cut_short_leaves_the_last_file_and_its_temporary_file_is_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    errors, crossings = _trackers()
    _feed(errors, crossings, range(6))
    path = tmp_path / "t.memory.npz"
    save_memory(path, errors, crossings)
    half = tmp_path / ".t.memory.npz.x1y2.tmp"  # what a SIGKILL inside the next write leaves
    half.write_bytes(path.read_bytes()[:100])
    with caplog.at_level("INFO"):
        kept = load_memory(path, *_trackers())
    assert kept is not None and not half.exists()
    assert f"removed {half}, left by an interrupted write" in caplog.messages
