"""The REST API of a running daemon (``tsf-adapter run`` as a process) beside a fake Prometheus.

Every answer is checked against the OpenAPI document the daemon serves (jsonschema, the
document's own schemas), and every route the daemon serves under ``/api/v1/`` must be in it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.api_daemon import Live, running
from tests.live_daemon import wait_for
from tsf_adapter.server.openapi import document


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running(tmp_path_factory.mktemp("api")) as daemon:
        yield daemon


def _series(live: Live, target: str) -> list[dict[str, Any]]:
    status, body = live.call("GET", f"/api/v1/series?target={target}")
    assert status == 200, body
    return list(body["data"]["series"])


# --- the document -------------------------------------------------------------------------------

DOC = document()
REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:api", Resource.from_contents(DOC, default_specification=DRAFT202012)
)


def check(path: str, method: str, status: int, body: Any) -> None:
    """``body`` validates against the documented response of ``method path`` at ``status``."""
    responses = DOC["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method} {path} answered an undocumented {status}: {body}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    # Refs point into the document's components: resolve them against the whole document.
    validator = Draft202012Validator({"$id": "urn:check", "allOf": [_rebase(schema)]}, registry=REGISTRY)
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, f"{method} {path} {status}: {errors[0].message} at {list(errors[0].absolute_path)}"


def _rebase(schema: Any) -> Any:
    """``#/components/...`` refs made absolute into the registered document."""
    if isinstance(schema, dict):
        return {k: ("urn:api" + v if k == "$ref" else _rebase(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


def test_the_document_is_served_and_lists_every_api_route(live: Live) -> None:
    status, served = live.call("GET", "/api/v1/openapi.json")
    assert status == 200
    assert served == json.loads(json.dumps(DOC))
    Draft202012Validator.check_schema({"$defs": DOC["components"]["schemas"]})
    from tsf_adapter.server.api import PREFIX

    documented = {(m.upper(), p) for p, ops in DOC["paths"].items() for m in ops}
    assert all(p.startswith(PREFIX) for _, p in documented)
    for method, path in documented:
        probe = path.replace("{id}", "x").replace("{name}", "disk")
        if method == "GET":
            assert live.call(method, probe)[0] != 405, path


# --- reading ------------------------------------------------------------------------------------


def test_status_says_the_daemon_is_ready_and_how_the_config_loaded(live: Live) -> None:
    status, body = live.call("GET", "/api/v1/status")
    check("/api/v1/status", "get", status, body)
    s = body["data"]
    assert s["ready"] is True and s["stopping"] is False and s["targets"] == 2
    assert s["stored_series"] == 5 and s["config_file"].endswith("config.yaml")
    assert s["last_reload"]["successful"] is True and s["last_reload"]["error"] is None
    assert s["time"] == pytest.approx(s["wall_time"], abs=5)  # a real daemon runs on the wall clock


def test_targets_say_what_each_target_is_and_how_it_is_doing(live: Live) -> None:
    status, body = live.call("GET", "/api/v1/targets")
    check("/api/v1/targets", "get", status, body)
    targets = {t["name"]: t for t in body["data"]}
    assert set(targets) == {"disk", "load"}
    disk, load = targets["disk"], targets["load"]
    assert disk["horizons"] == ["1m", "5m"] and disk["quantiles"] == ["0.1", "0.5", "0.9"]
    assert disk["threshold"] == {"value": 0.0, "selector": None, "on": [], "ratio": 1.0, "direction": "below"}
    assert disk["series"] == 3 and disk["stored_series"] == 3
    assert disk["model"]["trains"] is False and disk["training"]["next_at"] is None
    assert disk["forecast"]["last"]["error"] is None and disk["forecast"]["every_seconds"] == 1.0
    assert load["model"] == {
        "kind": "lstm",
        "scope": "auto",
        "serving_scope": "per_series",
        "trains": True,
        "fitted": True,
        "trained_at": load["model"]["trained_at"],
    }
    assert load["model"]["trained_at"] > 0
    last = load["training"]["last"]
    assert last["error"] is None and "lstm:" in last["detail"] and last["duration_seconds"] > 0
    assert load["models_in_use"] == {"lstm": 2}


def test_series_come_soonest_to_the_threshold_first_and_page(live: Live) -> None:
    status, body = live.call("GET", "/api/v1/series?target=disk")
    check("/api/v1/series", "get", status, body)
    rows = body["data"]["series"]
    assert [r["labels"]["mount"] for r in rows] == ["a", "c", "b"]
    assert body["data"]["total"] == 3
    a, c, b = rows
    assert 0 < a["time_to_threshold_seconds"] < c["time_to_threshold_seconds"] < 300
    assert b["time_to_threshold_seconds"] is None  # not within the longest horizon
    assert a["threshold"] == 0.0 and a["model"] == "predict_linear"
    assert a["name"] == 'disk{job="j",mount="a"}'
    assert set(a["threshold_probability"]) == {"1m", "5m"}

    _, page = live.call("GET", "/api/v1/series?target=disk&limit=1&offset=1")
    assert [r["labels"]["mount"] for r in page["data"]["series"]] == ["c"]
    assert page["data"]["total"] == 3 and page["data"]["limit"] == 1
    _, by_name = live.call("GET", "/api/v1/series?sort=name")
    names = [r["name"] for r in by_name["data"]["series"]]
    assert names == sorted(names) and len(names) == 5
    _, matched = live.call("GET", "/api/v1/series?match=" + urllib.parse.quote('{mount=~"a|b"}'))
    assert {r["labels"]["mount"] for r in matched["data"]["series"]} == {"a", "b"}
    _, searched = live.call("GET", "/api/v1/series?search=INSTANCE%3D%22B")
    assert [r["labels"] for r in searched["data"]["series"]] == [
        {"__name__": "load", "instance": "b", "job": "j"}
    ]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("limit=0", "limit: must be from 1 to 1000 (got 0)"),
        ("limit=x", "limit: must be a whole number (got 'x')"),
        ("offset=-1", "offset: must be at least 0 (got -1)"),
        ("sort=size", "sort: must be one of time_to_threshold, probability, name (got 'size')"),
        ("match=%7B", "match: "),
    ],
)
def test_bad_series_queries_get_400_with_the_reason(live: Live, query: str, reason: str) -> None:
    status, body = live.call("GET", f"/api/v1/series?{query}")
    check("/api/v1/series", "get", status, body)
    assert status == 400 and body["errorType"] == "bad_data"
    assert body["error"].startswith(reason)


def test_unknown_target_and_series_are_404(live: Live) -> None:
    status, body = live.call("GET", "/api/v1/series?target=nope")
    check("/api/v1/series", "get", status, body)
    assert status == 404 and body["error"] == "no target named 'nope'"
    status, body = live.call("GET", "/api/v1/series/0123456789abcdef")
    check("/api/v1/series/{id}", "get", status, body)
    assert status == 404


def test_one_series_has_history_forecast_paths_and_crossing_times(live: Live) -> None:
    row = _series(live, "disk")[0]
    status, body = live.call("GET", f"/api/v1/series/{row['id']}")
    check("/api/v1/series/{id}", "get", status, body)
    s = body["data"]
    assert s["id"] == row["id"] and s["labels"]["mount"] == "a"
    forecast = s["forecast"]
    assert set(forecast["quantiles"]) == {"0.1", "0.5", "0.9"}
    assert all(len(path) == 300 for path in forecast["quantiles"].values())  # 5m at 1s
    history = s["history"]
    assert history["step_seconds"] == 1.0
    values = [v for v in history["values"] if v is not None]
    assert values[-1] == 120.0  # the newest stored sample of mount a (219 - 99)
    # The origin is the newest step the forecast saw: the history's last.
    assert forecast["origin"] == history["start"] + history["step_seconds"] * (len(history["values"]) - 1)
    # predict_linear of a line continues it: one step on, 120 - 1.
    assert forecast["quantiles"]["0.5"][0] == pytest.approx(119.0)
    assert s["time_to_threshold_by_quantile"]["0.5"] == s["time_to_threshold_seconds"]
    assert s["model_scores"] == {}  # only auto scores its candidates


def test_models_say_where_each_model_is_and_how_it_trained(live: Live) -> None:
    status, body = live.call("GET", "/api/v1/models")
    check("/api/v1/models", "get", status, body)
    models = {m["target"]: m for m in body["data"]}
    assert models["disk"]["trains"] is False and models["disk"]["file"] is None
    load = models["load"]
    assert load["file"].endswith("load.pt") and load["file_bytes"] > 0
    assert load["series_by_model"] == {"lstm": 2} and load["retrain_every_seconds"] == 3600.0


# --- changing -----------------------------------------------------------------------------------


def test_retrain_starts_a_training_now(live: Live) -> None:
    before = _load_model(live)["last_training"]["at"]
    status, body = live.call("POST", "/api/v1/targets/load/retrain")
    check("/api/v1/targets/{name}/retrain", "post", status, body)
    assert status == 202 and body["data"] == {"target": "load", "training": "started"}
    wait_for("a second training", lambda: _load_model(live)["last_training"]["at"] > before, live.daemon.log)
    status, body = live.call("POST", "/api/v1/targets/disk/retrain")
    check("/api/v1/targets/{name}/retrain", "post", status, body)
    assert status == 400 and body["error"] == "target disk: model predict_linear does not train"
    status, body = live.call("POST", "/api/v1/targets/nope/retrain")
    assert status == 404


def _load_model(live: Live) -> dict[str, Any]:
    return next(m for m in live.call("GET", "/api/v1/models")[1]["data"] if m["target"] == "load")


def test_an_ad_hoc_forecast_of_posted_samples_changes_nothing(live: Live) -> None:
    now = time.time()
    samples = [[now - 60 + k, 10.0 - 0.1 * k] for k in range(60)]
    before = _series(live, "disk")
    request = {"target": "disk", "series": [{"labels": {"mount": "z"}, "samples": samples}], "horizon": "5s"}
    status, body = live.call("POST", "/api/v1/forecast", request)
    check("/api/v1/forecast", "post", status, body)
    assert status == 200, body
    (one,) = body["data"]["series"]
    assert one["labels"] == {"mount": "z"} and one["model"] == "predict_linear"
    median = one["quantiles"]["0.5"]
    assert len(median) == 5 and median[0] < samples[-1][1]  # the line keeps falling
    assert [r["id"] for r in _series(live, "disk")] == [r["id"] for r in before]


def test_an_ad_hoc_forecast_uses_a_trained_model_for_series_it_knows(live: Live) -> None:
    status, body = live.call("POST", "/api/v1/forecast", {"target": "load", "selector": 'load{instance="a"}'})
    check("/api/v1/forecast", "post", status, body)
    assert status == 200, body
    (one,) = body["data"]["series"]
    assert one["model"] == "lstm" and len(one["quantiles"]["0.9"]) == 4


@pytest.mark.parametrize(
    ("request_body", "status", "reason"),
    [
        ({"series": []}, 400, "target: must name a configured target"),
        ({"target": "nope", "series": []}, 404, "no target named 'nope'"),
        ({"target": "load", "selector": "load", "horizon": "1m"}, 400, "horizon 1m is longer than"),
        ({"target": "load", "horizon": "5"}, 400, "horizon: "),
        ({"target": "load"}, 400, "body: give either series"),
        ({"target": "load", "series": [{"samples": [[1, 2, 3]]}]}, 400, "series[0].samples: must be"),
        ({"target": "load", "series": [{"labels": {"a": 1}, "samples": []}]}, 400, "series[0].labels"),
        ({"target": "load", "series": [{"samples": []}]}, 400, "no samples to forecast from"),
        ({"target": "load", "extra": 1}, 400, "body: unknown keys ['extra']"),
        ({"target": "load", "selector": "load{"}, 400, ""),
    ],
)
def test_bad_ad_hoc_requests_get_the_right_status(
    live: Live, request_body: dict[str, Any], status: int, reason: str
) -> None:
    got, body = live.call("POST", "/api/v1/forecast", request_body)
    check("/api/v1/forecast", "post", got, body)
    assert got == status and body["error"].startswith(reason), body


def test_a_body_that_is_not_json_is_400(live: Live) -> None:
    status, body = live.call("POST", "/api/v1/forecast", raw=b"{not json")
    assert status == 400 and body["error"].startswith("body: not JSON")
    assert live.daemon.proc is not None and live.daemon.proc.poll() is None
    assert "Traceback" not in live.daemon.log()
