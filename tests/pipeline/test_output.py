from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tsf_adapter.config import TargetConfig, decode_section
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.protocol import RW1_MESSAGE, RW2_MESSAGE
from tsf_adapter.core.series import STALE_NAN, Labels, SampleBlock, SeriesSamples, make_labels
from tsf_adapter.pipeline.output import (
    ForecastOutput,
    ForecastOutputBuilder,
    StalenessTracker,
    join_limits,
    latest_values,
    output_base,
    render_exposition,
    threshold_probability,
    threshold_seconds,
)
from tsf_adapter.remote.codec import decode_write_request, decompress, encode_write_request

STEP = 60_000


def target(**extra: Any) -> TargetConfig:
    data: dict[str, Any] = {
        "name": "disk",
        "selector": "used_bytes",
        "horizons": ["1m", "3m"],
        "quantiles": [0.1, 0.5, 0.9],
        **extra,
    }
    return decode_section(TargetConfig, data)


def series(**labels: str) -> Labels:
    return make_labels({"__name__": "used_bytes", **labels})


def grid(labels: list[Labels], values: list[list[float]], start_ms: int = 10 * STEP) -> GridBatch:
    return GridBatch("disk", tuple(labels), np.array(values, dtype=np.float64), start_ms, STEP)


def rows(out: ForecastOutput) -> dict[Labels, float]:
    return dict(zip(out.labels, out.values.tolist(), strict=True))


def linear_prediction(n_series: int, steps: int = 3) -> np.ndarray:
    """Quantile q of series s at step j is 100*s + 10*j + q_index: every value names its place."""
    s = np.arange(n_series)[:, None, None] * 100.0
    q = np.arange(3)[None, :, None]
    j = np.arange(1, steps + 1)[None, None, :] * 10.0
    return s + j + q


def test_forecast_rows_carry_input_labels_horizon_and_quantile() -> None:
    a, b = series(instance="a"), series(instance="b")
    batch = grid([a, b], [[1.0, 2.0], [3.0, 4.0]])
    out = ForecastOutputBuilder(target()).build(batch, linear_prediction(2), now_ms=batch.end_ms + 5_000)
    got = rows(out)
    key = make_labels(
        {"__name__": "used_bytes:forecast", "instance": "b", "horizon": "3m", "quantile": "0.9"}
    )
    assert got[key] == 100 + 30 + 2
    key = make_labels(
        {"__name__": "used_bytes:forecast", "instance": "a", "horizon": "1m", "quantile": "0.1"}
    )
    assert got[key] == 10
    info = make_labels(
        {
            "__name__": "used_bytes:forecast_model_info",
            "instance": "a",
            "model": "lstm",
            "scope": "per_series",
        }
    )
    assert got[info] == 1.0
    names = sorted({dict(lab)["__name__"] for lab in out.labels})
    assert names == ["used_bytes:forecast", "used_bytes:forecast_model_info"]  # no threshold, no errors
    assert len(out) == 2 * (6 + 1)
    # Every row is one sample stamped T, never in the future; they go to the queue as one block
    # made of the output's own columns (no copy, no object per row).
    writes = out.writes()
    assert len(writes) == 1 and isinstance(writes[0], SampleBlock)
    block = writes[0]
    assert block.labels is out.labels and block.values is out.values
    samples = block.rows()
    assert all(s.timestamps.tolist() == [batch.end_ms + 5_000] for s in samples)
    assert samples[0] == SeriesSamples(out.labels[0], [batch.end_ms + 5_000], [10.0])


def test_horizon_and_within_labels_keep_the_configs_spelling() -> None:
    # Prometheus would print 60s as "1m" and 180s as "3m": a panel written against the config's
    # "60s" must find its series.
    cfg = target(horizons=["60s", "180s"], threshold={"value": 100.0})
    batch = grid([series(instance="a")], [[1.0, 2.0]])
    out = ForecastOutputBuilder(cfg).build(batch, linear_prediction(1), now_ms=batch.end_ms)
    spelt = {
        (dict(lab)["__name__"], dict(lab).get("horizon") or dict(lab).get("within"))
        for lab in out.labels
        if "horizon" in dict(lab) or "within" in dict(lab)
    }
    assert spelt == {
        (name, h)
        for name in ("used_bytes:forecast", "used_bytes:forecast_threshold_probability")
        for h in ("60s", "180s")
    }


