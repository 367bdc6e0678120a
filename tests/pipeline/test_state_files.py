"""No file in ``state_dir`` stops a target from starting: whatever a killed save or a stranger left
at a model's path, the runner logs one line, starts without it and retrains.

Saves are atomic (temporary file, fsync, rename), so a kill leaves either the previous model or
the new one, plus at most a temporary file; the other states here come from elsewhere (a full
disk, a copy cut short, an operator's mistake) and must not stop the start either.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.pipeline.test_scheduler import T0, Env, env, infos, pools, target
from tsf_adapter.config import TargetConfig
from tsf_adapter.pipeline.runner import TargetRunner
from tsf_adapter.pipeline.scheduler import Scheduler

__all__ = ["env", "pools"]  # fixtures, used by name

MODEL = "t.pt"


def _config() -> TargetConfig:
    return target(model={"kind": "lstm"}, history="2m", horizons=["2s"], retrain_every="1s")


def _history(env: Env, tmp_path: Path) -> None:
    env.deps.state_dir = tmp_path
    env.deps.device = "cpu"
    for k in range(90):
        env.put("a", T0 - 90 + k, 50.0 + 0.5 * k + 3 * np.sin(k / 4))


def _start(env: Env) -> TargetRunner:
    """A runner as the daemon starts one: added by the scheduler, which loads its saved model."""
    return Scheduler(env.deps).add(_config())


async def _trained(env: Env) -> bytes:
    """A good model saved at the target's path by a training; its bytes."""
    assert await _start(env).train_once()
    assert env.deps.state_dir is not None
    return (env.deps.state_dir / MODEL).read_bytes()


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_save_killed_before_its_rename_leaves_the_last_good_model_to_load(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _history(env, tmp_path)
    good = await _trained(env)
    half = tmp_path / f".{MODEL}.x1y2z3.tmp"
    half.write_bytes(good[: len(good) // 3])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        r = _start(env)
    assert r.fitted and (tmp_path / MODEL).read_bytes() == good
    # The model, and the forecast memory checkpointed beside it after the training; no leftover.
    assert _files(tmp_path) == ["t.memory.npz", MODEL]
    assert [m for m in caplog.messages if "interrupted write" in m] == [
        f"removed {half}, left by an interrupted write"
    ]
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "lstm"}


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _json(path: Path) -> None:
    path.write_text('{"model": "lstm", "weights": []}\n')


def _directory(path: Path) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _unreadable(path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000")
    path.chmod(0)


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (_truncated, "unusable, will retrain"),
    "zero_bytes": (_empty, "unusable, will retrain"),
    "another_format": (_json, "unusable, will retrain"),
    "a_directory": (_directory, "not a regular file"),
    "a_fifo": (_fifo, "not a regular file"),
    "unreadable": (_unreadable, "Permission"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_a_damaged_model_file_is_one_log_line_and_a_retraining(
    env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    _history(env, tmp_path)
    await _trained(env)
    spoil, reason = DAMAGE[damage]
    spoil(tmp_path / MODEL)
    caplog.clear()
    r = _start(env)
    (said,) = _warnings(caplog)
    assert reason in said and str(tmp_path / MODEL) in said
    assert not r.fitted and r.trains  # its first cycle trains afresh
    saved = await r.train_once()
    out = await r.forecast_once()
    assert out is not None and infos(out) == {"a": "lstm"}  # the new model serves
    if damage == "a_directory":
        # Not ours to delete: every save fails, logged and counted, until an operator removes it.
        assert not saved and env.value("tsf_adapter_training_failures_total") == 1.0
    else:
        assert saved and _start(env).fitted  # the next start loads the new model
