"""The OpenAPI 3.1 document of the REST API (:mod:`.api`), served at ``/api/v1/openapi.json``.

Written as data next to the code it describes, so a test can hold the two together: every route
the daemon serves is documented here, every documented route is served, and the answers of a
running daemon validate against these schemas (``tests/server/test_api.py``).
"""

from __future__ import annotations

from typing import Any

from tsf_adapter import __version__

_NULLABLE_NUMBER: dict[str, Any] = {"type": ["number", "null"]}
_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
_TIMESTAMP: dict[str, Any] = {"type": ["number", "null"], "description": "Unix seconds."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }


def _success(data: dict[str, Any], description: str) -> dict[str, Any]:
    schema = _obj({"status": {"const": "success"}, "data": data})
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    why = {
        400: "Bad request: a parameter or the body is wrong; the error says which and why.",
        404: "No such target or series.",
        409: "A training of the target is already running.",
        413: "The posted series are too many or too long.",
        502: "Reading from Prometheus failed.",
        503: "Not ready: the daemon is starting (backfill) or stopping.",
    }
    out = {}
    for code in (*codes, 503):
        out[str(code)] = {
            "description": why[code],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return out


_SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "status": {"const": "error"},
            "errorType": {
                "type": "string",
                "enum": ["bad_data", "not_found", "conflict", "unavailable", "internal"],
            },
            "error": {"type": "string", "description": "One line: what was wrong."},
        }
    ),
    "Outcome": {
        "type": ["object", "null"],
        "description": "How the last cycle ended; null before the first.",
        "properties": {
            "at": {"type": "number", "description": "Unix seconds, when it ended."},
            "duration_seconds": _NULLABLE_NUMBER,
            "error": {**_NULLABLE_STRING, "description": "Why it failed; null when it succeeded."},
            "detail": {"type": "string", "description": "How a training stopped, per network."},
        },
        "required": ["at", "duration_seconds", "error", "detail"],
    },
    "Epoch": {
        "type": ["object", "null"],
        "description": "The latest finished epoch of the running training; null when none runs.",
        "properties": {
            "model": {"type": "string"},
            "epoch": {"type": "integer"},
            "train_loss": _NULLABLE_NUMBER,
            "validation_loss": _NULLABLE_NUMBER,
            "series_done": {"type": "integer"},
            "series_in_stack": {"type": "integer"},
            "series_total": {"type": "integer"},
            "elapsed_seconds": _NULLABLE_NUMBER,
            "budget_seconds": _NULLABLE_NUMBER,
        },
        "required": ["model", "epoch", "train_loss", "validation_loss", "series_total"],
    },
    "Target": _obj(
        {
            "name": {"type": "string"},
            "selector": {"type": "string"},
            "step_seconds": {"type": "number"},
            "history_seconds": {"type": "number"},
            "horizons": {"type": "array", "items": {"type": "string"}, "description": "As configured."},
            "quantiles": {"type": "array", "items": {"type": "string"}},
            "model": _obj(
                {
                    "kind": {"type": "string"},
                    "scope": {"type": "string", "description": "As configured."},
                    "serving_scope": {"type": "string", "description": "Of the model forecasting now."},
                    "trains": {"type": "boolean"},
                    "fitted": {"type": "boolean"},
                    "trained_at": _TIMESTAMP,
                }
            ),
            "threshold": {
                "type": ["object", "null"],
                "properties": {
                    "value": _NULLABLE_NUMBER,
                    "selector": _NULLABLE_STRING,
                    "on": {"type": "array", "items": {"type": "string"}},
                    "ratio": {"type": "number"},
                    "direction": {"enum": ["above", "below"]},
                },
            },
            "series": {"type": "integer", "description": "Series in the latest forecast."},
            "stored_series": {"type": "integer", "description": "Series (or groups' members) stored."},
            "waiting_for_history": {"type": "boolean"},
            "models_in_use": {"type": "object", "additionalProperties": {"type": "integer"}},
            "training": _obj(
                {
                    "running": {"type": "boolean"},
                    "since": _TIMESTAMP,
                    "epoch": _ref("Epoch"),
                    "last": _ref("Outcome"),
                    "next_at": _TIMESTAMP,
                }
            ),
            "forecast": _obj(
                {"last": _ref("Outcome"), "next_at": _TIMESTAMP, "every_seconds": {"type": "number"}}
            ),
        }
    ),
    "SeriesSummary": _obj(
        {
            "id": {"type": "string", "description": "Stable: a hash of the target and the labels."},
            "target": {"type": "string"},
            "name": {"type": "string", "description": "The series in PromQL notation."},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "model": {"type": "string"},
            "scope": {"type": "string"},
            "last_value": {**_NULLABLE_NUMBER, "description": "null: the newest step had no sample."},
            "threshold": {**_NULLABLE_NUMBER, "description": "null: no threshold, or no limit known."},
            "time_to_threshold_seconds": {
                **_NULLABLE_NUMBER,
                "description": "Soonest any quantile reaches the threshold, from the forecast time;"
                " null: none does within the longest horizon, or no threshold.",
            },
            "threshold_probability": {
                "type": ["object", "null"],
                "additionalProperties": _NULLABLE_NUMBER,
                "description": "Probability of reaching the threshold within each horizon.",
            },
        }
    ),
    "Quantiles": {
        "type": "object",
        "description": "Per quantile label, the forecast at each step after the origin (null: none).",
        "additionalProperties": {"type": "array", "items": _NULLABLE_NUMBER},
    },
}