label_names = st.one_of(
    st.sampled_from(
        ["horizon", "quantile", "model", "scope", "within", "__name__", "__tmp", "exported_horizon"]
    ),
    st.from_regex(r"(__)?[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True),
)


@given(st.dictionaries(label_names, st.text(max_size=12), min_size=1, max_size=8))
def test_input_labels_never_replace_ours_nor_smuggle_in_reserved_ones(given_labels: dict[str, str]) -> None:
    labels = make_labels({**given_labels, "__name__": "used_bytes"})
    batch = grid([labels], [[1.0, 2.0]])
    cfg = target(threshold={"value": 100.0})
    out = ForecastOutputBuilder(cfg).build(batch, linear_prediction(1), now_ms=batch.end_ms)
    inputs = {k: v for k, v in labels if k != "__name__"}
    for row in out.labels:
        keys = [k for k, _ in row]
        got = dict(row)
        assert len(keys) == len(set(keys))
        # Its own name, and no other reserved label.
        assert got["__name__"].startswith("used_bytes:forecast")
        assert [k for k in keys if k.startswith("__")] == ["__name__"]
        # Every label the output adds has a value the output gives it (never an input's) ...
        ours = {"horizon", "quantile", "model", "scope", "within"} & set(got)
        allowed = {"horizon": {"1m", "3m"}, "within": {"1m", "3m"}, "quantile": {"0.1", "0.5", "0.9"}}
        allowed |= {"model": {"lstm"}, "scope": {"per_series"}}
        assert all(got[k] in allowed[k] for k in ours), row
        # ... and every input label is still there, under its name or as exported_<name>.
        exported = sorted(v for k, v in row if k not in ours and k != "__name__")
        assert exported == sorted(inputs.values())


def test_clashing_input_labels_are_exported_not_overwritten() -> None:
    labels = make_labels(
        {
            "__name__": "m",
            "horizon": "x",
            "exported_horizon": "y",
            "quantile": "q",
            "Zone": "z",
            "model": "m",
            "within": "w",
        }
    )
    assert output_base(labels) == (
        "m",
        (
            ("Zone", "z"),
            ("exported_exported_horizon", "x"),
            ("exported_horizon", "y"),
            ("exported_model", "m"),
            ("exported_quantile", "q"),
            ("exported_within", "w"),
        ),
    )
    out = ForecastOutputBuilder(target(selector="m")).build(
        grid([labels], [[1.0]]), linear_prediction(1), now_ms=11 * STEP
    )
    first = out.labels[0]
    assert first == tuple(sorted(first))  # "Zone" sorts before "__name__"
    assert dict(first)["horizon"] == "1m" and dict(first)["exported_exported_horizon"] == "x"


def test_aggregated_series_are_named_after_the_selector_metric() -> None:
    cfg = target(aggregate={"op": "sum", "by": ["cluster"]})
    group = (("cluster", "c1"),)
    out = ForecastOutputBuilder(cfg).build(grid([group], [[1.0]]), linear_prediction(1), now_ms=11 * STEP)
    assert out.labels[0] == (
        ("__name__", "used_bytes:forecast"),
        ("cluster", "c1"),
        ("horizon", "1m"),
        ("quantile", "0.1"),
    )


def test_series_without_any_name_get_no_rows() -> None:
    cfg = target(selector='{__name__=~"used_.*"}')
    out = ForecastOutputBuilder(cfg).build(
        grid([(("job", "x"),), series(job="y")], [[1.0], [2.0]]), linear_prediction(2), now_ms=11 * STEP
    )
    assert out.skipped == 1
    assert {dict(lab)["job"] for lab in out.labels} == {"y"}
    # The kept series' values, not the skipped one's: quantile 0.1 at 1m of series 1 is 110.
    assert out.values[0] == 110.0


@pytest.mark.parametrize(
    ("anchor", "path", "expected"),
    [
        (90.0, [110.0, 130.0], 30.0),  # halfway through the first step
        (100.0, [90.0, 80.0], 0.0),  # already there
        (50.0, [100.0, 120.0], 60.0),  # exactly at the first step
        (50.0, [60.0, 80.0, 120.0], 150.0),  # a quarter into the third step: 2 + 0.5 steps
        (50.0, [60.0, 70.0, 80.0], math.inf),  # not within the longest horizon
        (math.nan, [120.0, 130.0], 60.0),  # unknown anchor: the first step at the threshold
        (50.0, [math.nan, 150.0], 120.0),  # no slope from a gap: the step itself
    ],
)
def test_threshold_seconds_interpolates_between_grid_steps(
    anchor: float, path: list[float], expected: float
) -> None:
    got = threshold_seconds(np.array([anchor]), np.array([[path]]), np.array([100.0]), step_s=60.0)
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(expected)


def test_threshold_seconds_counts_from_the_forecast_time_and_falls_below() -> None:
    paths = np.array([[[110.0, 130.0]]])
    got = threshold_seconds(np.array([90.0]), paths, np.array([100.0]), step_s=60.0, delay_s=20.0)
    assert got[0, 0] == pytest.approx(10.0)
    got = threshold_seconds(np.array([90.0]), paths, np.array([100.0]), step_s=60.0, delay_s=45.0)
    assert got[0, 0] == 0.0  # the crossing is already behind T: not negative
    falling = threshold_seconds(
        np.array([40.0]), np.array([[[20.0, -20.0]]]), np.array([0.0]), step_s=60.0, direction="below"
    )
    assert falling[0, 0] == pytest.approx(90.0)
    assert np.isnan(threshold_seconds(np.array([1.0]), paths, np.array([np.nan]), step_s=60.0)).all()


@given(
    anchor=st.floats(-1e6, 1e6),
    path=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20),
    thr=st.floats(-1e6, 1e6),
)
def test_threshold_seconds_lies_where_the_path_first_reaches(
    anchor: float, path: list[float], thr: float
) -> None:
    got = threshold_seconds(np.array([anchor]), np.array([[path]]), np.array([thr]), step_s=1.0)[0, 0]
    full = [anchor, *path]
    first = next((j for j, v in enumerate(full) if v >= thr), None)
    if first is None:
        assert got == math.inf
    elif first == 0:
        assert got == 0.0
    else:
        assert first - 1 <= got <= first


