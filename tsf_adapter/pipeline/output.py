"""The forecast output contract: which series the daemon writes for a target, with which labels.

Pure and synchronous: for one target at forecast time ``T`` it turns the store's
``GridBatch`` (labels and history), a model's prediction ``[series, quantiles,
horizon_steps]`` and the target's config into rows, each one series with one
sample stamped ``T``. For an input series ``m{labels}``:

* ``m:forecast{labels, horizon="6h", quantile="0.9"}``: the forecast for ``origin + 6h``;
* ``m:forecast_threshold_seconds{labels, quantile="0.9"}`` (with a threshold): seconds from ``T``
  until that quantile first reaches the threshold within the longest horizon, ``+Inf`` if it does not;
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
before ``T``: the newest data the model saw. Rows for Prometheus's exposition format come from the
same rows (``render_exposition``), so both outputs always carry the same series.

Labels: the input labels are kept, ``__name__`` becomes ``m`` plus the suffix. An input label that
the output adds itself (``horizon``, ``quantile``, ``model``, ``scope``) is renamed
``exported_<name>``, as Prometheus does for scraped labels that clash with target labels, so it is
never overwritten and one input series maps to one base label set across all its outputs. Series
of an aggregated target have no ``__name__``; they are named after the metric the target's
selector pins (checked when the config is loaded).

Speed: label sets and exposition text are built once per series and cached (a series keeps its
labels for its whole life); each forecast is then numpy work plus one small object per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from tsf_adapter.config import TargetConfig
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import METRIC_NAME_LABEL, STALE_NAN, Labels, SeriesSamples
from tsf_adapter.core.units import format_duration

FloatArray = npt.NDArray[np.float64]

FORECAST_SUFFIX: Final = ":forecast"
THRESHOLD_SUFFIX: Final = ":forecast_threshold_seconds"
ERROR_SUFFIX: Final = ":forecast_error"
MODEL_INFO_SUFFIX: Final = ":forecast_model_info"
PATH_SUFFIX: Final = ":forecast_path"

HORIZON_LABEL: Final = "horizon"
QUANTILE_LABEL: Final = "quantile"
MODEL_LABEL: Final = "model"
SCOPE_LABEL: Final = "scope"
OUTPUT_LABELS: Final = (HORIZON_LABEL, QUANTILE_LABEL, MODEL_LABEL, SCOPE_LABEL)
EXPORTED_PREFIX: Final = "exported_"

HELP: Final = {
    FORECAST_SUFFIX: "Forecast for the time the horizon label says after the forecast time.",
    THRESHOLD_SUFFIX: "Seconds until the quantile reaches the threshold; +Inf beyond the longest horizon.",
    ERROR_SUFFIX: "Rolling mean absolute error of past median forecasts for this horizon.",
    MODEL_INFO_SUFFIX: "The model that made the forecasts of this series.",
    PATH_SUFFIX: "The forecast path at its own future timestamps.",
}

ModelInfo = tuple[str, str]
"""``(model, scope)`` of the forecasts of one series, e.g. ``("predict_linear", "per_series")``."""


def horizon_label(seconds: float) -> str:
    """``horizon`` label value: the Prometheus duration, ``"6h"``, ``"1h30m"``."""
    return format_duration(seconds)


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
        if key in OUTPUT_LABELS:
            # Like Prometheus's honor_labels: false; again while the prefixed name is taken too.
            new = EXPORTED_PREFIX + key
            while new in taken:
                new = EXPORTED_PREFIX + new
            taken.add(new)
            key = new
        renamed.append((key, value))
    return name, tuple(sorted(renamed))


# ---------------------------------------------------------------------------------------------
# Thresholds


def latest_values(batch: GridBatch) -> FloatArray:
    """The newest non-NaN value of each row of a batch, NaN for a row with none."""
    values = batch.values
    present = ~np.isnan(values)
    last = values.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
    out: FloatArray = np.where(present.any(axis=1), values[np.arange(values.shape[0]), last], np.nan)
    return out


def join_limits(
    labels: Sequence[Labels], limit_labels: Sequence[Labels], limit_values: FloatArray, on: Sequence[str]
) -> FloatArray:
    """For each series, the value of the limit series with the same ``on`` labels; NaN when none.

    Many-to-one, like ``x / on(on...) group_left y``: many series may share a limit. A label a
    series lacks matches an absent one (PromQL's empty value). When several limit series have
    the same ``on`` labels the match is ambiguous and those series get NaN (PromQL fails the
    whole query instead; one bad limit should not take every threshold down).
    """
    table: dict[tuple[str, ...], float] = {}
    ambiguous: set[tuple[str, ...]] = set()
    for lab, value in zip(limit_labels, limit_values.tolist(), strict=True):
        if value != value:  # a limit without a recent value: as if absent
            continue
        key = _join_key(lab, on)
        if key in table:
            ambiguous.add(key)
        table[key] = value
    for key in ambiguous:
        del table[key]
    out = np.full(len(labels), np.nan)
    for i, lab in enumerate(labels):
        found = table.get(_join_key(lab, on))
        if found is not None:
            out[i] = found
    return out


def _join_key(labels: Labels, on: Sequence[str]) -> tuple[str, ...]:
    values = dict(labels)
    return tuple(values.get(name, "") for name in on)


def threshold_seconds(
    anchor: FloatArray,
    paths: FloatArray,
    thresholds: FloatArray,
    *,
    step_s: float,
    delay_s: float = 0.0,
    direction: Literal["above", "below"] = "above",
) -> FloatArray:
    """Seconds until each path first reaches its series' threshold; ``+Inf`` when it never does.

    ``anchor[s]`` is the last observed value (step 0, NaN if unknown), ``paths[s, q, j]`` the
    forecast for step ``j + 1``, ``thresholds[s]`` the threshold (NaN: no answer, NaN out).
    The crossing time is interpolated linearly between the two grid steps around it, so a path
    from 90 to 110 crosses 100 half a step in. A path already at the threshold gives 0; when
    the anchor is unknown the first forecast step at or past the threshold is taken as the
    crossing. ``delay_s`` is how far the forecast time lies past the origin; it is subtracted,
    not below 0. ``below`` measures falling to the threshold instead of rising to it.

    >>> threshold_seconds(np.array([90.0]), np.array([[[110.0, 130.0]]]), np.array([100.0]), step_s=60)
    array([[30.]])
    """
    sign = 1.0 if direction == "above" else -1.0
    n_series, n_q, n_steps = paths.shape
    full = np.empty((n_series, n_q, n_steps + 1))
    full[:, :, 0] = anchor[:, None]
    full[:, :, 1:] = paths
    full *= sign
    thr = (sign * thresholds)[:, None, None]
    with np.errstate(invalid="ignore"):
        hit = full >= thr  # NaN never reaches anything
    first = np.argmax(hit, axis=2)  # [series, q]
    reached = hit.any(axis=2)
    prev = np.take_along_axis(full, np.maximum(first - 1, 0)[:, :, None], axis=2)[:, :, 0]
    cur = np.take_along_axis(full, first[:, :, None], axis=2)[:, :, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (thr[:, :, 0] - prev) / (cur - prev)
    # An unknown value before the crossing (or an infinite jump) leaves no slope: take the step itself.
    frac = np.where(np.isfinite(frac), np.clip(frac, 0.0, 1.0), 1.0)
    steps = np.where(first == 0, 0.0, first - 1 + frac)
    seconds = np.maximum(steps * step_s - delay_s, 0.0)
    out: FloatArray = np.where(reached, seconds, np.inf)
    out[np.isnan(thresholds)] = np.nan
    return out


# ---------------------------------------------------------------------------------------------
# Rows


class _Row(SeriesSamples):
    """A ``SeriesSamples`` built from arrays this module made itself: already int64/float64, 1-d.

    Skips the conversions and checks of ``SeriesSamples.__init__``, which cost more than
    everything else per row (3.7 us against 1.2 us, for 160,000 rows per forecast at 10,000 series).
    """

    __slots__ = ()

    def __init__(
        self, labels: Labels, timestamps: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> None:
        self.labels = labels
        self.timestamps = timestamps
        self.values = values


@dataclass(frozen=True, slots=True, eq=False)
class ForecastOutput:
    """Everything one forecast of one target writes: rows of one sample each, stamped ``timestamp_ms``.

    Columnar: row ``i`` is ``names[i]`` (its metric family), ``labels[i]`` (with ``__name__``),
    ``texts[i]`` (the exposition line without the value) and ``values[i]``. ``paths`` holds the
    ``:forecast_path`` series (future timestamps; remote-write only).
    """

    target: str
    timestamp_ms: int
    names: list[str]
    labels: list[Labels]
    texts: list[str]
    values: FloatArray
    paths: list[SeriesSamples] = field(default_factory=list)
    skipped: int = 0  # input series without a metric name, which get no output

    def __len__(self) -> int:
        return len(self.labels)

    def samples(self) -> list[SeriesSamples]:
        """The rows for ``WriteQueue.put``: one series per row, then the paths."""
        stamp = np.full(1, self.timestamp_ms, dtype=np.int64)
        stamp.flags.writeable = False  # shared by every row
        rows: list[SeriesSamples] = list(
            map(_Row, self.labels, [stamp] * len(self.labels), self.values[:, None])
        )
        return rows + self.paths


@dataclass(slots=True)
class _SeriesRows:
    """Label sets and exposition text of every output row of one input series, built once."""

    name: str
    base: Labels
    forecast: list[Labels]  # horizon-major, then quantile
    forecast_text: list[str]
    error: list[Labels]  # per horizon
    error_text: list[str]
    threshold: list[Labels]  # per quantile
    threshold_text: list[str]
    path: list[Labels]  # per quantile
    info: dict[ModelInfo, tuple[Labels, str]] = field(default_factory=dict)
    # Family names per row, ready to extend with: no string is built per forecast.
    forecast_names: list[str] = field(default_factory=list)
    threshold_names: list[str] = field(default_factory=list)
    error_name: str = ""
    info_name: str = ""

    def __post_init__(self) -> None:
        self.forecast_names = [self.name + FORECAST_SUFFIX] * len(self.forecast)
        self.threshold_names = [self.name + THRESHOLD_SUFFIX] * len(self.threshold)
        self.error_name = self.name + ERROR_SUFFIX
        self.info_name = self.name + MODEL_INFO_SUFFIX

    def info_row(self, model: ModelInfo) -> tuple[Labels, str]:
        row = self.info.get(model)
        if row is None:
            extra = ((MODEL_LABEL, model[0]), (SCOPE_LABEL, model[1]))
            row = self.info[model] = _row(self.name + MODEL_INFO_SUFFIX, self.base, extra)
        return row


def _row(name: str, base: Labels, extra: tuple[tuple[str, str], ...]) -> tuple[Labels, str]:
    pairs = sorted((*base, *extra))
    body = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
    # Sorted with __name__ among them: a label such as "Zone" sorts before it.
    return tuple(sorted(((METRIC_NAME_LABEL, name), *pairs))), f"{name}{{{body}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ForecastOutputBuilder:
    """Builds the ``ForecastOutput`` of one target at each forecast, caching per-series labels.

    >>> from tsf_adapter.config import decode_section
    >>> cfg = decode_section(TargetConfig, {"name": "d", "selector": "disk", "horizons": ["1m"]})
    >>> batch = GridBatch("d", ((("__name__", "disk"),),), np.array([[5.0, 6.0]]), 60_000, 60_000)
    >>> out = ForecastOutputBuilder(cfg).build(batch, np.array([[[6.5], [7.0], [7.5]]]), now_ms=130_000)
    >>> out.texts[:3], out.values[:3].tolist()
    (['disk:forecast{horizon="1m",quantile="0.1"}', 'disk:forecast{horizon="1m",quantile="0.5"}', \
'disk:forecast{horizon="1m",quantile="0.9"}'], [6.5, 7.0, 7.5])
    """

    def __init__(self, target: TargetConfig, *, future_timestamps: bool = False) -> None:
        self.target = target
        self.future_timestamps = future_timestamps
        self._fallback_name = target.metric_name
        self._horizon_steps = np.asarray(target.horizon_steps, dtype=np.intp)
        self._max_steps = int(self._horizon_steps.max())
        self._horizons = [(HORIZON_LABEL, horizon_label(h)) for h in target.horizons]
        self._quantiles = [(QUANTILE_LABEL, quantile_label(q)) for q in target.quantiles]
        self._default_model: ModelInfo = (target.model.kind, target.model.scope)
        self._cache: dict[Labels, _SeriesRows | None] = {}

    def build(
        self,
        batch: GridBatch,
        prediction: FloatArray,
        *,
        now_ms: int,
        models: ModelInfo | Sequence[ModelInfo] | None = None,
        errors: FloatArray | None = None,
        limits: GridBatch | None = None,
    ) -> ForecastOutput:
        """The rows of one forecast at ``now_ms``.

        ``prediction`` is ``[series, quantiles, steps]`` for the steps after ``batch.end_ms``,
        covering the longest horizon; ``models`` the ``(model, scope)`` of every series (or one
        for all; default: the configured model); ``errors`` ``[series, horizons]`` from the
        forecast-error tracker (NaN: nothing matured yet, no row); ``limits`` the store's batch
        of the threshold's limit series, when the threshold has a selector.
        """
        n_series = batch.n_series
        expected = (n_series, len(self.target.quantiles))
        if prediction.shape[:2] != expected or prediction.shape[2] < self._max_steps:
            raise ValueError(
                f"{self.target.name}: prediction shape {prediction.shape}, expected"
                f" ({n_series}, {len(self.target.quantiles)}, >= {self._max_steps})"
            )
        entries = self._entries(batch.labels)
        keep = [i for i, e in enumerate(entries) if e is not None]
        kept: list[_SeriesRows] = [e for e in entries if e is not None]
        if len(keep) < n_series:
            prediction = prediction[keep]
            errors = None if errors is None else errors[keep]
        names: list[str] = []
        labels: list[Labels] = []
        texts: list[str] = []
        values: list[FloatArray] = []

        # m:forecast, [series, horizons, quantiles] flattened in the order the cached rows have.
        at_horizons = prediction[:, :, self._horizon_steps - 1].transpose(0, 2, 1)
        values.append(at_horizons.reshape(-1))
        for e in kept:
            labels.extend(e.forecast)
            texts.extend(e.forecast_text)
            names.extend(e.forecast_names)

        if self.target.threshold is not None:
            thresholds = self._thresholds(batch, limits)[keep]
            anchor = batch.values[keep, -1] if batch.n_steps else np.full(len(keep), np.nan)
            seconds = threshold_seconds(
                anchor,
                prediction[:, :, : self._max_steps],
                thresholds,
                step_s=batch.step_s,
                delay_s=(now_ms - batch.end_ms) / 1000.0,
                direction=self.target.threshold.direction,
            )
            has = np.flatnonzero(~np.isnan(thresholds))
            values.append(seconds[has].reshape(-1))
            for i in has.tolist():
                e = kept[i]
                labels.extend(e.threshold)
                texts.extend(e.threshold_text)
                names.extend(e.threshold_names)

        if errors is not None:
            present = ~np.isnan(errors)
            values.append(errors[present])
            for i, j in zip(*np.nonzero(present), strict=True):
                e = kept[i]
                labels.append(e.error[j])
                texts.append(e.error_text[j])
                names.append(e.error_name)

        infos = self._model_infos(models, n_series)
        values.append(np.ones(len(kept)))
        for k, e in zip(keep, kept, strict=True):
            row, text = e.info_row(infos[k])
            labels.append(row)
            texts.append(text)
            names.append(e.info_name)

        paths: list[SeriesSamples] = []
        if self.future_timestamps:
            stamps = batch.horizon_timestamps_ms(self._max_steps)
            stamps.flags.writeable = False
            for k, e in enumerate(kept):
                for q, row in enumerate(e.path):
                    paths.append(_Row(row, stamps, prediction[k, q, : self._max_steps]))

        return ForecastOutput(
            target=self.target.name,
            timestamp_ms=now_ms,
            names=names,
            labels=labels,
            texts=texts,
            values=np.concatenate(values),
            paths=paths,
            skipped=n_series - len(kept),
        )

    def _model_infos(
        self, models: ModelInfo | Sequence[ModelInfo] | None, n_series: int
    ) -> Sequence[ModelInfo]:
        if models is None:
            return [self._default_model] * n_series
        if len(models) == 2 and isinstance(models[0], str) and isinstance(models[1], str):
            return [(models[0], models[1])] * n_series
        per_series: list[ModelInfo] = [tuple(m) for m in models]  # type: ignore[misc]
        if len(per_series) != n_series:
            raise ValueError(f"{self.target.name}: {len(per_series)} model infos for {n_series} series")
        return per_series

    def _thresholds(self, batch: GridBatch, limits: GridBatch | None) -> FloatArray:
        threshold = self.target.threshold
        assert threshold is not None
        if threshold.value is not None:
            return np.full(batch.n_series, threshold.value * threshold.ratio)
        if limits is None or limits.n_series == 0:
            return np.full(batch.n_series, np.nan)
        joined = join_limits(batch.labels, limits.labels, latest_values(limits), threshold.on)
        return joined * threshold.ratio

    def _entries(self, batch_labels: Sequence[Labels]) -> list[_SeriesRows | None]:
        """Cached rows for each series; series that left the batch leave the cache (bounded memory)."""
        old = self._cache
        new: dict[Labels, _SeriesRows | None] = {}
        out: list[_SeriesRows | None] = []
        for lab in batch_labels:
            entry = old[lab] if lab in old else self._make_entry(lab)
            new[lab] = entry
            out.append(entry)
        self._cache = new
        return out

    def _make_entry(self, labels: Labels) -> _SeriesRows | None:
        found = output_base(labels, self._fallback_name)
        if found is None:
            return None
        name, base = found
        forecast = [
            _row(name + FORECAST_SUFFIX, base, (h, q)) for h in self._horizons for q in self._quantiles
        ]
        error = [_row(name + ERROR_SUFFIX, base, (h,)) for h in self._horizons]
        threshold = []
        if self.target.threshold is not None:
            threshold = [_row(name + THRESHOLD_SUFFIX, base, (q,)) for q in self._quantiles]
        path = []
        if self.future_timestamps:
            path = [_row(name + PATH_SUFFIX, base, (q,))[0] for q in self._quantiles]
        return _SeriesRows(
            name=name,
            base=base,
            forecast=[r for r, _ in forecast],
            forecast_text=[t for _, t in forecast],
            error=[r for r, _ in error],
            error_text=[t for _, t in error],
            threshold=[r for r, _ in threshold],
            threshold_text=[t for _, t in threshold],
            path=path,
        )


# ---------------------------------------------------------------------------------------------
# Exposition


_SPECIAL_VALUES: Final = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def _help(name: str) -> str:
    for suffix, text in HELP.items():
        if name.endswith(suffix):
            return text
    return "Forecast output."


def render_exposition(outputs: Iterable[ForecastOutput]) -> str:
    """Text exposition format 0.0.4 of the latest outputs (all targets), for ``/forecasts``.

    Every family appears once, with ``# HELP`` and ``# TYPE ... gauge``, even when several
    targets or input metrics feed it; there are no timestamps (Prometheus stamps the scrape).
    Paths are left out: the format has no place for future timestamps.
    """
    families: dict[str, list[str]] = {}
    for out in outputs:
        formatted = [_SPECIAL_VALUES.get(s, s) for s in map(repr, out.values.tolist())]
        for name, text, value in zip(out.names, out.texts, formatted, strict=True):
            rows = families.get(name)
            if rows is None:
                rows = families[name] = []
            rows.append(f"{text} {value}")
    lines: list[str] = []
    for name, rows in families.items():
        lines.append(f"# HELP {name} {_help(name)}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(rows)
    return "\n".join(lines) + "\n" if lines else ""


class StalenessTracker:
    """Ends forecast series that stop being written, the way a scrape ends vanished series.

    Remote-written series never go stale on their own: Prometheus answers instant queries
    with their last sample for its whole lookback (5m). Without a marker, a series switching
    from ``predict_linear`` to its trained model would show both ``:forecast_model_info``
    series for five minutes, and a vanished input would keep stale forecasts alive. So each
    label set written by the previous forecast of a target and missing from this one gets a
    staleness marker, stamped with this forecast's time. Remote-write only: a scrape of the
    ``/forecasts`` exposition gets its markers from Prometheus itself.
    """

    def __init__(self) -> None:
        self._written: dict[str, set[Labels]] = {}

    def ended(self, out: ForecastOutput) -> list[SeriesSamples]:
        """Marker rows for the label sets ``out.target`` wrote last time and not in ``out``."""
        current = set(out.labels)
        previous = self._written.get(out.target, set())
        self._written[out.target] = current
        gone = previous - current
        return [SeriesSamples(labels, [out.timestamp_ms], [STALE_NAN]) for labels in sorted(gone)]

    def forget(self, target: str) -> list[Labels]:
        """Drop a removed target; returns what it had written (for final markers)."""
        return sorted(self._written.pop(target, set()))
