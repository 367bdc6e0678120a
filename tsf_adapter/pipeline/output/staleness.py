"""Staleness: ending the forecast series a target stops writing, the way a scrape ends vanished series.

Remote-written series never go stale on their own: Prometheus answers instant queries with
their last sample for its whole lookback (5m). Without a marker, a series switching from
``predict_linear`` to its trained model would show both ``:forecast_model_info`` series for
five minutes, and a vanished input would keep stale forecasts alive. So each label set written
by the previous forecast of a target and missing from this one gets a staleness marker, stamped
with this forecast's time, and a target removed by a reload gets markers for everything it
wrote. Remote-write only: a scrape of the ``/forecasts`` exposition gets its markers from
Prometheus itself.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from tsf_adapter.core.series import STALE_NAN, Labels, SampleBlock


class StalenessTracker:
    """What one target wrote last, to tell which series its next forecast no longer writes.

    Part of the target's output state: its ``ForecastOutputBuilder`` owns one and calls it on
    the forecast thread, once per forecast. A reload that replaces a target hands the tracker
    to the new builder, so what the old config wrote and the new one does not still ends.

    >>> tracker = StalenessTracker()
    >>> tracker.ended([(("__name__", "a"),), (("__name__", "b"),)])
    []
    >>> tracker.ended([(("__name__", "b"),)])
    [(('__name__', 'a'),)]
    >>> tracker.forget()
    [(('__name__', 'b'),)]
    """

    __slots__ = ("_last", "_written")

    def __init__(self) -> None:
        self._written: set[Labels] = set()
        self._last: Sequence[Labels] = ()

    def ended(self, labels: Sequence[Labels]) -> list[Labels]:
        """The label sets written last time and not in ``labels`` (sorted); remembers ``labels``."""
        last, self._last = self._last, labels
        # The builder reuses its cached label tuples, so a forecast that writes the same series
        # as the last one (the usual case) gives the very same objects in the same order: a
        # pointer comparison then stands in for hashing every label set (~50 ms at 160k rows).
        if len(last) == len(labels) and all(map(operator.is_, last, labels)):
            return []
        current = set(labels)
        gone = self._written - current
        self._written = current
        return sorted(gone)

    def forget(self) -> list[Labels]:
        """Everything written last (sorted), for a removed target's final markers; remembers nothing."""
        written, self._written, self._last = self._written, set(), ()
        return sorted(written)


def markers(labels: Sequence[Labels], timestamp_ms: int) -> SampleBlock:
    """Staleness markers for ``labels``: one ``STALE_NAN`` sample each, stamped ``timestamp_ms``.

    >>> from tsf_adapter.core.series import is_stale
    >>> block = markers([(("__name__", "a"),)], 1000)
    >>> len(block), is_stale(block.values[0])
    (1, True)
    """
    return SampleBlock(labels, timestamp_ms, np.full(len(labels), STALE_NAN))