LEVELS = [0.1, 0.5, 0.9]


def probability(
    anchor: float, paths: list[list[float]], thr: float, steps: list[int], **kw: Any
) -> list[float]:
    got = threshold_probability(np.array([anchor]), np.array([paths]), np.array([thr]), LEVELS, steps, **kw)
    assert got.shape == (1, len(steps))
    return list(got[0].tolist())


@pytest.mark.parametrize(
    ("thr", "expected"),
    [
        (100.0, 0.5),  # at the median's peak
        (105.0, 0.5 - 0.4 / 2),  # halfway from the p50 peak to the p90 peak
        (95.0, 0.9 - 0.4 / 2),
        (111.25, 0.1 / 2),  # upper tail: the last 0.1 at the p50-p90 density, over 10 * 0.1 / 0.4 = 2.5
        (112.5, 0.0),  # ... so it ends at 112.5
        (89.0, 0.9 + 0.1 * 1 / 2.5),  # lower tail: 90 - 2.5 = 87.5 is where it reaches 1
        (87.5, 1.0),
        (50.0, 1.0),
        (1e9, 0.0),
    ],
)
def test_threshold_probability_interpolates_the_peak_distribution(thr: float, expected: float) -> None:
    # Peaks 90, 100, 110 within one step (the anchor 0 is below them all).
    got = probability(0.0, [[90.0], [100.0], [110.0]], thr, [1])
    assert got[0] == pytest.approx(expected)


def test_threshold_probability_reads_peaks_not_ends_and_grows_with_within() -> None:
    # The median rises to 120 at step 2 and falls back: within 3 steps it still reached 100.
    paths = [[60.0, 80.0, 70.0], [80.0, 120.0, 90.0], [100.0, 140.0, 130.0]]
    got = probability(50.0, paths, 100.0, [1, 2, 3])
    assert got[0] == pytest.approx(0.1)  # only p90 gets there in the first step
    assert got[1] == got[2] == pytest.approx(0.9 - 0.4 * 20 / 40)
    assert probability(100.0, paths, 100.0, [1, 2, 3]) == [1.0, 1.0, 1.0]  # already there


def test_threshold_probability_of_point_forecasts_and_a_single_quantile_is_0_or_1() -> None:
    point = [[50.0, 99.0, 101.0]] * 3
    assert probability(40.0, point, 100.0, [1, 2, 3]) == [0.0, 0.0, 1.0]
    assert probability(40.0, point, 99.0, [1, 2, 3]) == [0.0, 1.0, 1.0]  # reaching counts
    one = threshold_probability(
        np.array([40.0]), np.array([[[50.0, 101.0]]]), np.array([100.0]), [0.5], [1, 2]
    )
    assert one.tolist() == [[0.0, 1.0]]


