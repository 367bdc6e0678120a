"""Time-major ring buffers: the layout every grid of the store is kept in.

Cell ``[step % slots, row]`` holds step ``step`` of row ``row``, for the last
``slots`` steps up to the head. Appending is a vectorised scatter, old steps are
overwritten as time advances (clearing a step is one contiguous row), and new
rows grow the capacity by doubling (amortised O(1)).

>>> ring = Ring(3, ((np.float64, np.nan),))
>>> row = ring.add_row()
>>> ring.advance(10)
>>> ring.planes[0][10 % ring.slots, row] = 1.5
>>> ring.read(0, 8, 10).tolist(), ring.holds(7), ring.holds(8)
([[nan, nan, 1.5]], False, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


class Ring:
    """Time-major ring buffer: cell ``[step % slots, row]``, holding steps ``(head - slots, head]``.

    Several planes (e.g. values and timestamps) share the ring's geometry.
    """

    def __init__(self, slots: int, planes: tuple[tuple[type[Any], Any], ...]) -> None:
        self.slots = slots
        self._kinds = planes
        self.planes: list[npt.NDArray[Any]] = [np.full((slots, 0), fill, dtype) for dtype, fill in planes]
        self.rows = 0
        self.head: int | None = None

    @property
    def capacity(self) -> int:
        return int(self.planes[0].shape[1])

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.planes)

    def add_row(self) -> int:
        if self.rows == self.capacity:
            new_cap = max(16, 2 * self.capacity)
            grown = []
            for (dtype, fill), old in zip(self._kinds, self.planes, strict=True):
                new = np.full((self.slots, new_cap), fill, dtype)
                new[:, : self.rows] = old[:, : self.rows]
                grown.append(new)
            self.planes = grown
        self.rows += 1
        return self.rows - 1

    def holds(self, step: int) -> bool:
        return self.head is not None and self.head - self.slots < step <= self.head

    def advance(self, step: int) -> None:
        """Move the head forward to ``step``, clearing the slots of the steps it passes."""
        if self.head is not None and step <= self.head:
            return
        if self.head is None or step - self.head >= self.slots:
            cleared: slice | IntArray = slice(None)
        else:
            cleared = np.arange(self.head + 1, step + 1, dtype=np.int64) % self.slots
        for (_, fill), plane in zip(self._kinds, self.planes, strict=True):
            plane[cleared, : self.rows] = fill
        self.head = step

    def read(self, plane: int, first: int, last: int) -> npt.NDArray[Any]:
        """``[rows, steps]`` copy of steps ``first..last`` (all held)."""
        idx = np.arange(first, last + 1, dtype=np.int64) % self.slots
        return self.planes[plane][idx, : self.rows].T.copy()

    def read_row(self, plane: int, row: int, first: int, last: int) -> npt.NDArray[Any]:
        """``[steps]`` copy of one row's steps ``first..last``: what ``read(...)[row]`` holds."""
        idx = np.arange(first, last + 1, dtype=np.int64) % self.slots
        column: npt.NDArray[Any] = self.planes[plane][idx, row]  # fancy indexing: a copy
        return column


def last_wins(keys: IntArray) -> IntArray:
    """Indices that keep, for each distinct key, its last occurrence (receive order), by key.

    >>> last_wins(np.array([5, 7, 5, 9])).tolist()  # keys 5, 7, 9
    [2, 1, 3]
    """
    if keys.size < 2:
        return np.arange(keys.size)
    _, first_in_reversed = np.unique(keys[::-1], return_index=True)
    return keys.size - 1 - first_in_reversed
