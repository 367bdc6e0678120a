"""Saved models: atomic writes, round trips, and every unusable file read as "retrain" with a log line.

``data/auto_v2.pt`` is a committed ``auto`` model in format 2 (three tiny candidates, two series):
loading it guards that files saved by older versions keep loading. When the format changes on
purpose, bump ``FORMAT_VERSION`` and keep the old one readable; ``python -m tests.forecast.test_persist``
writes a checkpoint in the current format.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import Labels, make_labels
from tsf_adapter.forecast.neural.features import FeatureConfig
from tsf_adapter.forecast.neural.model import AutoModel, NeuralModel
from tsf_adapter.forecast.neural.persist import Choice, ModelMeta, SavedModel, load_model, save_model
from tsf_adapter.forecast.neural.state import ModelState, TrainConfig
from tsf_adapter.forecast.neural.trainer import fit
from tsf_adapter.forecast.options import ModelOptions
from tsf_adapter.pipeline.models import restore, serving_models

DATA = Path(__file__).parent / "data"
CHECKPOINT = DATA / "auto_v2.pt"
CHECKPOINT_HASH = "tiny-auto-v2"
STEP_S = 60.0
LABELS: tuple[Labels, ...] = tuple(make_labels({"__name__": "m", "instance": i}) for i in ("a", "b"))


def values(n_steps: int = 40) -> np.ndarray:
    t = np.arange(n_steps)
    return np.stack([10 + np.sin(t / 3), 50 + 0.5 * t])


def tiny_state(kind: str = "lstm") -> ModelState:
    cfg = TrainConfig(
        model=kind,  # type: ignore[arg-type]
        features=FeatureConfig(input_steps=8, horizon_steps=2),
        hidden_size=4,
        max_epochs=1,
        device="cpu",
    )
    state, _ = fit(LABELS, values(), 0.0, STEP_S, cfg)
    return state


def meta(**extra: object) -> ModelMeta:
    fields: dict[str, object] = {
        "kind": "lstm",
        "scope": "per_series",
        "config_hash": "h1",
        "trained_from_ms": 0,
        "trained_to_ms": 39 * 60_000,
        "scores": {"lstm": 0.25},
        **extra,
    }
    return ModelMeta(**fields)  # type: ignore[arg-type]


def assert_same_state(a: ModelState, b: ModelState) -> None:
    assert a.config == b.config and a.labels == b.labels
    assert a.tensors.keys() == b.tensors.keys()
    for name in a.tensors:
        assert torch.equal(a.tensors[name], b.tensors[name]), name


@pytest.fixture(scope="module")
def lstm() -> ModelState:
    return tiny_state("lstm")


def test_round_trip_keeps_weights_meta_and_choices(tmp_path: Path, lstm: ModelState) -> None:
    choices = (Choice(LABELS[0], "lstm", {"lstm": 0.5, "gru": math.inf}),)
    saved = SavedModel(meta(kind="auto", chosen_by="auto"), {"lstm": lstm}, choices)
    path = tmp_path / "t.pt"
    save_model(path, saved)
    loaded = load_model(path, expected_hash="h1")
    assert loaded is not None
    assert loaded.meta == saved.meta
    assert loaded.choices == choices
    assert_same_state(loaded.states["lstm"], lstm)
    assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]  # no temporary file left


def test_a_network_saved_in_another_scope_does_not_restore_into_a_fixed_one(lstm: ModelState) -> None:
    options = ModelOptions(
        history_s=40 * STEP_S, horizon_s=STEP_S, step_s=STEP_S, input_steps=8, horizon_steps=2
    )
    saved = SavedModel(meta(), {"lstm": lstm})  # a network per series
    assert restore(NeuralModel(options, kind="lstm"), saved, "per_series")
    assert restore(NeuralModel(options, kind="lstm"), saved, "auto")
    assert not restore(NeuralModel(options, kind="lstm"), saved, "global")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, lstm: ModelState, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.pt"
    save_model(path, SavedModel(meta(), {"lstm": lstm}))
    before = path.read_bytes()

    def half_then_fail(obj: object, f: object) -> None:
        f.write(b"half a model")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, SavedModel(meta(config_hash="h2"), {"lstm": lstm}))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]
    monkeypatch.undo()
    loaded = load_model(path)
    assert loaded is not None and loaded.meta.config_hash == "h1"


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x00garbage" * 50)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign(path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)


def _old_format(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "format": 1}, path)


def _choice_without_weights(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    payload["choices"] = [[[["instance", "a"]], "transformer", {}]]
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (_corrupt, "unusable"),
        (_truncate, "unusable"),
        (_foreign, "not a tsf-adapter model file"),
        (_old_format, "format 1 is not 2 or 3"),
        (_choice_without_weights, "does not hold"),
    ],
)
def test_an_unusable_file_is_none_with_a_log_line(
    tmp_path: Path, lstm: ModelState, caplog: pytest.LogCaptureFixture, spoil: object, reason: str
) -> None:
    path = tmp_path / "t.pt"
    save_model(path, SavedModel(meta(), {"lstm": lstm}))
    spoil(path)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, logger="tsf_adapter.forecast.persist"):
        assert load_model(path, expected_hash="h1") is None
    assert [
        r.getMessage() for r in caplog.records if reason in r.getMessage() and str(path) in r.getMessage()
    ]


def test_other_settings_are_none_with_a_log_line(
    tmp_path: Path, lstm: ModelState, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.pt"
    save_model(path, SavedModel(meta(), {"lstm": lstm}))
    with caplog.at_level(logging.WARNING, logger="tsf_adapter.forecast.persist"):
        assert load_model(path, expected_hash="other") is None
    assert "trained with other settings" in caplog.text


def test_a_missing_file_is_none_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert load_model(tmp_path / "absent.pt") is None
    assert not caplog.records


def test_the_committed_checkpoint_still_loads_and_forecasts() -> None:
    loaded = load_model(CHECKPOINT, expected_hash=CHECKPOINT_HASH)
    assert loaded is not None, "the save format changed: bump FORMAT_VERSION and regenerate (module doc)"
    assert loaded.meta.kind == "auto" and loaded.meta.chosen_by == "auto"
    assert loaded.meta.score_metric == "val_loss"  # a format 2 file: its scores were validation losses
    assert sorted(loaded.states) == ["gru", "lstm", "transformer"]
    assert [c.labels for c in loaded.choices] == list(LABELS)
    assert all(set(c.scores) == {"lstm", "gru", "transformer"} for c in loaded.choices)

    model = AutoModel(
        ModelOptions(history_s=40 * STEP_S, horizon_s=STEP_S, step_s=STEP_S, input_steps=8, horizon_steps=2)
    )
    assert restore(model, loaded)
    assert serving_models(model, LABELS) == [c.model for c in loaded.choices]
    pred = model.predict(GridBatch("m", LABELS, values(), 0, 60_000), 2)
    assert pred.shape == (2, 3, 2) and np.isfinite(pred).all()


def write_checkpoint(path: Path = CHECKPOINT) -> None:
    """Train the committed tiny ``auto`` checkpoint (see the module docstring)."""
    states = {kind: tiny_state(kind) for kind in ("lstm", "gru", "transformer")}
    choices = tuple(
        Choice(lab, ("gru", "lstm")[i], {"lstm": 0.3 + i, "gru": 0.2 + 2 * i, "transformer": 0.9})
        for i, lab in enumerate(LABELS)
    )
    scores = {"lstm": 0.8, "gru": 1.2, "transformer": 0.9}
    save_model(
        path,
        SavedModel(
            meta(kind="auto", config_hash=CHECKPOINT_HASH, scores=scores, chosen_by="auto"), states, choices
        ),
    )


if __name__ == "__main__":
    torch.manual_seed(0)
    write_checkpoint()
    print(f"wrote {CHECKPOINT} ({CHECKPOINT.stat().st_size} bytes)")
