"""The backtest contract: output header and rows, origins, no leakage, retraining, errors, scoring."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter import cli
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.core.grid import GridBatch, grid_values
from tsf_adapter.forecast.neural.headroom import HeadroomBatch
from tsf_adapter.forecast.options import ModelOptions
from tsf_adapter.forecast.registry import MODELS, ModelSpec
from tsf_adapter.tools.backtest import BacktestSpec, at_samples, median_step_ms, origins, run_backtest
from tsf_adapter.tools.csvio import (
    FORECAST_HEADER,
    InputSeries,
    read_forecasts_csv,
    read_series_csv,
    write_series_csv,
)
from tsf_adapter.tools.scoring import score_all, summary_table

H = 3600


def write_csv(path: Path, stamps_s: list[int] | np.ndarray, values: list[float] | np.ndarray) -> Path:
    write_series_csv(path, np.asarray(stamps_s, dtype=np.int64) * 1000, np.asarray(values, dtype=np.float64))
    return path


def ramp(path: Path, start_s: int, n: int, step_s: int, jitter: bool = False) -> Path:
    """Samples whose value is their own timestamp in seconds: leakage shows as a value > origin."""
    stamps = start_s + step_s * np.arange(n)
    if jitter:
        stamps = stamps + (np.arange(n) * 7919) % 11 - 5
    return write_csv(path, stamps, stamps.astype(np.float64))


class Recorder:
    """Learns nothing; records the newest sample it was shown in fit and predict.

    Its forecast is the grid step's own timestamp in seconds plus ``quantile - 0.5``, so
    after interpolation each row's value tells exactly which timestamp it was mapped to.
    """

    NEEDS_FIT: ClassVar[bool] = True
    QUANTILES: ClassVar[bool] = True
    name = "recorder"
    log: ClassVar[list[tuple[str, int, float]]] = []
    rows: ClassVar[list[tuple[str, tuple[str, ...]]]] = []  # the series each call was shown

    def __init__(self, options: ModelOptions) -> None:
        self.quantiles = options.quantiles
        self.options = options

    def fit(self, batch: GridBatch) -> None:
        self.log.append(("fit", batch.end_ms, float(np.nanmax(batch.values))))
        self.rows.append(("fit", tuple(dict(lab)["series"] for lab in batch.labels)))

    def predict(self, batch: GridBatch, horizon_steps: int) -> np.ndarray:
        self.log.append(("predict", batch.end_ms, float(np.nanmax(batch.values))))
        self.rows.append(("predict", tuple(dict(lab)["series"] for lab in batch.labels)))
        ts = batch.horizon_timestamps_ms(horizon_steps) / 1000.0
        q = np.asarray(self.quantiles)[:, None] - 0.5
        out: np.ndarray = np.broadcast_to(ts[None, :] + q, (batch.n_series, len(q), len(ts))).copy()
        return out


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    Recorder.log = []
    Recorder.rows = []
    monkeypatch.setitem(MODELS, "recorder", ModelSpec(Recorder))
    return Recorder


def spec(**kw: object) -> BacktestSpec:
    base: dict[str, object] = {
        "history_s": 2 * H,
        "horizon_s": H,
        "origin_every_s": H,
        "start_frac": 0.5,
        "models": ("last_value",),
    }
    base.update(kw)
    return BacktestSpec(**base)  # type: ignore[arg-type]


def run(inputs: list[InputSeries], s: BacktestSpec) -> tuple[list[list[str]], object]:
    out = io.StringIO()
    result = run_backtest(inputs, s, out, progress=None)
    return list(csv.reader(io.StringIO(out.getvalue()))), result


# --- origins ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_s", "last_s", "frac", "expected_s"),
    [
        # 0.5 of [0, 10h] is 5h, already a whole hour: kept; then while origin + 1h <= 10h.
        (0, 10 * H, 0.5, [5 * H, 6 * H, 7 * H, 8 * H, 9 * H]),
        # 0.5 of [1000, 10h] lies past 5h: rounded UP to 6h, never down.
        (1000, 10 * H, 0.5, [6 * H, 7 * H, 8 * H, 9 * H]),
        # Rounding is to multiples of unix time, not of the series' start.
        (1800, 4 * H + 1800, 0.0, [H, 2 * H, 3 * H]),
        # The last origin needs the whole horizon inside the data.
        (0, 10 * H - 1, 0.5, [5 * H, 6 * H, 7 * H, 8 * H]),
        # Nothing fits.
        (0, 5 * H, 0.9, []),
    ],
)
def test_origins_round_up_and_stop_at_horizon(
    first_s: int, last_s: int, frac: float, expected_s: list[int]
) -> None:
    got = origins(np.array([first_s * 1000, last_s * 1000]), spec(start_frac=frac))
    assert got.tolist() == [e * 1000 for e in expected_s]


def test_origins_from_start_origin_are_not_rounded() -> None:
    got = origins(np.array([0, 5 * H * 1000]), spec(start_frac=None, start_origin_s=H + 30.0))
    assert got.tolist() == [(H + 30) * 1000, (2 * H + 30) * 1000, (3 * H + 30) * 1000]


def test_median_step_rounds_to_whole_seconds() -> None:
    assert median_step_ms(np.array([0, 299_600, 600_100, 900_000])) == 300_000
    assert median_step_ms(np.array([0, 100])) == 1000


# --- output rows --------------------------------------------------------------------------------


def test_header_and_one_row_per_input_sample_in_each_horizon(
    tmp_path: Path, recorder: type[Recorder]
) -> None:
    s = read_series_csv(ramp(tmp_path / "disk.csv", 0, 121, 300, jitter=True))
    rows, _ = run([s], spec(models=("last_value", "recorder"), step_s=300.0))
    assert tuple(rows[0]) == FORECAST_HEADER
    body = rows[1:]
    stamps = s.timestamps_ms // 1000
    for o in origins(s.timestamps_ms, spec()) // 1000:
        expected = stamps[(stamps > o) & (stamps <= o + H)].tolist()
        for model, qs in (("last_value", ["0.5"]), ("recorder", ["0.1", "0.5", "0.9"])):
            for q in qs:
                got = [int(r[3]) for r in body if r[1] == model and int(r[2]) == o and r[4] == q]
                assert got == expected, (model, o, q)
    assert {r[0] for r in body} == {"disk"}
    assert {r[4] for r in body if r[1] == "last_value"} == {"0.5"}


def test_forecasts_are_interpolated_linearly_between_grid_steps(
    tmp_path: Path, recorder: type[Recorder]
) -> None:
    s = read_series_csv(ramp(tmp_path / "disk.csv", 0, 121, 300, jitter=True))
    rows, _ = run([s], spec(models=("recorder",), step_s=300.0))
    for r in rows[1:]:
        origin, t, q, v = int(r[2]), int(r[3]), float(r[4]), float(r[5])
        first_step = (origin // 300 + 1) * 300
        # The recorder forecasts each step's own timestamp: interpolation returns the sample's
        # timestamp, except before the first forecast step, which holds that step's value.
        assert v == pytest.approx(max(t, first_step) + q - 0.5)


def test_point_forecast_values_match_the_model(tmp_path: Path) -> None:
    stamps = np.arange(0, 6 * H + 1, 600)
    s = read_series_csv(write_csv(tmp_path / "x.csv", stamps, 2.0 * stamps))
    rows, _ = run([s], spec(models=("predict_linear", "last_value"), history_s=H, start_frac=0.2))
    for r in rows[1:]:
        origin, t, v = int(r[2]), int(r[3]), float(r[5])
        expected = 2.0 * t if r[1] == "predict_linear" else 2.0 * origin
        assert v == pytest.approx(expected)


# --- no leakage -----------------------------------------------------------------------------------


def test_models_never_see_samples_after_the_origin(tmp_path: Path, recorder: type[Recorder]) -> None:
    # Origins at 30-minute offsets from the 5-minute grid and a jittered series: the grid
    # step that holds the origin also holds samples after it, which must stay hidden.
    s = read_series_csv(ramp(tmp_path / "disk.csv", 7, 200, 300, jitter=True))
    sp = spec(models=("recorder",), start_frac=None, start_origin_s=4 * H + 150.0, step_s=300.0)
    run([s], sp)
    fits = [e for e in recorder.log if e[0] == "fit"]
    predicts = [e for e in recorder.log if e[0] == "predict"]
    all_origins = origins(s.timestamps_ms, sp) // 1000
    assert len(fits) == 1
    assert len(predicts) == len(all_origins)
    stamps = s.timestamps_ms // 1000

    def newest_usable(o: int) -> int:
        # The window ends at the last grid step at or before the origin.
        return int(stamps[stamps <= o // 300 * 300].max())

    for (_, _, seen), o in zip(predicts, all_origins, strict=True):
        assert seen <= o
        assert seen == newest_usable(o)
    # Training sees only samples up to the first origin.
    assert fits[0][2] == newest_usable(all_origins[0])


def test_retrain_every_n_origins_sees_data_up_to_that_origin(
    tmp_path: Path, recorder: type[Recorder]
) -> None:
    s = read_series_csv(ramp(tmp_path / "disk.csv", 0, 300, 60))
    sp = spec(models=("recorder",), start_frac=0.0, history_s=600.0, horizon_s=600.0, origin_every_s=600.0)
    all_origins = origins(s.timestamps_ms, sp) // 1000
    for n in (1, 2, 3):
        recorder.log.clear()
        run([s], spec(retrain_every=n, **_args(sp)))
        fits = [seen for kind, _, seen in recorder.log if kind == "fit"]
        # Samples lie on the grid here, so each fit sees exactly up to its origin.
        assert fits == [float(o) for o in all_origins[::n]]


def test_series_that_share_a_step_and_first_origin_train_as_one_group(
    tmp_path: Path, recorder: type[Recorder]
) -> None:
    # a and b: the same grid and origins; c: the same first origin, fewer origins (it ends
    # earlier); d: another grid step, so a group of its own. Values are their timestamps.
    a, b, c, d = (
        read_series_csv(ramp(tmp_path / f"{name}.csv", 0, n, step))
        for name, n, step in (("a", 300, 60), ("b", 300, 60), ("c", 240, 60), ("d", 150, 120))
    )
    sp = spec(models=("recorder",), start_frac=None, start_origin_s=2 * H, history_s=1800.0, horizon_s=1800.0)
    result = run_backtest([a, b, c, d], sp, io.StringIO(), progress=None)
    n_ac = [len(origins(s.timestamps_ms, sp)) for s in (a, c)]
    assert n_ac[1] < n_ac[0]
    fits = [names for kind, names in recorder.rows if kind == "fit"]
    assert fits == [("a", "b", "c"), ("d",)]
    predicts = [names for kind, names in recorder.rows if kind == "predict"]
    assert predicts[: n_ac[1]] == [("a", "b", "c")] * n_ac[1]
    assert predicts[n_ac[1] : n_ac[0]] == [("a", "b")] * (n_ac[0] - n_ac[1])
    # The group's fit, and every forecast, sees no sample after its origin in any series.
    first_origin = 2 * H
    assert next(seen for kind, _, seen in recorder.log if kind == "fit") == first_origin
    for _, end_ms, seen in recorder.log:
        assert seen <= end_ms / 1000
    # Each series' rows are what a run of it alone writes.
    for s in (a, c, d):
        recorder.rows.clear()
        alone = run_backtest([s], sp, io.StringIO(), progress=None)
        assert recorder.rows[0] == ("fit", (s.name,))
        [mine] = [f for f in result.forecasts if f.series == s.name]
        [single] = alone.forecasts
        assert np.array_equal(mine.timestamps_ms, single.timestamps_ms)
        assert np.array_equal(mine.values, single.values)


def test_a_groups_training_budget_is_per_series(tmp_path: Path, recorder: type[Recorder]) -> None:
    series = [read_series_csv(ramp(tmp_path / f"s{i}.csv", 0, 300, 60)) for i in range(3)]
    sp = spec(models=("recorder",), start_frac=0.5, train_budget_s=10.0)
    built: list[ModelOptions] = []
    original = Recorder.__init__

    def record(self: Recorder, options: ModelOptions) -> None:
        built.append(options)
        original(self, options)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Recorder, "__init__", record)
        run(series, sp)
    assert [o.train_budget_s for o in built] == [30.0]


def _args(sp: BacktestSpec) -> dict[str, object]:
    return {
        "models": sp.models,
        "start_frac": sp.start_frac,
        "history_s": sp.history_s,
        "horizon_s": sp.horizon_s,
        "origin_every_s": sp.origin_every_s,
    }


# --- grid and interpolation kernels ----------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2000), min_size=1, max_size=40, unique=True),
    st.integers(0, 2100),
    st.integers(-50, 2000),
    st.integers(1, 30),
    st.integers(1, 200),
)
def test_grid_values_match_a_reference(stamps: list[int], cutoff: int, first: int, n: int, step: int) -> None:
    ts = np.array(sorted(stamps), dtype=np.int64)
    vs = ts.astype(np.float64) * 10
    got = grid_values(ts, vs, cutoff, first, n, step)
    for j in range(n):
        t = first + j * step
        inside = [v for s, v in zip(ts, vs, strict=True) if t - step < s <= t and s <= cutoff]
        expected = inside[-1] if inside else math.nan
        assert got[j] == expected or (math.isnan(got[j]) and math.isnan(expected))


def test_at_samples_holds_the_first_step_and_interpolates_after() -> None:
    grid = np.array([100, 200], dtype=np.int64)
    out = at_samples(grid, np.array([[1.0, 3.0]]), np.array([50, 100, 150, 200], dtype=np.int64))
    assert out.tolist() == [[1.0, 1.0, 2.0, 3.0]]


# --- errors: one line, exit 2 -----------------------------------------------------------------------


def cli_args(tmp_path: Path, *inputs: Path, models: str = "last_value") -> list[str]:
    args = ["backtest"]
    for p in inputs:
        args += ["--input", str(p)]
    return [
        *args,
        *("--history", "2h", "--horizon", "1h", "--origin-every", "1h", "--start-frac", "0.5"),
        *("--models", models, "--out", str(tmp_path / "out.csv")),
    ]


def fail(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fail(cli_args(tmp_path, tmp_path / "nope.csv"), capsys)
    assert err == f"tsf-adapter: {tmp_path / 'nope.csv'}: no such file"


def test_bad_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("time,val\n1,2\n")
    err = fail(cli_args(tmp_path, p), capsys)
    assert err == f"tsf-adapter: {p}: header must be 'timestamp,value' (got 'time,val')"


def test_bad_value_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("timestamp,value\n1,2\n2,abc\n")
    assert fail(cli_args(tmp_path, p), capsys) == f"tsf-adapter: {p}:3: bad value 'abc'"


def test_too_short_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = ramp(tmp_path / "short.csv", 0, 10, 300)
    err = fail(cli_args(tmp_path, p), capsys)
    assert err.startswith("tsf-adapter: short: too short: 0.8h of samples leave no origin")
    assert not (tmp_path / "out.csv").exists()


def test_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = ramp(tmp_path / "ok.csv", 0, 200, 300)
    err = fail(cli_args(tmp_path, p, models="last_value,prophet"), capsys)
    assert err.startswith("tsf-adapter: unknown model 'prophet' (known: predict_linear, ")


def test_spec_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="exactly one of --start-frac and --start-origin"):
        spec(start_origin_s=5.0)
    with pytest.raises(ConfigError, match="--quantiles must be increasing"):
        spec(quantiles=(0.9, 0.1))
    with pytest.raises(ConfigError, match="--retrain-every must be >= 1"):
        spec(retrain_every=0)


# --- the whole command, and scoring from the file -----------------------------------------------------


def test_command_writes_file_and_summary_and_scores_reproduce_from_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = np.arange(0, 48 * H, 300)
    daily = 100 + 10 * np.sin(2 * np.pi * t / 86_400)
    a = write_csv(tmp_path / "a.csv", t, daily)
    b = write_csv(tmp_path / "b.csv", t + 13, 5 + np.cos(t / 5000.0))
    with pytest.raises(SystemExit) as exc:
        cli.main(cli_args(tmp_path, a, b, models="predict_linear,last_value,seasonal_naive,holt_winters"))
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "| model | MAE | MASE |" in out
    for model in ("predict_linear", "last_value", "seasonal_naive", "holt_winters"):
        assert f"| {model} |" in out
    inputs = {s.name: s for s in (read_series_csv(a), read_series_csv(b))}
    from_file = score_all(read_forecasts_csv(tmp_path / "out.csv"), inputs)
    assert summary_table(from_file) in out
    by = {(s.series, s.model): s for s in from_file}
    # A daily cycle: the value one day back beats holding the last value over an hour ahead.
    assert by[("a", "seasonal_naive")].mae < by[("a", "last_value")].mae
    assert all(s.missing == 0.0 for s in from_file)


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    stamps = np.array([1_700_000_000_000, 1_700_000_000_500, 1_700_000_060_000], dtype=np.int64)
    values = np.array([0.1, -1e300, math.nan])
    write_series_csv(tmp_path / "s.csv", stamps, values)
    back = read_series_csv(tmp_path / "s.csv")
    assert back.timestamps_ms.tolist() == stamps.tolist()
    assert np.array_equal(back.values, values, equal_nan=True)


# --- the neural models plug in by name ----------------------------------------------------------------


@pytest.mark.parametrize("model", ["lstm", "auto"])
def test_neural_models_by_name(tmp_path: Path, model: str) -> None:
    t = np.arange(0, 2 * 86_400, 1800)
    daily = 50 + 10 * np.sin(2 * np.pi * t / 86_400)
    s = read_series_csv(write_csv(tmp_path / "d.csv", t, daily))
    sp = spec(models=(model, "last_value"), history_s=3 * H, horizon_s=H, start_frac=0.9)
    rows, _ = run([s], sp)
    mine = [r for r in rows[1:] if r[1] == model]
    assert {r[4] for r in mine} == {"0.1", "0.5", "0.9"}
    assert all(math.isfinite(float(r[5])) for r in mine)
    by_origin_ts: dict[tuple[str, str], list[float]] = {}
    for r in mine:
        by_origin_ts.setdefault((r[2], r[3]), []).append(float(r[5]))
    # Quantiles never cross.
    assert all(v == sorted(v) for v in by_origin_ts.values())


# --- training settings ----------------------------------------------------------------------------


def test_train_settings_reach_the_models_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ModelOptions] = []

    def build(options: ModelOptions) -> Recorder:
        seen.append(options)
        return Recorder(options)

    monkeypatch.setitem(MODELS, "recorder", ModelSpec(build))
    series = read_series_csv(ramp(tmp_path / "r.csv", 0, 6 * 60, 60))
    settings = (("weight_decay", 0.01), ("features.scale", "min"))
    run([series], spec(models=("recorder",), train_settings=settings))
    assert seen and all(o.train_settings == settings for o in seen)


@pytest.mark.parametrize("scope", ["per_series", "global"])
def test_scope_flag_reaches_the_models_options(
    scope: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[ModelOptions] = []

    def build(options: ModelOptions) -> Recorder:
        seen.append(options)
        return Recorder(options)

    monkeypatch.setitem(MODELS, "recorder", ModelSpec(build))
    a = ramp(tmp_path / "a.csv", 0, 48 * 12, 300)
    b = ramp(tmp_path / "b.csv", 0, 48 * 12, 300)
    with pytest.raises(SystemExit) as exc:
        cli.main([*cli_args(tmp_path, a, b, models="recorder"), "--scope", scope])
    assert exc.value.code == 0
    assert [o.scope for o in seen] == [scope]  # one model for the group of a and b
    capsys.readouterr()


# --- limits: the headroom channel ---------------------------------------------------------------------

LIMIT_BASE = 1e6  # a limit series' value is this plus its own timestamp in seconds


class HeadroomRecorder(Recorder):
    """A :class:`Recorder` that also records, per call, the newest limit sample the headroom reveals."""

    seen: ClassVar[list[tuple[str, int, float, bool]]] = []  # (kind, end_ms, newest limit ts, any known)

    def _note(self, kind: str, batch: GridBatch) -> None:
        assert isinstance(batch, HeadroomBatch) and self.options.headroom
        with np.errstate(divide="ignore", invalid="ignore"):
            limit_ts = batch.values / batch.headroom - LIMIT_BASE  # value / (value / limit) - base
        known = np.isfinite(limit_ts)
        self.seen.append(
            (kind, batch.end_ms, float(np.max(limit_ts, where=known, initial=-np.inf)), bool(known.any()))
        )

    def fit(self, batch: GridBatch) -> None:
        self._note("fit", batch)
        super().fit(batch)

    def predict(self, batch: GridBatch, horizon_steps: int) -> np.ndarray:
        self._note("predict", batch)
        return super().predict(batch, horizon_steps)


# Every 40 minutes, or every 5 hours: longer than a forecast window (2h), whose first step then
# holds the limit's last sample before it.
@pytest.mark.parametrize("every_s", [2400, 5 * H])
def test_limits_reach_the_models_as_headroom_and_never_past_the_origin(
    every_s: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    HeadroomRecorder.seen = []
    monkeypatch.setitem(MODELS, "recorder", ModelSpec(HeadroomRecorder))
    disk = read_series_csv(ramp(tmp_path / "disk.csv", 7, 200, 300, jitter=True))
    # A quota exported now and then, off the grid, its value telling when it was sampled.
    quota_ts = np.arange(0, 200 * 300, every_s, dtype=np.int64) + 100
    quota = InputSeries("quota", quota_ts * 1000, (quota_ts + LIMIT_BASE).astype(np.float64))
    sp = spec(
        models=("recorder",),
        start_frac=None,
        start_origin_s=4 * H + 150.0,
        step_s=300.0,
        limits={"disk": quota},
    )
    run([disk], sp)
    all_origins = origins(disk.timestamps_ms, sp) // 1000
    predicts = [e for e in HeadroomRecorder.seen if e[0] == "predict"]
    assert len(predicts) == len(all_origins) and [e[0] for e in HeadroomRecorder.seen].count("fit") == 1
    for (_, _, newest, known), o in zip(predicts, all_origins, strict=True):
        assert known
        # The newest limit sample on the window's grid (which ends at or before the origin), never
        # one after it, though a sample lies between the window's end and some origins.
        assert newest == pytest.approx(quota_ts[quota_ts <= o // 300 * 300].max())
        assert newest <= o
    fit = HeadroomRecorder.seen[0]
    assert fit[2] == pytest.approx(quota_ts[quota_ts <= all_origins[0] // 300 * 300].max())


def test_a_fixed_limit_and_an_input_without_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[GridBatch] = []

    class Keep(Recorder):
        def predict(self, batch: GridBatch, horizon_steps: int) -> np.ndarray:
            batches.append(batch)
            return super().predict(batch, horizon_steps)

    monkeypatch.setitem(MODELS, "recorder", ModelSpec(Keep))
    a, b = (read_series_csv(ramp(tmp_path / f"{n}.csv", 60, 300, 60)) for n in "ab")
    run([a, b], spec(models=("recorder",), limits={"a": 20_000.0}, limit_ratio=0.5))
    assert batches
    for batch in batches:
        assert isinstance(batch, HeadroomBatch)
        np.testing.assert_allclose(batch.headroom[0], np.clip(batch.values[0] / 10_000.0, 0.0, 2.0))
        assert np.isnan(batch.headroom[1]).all()


def test_a_neural_model_backtests_with_limits(tmp_path: Path) -> None:
    t = np.arange(0, 2 * 86_400, 1800)
    s = read_series_csv(write_csv(tmp_path / "d.csv", t, 50 + 10 * np.sin(2 * np.pi * t / 86_400)))
    rows, _ = run(
        [s], spec(models=("lstm",), history_s=3 * H, horizon_s=H, start_frac=0.9, limits={"d": 100.0})
    )
    assert len(rows) > 1 and all(math.isfinite(float(r[5])) for r in rows[1:])
