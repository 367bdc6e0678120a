"""The REST API's JSON pieces: numbers JSON can carry, one-line errors, epochs, stable ids."""

from __future__ import annotations

import json
import math

from tsf_adapter.forecast.neural.state import EpochProgress
from tsf_adapter.server import api_json as js


def test_nan_and_infinities_become_null() -> None:
    assert js.numbers([1.0, math.nan, math.inf, -math.inf]) == [1.0, None, None, None]
    assert js.number(math.inf) is None and js.number(2) == 2.0


def test_an_error_is_one_line_with_the_prometheus_error_type() -> None:
    resp = js.failure(400, "limit:\n  must be\tpositive")
    assert resp.status == 400 and resp.content_type == "application/json"
    assert resp.text is not None
    assert json.loads(resp.text) == {
        "status": "error",
        "errorType": "bad_data",
        "error": "limit: must be positive",
    }
    assert json.loads(js.failure(409, "busy").text or "")["errorType"] == "conflict"


def test_the_running_epoch_is_reported_with_its_network() -> None:
    p = EpochProgress(3, 0.5, math.nan, 128, 64, 300, 12.5, 2880.0)
    assert js.epoch(("gru", p)) == {
        "model": "gru",
        "epoch": 3,
        "train_loss": 0.5,
        "validation_loss": None,
        "series_done": 128,
        "series_in_stack": 64,
        "series_total": 300,
        "elapsed_seconds": 12.5,
        "budget_seconds": 2880.0,
    }
    assert js.epoch(None) is None


def test_a_series_id_depends_on_the_target_and_every_label() -> None:
    labels = (("__name__", "used"), ("user", "a"))
    assert js.series_id("disk", labels) == js.series_id("disk", labels)
    assert js.series_id("disk", labels) != js.series_id("disk2", labels)
    assert js.series_id("disk", labels) != js.series_id("disk", (("__name__", "used"), ("user", "b")))
    # Label boundaries count: {a="bc"} is not {ab="c"}.
    assert js.series_id("d", (("a", "bc"),)) != js.series_id("d", (("ab", "c"),))