def test_threshold_probability_falls_below_as_the_mirror_of_above() -> None:
    paths = [[10.0, 30.0], [20.0, 50.0], [40.0, 60.0]]
    above = probability(0.0, paths, 35.0, [1, 2])
    mirrored = [[-v for v in path] for path in reversed(paths)]
    assert probability(0.0, mirrored, -35.0, [1, 2], direction="below") == pytest.approx(above)
    assert above[0] < above[1]


def test_threshold_probability_without_threshold_or_values_is_nan() -> None:
    paths = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[np.nan, 2.0], [np.nan, 4.0], [np.nan, 6.0]]])
    got = threshold_probability(np.array([0.0, np.nan]), paths, np.array([np.nan, 4.0]), LEVELS, [1, 2])
    assert np.isnan(got[0]).all()  # no threshold
    assert math.isnan(got[1, 0])  # nothing known within the first step
    assert got[1, 1] == pytest.approx(0.5)  # the gap is skipped, not a crossing nor a miss


quantile_paths = st.lists(st.lists(st.floats(-1e3, 1e3), min_size=4, max_size=4), min_size=3, max_size=3)


@given(anchor=st.floats(-1e3, 1e3), paths=quantile_paths, low=st.floats(-1e3, 1e3), high=st.floats(-1e3, 1e3))
def test_threshold_probability_is_monotone_in_threshold_and_within(
    anchor: float, paths: list[list[float]], low: float, high: float
) -> None:
    """Any quantile paths, crossing ones included: a probability, falling with the threshold."""
    low, high = min(low, high), max(low, high)
    at_low = probability(anchor, paths, low, [1, 2, 4])
    at_high = probability(anchor, paths, high, [1, 2, 4])
    assert all(0.0 <= p <= 1.0 for p in at_low + at_high)
    assert all(a >= b for a, b in zip(at_low, at_high, strict=True))
    assert at_low == sorted(at_low) and at_high == sorted(at_high)
    assert probability(anchor, paths, -1e4, [1, 2, 4]) == [1.0] * 3
    assert probability(anchor, paths, 1e4, [1, 2, 4]) == [0.0] * 3


@given(anchor=st.floats(-1e3, 1e3), paths=quantile_paths, thr=st.floats(-1e3, 1e3))
def test_threshold_probability_agrees_with_the_quantiles_that_cross(
    anchor: float, paths: list[list[float]], thr: float
) -> None:
    """Ordered quantile paths: at least 1 - q where the q-path reaches the threshold, at most where not."""
    ordered = np.sort(np.array(paths), axis=0)
    steps = [1, 2, 4]
    got = threshold_probability(np.array([anchor]), ordered[None], np.array([thr]), LEVELS, steps)[0]
    for h, p in zip(steps, got.tolist(), strict=True):
        for q, path in zip(LEVELS, ordered.tolist(), strict=True):
            if max(anchor, *path[:h]) >= thr:
                assert p >= 1.0 - q - 1e-12
            else:
                assert p <= 1.0 - q + 1e-12


def test_constant_threshold_rows_per_quantile() -> None:
    cfg = target(threshold={"value": 50.0, "ratio": 2.0})  # threshold 100
    batch = grid([series(instance="a")], [[0.0, 90.0]])
    prediction = np.array([[[95.0, 99.0, 99.0], [110.0, 130.0, 150.0], [200.0, 300.0, 400.0]]])
    out = ForecastOutputBuilder(cfg).build(batch, prediction, now_ms=batch.end_ms)
    got = {dict(lab)["quantile"]: v for lab, v in rows(out).items() if "threshold_s" in dict(lab)["__name__"]}
    assert got == {"0.1": math.inf, "0.5": pytest.approx(30.0), "0.9": pytest.approx(60 * 10 / 110)}
    name = next(dict(lab)["__name__"] for lab in out.labels if "threshold_s" in dict(lab)["__name__"])
    assert name == "used_bytes:forecast_threshold_seconds"
    # Within 1m the peaks are 95, 110, 200: 100 lies a third of the way from p10 to p50.
    # Within 3m they are 99, 150, 400: 100 lies 1/51 of the way.
    probability = {
        lab: v for lab, v in rows(out).items() if dict(lab)["__name__"].endswith("_threshold_probability")
    }
    assert probability == {
        make_labels(
            {"__name__": "used_bytes:forecast_threshold_probability", "instance": "a", "within": "1m"}
        ): pytest.approx(0.9 - 0.4 * 5 / 15),
        make_labels(
            {"__name__": "used_bytes:forecast_threshold_probability", "instance": "a", "within": "3m"}
        ): pytest.approx(0.9 - 0.4 * 1 / 51),
    }


