"""Builds each forecast's output: every series the daemon writes for a target, as columns.

Pure and synchronous, run on the forecast thread right after the prediction: for one target
at forecast time ``T`` it turns the store's ``GridBatch`` (labels and history), a model's
prediction ``[series, quantiles, horizon_steps]`` and the target's config into a
``ForecastOutput``: one row per output series, one sample each stamped ``T`` (see the package
docstring for the series). The output is already what both ways out need: ``writes()`` is
what the remote-write queue sends (the rows as one columnar ``SampleBlock``, the future paths,
and staleness markers for the series this forecast no longer writes), and ``names``/``texts``
are what ``render_exposition`` serves.

The builder is the target's output state: label sets and exposition text cached per series
(a series keeps its labels for its whole life), and in remote-write mode the series written
last (``StalenessTracker``). Each forecast is then numpy work plus a few list extends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tsf_adapter.config import TargetConfig
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import Labels, SampleBlock, SeriesSamples, WriteItem
from tsf_adapter.pipeline.output.naming import (
    ERROR_SUFFIX,
    FORECAST_SUFFIX,
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
    output_row,
    quantile_label,
)
from tsf_adapter.pipeline.output.staleness import StalenessTracker, markers
from tsf_adapter.pipeline.output.thresholds import (
    join_limits,
    latest_values,
    threshold_probability,
    threshold_seconds,
)
from tsf_adapter.pipeline.output.view import ForecastView

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
# (batch, rows, raw [rows, withins], thresholds [rows]) -> the crossing probabilities to publish
# (pipeline.crossings.CrossingTracker.publish, which also remembers the raw ones).
Calibrate = Callable[[GridBatch, IntArray, FloatArray, FloatArray], FloatArray]


class _Path(SeriesSamples):
    """A ``SeriesSamples`` built from arrays this module made itself: already int64/float64, 1-d.

    Skips the conversions and checks of ``SeriesSamples.__init__``, which cost more than
    everything else per path (3.7 us against 1.2 us; a path per series and quantile).
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
    ``:forecast_path`` series (future timestamps; remote-write only), ``ended`` the label sets
    the previous forecast wrote and this one does not (remote-write only; they get markers).
    """

    target: str
    timestamp_ms: int
    names: list[str]
    labels: list[Labels]
    texts: list[str]
    values: FloatArray
    paths: list[SeriesSamples] = field(default_factory=list)
    ended: list[Labels] = field(default_factory=list)
    skipped: int = 0  # input series without a metric name, which get no output
    # Input series whose forecast was not finite (no model could forecast them): no rows either.
    left_out: int = 0
    # The same forecast per input series (paths, thresholds, models), for the REST API.
    view: ForecastView | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def writes(self) -> list[WriteItem]:
        """What ``WriteQueue.put`` sends: the rows as one block, the paths, then the staleness markers.

        No work per row: the block is the output's own columns.
        """
        items: list[WriteItem] = [SampleBlock(self.labels, self.timestamp_ms, self.values)]
        items.extend(self.paths)
        if self.ended:
            items.append(markers(self.ended, self.timestamp_ms))
        return items


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
    probability: list[Labels]  # per horizon
    probability_text: list[str]
    path: list[Labels]  # per quantile
    info: dict[ModelInfo, tuple[Labels, str]] = field(default_factory=dict)
    # Family names per row, ready to extend with: no string is built per forecast.
    forecast_names: list[str] = field(default_factory=list)
    threshold_names: list[str] = field(default_factory=list)
    probability_names: list[str] = field(default_factory=list)
    error_names: list[str] = field(default_factory=list)
    info_name: str = ""

    def __post_init__(self) -> None:
        self.forecast_names = [self.name + FORECAST_SUFFIX] * len(self.forecast)
        self.threshold_names = [self.name + THRESHOLD_SUFFIX] * len(self.threshold)
        self.probability_names = [self.name + PROBABILITY_SUFFIX] * len(self.probability)
        self.error_names = [self.name + ERROR_SUFFIX] * len(self.error)
        self.info_name = self.name + MODEL_INFO_SUFFIX

    def error_rows(self) -> _Rows:
        return self.error, self.error_text, self.error_names

    def probability_rows(self) -> _Rows:
        return self.probability, self.probability_text, self.probability_names

    def info_row(self, model: ModelInfo) -> tuple[Labels, str]:
        row = self.info.get(model)
        if row is None:
            extra = ((MODEL_LABEL, model[0]), (SCOPE_LABEL, model[1]))
            row = self.info[model] = output_row(self.name + MODEL_INFO_SUFFIX, self.base, extra)
        return row


_Rows = tuple[list[Labels], list[str], list[str]]
"""Label sets, exposition texts and family names of some rows, in the same order."""


def _present_rows(
    values: FloatArray, kept: Sequence[_SeriesRows], rows_of: Callable[[_SeriesRows], _Rows]
) -> _Rows:
    """The rows of the finite cells of ``values[series, k]``, row ``k`` of each series from ``rows_of``.

    In the order of ``values[np.isfinite(values)]`` (row-major), the values these rows carry. NaN is
    "nothing to say"; an infinite error or probability can only come from an overflow, and a
    sample of it would poison every ``avg`` or ``max`` a user takes over the series.
    """
    labels: list[Labels] = []
    texts: list[str] = []
    names: list[str] = []
    present = np.isfinite(values)
    if present.all():  # the usual case: whole lists, no work per row
        for e in kept:
            lab, text, name = rows_of(e)
            labels.extend(lab)
            texts.extend(text)
            names.extend(name)
        return labels, texts, names
    for i, k in zip(*np.nonzero(present), strict=True):
        lab, text, name = rows_of(kept[i])
        labels.append(lab[k])
        texts.append(text[k])
        names.append(name[k])
    return labels, texts, names


def _finite_or_nan(values: FloatArray) -> FloatArray:
    """``values`` with ±Inf as NaN (unknown): an infinite last sample or limit says nothing of
    when a forecast will cross, and would turn the crossing arithmetic into NaN."""
    return np.where(np.isfinite(values), values, np.nan)


class ForecastOutputBuilder:
    """Builds the ``ForecastOutput`` of one target at each forecast, caching per-series labels.

    ``end_series`` (remote write) keeps a ``StalenessTracker``: each output then names the
    series the previous one wrote and it does not, and ``staleness`` can be handed on to the
    builder of a replacing runner. Only ever called from one thread at a time.

    >>> from tsf_adapter.config import decode_section
    >>> cfg = decode_section(TargetConfig, {"name": "d", "selector": "disk", "horizons": ["1m"]})
    >>> batch = GridBatch("d", ((("__name__", "disk"),),), np.array([[5.0, 6.0]]), 60_000, 60_000)
    >>> out = ForecastOutputBuilder(cfg).build(batch, np.array([[[6.5], [7.0], [7.5]]]), now_ms=130_000)
    >>> out.texts[:3], out.values[:3].tolist()
    (['disk:forecast{horizon="1m",quantile="0.1"}', 'disk:forecast{horizon="1m",quantile="0.5"}', \
'disk:forecast{horizon="1m",quantile="0.9"}'], [6.5, 7.0, 7.5])
    """

    def __init__(
        self, target: TargetConfig, *, future_timestamps: bool = False, end_series: bool = False
    ) -> None:
        self.target = target
        self.future_timestamps = future_timestamps
        self.staleness: StalenessTracker | None = StalenessTracker() if end_series else None
        self._fallback_name = target.metric_name
        self._horizon_steps = np.asarray(target.horizon_steps, dtype=np.intp)
        self._max_steps = int(self._horizon_steps.max())
        self._horizons = [(HORIZON_LABEL, horizon_label(h)) for h in target.horizons]
        self._quantiles = [(QUANTILE_LABEL, quantile_label(q)) for q in target.quantiles]
        self._within = [(WITHIN_LABEL, horizon_label(h)) for h in target.horizons]
        self._default_model: ModelInfo = (target.model.kind, target.model.initial_scope)
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
        calibrate: Calibrate | None = None,
    ) -> ForecastOutput:
        """The rows of one forecast at ``now_ms``.

        ``prediction`` is ``[series, quantiles, steps]`` for the steps after ``batch.end_ms``,
        covering the longest horizon; ``models`` the ``(model, scope)`` of every series (or one
        for all; default: the configured model); ``errors`` ``[series, horizons]`` from the
        forecast-error tracker (NaN: nothing matured yet, no row); ``limits`` the store's batch
        of the threshold's limit series, when the threshold has a selector; ``calibrate`` maps the
        raw crossing probabilities to the published ones (default: published raw).

        Nothing non-finite is written but ``+Inf`` in ``:forecast_threshold_seconds`` (the
        quantile does not reach the threshold in time). A series whose prediction is not finite
        at every step gets no rows and is counted in ``left_out``; an infinite error or
        probability is left out as NaN is; an infinite last sample or limit counts as unknown.
        """
        n_series = batch.n_series
        expected = (n_series, len(self.target.quantiles))
        if prediction.shape[:2] != expected or prediction.shape[2] < self._max_steps:
            raise ValueError(
                f"{self.target.name}: prediction shape {prediction.shape}, expected"
                f" ({n_series}, {len(self.target.quantiles)}, >= {self._max_steps})"
            )
        entries = self._entries(batch.labels)
        # A path that is not finite everywhere is no forecast (NaN: nothing to say; Inf: an
        # overflow): its series gets no row at all, rather than a sample no query can use.
        finite = np.asarray(np.isfinite(prediction[:, :, : self._max_steps]).all(axis=(1, 2)), dtype=bool)
        named = [i for i, e in enumerate(entries) if e is not None]
        keep = [i for i in named if finite[i]]
        kept: list[_SeriesRows] = [e for i, e in enumerate(entries) if e is not None and finite[i]]
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

        thresholds = seconds = probability = None
        if self.target.threshold is not None:
            thresholds = _finite_or_nan(self._thresholds(batch, limits)[keep])
            anchor = _finite_or_nan(batch.values[keep, -1] if batch.n_steps else np.full(len(keep), np.nan))
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
            # m:forecast_threshold_probability, [series, horizons]; NaN (no threshold) has no row.
            probability = threshold_probability(
                anchor,
                prediction,
                thresholds,
                self.target.quantiles,
                self.target.horizon_steps,
                direction=self.target.threshold.direction,
            )
            if calibrate is not None and len(has):
                probability[has] = calibrate(
                    batch, np.asarray(keep, dtype=np.intp)[has], probability[has], thresholds[has]
                )
            rows = _present_rows(probability, kept, _SeriesRows.probability_rows)
            values.append(probability[np.isfinite(probability)])
            labels.extend(rows[0])
            texts.extend(rows[1])
            names.extend(rows[2])

        if errors is not None:
            rows = _present_rows(errors, kept, _SeriesRows.error_rows)
            values.append(errors[np.isfinite(errors)])
            labels.extend(rows[0])
            texts.extend(rows[1])
            names.extend(rows[2])

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
                    paths.append(_Path(row, stamps, prediction[k, q, : self._max_steps]))

        view = ForecastView(
            target=self.target.name,
            made_ms=now_ms,
            origin_ms=batch.end_ms,
            step_ms=batch.step_ms,
            quantiles=tuple(self.target.quantiles),
            horizons=tuple(h for _, h in self._horizons),
            labels=tuple(batch.labels[k] for k in keep),
            paths=prediction[:, :, : self._max_steps],
            last=batch.values[keep, -1] if batch.n_steps else np.full(len(keep), np.nan),
            models=tuple(infos[k] for k in keep),
            thresholds=thresholds,
            seconds=seconds,
            probability=probability,
            errors=errors,
        )
        return ForecastOutput(
            target=self.target.name,
            timestamp_ms=now_ms,
            names=names,
            labels=labels,
            texts=texts,
            values=np.concatenate(values),
            paths=paths,
            ended=[] if self.staleness is None else self.staleness.ended(labels),
            skipped=n_series - len(named),
            left_out=len(named) - len(keep),
            view=view,
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
            output_row(name + FORECAST_SUFFIX, base, (h, q)) for h in self._horizons for q in self._quantiles
        ]
        error = [output_row(name + ERROR_SUFFIX, base, (h,)) for h in self._horizons]
        threshold = []
        probability = []
        if self.target.threshold is not None:
            threshold = [output_row(name + THRESHOLD_SUFFIX, base, (q,)) for q in self._quantiles]
            probability = [output_row(name + PROBABILITY_SUFFIX, base, (w,)) for w in self._within]
        path = []
        if self.future_timestamps:
            path = [output_row(name + PATH_SUFFIX, base, (q,))[0] for q in self._quantiles]
        return _SeriesRows(
            name=name,
            base=base,
            forecast=[r for r, _ in forecast],
            forecast_text=[t for _, t in forecast],
            error=[r for r, _ in error],
            error_text=[t for _, t in error],
            threshold=[r for r, _ in threshold],
            threshold_text=[t for _, t in threshold],
            probability=[r for r, _ in probability],
            probability_text=[t for _, t in probability],
            path=path,
        )
