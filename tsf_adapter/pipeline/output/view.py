"""One forecast of a target as arrays per input series: what the REST API and the status page read.

The rows a forecast writes (``ForecastOutput``) are flat, one sample per output series, in the
shape Prometheus takes them. A person looking at one series wants the opposite cut: its whole
forecast path at every quantile, its threshold and the time until it is reached, next to its
history. The builder already holds those arrays while it makes the rows; keeping them here costs
no work per forecast, and the arrays are the prediction's own (views, not copies).

Everything is indexed by the series' position in :attr:`ForecastView.labels` (the input series
that got output rows), so ``paths[i]``, ``thresholds[i]`` and ``models[i]`` describe the same series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.series import Labels
from tsf_adapter.pipeline.output.naming import ModelInfo

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class ForecastView:
    """The latest forecast of one target, per input series.

    ``paths[series, quantile, step]``: the forecast at ``origin_ms + (step + 1) * step_ms``.
    ``thresholds[series]`` (NaN: no limit known), ``seconds[series, quantile]`` (time from
    ``made_ms`` until that quantile reaches the threshold, ``inf`` if not within the longest
    horizon) and ``probability[series, horizon]`` exist only with a threshold.
    ``errors[series, horizon]`` is the rolling mean absolute error of past median forecasts
    (NaN until one matured). ``last[series]`` is the newest stored value (NaN when the last step
    had no sample).
    """

    target: str
    made_ms: int
    origin_ms: int
    step_ms: int
    quantiles: tuple[float, ...]
    horizons: tuple[str, ...]
    labels: tuple[Labels, ...]
    paths: FloatArray
    last: FloatArray
    models: tuple[ModelInfo, ...]
    thresholds: FloatArray | None = None
    seconds: FloatArray | None = None
    probability: FloatArray | None = None
    errors: FloatArray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def index(self) -> dict[Labels, int]:
        """Each series' position, for lookups by label set."""
        return {labels: i for i, labels in enumerate(self.labels)}

    def first_crossing(self) -> FloatArray:
        """Per series, the soonest any quantile reaches the threshold (``inf``: none does; NaN: no
        limit known). The pessimistic reading a capacity alert uses, for sorting."""
        if self.seconds is None or self.thresholds is None:
            return np.full(len(self.labels), np.nan)
        with np.errstate(invalid="ignore"):
            soonest = np.min(self.seconds, axis=1) if self.seconds.shape[1] else np.full(len(self), np.inf)
        return np.where(np.isnan(self.thresholds), np.nan, soonest)
