"""Saving and loading trained models: atomic files with metadata, never a crash on a bad one.

One file per model (a target's per-series stack, or its global network):

- written to a temporary file in the same directory, flushed to disk, then renamed over the old
  one, so a crash mid-write leaves the previous model intact, never half a file;
- loaded with ``torch.load(weights_only=True)``: only tensors and plain containers, no pickled
  code, so a file from elsewhere cannot run anything;
- ``ModelMeta`` travels with the weights: model kind and scope, the file format version, a hash
  of the configuration that shaped the network, the trained range and backtest scores.

``load_model`` returns None (and logs why) for a missing, corrupt, foreign or stale file, and the
caller retrains: a model file is a cache of work, not a source of truth.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import torch

from tsf_adapter import __version__
from tsf_adapter.forecast.trainer import ModelState

logger = logging.getLogger("tsf_adapter.forecast.persist")

FORMAT_VERSION: Final = 1
_MAGIC: Final = "tsf-adapter-model"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelMeta:
    """What is known about a saved model besides its weights."""

    kind: str  # lstm, gru, transformer, or the model ``auto`` chose
    scope: str  # per_series or global
    config_hash: str  # of the settings that shape the network; a mismatch means retrain
    trained_from_ms: int  # the history the model saw, [from, to]
    trained_to_ms: int
    scores: dict[str, float] = field(default_factory=dict)  # e.g. backtest MAE per candidate
    chosen_by: str = ""  # "auto" when selected by backtest, else ""
    saved_at: float = 0.0
    version: str = __version__


def config_hash(config: dict[str, Any]) -> str:
    """A stable hash of a JSON-able configuration (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_model(path: Path, state: ModelState, meta: ModelMeta) -> None:
    """Write ``state`` and ``meta`` to ``path`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "magic": _MAGIC,
        "format": FORMAT_VERSION,
        "meta": asdict(meta),
        "config": json.dumps(state.config, sort_keys=True),
        "labels": [list(map(list, labels)) for labels in state.labels],
        "tensors": {name: t.detach().cpu().contiguous() for name, t in state.tensors.items()},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load_model(path: Path, *, expected_hash: str | None = None) -> tuple[ModelState, ModelMeta] | None:
    """Load a saved model, or None with a logged reason when it cannot be used."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("magic") != _MAGIC:
            raise ValueError("not a tsf-adapter model file")
        if payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {payload.get('format')} is not {FORMAT_VERSION}")
        meta = ModelMeta(**payload["meta"])
        labels = tuple(tuple((str(n), str(v)) for n, v in row) for row in payload["labels"])
        tensors = payload["tensors"]
        if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
            raise ValueError("tensors section holds something other than tensors")
        state = ModelState(config=json.loads(payload["config"]), labels=labels, tensors=dict(tensors))
    except Exception as exc:  # corrupt, truncated, foreign: all mean "retrain"
        logger.warning("model file %s unusable, will retrain: %s", path, _one_line(exc))
        return None
    if expected_hash is not None and meta.config_hash != expected_hash:
        logger.info("model file %s was trained with other settings, will retrain", path)
        return None
    return state, meta


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
