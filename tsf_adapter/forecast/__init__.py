"""Forecasting: the ``Forecaster`` contract, baselines and backtest metrics.

Plain synchronous numpy code that never imports aiohttp (the daemon runs it in
an executor). Importing this package stays light: neural models live in their
own modules and are imported where they are used.
"""

from __future__ import annotations

from tsf_adapter.core.grid import GridBatch
from tsf_adapter.forecast.base import POINT_QUANTILES, Forecaster, check_forecast
from tsf_adapter.forecast.baselines import BASELINES, HoltWinters, LastValue, PredictLinear, SeasonalNaive

__all__ = [
    "BASELINES",
    "POINT_QUANTILES",
    "Forecaster",
    "GridBatch",
    "HoltWinters",
    "LastValue",
    "PredictLinear",
    "SeasonalNaive",
    "check_forecast",
]