def test_the_published_probability_is_what_calibrate_makes_of_the_raw_one() -> None:
    cfg = target(threshold={"value": 100.0})
    batch = grid([series(instance="a"), series(instance="b")], [[0.0, 90.0], [0.0, 120.0]])
    prediction = np.array([[[95.0, 99.0, 99.0], [110.0, 130.0, 150.0], [200.0, 300.0, 400.0]]] * 2)
    seen = []

    def calibrate(b: GridBatch, rows: np.ndarray, raw: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        seen.append((b, rows.tolist(), raw.copy(), thresholds.tolist()))
        return np.full_like(raw, 0.25)

    out = ForecastOutputBuilder(cfg).build(batch, prediction, now_ms=batch.end_ms, calibrate=calibrate)
    probability = [v for lab, v in rows(out).items() if dict(lab)["__name__"].endswith("_probability")]
    assert probability == [0.25] * 4
    assert len(seen) == 1
    assert seen[0][0] is batch and seen[0][1] == [0, 1] and seen[0][3] == [100.0, 100.0]
    assert seen[0][2][0].tolist() == [pytest.approx(0.9 - 0.4 * 5 / 15), pytest.approx(0.9 - 0.4 * 1 / 51)]
    assert seen[0][2][1].tolist() == [1.0, 1.0]  # b is past its threshold already


def test_limit_series_join_on_labels_many_to_one() -> None:
    quota = make_labels({"__name__": "quota_bytes", "user": "u1", "job": "other"})
    got = join_limits(
        [series(user="u1", disk="a"), series(user="u1", disk="b"), series(user="u2"), series()],
        [quota, make_labels({"__name__": "quota_bytes", "job": "x"})],
        np.array([1000.0, 5.0]),
        ["user"],
    )
    # u1 twice (many-to-one), u2 has no limit, and a series without `user` joins the limit without it.
    assert got[:2].tolist() == [1000.0, 1000.0]
    assert math.isnan(got[2]) and got[3] == 5.0


def test_ambiguous_or_missing_limits_give_no_threshold() -> None:
    limits = [make_labels({"user": "u1", "i": "1"}), make_labels({"user": "u1", "i": "2"}), (("user", "u2"),)]
    got = join_limits([series(user="u1"), series(user="u2")], limits, np.array([1.0, 2.0, np.nan]), ["user"])
    assert np.isnan(got).all()


def test_latest_values_skip_gaps() -> None:
    batch = grid(
        [series(a="1"), series(a="2"), series(a="3")], [[1.0, 2.0, np.nan], [np.nan] * 3, [4.0, 5.0, 6.0]]
    )
    got = latest_values(batch)
    assert got[0] == 2.0 and math.isnan(got[1]) and got[2] == 6.0


def test_threshold_from_limit_series_and_series_without_limit_get_none() -> None:
    cfg = target(threshold={"selector": "quota_bytes", "on": ["user"], "ratio": 0.5})
    batch = grid([series(user="u1"), series(user="u2")], [[0.0, 40.0], [0.0, 40.0]])
    limits = grid([make_labels({"__name__": "quota_bytes", "user": "u1"})], [[200.0, np.nan]])
    prediction = np.full((2, 3, 3), 120.0)
    out = ForecastOutputBuilder(cfg).build(batch, prediction, now_ms=batch.end_ms, limits=limits)
    thresholds = {
        (dict(lab)["user"], dict(lab)["quantile"]): v
        for lab, v in rows(out).items()
        if dict(lab)["__name__"].endswith("threshold_seconds")
    }
    # Limit 200 x 0.5 = 100, reached from 40 to 120 at 60/80 of the first step; u2 has no limit.
    assert thresholds == {("u1", q): pytest.approx(45.0) for q in ("0.1", "0.5", "0.9")}
    probability = {
        (dict(lab)["user"], dict(lab)["within"]): v
        for lab, v in rows(out).items()
        if dict(lab)["__name__"].endswith("threshold_probability")
    }
    assert probability == {("u1", "1m"): 1.0, ("u1", "3m"): 1.0}  # a point forecast past the limit


def test_error_rows_only_where_a_forecast_has_matured() -> None:
    batch = grid([series(instance="a"), series(instance="b")], [[1.0], [2.0]])
    errors = np.array([[0.5, np.nan], [np.nan, np.nan]])
    out = ForecastOutputBuilder(target()).build(
        batch, linear_prediction(2), now_ms=batch.end_ms, errors=errors
    )
    got = {lab: v for lab, v in rows(out).items() if dict(lab)["__name__"].endswith(":forecast_error")}
    assert got == {
        make_labels({"__name__": "used_bytes:forecast_error", "instance": "a", "horizon": "1m"}): 0.5
    }


def test_model_info_per_series_while_models_train() -> None:
    batch = grid([series(instance="a"), series(instance="b")], [[1.0], [2.0]])
    builder = ForecastOutputBuilder(target(model={"kind": "gru", "scope": "global"}))
    out = builder.build(
        batch,
        linear_prediction(2),
        now_ms=batch.end_ms,
        models=[("predict_linear", "per_series"), ("gru", "global")],
    )
    infos = sorted(
        (dict(lab)["instance"], dict(lab)["model"], dict(lab)["scope"])
        for lab in out.labels
        if dict(lab)["__name__"].endswith("model_info")
    )
    assert infos == [("a", "predict_linear", "per_series"), ("b", "gru", "global")]
    default = builder.build(batch, linear_prediction(2), now_ms=batch.end_ms)
    assert {dict(lab).get("model") for lab in default.labels} == {None, "gru"}


def test_future_paths_carry_the_whole_horizon_at_grid_timestamps() -> None:
    batch = grid([series(instance="a")], [[1.0, 2.0]])
    out = ForecastOutputBuilder(target(), future_timestamps=True).build(
        batch, linear_prediction(1), now_ms=batch.end_ms
    )
    assert len(out.paths) == 3
    path = out.paths[2]
    assert path.labels == make_labels(
        {"__name__": "used_bytes:forecast_path", "instance": "a", "quantile": "0.9"}
    )
    assert path.timestamps.tolist() == [batch.end_ms + STEP * j for j in (1, 2, 3)]
    assert path.values.tolist() == [12.0, 22.0, 32.0]
    assert out.writes()[1:] == out.paths


def test_prediction_shape_is_checked() -> None:
    batch = grid([series(instance="a")], [[1.0]])
    with pytest.raises(ValueError, match=r"prediction shape \(1, 3, 2\), expected \(1, 3, >= 3\)"):
        ForecastOutputBuilder(target()).build(batch, np.zeros((1, 3, 2)), now_ms=0)


def test_label_cache_follows_the_batch() -> None:
    builder = ForecastOutputBuilder(target())
    a, b = series(instance="a"), series(instance="b")
    first = builder.build(grid([a, b], [[1.0], [2.0]]), linear_prediction(2), now_ms=0)
    second = builder.build(grid([b], [[2.0]]), linear_prediction(1), now_ms=STEP)
    assert len(builder._cache) == 1
    # The same label tuples are reused, not rebuilt.
    assert second.labels[0] is first.labels[6]


def test_exposition_parses_with_the_reference_parser() -> None:
    cfg = target(threshold={"value": 32.5})  # series a, quantile 0.1 (10, 20, 30) never gets there
    a = make_labels({"__name__": "used_bytes", "path": 'C:\\dir "x"\nnext', "instance": "a"})
    batch = grid([a, series(instance="b")], [[1.0], [2.0]])
    errors = np.array([[1.5, 2.5], [np.nan, np.nan]])
    out = ForecastOutputBuilder(cfg).build(batch, linear_prediction(2), now_ms=batch.end_ms, errors=errors)
    other = ForecastOutputBuilder(target(name="other", selector="free_bytes")).build(
        grid([make_labels({"__name__": "free_bytes"})], [[1.0]]), linear_prediction(1), now_ms=0
    )
    text = render_exposition([out, other])
    assert "# TYPE used_bytes:forecast gauge\n" in text
    assert text.count("# TYPE used_bytes:forecast gauge") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == {
        "used_bytes:forecast",
        "used_bytes:forecast_threshold_seconds",
        "used_bytes:forecast_threshold_probability",
        "used_bytes:forecast_error",
        "used_bytes:forecast_model_info",
        "free_bytes:forecast",
        "free_bytes:forecast_model_info",
    }
    assert all(f.type == "gauge" for f in families.values())
    parsed = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    expected = {
        (dict(lab)["__name__"], tuple((k, v) for k, v in lab if k != "__name__")): v
        for o in (out, other)
        for lab, v in rows(o).items()
    }
    assert parsed.keys() == expected.keys()
    for key, value in expected.items():
        assert parsed[key] == value
    assert any(math.isinf(v) for v in parsed.values())  # +Inf written as Prometheus spells it
    assert "+Inf" in text
    assert all(s.timestamp is None for f in families.values() for s in f.samples)
    assert render_exposition([]) == ""


def test_staleness_ends_label_sets_that_stop_being_written() -> None:
    info = "used_bytes:forecast_model_info"
    builder = ForecastOutputBuilder(target(), end_series=True)
    batch = grid([series(instance="a")], [[1.0]])

    def forecast(ts: int, model: str) -> ForecastOutput:
        return builder.build(batch, linear_prediction(1), now_ms=ts, models=[(model, "per_series")])

    first = forecast(1_000, "predict_linear")
    assert first.ended == [] and len(first.writes()) == 1
    second = forecast(2_000, "lstm")
    old = make_labels({"__name__": info, "instance": "a", "model": "predict_linear", "scope": "per_series"})
    assert second.ended == [old]
    marker = second.writes()[-1]
    assert isinstance(marker, SampleBlock)
    assert list(marker.labels) == [old] and marker.timestamp_ms == 2_000
    assert np.array_equal(marker.values.view(np.uint64), np.array([STALE_NAN]).view(np.uint64))
    assert forecast(3_000, "lstm").ended == []
    # The tracker goes on to a replacing builder, or ends everything for a removed target.
    tracker = builder.staleness
    assert tracker is not None
    names = sorted(dict(lab)["__name__"] for lab in tracker.forget())
    assert names == ["used_bytes:forecast"] * 6 + [info]
    assert tracker.forget() == []


def test_staleness_tracker_remembers_the_latest_label_sets() -> None:
    a, b = make_labels({"__name__": "a"}), make_labels({"__name__": "b"})
    tracker = StalenessTracker()
    assert tracker.ended([b, a]) == []
    assert tracker.ended([a]) == [b]
    assert tracker.ended([b]) == [a]
    assert tracker.ended([b]) == []  # the very same objects again
    equal = tuple(list(b))  # the same label set in another object: compared by value
    assert equal is not b and tracker.ended([equal]) == []
    assert tracker.ended([equal, a]) == []
    assert tracker.ended([a, equal]) == []  # same objects, another order
    assert tracker.ended([a]) == [b]
    assert tracker.forget() == [a]


def test_exposition_mode_tracks_no_staleness() -> None:
    builder = ForecastOutputBuilder(target())
    batch = grid([series(instance="a")], [[1.0]])
    builder.build(batch, linear_prediction(1), now_ms=0)
    out = builder.build(grid([series(instance="b")], [[1.0]]), linear_prediction(1), now_ms=STEP)
    assert builder.staleness is None and out.ended == []


@pytest.mark.parametrize("message", [RW1_MESSAGE, RW2_MESSAGE])
def test_writes_encode_as_one_series_per_row(message: str) -> None:
    """The block goes on the wire exactly as one ``SeriesSamples`` per row would, in order."""
    cfg = target(threshold={"value": 32.5})
    builder = ForecastOutputBuilder(cfg, future_timestamps=True, end_series=True)
    batch = grid([series(instance="a"), series(instance="b")], [[1.0], [2.0]])
    builder.build(batch, linear_prediction(2), now_ms=batch.end_ms)
    out = builder.build(grid([series(instance="b")], [[2.0]]), linear_prediction(1), now_ms=batch.end_ms + 1)
    assert out.ended  # a's series end
    stamp = [out.timestamp_ms]
    expected = [
        SeriesSamples(lab, stamp, [v]) for lab, v in zip(out.labels, out.values.tolist(), strict=True)
    ]
    expected += out.paths
    expected += [SeriesSamples(lab, stamp, [STALE_NAN]) for lab in out.ended]
    got = decode_write_request(
        decompress(encode_write_request(out.writes(), message=message), 1 << 24), message=message
    )
    assert got.series == expected
    assert encode_write_request(out.writes(), message=message) == encode_write_request(
        expected, message=message
    )
