"""The REST API's JSON: envelopes in the Prometheus HTTP API's shape, and targets and series as objects.

Answers look like Prometheus's own API, so that the tools and habits written for it apply:
``{"status": "success", "data": ...}``, or ``{"status": "error", "errorType": ..., "error": ...}``
with the matching HTTP status. JSON has no NaN or infinity, so every number goes through
:func:`number`: NaN and infinities become ``null``, and each field's documentation (the OpenAPI
document, :mod:`.openapi`) says what ``null`` means there (no sample, no limit known, not within
the longest horizon).

Series ids are stable: a hash of the target name and the label set, so a link to a series
stays good across forecasts and restarts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from aiohttp import web

from tsf_adapter.core.series import Labels, format_labels
from tsf_adapter.pipeline.output import quantile_label
from tsf_adapter.pipeline.output.view import ForecastView
from tsf_adapter.pipeline.status import Outcome

if TYPE_CHECKING:
    from tsf_adapter.forecast.neural.state import EpochProgress  # torch: only where a model trains

JSON_TYPE: Final = "application/json"
# errorType values, as the Prometheus HTTP API names them.
BAD_DATA: Final = "bad_data"
NOT_FOUND: Final = "not_found"
UNAVAILABLE: Final = "unavailable"
CONFLICT: Final = "conflict"
INTERNAL: Final = "internal"
_ERROR_TYPES: Final = {
    400: BAD_DATA,
    404: NOT_FOUND,
    405: BAD_DATA,
    409: CONFLICT,
    413: BAD_DATA,
    415: BAD_DATA,
    422: BAD_DATA,
    503: UNAVAILABLE,
}


def number(x: float) -> float | None:
    """``x`` as JSON can carry it: ``None`` for NaN and the infinities."""
    x = float(x)
    return x if math.isfinite(x) else None


def numbers(values: npt.ArrayLike) -> list[float | None]:
    """An array as a JSON list, NaN and infinities as ``None``."""
    arr = np.asarray(values, dtype=np.float64)
    out: list[float | None] = arr.tolist()
    if not np.isfinite(arr).all():
        return [v if math.isfinite(v) else None for v in arr.tolist()]
    return out


def success(data: object, status: int = 200) -> web.Response:
    """``{"status": "success", "data": data}``."""
    return _json({"status": "success", "data": data}, status)


def failure(status: int, error: str, error_type: str | None = None) -> web.Response:
    """``{"status": "error", "errorType": ..., "error": error}``, HTTP ``status``; ``error`` on one line."""
    kind = error_type or _ERROR_TYPES.get(status, INTERNAL)
    return _json({"status": "error", "errorType": kind, "error": " ".join(error.split())}, status)


def _json(body: Mapping[str, Any], status: int) -> web.Response:
    text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    return web.Response(text=text, status=status, content_type=JSON_TYPE)


def series_id(target: str, labels: Labels) -> str:
    """A stable id of one series of one target: 16 hex digits of a hash of both.

    >>> series_id("disk", (("__name__", "used"), ("user", "a")))
    '511af125a84e3d94'
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(target.encode())
    for name, value in labels:
        h.update(b"\x00" + name.encode() + b"\x01" + value.encode())
    return h.hexdigest()


def label_map(labels: Labels) -> dict[str, str]:
    return dict(labels)


def outcome(o: Outcome | None) -> dict[str, object] | None:
    if o is None:
        return None
    return {"at": o.at, "duration_seconds": number(o.duration_s), "error": o.error, "detail": o.detail}


def epoch(running: tuple[str, EpochProgress] | None) -> dict[str, object] | None:
    if running is None:
        return None
    model, e = running
    return {
        "model": model,
        "epoch": e.epoch,
        "train_loss": number(e.train_loss),
        "validation_loss": number(e.val_loss),
        "series_done": e.series_done,
        "series_in_stack": e.series_in_stack,
        "series_total": e.series_total,
        "elapsed_seconds": number(e.elapsed_s),
        "budget_seconds": None if e.budget_s is None else number(e.budget_s),
    }


def series_summary(view: ForecastView, i: int, soonest: float) -> dict[str, object]:
    """One row of the series table: who it is, its model, and how close it is to its threshold."""
    labels = view.labels[i]
    model, scope = view.models[i]
    probability = None
    if view.probability is not None:
        probability = dict(zip(view.horizons, numbers(view.probability[i]), strict=True))
    return {
        "id": series_id(view.target, labels),
        "target": view.target,
        "name": format_labels(labels),
        "labels": label_map(labels),
        "model": model,
        "scope": scope,
        "last_value": number(view.last[i]),
        "threshold": None if view.thresholds is None else number(view.thresholds[i]),
        "time_to_threshold_seconds": number(soonest),
        "threshold_probability": probability,
    }


def series_detail(
    view: ForecastView, i: int, history: tuple[int, int, npt.NDArray[np.float64]] | None
) -> dict[str, object]:
    """Everything about one series: its summary, history, forecast paths, crossing times and errors."""
    out = series_summary(view, i, float(view.first_crossing()[i]))
    out["forecast"] = {
        "made_at": view.made_ms / 1000.0,
        "origin": view.origin_ms / 1000.0,
        "step_seconds": view.step_ms / 1000.0,
        "quantiles": {quantile_label(q): numbers(view.paths[i, k]) for k, q in enumerate(view.quantiles)},
    }
    if view.seconds is not None:
        out["time_to_threshold_by_quantile"] = {
            quantile_label(q): number(view.seconds[i, k]) for k, q in enumerate(view.quantiles)
        }
    if view.errors is not None:
        out["forecast_error"] = dict(zip(view.horizons, numbers(view.errors[i]), strict=True))
    if history is not None:
        start_ms, step_ms, values = history
        out["history"] = {
            "start": start_ms / 1000.0,
            "step_seconds": step_ms / 1000.0,
            "values": numbers(values),
        }
    return out


def counts(names: Iterable[str]) -> dict[str, int]:
    """How many times each name occurs, sorted by name."""
    out: dict[str, int] = {}
    for name in names:
        out[name] = out.get(name, 0) + 1
    return dict(sorted(out.items()))