_SCHEMAS["SeriesDetail"] = {
    "allOf": [
        _ref("SeriesSummary"),
        _obj(
            {
                "forecast": _obj(
                    {
                        "made_at": {"type": "number"},
                        "origin": {"type": "number", "description": "Unix seconds of the last step seen."},
                        "step_seconds": {"type": "number"},
                        "quantiles": _ref("Quantiles"),
                    }
                ),
                "time_to_threshold_by_quantile": {"type": "object", "additionalProperties": _NULLABLE_NUMBER},
                "forecast_error": {
                    "type": "object",
                    "additionalProperties": _NULLABLE_NUMBER,
                    "description": "Per horizon, the rolling mean absolute error of past median forecasts"
                    " (null until one has matured).",
                },
                "model_scores": {
                    "type": "object",
                    "additionalProperties": _NULLABLE_NUMBER,
                    "description": "model auto: each architecture's backtest error on this series"
                    " (mean pinball loss, in its units; null: did not train), the lowest serves it."
                    " Empty otherwise.",
                },
                "history": _obj(
                    {
                        "start": {"type": "number"},
                        "step_seconds": {"type": "number"},
                        "values": {"type": "array", "items": _NULLABLE_NUMBER},
                    }
                ),
            },
            required=["forecast", "model_scores"],
        ),
    ]
}

_SCHEMAS["Status"] = _obj(
    {
        "version": {"type": "string"},
        "ready": {"type": "boolean"},
        "stopping": {"type": "boolean"},
        "time": {"type": "number", "description": "Now, on the schedule's clock."},
        "wall_time": {"type": "number"},
        "started_at": {"type": "number", "description": "Wall clock."},
        "config_file": {"type": "string"},
        "last_reload": _obj(
            {
                "successful": {"type": "boolean"},
                "success_at": {"type": "number", "description": "Wall clock, of the last good (re)load."},
                "error": _NULLABLE_STRING,
            }
        ),
        "targets": {"type": "integer"},
        "training": {"type": "integer", "description": "Targets training now."},
        "stored_series": {"type": "integer"},
    }
)

_SCHEMAS["Model"] = _obj(
    {
        "target": {"type": "string"},
        "kind": {"type": "string"},
        "scope": {"type": "string"},
        "trains": {"type": "boolean"},
        "fitted": {"type": "boolean"},
        "trained_at": _TIMESTAMP,
        "file": _NULLABLE_STRING,
        "file_bytes": {"type": ["integer", "null"]},
        "series_by_model": {"type": "object", "additionalProperties": {"type": "integer"}},
        "last_training": _ref("Outcome"),
        "retrain_every_seconds": _NULLABLE_NUMBER,
    }
)

_SCHEMAS["ForecastRequest"] = {
    "type": "object",
    "properties": {
        "target": {"type": "string", "description": "Whose model, step and quantiles to use."},
        "series": {
            "type": "array",
            "items": _obj(
                {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "samples": {
                        "type": "array",
                        "items": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}]},
                        "description": "[unix seconds, value] pairs.",
                    },
                },
                required=["samples"],
            ),
        },
        "selector": {"type": "string", "description": "Read these series from Prometheus instead."},
        "history": {
            "type": "string",
            "description": "History to use, e.g. 2d (default: the target's).",
        },
        "horizon": {"type": "string", "description": "At most the target's longest (the default)."},
    },
    "required": ["target"],
    "additionalProperties": False,
}

