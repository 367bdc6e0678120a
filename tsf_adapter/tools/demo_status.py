"""What the demo tells the user, read from the daemon's own outputs: the ``/forecasts`` exposition.

Pure and synchronous: text in, small records out. Reading the served text rather than the
scheduler's objects means the demo shows exactly what a Prometheus scraping ``/forecasts``
would get, and the simulator's ground truth is used only to say when a quota was really hit.

>>> text = '''storage_used_bytes:forecast_threshold_seconds{quantile="0.98",user="u1"} 1800.0
... storage_used_bytes:forecast_threshold_seconds{quantile="0.5",user="u1"} +Inf
... storage_used_bytes:forecast_model_info{model="lstm",scope="per_series",user="u1"} 1.0
... '''
>>> views = read_forecasts(text, "storage_used_bytes")
>>> [(v.key, v.seconds, v.median_seconds, v.model) for v in views.values()]
[((('user', 'u1'),), 1800.0, inf, 'lstm')]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tsf_adapter.core.series import Labels
from tsf_adapter.core.units import format_duration
from tsf_adapter.pipeline.output import (
    MODEL_INFO_SUFFIX,
    MODEL_LABEL,
    QUANTILE_LABEL,
    SCOPE_LABEL,
    THRESHOLD_SUFFIX,
)

# The quantile the recommended alert reads (deploy/rules/tsf-adapter.rules.yml).
WARN_QUANTILE = "0.98"
MEDIAN_QUANTILE = "0.5"


@dataclass(frozen=True, slots=True)
class SeriesView:
    """One input series as ``/forecasts`` shows it: time to its threshold (p98 and median), model.

    ``key`` is the series' labels without ``__name__`` and the output's own labels.
    """

    key: Labels
    seconds: float  # p98 reaches the threshold in this many seconds; +Inf: not within the horizon
    median_seconds: float
    model: str


def read_forecasts(text: str, metric: str) -> dict[Labels, SeriesView]:
    """Every series of ``metric`` in an exposition text, by key; series without a threshold row
    (no limit known yet) have NaN seconds."""
    seconds: dict[Labels, dict[str, float]] = {}
    models: dict[Labels, str] = {}
    threshold_name = metric + THRESHOLD_SUFFIX
    info_name = metric + MODEL_INFO_SUFFIX
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == threshold_name:
                quantile = sample.labels.get(QUANTILE_LABEL, "")
                seconds.setdefault(_key(sample.labels), {})[quantile] = float(sample.value)
            elif sample.name == info_name:
                models[_key(sample.labels)] = sample.labels.get(MODEL_LABEL, "")
    out: dict[Labels, SeriesView] = {}
    for key in sorted(set(seconds) | set(models)):
        by_q = seconds.get(key, {})
        out[key] = SeriesView(
            key=key,
            seconds=by_q.get(WARN_QUANTILE, math.nan),
            median_seconds=by_q.get(MEDIAN_QUANTILE, math.nan),
            model=models.get(key, ""),
        )
    return out


def _key(labels: Mapping[str, str]) -> Labels:
    dropped = {"__name__", QUANTILE_LABEL, MODEL_LABEL, SCOPE_LABEL}
    return tuple(sorted((k, v) for k, v in labels.items() if k not in dropped))


def soonest(views: Iterable[SeriesView], limit: int = 3) -> list[SeriesView]:
    """The series whose p98 reaches the threshold soonest, soonest first; those already there
    (0 seconds: full now) are left out, as there is nothing left to warn about."""
    ahead = [v for v in views if math.isfinite(v.seconds) and v.seconds > 0]
    return sorted(ahead, key=lambda v: (v.seconds, v.key))[:limit]


def at_threshold(views: Iterable[SeriesView]) -> list[SeriesView]:
    """The series whose p98 is at the threshold now (0 seconds)."""
    return [v for v in views if v.seconds == 0]


def model_counts(views: Iterable[SeriesView]) -> Counter[str]:
    """How many series each model forecast, e.g. ``{"lstm": 30, "predict_linear": 6}``."""
    return Counter(v.model for v in views if v.model)


def series_name(key: Labels) -> str:
    """``user-1-2 ssd (c1/group-1)``: how the terminal names a storage series."""
    d = dict(key)
    return (
        f"{d.get('user', '?')} {d.get('storage_type', '?')} ({d.get('cluster', '?')}/{d.get('group', '?')})"
    )


def format_eta(seconds: float) -> str:
    """``0s``, ``42m``, ``2h5m``: whole minutes past the first minute, for a status line."""
    if not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{int(seconds)}s"
    return format_duration(round(seconds / 60) * 60.0)


class WarningTracker:
    """When each series' recommended alert began, so a quota hit can be scored: warned, how early.

    The alert is the shipped ``StorageQuotaForecastFull``: the p98 time to the threshold is finite
    (within the horizon) while the usage climbs (``climbing``, the rule's guard, evaluated by the
    caller on the samples so far). It begins at the first observation where both hold and ends at
    the first where one does not.

    >>> t = WarningTracker()
    >>> key = (("u", "a"),)
    >>> t.observe({key: SeriesView(key, 600.0, math.inf, "lstm")}, now_ms=1_000, climbing={key: False})
    >>> t.lead_s(key, hit_ms=3_601_000) is None
    True
    >>> t.observe({key: SeriesView(key, 600.0, math.inf, "lstm")}, now_ms=1_000, climbing={key: True})
    >>> t.lead_s(key, hit_ms=3_601_000)
    3600.0
    """

    def __init__(self) -> None:
        self._since: dict[Labels, int] = {}

    def observe(
        self, views: Mapping[Labels, SeriesView], now_ms: int, climbing: Mapping[Labels, bool]
    ) -> None:
        for key, view in views.items():
            if math.isnan(view.seconds):  # no threshold known: no opinion either way
                continue
            if alerting(view, climbing.get(key, False)):
                self._since.setdefault(key, now_ms)
            else:
                self._since.pop(key, None)

    def on(self, key: Labels) -> bool:
        """Whether the alert is on for ``key`` as of the last observation."""
        return key in self._since

    def lead_s(self, key: Labels, hit_ms: int) -> float | None:
        """Seconds between the start of the warning in force and the hit; None: not warned."""
        since = self._since.get(key)
        if since is None or since > hit_ms:
            return None
        return (hit_ms - since) / 1000.0


def alerting(view: SeriesView, climbing: bool) -> bool:
    """The recommended alert's condition for one series: p98 within the horizon, and climbing."""
    return math.isfinite(view.seconds) and climbing
