"""Names and labels of the output series: what a forecast of series ``m{labels}`` is called.

One input series maps to one *base* (metric name and labels without ``__name__``) that every
output of it builds on: ``m:forecast{labels, horizon, quantile}`` and the rest (see the
package docstring). An input label that the output adds itself (``horizon``, ``quantile``,
``model``, ``scope``, ``within``) is renamed ``exported_<name>``, as Prometheus does for scraped labels
that clash with target labels, so it is never overwritten; so is an input label with a reserved
``__`` name other than ``__name__``. Series of an aggregated target have
no ``__name__``; they are named after the metric the target's selector pins.
"""

from __future__ import annotations

from typing import Final

from tsf_adapter.core.series import METRIC_NAME_LABEL, Labels
from tsf_adapter.core.units import spelled

FORECAST_SUFFIX: Final = ":forecast"
THRESHOLD_SUFFIX: Final = ":forecast_threshold_seconds"
PROBABILITY_SUFFIX: Final = ":forecast_threshold_probability"
ERROR_SUFFIX: Final = ":forecast_error"
MODEL_INFO_SUFFIX: Final = ":forecast_model_info"
PATH_SUFFIX: Final = ":forecast_path"

HORIZON_LABEL: Final = "horizon"
QUANTILE_LABEL: Final = "quantile"
MODEL_LABEL: Final = "model"
SCOPE_LABEL: Final = "scope"
WITHIN_LABEL: Final = "within"
OUTPUT_LABELS: Final = (HORIZON_LABEL, QUANTILE_LABEL, MODEL_LABEL, SCOPE_LABEL, WITHIN_LABEL)
EXPORTED_PREFIX: Final = "exported_"
# Label names Prometheus reserves for itself; __name__ is the only one an output series carries.
RESERVED_PREFIX: Final = "__"

HELP: Final = {
    FORECAST_SUFFIX: "Forecast for the time the horizon label says after the forecast time.",
    THRESHOLD_SUFFIX: "Seconds until the quantile reaches the threshold; +Inf beyond the longest horizon.",
    PROBABILITY_SUFFIX: "Probability of reaching the threshold within the time the within label says.",
    ERROR_SUFFIX: "Rolling mean absolute error of past median forecasts for this horizon.",
    MODEL_INFO_SUFFIX: "The model that made the forecasts of this series.",
    PATH_SUFFIX: "The forecast path at its own future timestamps.",
}

ModelInfo = tuple[str, str]
"""``(model, scope)`` of the forecasts of one series, e.g. ``("predict_linear", "per_series")``."""


def horizon_label(seconds: float) -> str:
    """``horizon`` (and ``within``) label value: the duration as the config spells it, ``"24h"``;
    a duration not from the config in the canonical Prometheus spelling, ``"1h30m"``.

    >>> from tsf_adapter.core.units import Duration
    >>> horizon_label(Duration.parse("24h")), horizon_label(86400.0), horizon_label(5400.0)
    ('24h', '1d', '1h30m')
    """
    return spelled(seconds)


def quantile_label(q: float) -> str:
    """``quantile`` label value: the shortest decimal that reads back as ``q``, as client_python writes it.

    >>> quantile_label(0.9), quantile_label(0.05)
    ('0.9', '0.05')
    """
    return repr(float(q))


def output_base(labels: Labels, fallback_name: str | None = None) -> tuple[str, Labels] | None:
    """The metric name and label set (without ``__name__``) that every output of a series builds on.

    ``fallback_name`` names series without ``__name__`` (aggregates); None when there is no name at all.

    >>> output_base((("__name__", "disk"), ("horizon", "x"), ("job", "n")))
    ('disk', (('exported_horizon', 'x'), ('job', 'n')))
    """
    name = fallback_name
    rest: list[tuple[str, str]] = []
    for key, value in labels:
        if key == METRIC_NAME_LABEL:
            name = value
        else:
            rest.append((key, value))
    if not name:
        return None
    taken = {key for key, _ in rest}
    renamed = []
    for key, value in rest:
        if key in OUTPUT_LABELS or key.startswith(RESERVED_PREFIX):
            # Like Prometheus's honor_labels: false; again while the prefixed name is taken too.
            # A reserved "__" name (which a sender should never have sent) is kept the same way,
            # so the only reserved label of an output series is its own __name__.
            new = EXPORTED_PREFIX + key
            while new in taken:
                new = EXPORTED_PREFIX + new
            taken.add(new)
            key = new
        renamed.append((key, value))
    return name, tuple(sorted(renamed))


def output_row(name: str, base: Labels, extra: tuple[tuple[str, str], ...]) -> tuple[Labels, str]:
    """The label set of one output series and its exposition text without the value.

    Both are built together, once per series (the builder caches them): the text is what
    ``/forecasts`` writes, the labels what remote write sends, so the two always agree.

    >>> labels, text = output_row("m:forecast", (("job", 'a"b'),), (("horizon", "1h"),))
    >>> labels
    (('__name__', 'm:forecast'), ('horizon', '1h'), ('job', 'a"b'))
    >>> print(text)
    m:forecast{horizon="1h",job="a\\"b"}
    """
    pairs = sorted((*base, *extra))
    body = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
    # Sorted with __name__ among them: a label such as "Zone" sorts before it.
    return tuple(sorted(((METRIC_NAME_LABEL, name), *pairs))), f"{name}{{{body}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
