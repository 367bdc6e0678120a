"""Reading back plain values (lists, numbers, arrays) that a state file held, checking each one.

State files are read at start, and a file written by another version, truncated or edited by
hand must be refused with a reason, never half applied and never a crash. Every reader here
returns the value in the type the caller needs, or raises ``ValueError`` saying what it found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.series import Labels


def as_list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    return value


def as_labels(value: object) -> Labels:
    """``[[name, value], ...]`` as a label set."""
    pairs = as_list(value)
    if not all(isinstance(p, list | tuple) and len(p) == 2 for p in pairs):
        raise ValueError("a label set is not a list of [name, value] pairs")
    return tuple((str(n), str(v)) for n, v in pairs)


def as_array(value: object, shape: tuple[int, ...], dtype: type = np.float64) -> npt.NDArray[Any]:
    """``value`` as an array of ``shape`` (a copy), or ``ValueError``."""
    arr: npt.NDArray[Any] = np.array(value, dtype=dtype)
    if arr.shape != shape:
        raise ValueError(f"array of shape {arr.shape}, expected {shape}")
    return arr


def as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


def as_optional_int(value: object) -> int | None:
    return None if value is None else as_int(value)
