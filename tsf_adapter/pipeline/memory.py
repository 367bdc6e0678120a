"""What a target has learned from its own forecasts, kept across restarts.

A target's ``m:forecast_error`` is a rolling mean over about a day of matured forecasts, and
its crossing probabilities are calibrated on windows that have passed, at most a few each hour.
Both would start from nothing at every restart (an upgrade, a node drain, an OOM kill) and take
a day to come back; so each runner keeps them in ``state_dir/<target>.memory.npz``, written
every :data:`SAVE_EVERY_S` on the forecast thread and at shutdown, and read when the runner is
created.

The file is an ``.npz`` (numpy's zip of arrays, read with ``allow_pickle=False``: a state file
can never run code): the trackers' snapshots are plain trees of lists, numbers, strings and
arrays; the arrays go in as members, the rest as one JSON document. It is written atomically
(:mod:`tsf_adapter.core.files`), so a SIGKILL leaves the previous file. A file that is missing,
unreadable, from another format, or kept under other settings (horizons, step, direction) is
logged on one line and the target starts afresh: no state file can stop the daemon.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import numpy as np

from tsf_adapter.core.files import remove_interrupted_writes, write_atomically
from tsf_adapter.pipeline.crossings import CrossingTracker
from tsf_adapter.pipeline.forecast_error import ForecastErrorTracker

logger = logging.getLogger("tsf_adapter.memory")

SUFFIX: Final = ".memory.npz"
FORMAT: Final = 1
# How often a runner writes its memory (and once more at shutdown): at most this much is lost
# to a crash, which the trackers regain in as many minutes of forecasts.
SAVE_EVERY_S: Final = 600.0
_DOC: Final = "doc"
_ARRAY: Final = "$array"


def memory_path(state_dir: Path, target: str) -> Path:
    return state_dir / f"{target}{SUFFIX}"


def save_memory(path: Path, errors: ForecastErrorTracker, crossings: CrossingTracker | None) -> None:
    """Write both trackers' snapshots to ``path`` atomically."""
    tree = {
        "format": FORMAT,
        "errors": errors.snapshot(),
        "crossings": None if crossings is None else crossings.snapshot(),
    }
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    doc = json.dumps(_encode(tree, arrays), separators=(",", ":"))
    arrays[_DOC] = np.frombuffer(doc.encode(), dtype=np.uint8)

    def write(f: BinaryIO) -> None:
        np.savez(f, **cast(dict[str, Any], arrays))

    write_atomically(path, write)


def load_memory(
    path: Path, errors: ForecastErrorTracker, crossings: CrossingTracker | None
) -> tuple[ForecastErrorTracker, CrossingTracker | None] | None:
    """Trackers like ``errors`` and ``crossings`` (same settings) holding what ``path`` kept; None,
    with one logged line saying why, when the file is missing or cannot be used. The trackers
    given are never changed: a file is taken whole or not at all."""
    remove_interrupted_writes(path)
    if not path.exists():
        return None
    try:
        with path.open("rb") as f:
            members = np.load(f, allow_pickle=False)
            if not isinstance(members, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with members:
                tree = _decode(json.loads(bytes(members[_DOC]).decode()), members)
        if not isinstance(tree, dict) or tree.get("format") != FORMAT:
            raise ValueError(f"not a forecast memory of format {FORMAT}")
        kept_errors = copy.deepcopy(errors)
        kept_errors.restore(tree["errors"])
        kept_crossings = copy.deepcopy(crossings)
        if kept_crossings is not None and tree["crossings"] is not None:
            kept_crossings.restore(tree["crossings"])
    except Exception as exc:  # truncated, foreign, other settings: all mean "start afresh"
        logger.warning("forecast memory %s unusable, starting afresh: %s", path, " ".join(str(exc).split()))
        return None
    return kept_errors, kept_crossings


def _encode(value: Any, arrays: dict[str, np.ndarray[Any, Any]]) -> Any:
    """``value`` with every array replaced by a reference to a member of ``arrays``."""
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, dict):
        return {str(k): _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    return value


def _decode(value: Any, members: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return np.asarray(members[value[_ARRAY]])
        return {k: _decode(v, members) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, members) for v in value]
    return value
