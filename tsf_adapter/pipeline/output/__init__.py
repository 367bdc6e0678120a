"""The forecast output contract: which series the daemon writes for a target, with which labels.

For an input series ``m{labels}`` and a forecast at time ``T`` (every sample stamped ``T``):

* ``m:forecast{labels, horizon="6h", quantile="0.9"}``: the forecast for ``origin + 6h``;
* ``m:forecast_threshold_seconds{labels, quantile="0.9"}`` (with a threshold): seconds from ``T``
  until that quantile first reaches the threshold within the longest horizon, ``+Inf`` if it does not;
* ``m:forecast_threshold_probability{labels, within="6h"}`` (with a threshold): the probability that
  the series reaches the threshold within that horizon, read from the quantile paths' peaks
  (``thresholds.threshold_probability``) and calibrated on the target's past windows that have
  passed (``calibration``, fed by ``tsf_adapter.pipeline.crossings``) once enough are in
  (``tsf_adapter_probability_calibrated{target, within}`` = 1); the raw reading until then;
* ``m:forecast_error{labels, horizon="6h"}``: the rolling mean absolute error of this daemon's past
  median forecasts (see ``tsf_adapter.pipeline.forecast_error``), once one has matured;
* ``m:forecast_model_info{labels, model="lstm", scope="per_series"}`` = 1;
* with ``output.future_timestamps``, ``m:forecast_path{labels, quantile="0.9"}``: the whole path
  at its own future timestamps, for stores that accept them (VictoriaMetrics, up to 2 days ahead).
  Each forecast writes the path again, so a store keeps several values per future timestamp
  unless it deduplicates.

Why stamped ``T`` and not ``T + 6h``: Prometheus 2.42-2.53 stops ingesting current samples once a
sample lands more than about an hour ahead, and 2.54+ rejects such samples (docs PROTOCOL.md §7a).
The origin of the horizons is the batch's last grid step (``batch.end_ms``), at most one step
before ``T``: the newest data the model saw.

The output path has one owner per target, its runner's ``ForecastOutputBuilder``: on the forecast
thread it builds the rows as columns, with the staleness markers of series it stopped writing,
and the result goes as it is to the remote-write queue (``ForecastOutput.writes``) or is kept as
the target's latest forecast for the ``/forecasts`` exposition (``render_exposition``).

Modules, by role: ``naming`` (series names and labels), ``thresholds`` (time to a threshold),
``calibration`` (the crossing probability's map from raw to observed frequency),
``builder`` (the columns of one forecast), ``staleness`` (series a target stopped writing) and
``exposition`` (the text format).
"""

from __future__ import annotations

from tsf_adapter.pipeline.output.builder import ForecastOutput, ForecastOutputBuilder
from tsf_adapter.pipeline.output.exposition import EXPOSITION_CONTENT_TYPE, render_exposition
from tsf_adapter.pipeline.output.naming import (
    ERROR_SUFFIX,
    FORECAST_SUFFIX,
    HELP,
    HORIZON_LABEL,
    MODEL_INFO_SUFFIX,
    MODEL_LABEL,
    PATH_SUFFIX,
    PROBABILITY_SUFFIX,
    QUANTILE_LABEL,
    SCOPE_LABEL,
    THRESHOLD_SUFFIX,
    WITHIN_LABEL,
    ModelInfo,
    horizon_label,
    output_base,
    quantile_label,
)
from tsf_adapter.pipeline.output.staleness import StalenessTracker, markers
from tsf_adapter.pipeline.output.thresholds import (
    join_limits,
    latest_values,
    threshold_probability,
    threshold_seconds,
)

__all__ = [
    "ERROR_SUFFIX",
    "EXPOSITION_CONTENT_TYPE",
    "FORECAST_SUFFIX",
    "HELP",
    "HORIZON_LABEL",
    "MODEL_INFO_SUFFIX",
    "MODEL_LABEL",
    "PATH_SUFFIX",
    "PROBABILITY_SUFFIX",
    "QUANTILE_LABEL",
    "SCOPE_LABEL",
    "THRESHOLD_SUFFIX",
    "WITHIN_LABEL",
    "ForecastOutput",
    "ForecastOutputBuilder",
    "ModelInfo",
    "StalenessTracker",
    "horizon_label",
    "join_limits",
    "latest_values",
    "markers",
    "output_base",
    "quantile_label",
    "render_exposition",
    "threshold_probability",
    "threshold_seconds",
]
