"""Saving and loading trained models: atomic files with metadata, never a crash on a bad one.

One file per target: its per-series stack or global network, or, for ``auto``, every candidate's
stack in the same file with the choice per series (so the choice can never disagree with the
weights it points at, as two files written one after the other could after a crash):

- written to a temporary file in the same directory, flushed to disk, then renamed over the old
  one, so a crash mid-write leaves the previous model intact, never half a file (the temporary
  file a killed save leaves is removed at the next load);
- loaded with ``torch.load(weights_only=True)``: only tensors and plain containers, no pickled
  code, so a file from elsewhere cannot run anything;
- ``ModelMeta`` travels with the weights: model kind and scope, the file format version, a hash
  of the configuration that shaped the network, the trained range and backtest scores;
- :class:`Choice` rows (``auto`` only): per series, the candidate that serves it and every
  candidate's score; ``ModelMeta.score_metric`` says what the scores are.

Format 2 added the candidates and choices; a format 1 file is "incompatible": logged, retrained.
Format 3 added ``score_metric``: ``auto`` now scores its candidates by a backtest in the series'
units (``backtest_pinball``). A format 2 file still loads, its scores marked ``val_loss`` (what
they were), and serves its choices until the next training re-chooses.

``load_model`` returns None (and logs why) for a missing, corrupt, foreign or stale file, and the
caller retrains: a model file is a cache of work, not a source of truth.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import torch

from tsf_adapter import __version__
from tsf_adapter.core.files import remove_interrupted_writes, write_atomically
from tsf_adapter.core.series import Labels
from tsf_adapter.forecast.neural.state import ModelState

logger = logging.getLogger("tsf_adapter.forecast.persist")

FORMAT_VERSION: Final = 3
# Older formats that load as they are; a missing field gets what that format meant by it.
_READABLE: Final = {2: {"score_metric": "val_loss"}, 3: {}}
_MAGIC: Final = "tsf-adapter-model"
# A save writes ``.<name>.<random><suffix>`` beside the file, then renames it over the file.


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelMeta:
    """What is known about a saved model besides its weights."""

    kind: str  # the target's model kind: lstm, gru, transformer or auto
    scope: str  # per_series or global
    config_hash: str  # of the settings that shape the network; a mismatch means retrain
    trained_from_ms: int  # the history the model saw, [from, to]
    trained_to_ms: int
    # Median over series of each candidate's score, of the kind ``score_metric`` names.
    scores: dict[str, float] = field(default_factory=dict)
    # "val_loss": best validation loss (pinball on per-window scaled values; single architectures);
    # "backtest_pinball": mean pinball loss over recent origins in the series' units (``auto``).
    score_metric: str = "val_loss"
    chosen_by: str = ""  # "auto" when selected per series by its backtest, else ""
    saved_at: float = 0.0
    version: str = __version__


def config_hash(config: dict[str, Any]) -> str:
    """A stable hash of a JSON-able configuration (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Choice:
    """One series of an ``auto`` model: the candidate serving it and every candidate's error.

    ``scores`` is each candidate's score for this series, of the kind ``ModelMeta.score_metric``
    names (``inf``: not trained; NaN: nothing to score against).
    """

    labels: Labels
    model: str
    scores: dict[str, float]


@dataclass(frozen=True, slots=True)
class SavedModel:
    """What one file holds: metadata, one state per candidate name, and ``auto``'s choices.

    >>> SavedModel(ModelMeta(kind="lstm", scope="per_series", config_hash="x",
    ...     trained_from_ms=0, trained_to_ms=1), {}).choices
    ()
    """

    meta: ModelMeta
    states: Mapping[str, ModelState]
    choices: tuple[Choice, ...] = ()


def save_model(path: Path, saved: SavedModel) -> None:
    """Write ``saved`` to ``path`` atomically (temp file, fsync, rename): the old file survives a failure."""
    payload = {
        "magic": _MAGIC,
        "format": FORMAT_VERSION,
        "meta": asdict(saved.meta),
        "states": {name: _state_payload(state) for name, state in saved.states.items()},
        "choices": [[_plain_labels(c.labels), c.model, dict(c.scores)] for c in saved.choices],
    }
    write_atomically(path, lambda f: torch.save(payload, f))


def load_model(path: Path, *, expected_hash: str | None = None) -> SavedModel | None:
    """Load a saved model, or None with a logged reason when it cannot be used.

    Also removes what a save killed halfway left beside it
    (:func:`~tsf_adapter.core.files.remove_interrupted_writes`).
    """
    remove_interrupted_writes(path)
    try:
        if not path.exists():
            return None
        if not path.is_file():  # a directory, or a FIFO that would block the start for good
            raise ValueError("not a regular file")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("magic") != _MAGIC:
            raise ValueError("not a tsf-adapter model file")
        fmt = payload.get("format")
        if fmt not in _READABLE:
            raise ValueError(f"format {fmt} is not {' or '.join(map(str, _READABLE))}")
        meta = ModelMeta(**{**_READABLE[fmt], **payload["meta"]})
        states = {str(name): _state(part) for name, part in payload["states"].items()}
        choices = tuple(
            Choice(_labels(lab), str(model), {str(k): float(v) for k, v in scores.items()})
            for lab, model, scores in payload["choices"]
        )
        unknown = {c.model for c in choices} - states.keys()
        if unknown:
            raise ValueError(f"choices name candidates the file does not hold: {sorted(unknown)}")
    except Exception as exc:  # corrupt, truncated, foreign: all mean "retrain"
        logger.warning("model file %s unusable, will retrain: %s", path, _one_line(exc))
        return None
    if expected_hash is not None and meta.config_hash != expected_hash:
        logger.warning("model file %s was trained with other settings, will retrain", path)
        return None
    return SavedModel(meta, states, choices)


def _state_payload(state: ModelState) -> dict[str, Any]:
    return {
        "config": json.dumps(state.config, sort_keys=True),
        "labels": [_plain_labels(labels) for labels in state.labels],
        "tensors": {name: t.detach().cpu().contiguous() for name, t in state.tensors.items()},
    }


def _state(part: dict[str, Any]) -> ModelState:
    config = json.loads(part["config"])
    tensors = part["tensors"]
    if not isinstance(config, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ValueError("a state holds something other than a config and tensors")
    labels = tuple(_labels(row) for row in part["labels"])
    rows = {t.shape[0] for t in tensors.values() if t.ndim}
    if config.get("scope") == "per_series" and rows - {len(labels)}:
        raise ValueError(f"tensors have {sorted(rows)} rows for {len(labels)} series")
    return ModelState(config=config, labels=labels, tensors=dict(tensors))


def _plain_labels(labels: Labels) -> list[list[str]]:
    return [list(pair) for pair in labels]


def _labels(row: Any) -> Labels:
    return tuple((str(n), str(v)) for n, v in row)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