_SCHEMAS["ForecastResult"] = _obj(
    {
        "target": {"type": "string"},
        "origin": {"type": "number"},
        "step_seconds": {"type": "number"},
        "series": {
            "type": "array",
            "items": _obj(
                {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "model": {"type": "string"},
                    "scope": {"type": "string"},
                    "quantiles": _ref("Quantiles"),
                }
            ),
        },
    }
)


def _param(
    name: str, where: str, description: str, schema: dict[str, Any], required: bool = False
) -> dict[str, Any]:
    return {"name": name, "in": where, "description": description, "required": required, "schema": schema}


def document() -> dict[str, Any]:
    """The OpenAPI document, as a JSON-ready dict."""
    paths: dict[str, Any] = {
        "/api/v1/status": {
            "get": {
                "summary": "The daemon: version, readiness, its clock and the last config reload.",
                "description": "Answers while starting too. Every time in this API is unix seconds of"
                " the daemon's schedule clock, `time` here: the wall clock but in the demo.",
                "responses": {"200": _success(_ref("Status"), "The daemon's state.")},
            }
        },
        "/api/v1/targets": {
            "get": {
                "summary": "Every target with its settings and health.",
                "responses": {
                    "200": _success({"type": "array", "items": _ref("Target")}, "The targets."),
                    **_errors(),
                },
            }
        },
        "/api/v1/series": {
            "get": {
                "summary": "Series of the latest forecasts, soonest to reach their threshold first.",
                "parameters": [
                    _param("target", "query", "Only this target's series.", {"type": "string"}),
                    _param("match", "query", "A PromQL series selector they must match.", {"type": "string"}),
                    _param(
                        "search",
                        "query",
                        "Text in their PromQL notation (any case).",
                        {"type": "string"},
                    ),
                    _param(
                        "sort",
                        "query",
                        "time_to_threshold (soonest first), probability (of the longest horizon,"
                        " highest first) or name.",
                        {"enum": ["time_to_threshold", "probability", "name"]},
                    ),
                    _param(
                        "limit", "query", "Page size.", {"type": "integer", "minimum": 1, "maximum": 1000}
                    ),
                    _param("offset", "query", "Series to skip.", {"type": "integer", "minimum": 0}),
                ],
                "responses": {
                    "200": _success(
                        _obj(
                            {
                                "series": {"type": "array", "items": _ref("SeriesSummary")},
                                "total": {"type": "integer"},
                                "offset": {"type": "integer"},
                                "limit": {"type": "integer"},
                            }
                        ),
                        "One page of series.",
                    ),
                    **_errors(400, 404),
                },
            }
        },
        "/api/v1/series/{id}": {
            "get": {
                "summary": "One series: history, forecast at every quantile, threshold, errors, model.",
                "parameters": [_param("id", "path", "As /api/v1/series gives it.", {"type": "string"}, True)],
                "responses": {"200": _success(_ref("SeriesDetail"), "The series."), **_errors(404)},
            }
        },
        "/api/v1/models": {
            "get": {
                "summary": "Each target's model, its file and how its last training went.",
                "responses": {
                    "200": _success({"type": "array", "items": _ref("Model")}, "The models."),
                    **_errors(),
                },
            }
        },
        "/api/v1/targets/{name}/retrain": {
            "post": {
                "summary": "Start a training of the target now.",
                "parameters": [_param("name", "path", "The target.", {"type": "string"}, True)],
                "responses": {
                    "202": _success(
                        _obj({"target": {"type": "string"}, "training": {"const": "started"}}),
                        "The training started.",
                    ),
                    **_errors(400, 404, 409),
                },
            }
        },
        "/api/v1/forecast": {
            "post": {
                "summary": "A target's model applied to posted samples or to series read from Prometheus;"
                " changes nothing.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ForecastRequest")}},
                },
                "responses": {
                    "200": _success(_ref("ForecastResult"), "The forecast."),
                    **_errors(400, 404, 413, 502),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {
                    "200": {"description": "The OpenAPI document.", "content": {"application/json": {}}}
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tsf-adapter",
            "version": __version__,
            "description": "Forecasts of Prometheus series: targets, series, models and ad hoc forecasts.",
        },
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
