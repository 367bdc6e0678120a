"""A save killed at any moment leaves a whole model: the previous one or the new one, never half.

A child process saves two models over one path in turn, as fast as it can, and is SIGKILLed at
a random moment, many times over. The saves are large, so nearly every kill lands inside one
(between its temporary file's creation and its rename); after each, the file must load as one
of the two, and the load must remove the temporary file the kill left.

Children come from a forkserver that has imported torch once, so each kill costs milliseconds,
not an interpreter start.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
import torch

from tsf_adapter.forecast.neural.persist import ModelMeta, SavedModel, load_model, save_model
from tsf_adapter.forecast.neural.state import ModelState

KILLS = 12
FLOATS = 4_000_000  # 16 MB a save: the save, not the loop around it, takes nearly all the time


def _model(version: str) -> SavedModel:
    meta = ModelMeta(kind="lstm", scope="global", config_hash=version, trained_from_ms=0, trained_to_ms=1)
    weights = torch.full((FLOATS,), float(ord(version)))
    state = ModelState(config={"scope": "global"}, labels=(), tensors={"w": weights})
    return SavedModel(meta, {"lstm": state})


def _save_forever(path: str, saving: Event) -> None:
    """The child: save model "a", then "b", then "a" again... until killed."""
    models = [_model("a"), _model("b")]
    target = Path(path)
    saving.set()
    for k in range(1_000_000):
        save_model(target, models[k % 2])


def _temporaries(directory: Path) -> list[Path]:
    return list(directory.glob(".t.pt.*"))


@pytest.mark.timeout(120)
def test_a_save_killed_at_any_moment_leaves_a_whole_model(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "tsf_adapter.forecast.neural.persist"])
    path = tmp_path / "t.pt"
    inside_a_save = 0
    for _ in range(KILLS):
        saving = ctx.Event()
        child = ctx.Process(target=_save_forever, args=(str(path), saving))
        child.start()
        assert saving.wait(60)
        time.sleep(random.uniform(0.0, 0.2))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        left = bool(_temporaries(tmp_path))
        loaded = load_model(path)
        assert not _temporaries(tmp_path)
        if loaded is None:  # killed inside the very first save: nothing was saved whole yet
            assert not path.exists()
            continue
        inside_a_save += left
        assert loaded.meta.config_hash in ("a", "b")
        weights = loaded.states["lstm"].tensors["w"]
        assert weights.shape == (FLOATS,) and bool((weights == float(ord(loaded.meta.config_hash))).all())
    assert inside_a_save > 0  # the kills did land inside saves
