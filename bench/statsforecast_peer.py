"""statsforecast's AutoETS and AutoTheta as benchmark peers: the models a user would pick instead.

Benchmark-only (``pip install -e '.[bench]'``): the daemon never imports statsforecast. Each
peer is refitted at every origin on the last 3 days before it (``window_s``), as a user would
run it, and reports the run's quantiles from its prediction intervals: the mean for 0.5, the
lower and upper bounds of the ``|2q - 1|`` interval for the others (p10 and p90 are the 80%
interval's bounds).

Seasonality is a day when the window holds two of them and a day is at most 24 steps (hourly
data or coarser); finer grids get the non-seasonal models. Both state-space ETS and Theta's
seasonal decomposition are slow with long seasons here: AutoETS took about 5 s per fit of a
5-minute series with a 288-step season against 0.04 s without, and AutoTheta about 2.8 s per
series against 0.26 s, which over the simulator's 70 origins would take hours.

:func:`register` adds ``auto_ets`` and ``auto_theta`` to the model registry, for
``bench.accuracy --models ...``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from tsf_adapter.core.grid import FloatArray, GridBatch
from tsf_adapter.forecast.neural.features import forward_fill
from tsf_adapter.forecast.options import ModelOptions
from tsf_adapter.forecast.registry import ModelSpec, register_model

WINDOW_S = 3 * 86_400.0
MAX_SEASON = 24
PEERS = ("auto_ets", "auto_theta")


def _ets(season: int) -> Any:
    from statsforecast.models import AutoETS

    return AutoETS(season_length=season)


def _theta(season: int) -> Any:
    from statsforecast.models import AutoTheta

    return AutoTheta(season_length=season)


class StatsforecastPeer:
    """One statsforecast model behind the :class:`~tsf_adapter.forecast.base.Forecaster` contract."""

    NEEDS_FIT: ClassVar[bool] = False
    QUANTILES: ClassVar[bool] = True

    def __init__(self, name: str, make: Callable[[int], Any], options: ModelOptions) -> None:
        self.name = name
        self.quantiles = options.quantiles
        self._make = make

    def fit(self, batch: GridBatch) -> None:
        """Nothing to learn ahead: every forecast fits on its own window."""

    def predict(self, batch: GridBatch, horizon_steps: int) -> FloatArray:
        out = np.full((batch.n_series, len(self.quantiles), horizon_steps), np.nan)
        levels = sorted({round(abs(2 * q - 1) * 100) for q in self.quantiles if q != 0.5})
        day = max(1, round(86_400.0 / batch.step_s))
        for i, row in enumerate(batch.values):
            seen = np.flatnonzero(np.isfinite(row))
            if seen.size < 10:
                continue
            y, _ = forward_fill(row[seen[0] :])  # statsforecast takes no gaps
            season = day if y.size >= 2 * day and day <= MAX_SEASON else 1
            # Fit in units of the window's mean size: the models are linear or multiplicative in the
            # data, so the fit is the same in exact arithmetic, while on raw bytes the optimiser
            # took about 4 s a series for AutoTheta on the simulator's usage, 0.1 s scaled.
            scale = float(np.mean(np.abs(y))) or 1.0
            try:
                f = self._make(season).forecast(y=y / scale, h=horizon_steps, level=levels or None)
            except Exception:  # a peer that cannot fit a window scores as missing there
                continue
            for k, q in enumerate(self.quantiles):
                if math.isclose(q, 0.5):
                    out[i, k] = f["mean"] * scale
                else:
                    side = "lo" if q < 0.5 else "hi"
                    out[i, k] = f[f"{side}-{round(abs(2 * q - 1) * 100)}"] * scale
        return out


def register() -> None:
    """Add the peers to the registry (statsforecast is imported at the first forecast)."""
    makers: dict[str, Callable[[int], Any]] = {"auto_ets": _ets, "auto_theta": _theta}
    for name, make in makers.items():
        register_model(name, ModelSpec(_builder(name, make), window_s=lambda o: WINDOW_S))


def _builder(name: str, make: Callable[[int], Any]) -> Callable[[ModelOptions], StatsforecastPeer]:
    def build(options: ModelOptions) -> StatsforecastPeer:
        return StatsforecastPeer(name, make, options)

    return build
