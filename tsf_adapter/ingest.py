"""Ingest: where received samples go, and which series are kept.

The receiver decodes requests, keeps the series that match the configured
selectors, and hands their samples to a ``SampleSink`` (the store) in bulk:
numpy arrays of series references, timestamps and values. Series are
registered once (``series_ref``) and referred to by a small integer after
that, so the per-sample path never rebuilds or hashes label sets.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from tsf_adapter.series import Labels


class SampleSink(Protocol):
    """The store as the receiver sees it."""

    def series_ref(self, labels: Labels) -> int | None:
        """Register a series (idempotent) and return its reference.

        None means the sink does not want this series; its samples are counted
        as dropped and the receiver will not ask again for the same labels.
        """
        ...

    def append(
        self,
        refs: npt.NDArray[np.int64],
        timestamps: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
    ) -> None:
        """Add samples (milliseconds, float64; the staleness NaN included) in receive order."""
        ...
