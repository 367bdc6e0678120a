from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsf_adapter.config import AggregateConfig, TargetConfig
from tsf_adapter.core.selector import Matcher, MatchOp, Selector
from tsf_adapter.core.series import STALE_NAN, Labels, make_labels
from tsf_adapter.remote.ingest import SampleSink
from tsf_adapter.store.store import Store

STEP = 60_000
nan = math.nan
T0 = 1_699_999_920_000  # a multiple of 60 s and of 120 s


def name_is(name: str) -> Selector:
    return Selector((Matcher("__name__", MatchOp.EQ, name),))


def lbl(name: str, **labels: str) -> Labels:
    return make_labels({"__name__": name, **labels})


def push(store: Store, samples: list[tuple[Labels, int, float]]) -> None:
    refs = [store.series_ref(labels) for labels, _, _ in samples]
    assert all(r is not None for r in refs)
    store.append(
        np.array(refs, dtype=np.int64),
        np.array([t for _, t, _ in samples], dtype=np.int64),
        np.array([v for _, _, v in samples], dtype=np.float64),
    )


def raw_store(history_s: float = 600.0) -> Store:
    return Store([TargetConfig(name="disk", selector=name_is("disk"), step=60, history=history_s)])


def test_store_is_a_sample_sink() -> None:
    sink: SampleSink = raw_store()
    assert sink.series_ref(lbl("other")) is None


def test_series_ref_is_idempotent_and_routes_to_every_target_that_wants_it() -> None:
    store = Store(
        [
            TargetConfig(name="a", selector=name_is("disk")),
            TargetConfig(name="b", selector=Selector((Matcher("job", MatchOp.EQ, "x"),)), step=120),
        ]
    )
    disk_x, disk_y, net_x = lbl("disk", job="x"), lbl("disk", job="y"), lbl("net", job="x")
    refs = [store.series_ref(s) for s in (disk_x, disk_y, net_x, disk_x)]
    assert refs == [0, 1, 2, 0]
    assert store.series_ref(lbl("net", job="y")) is None
    push(store, [(disk_x, T0, 1.0), (disk_y, T0, 2.0), (net_x, T0 + 60_000, 3.0)])
    a, b = store.batch("a"), store.batch("b")
    assert a is not None and b is not None
    assert a.labels == (disk_x, disk_y) and a.step_ms == 60_000
    assert b.labels == (disk_x, net_x) and b.step_ms == 120_000
    # T0 + 60 s lies in the 120 s step ending at T0 + 120 s (T0 is a multiple of 120 s).
    assert b.start_ms == T0
    np.testing.assert_array_equal(b.values, [[1.0, nan], [nan, 3.0]])
    assert set(store.batches()) == {"a", "b"}
    with pytest.raises(ValueError, match="unknown series ref"):
        store.append(np.array([7]), np.array([T0]), np.array([1.0]))
    with pytest.raises(ValueError, match="unknown series ref"):
        store.append(np.array([-1]), np.array([T0]), np.array([1.0]))


def test_a_target_at_its_series_limit_refuses_new_series_and_keeps_the_old_ones() -> None:
    small = TargetConfig(name="small", selector=name_is("disk"), max_series=2)
    wide = TargetConfig(name="wide", selector=Selector((Matcher("job", MatchOp.EQ, "x"),)))
    store = Store([small, wide])
    first, second, third = (lbl("disk", job="x", i=str(i)) for i in range(3))
    assert [store.series_ref(s) for s in (first, second)] == [0, 1]
    # The third is refused by "small" (full) but taken by "wide", which has room.
    assert store.series_ref(third) == 2
    assert (store.targets["small"].stats.refused, store.targets["wide"].stats.refused) == (1, 0)
    push(store, [(first, T0, 1.0), (second, T0, 2.0), (third, T0, 3.0)])
    small_batch, wide_batch = store.batch("small"), store.batch("wide")
    assert small_batch is not None and small_batch.labels == (first, second)
    assert wide_batch is not None and wide_batch.labels == (first, second, third)
    # A series only "small" selects is refused outright.
    assert store.series_ref(lbl("disk", job="y")) is None
    assert store.targets["small"].stats.refused == 2


def test_the_store_limit_refuses_new_series_for_every_target_that_wanted_them() -> None:
    store = Store([TargetConfig(name="a", selector=name_is("disk"))], max_series=2)
    kept = [lbl("disk", i=str(i)) for i in range(2)]
    assert [store.series_ref(s) for s in kept] == [0, 1]
    assert store.series_ref(lbl("disk", i="2")) is None
    assert store.series_ref(kept[1]) == 1  # a kept series keeps working
    assert store.targets["a"].stats.refused == 1 and store.targets["a"].stats.series == 2
    # A target added by a reload registers the series it selects up to its own limit.
    store.reconfigure(
        [
            TargetConfig(name="a", selector=name_is("disk")),
            TargetConfig(name="b", selector=name_is("disk"), max_series=1),
        ]
    )
    assert (store.targets["b"].stats.series, store.targets["b"].stats.refused) == (1, 1)


def test_grid_alignment_last_value_wins_and_gaps_stay_gaps() -> None:
    store = raw_store()
    s = lbl("disk", i="0")
    # T0 belongs to the step ending at T0; T0+1 ms to the next one.
    push(store, [(s, T0, 1.0), (s, T0 + 1, 2.0), (s, T0 + 30_000, 3.0)])
    push(store, [(s, T0 + 60_000, 4.0), (s, T0 + 180_000, 5.0)])  # T0+60s overwrites 3.0
    batch = store.batch("disk")
    assert batch is not None
    assert batch.start_ms == T0
    np.testing.assert_array_equal(batch.values, [[1.0, 4.0, nan, 5.0]])
    assert batch.timestamps_ms().tolist() == [T0, T0 + 60_000, T0 + 120_000, T0 + 180_000]


def test_staleness_marker_ends_the_series_until_it_comes_back() -> None:
    store = raw_store()
    s = lbl("disk", i="0")
    push(store, [(s, T0, 1.0), (s, T0 + 50_000, 2.0), (s, T0 + 55_000, STALE_NAN)])
    push(store, [(s, T0 + 180_000, 7.0)])
    batch = store.batch("disk")
    assert batch is not None
    assert np.isnan(batch.values[0, 1:3]).all()
    assert batch.values[0, 3] == 7.0
    # Stored gaps are plain NaN, never the marker itself.
    assert not (batch.values.view(np.uint64) == np.float64(STALE_NAN).view(np.uint64)).any()


def test_history_is_bounded_and_too_old_samples_are_dropped() -> None:
    store = raw_store(history_s=300.0)  # 5 steps
    s, t = lbl("disk", i="0"), lbl("disk", i="1")
    push(store, [(s, T0 + k * STEP, float(k)) for k in range(12)])
    push(store, [(s, T0, 99.0), (t, T0 + 2 * STEP, 5.0)])  # both older than the window
    target = store.targets["disk"]
    batch = store.batch("disk", drop_empty=False)
    assert batch is not None
    np.testing.assert_array_equal(batch.values, [[7.0, 8.0, 9.0, 10.0, 11.0], [nan] * 5])
    assert batch.start_ms == T0 + 7 * STEP
    assert target.current_stats().dropped_too_old == 7 + 2  # 7 of the first batch did not fit either
    dropped = store.batch("disk")
    assert dropped is not None and dropped.labels == (s,)  # the empty row is left out
    last3 = store.batch("disk", steps=3)
    assert last3 is not None and last3.values.tolist() == [[9.0, 10.0, 11.0]]
    # A jump far ahead clears everything older.
    push(store, [(s, T0 + 100 * STEP, 1.0)])
    batch = store.batch("disk", drop_empty=False)
    assert batch is not None
    np.testing.assert_array_equal(batch.values, [[nan] * 4 + [1.0], [nan] * 5])


def test_rows_grow_past_initial_capacity() -> None:
    store = raw_store()
    series = [lbl("disk", i=str(i)) for i in range(40)]
    push(store, [(s, T0, float(i)) for i, s in enumerate(series)])
    push(store, [(s, T0 + STEP, float(-i)) for i, s in enumerate(series)])
    batch = store.batch("disk")
    assert batch is not None
    np.testing.assert_array_equal(batch.values[:, 0], np.arange(40.0))
    np.testing.assert_array_equal(batch.values[:, 1], -np.arange(40.0))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 4), st.integers(0, 40 * STEP), st.sampled_from([1.0, 2.5, -3.0, STALE_NAN])
            ),
            min_size=1,
            max_size=15,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_raw_grid_matches_a_reference_model(batches: list[list[tuple[int, int, float]]]) -> None:
    slots = 8
    store = raw_store(history_s=slots * 60.0)
    series = [lbl("disk", i=str(i)) for i in range(5)]
    cells: dict[tuple[int, int], float] = {}
    head: int | None = None
    for batch in batches:
        push(store, [(series[i], T0 + t, v) for i, t, v in batch])
        steps = [(T0 + t + STEP - 1) // STEP for _, t, _ in batch]
        head = max([*steps, head if head is not None else steps[0]])
        for (i, _, v), k in zip(batch, steps, strict=True):
            if k > head - slots:
                cells[(i, k)] = nan if v != v else v
    assert head is not None
    got = store.batch("disk", drop_empty=False)
    assert got is not None
    assert got.end_ms == head * STEP
    rows = {labels: r for r, labels in enumerate(got.labels)}
    for r, labels in enumerate(series):
        if labels not in rows:
            continue
        for j, ts in enumerate(got.timestamps_ms().tolist()):
            expected = cells.get((r, ts // STEP), nan)
            actual = got.values[rows[labels], j]
            assert actual == expected or (math.isnan(actual) and math.isnan(expected))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.integers(0, 4), st.integers(0, 40 * STEP), st.sampled_from([1.0, nan])), max_size=15
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 12),
)
def test_one_series_history_is_its_row_of_the_whole_grid(
    batches: list[list[tuple[int, int, float]]], steps: int
) -> None:
    store = raw_store(history_s=8 * 60.0)
    series = [lbl("disk", i=str(i)) for i in range(5)]
    for batch in batches:
        if batch:
            push(store, [(series[i], T0 + t, v) for i, t, v in batch])
    whole = store.batch("disk", steps=steps, drop_empty=False)
    for labels in series:
        one = store.history("disk", labels, steps=steps)
        if whole is None or labels not in whole.labels:
            assert one is None
            continue
        assert one is not None and one.labels == (labels,)
        assert (one.start_ms, one.step_ms) == (whole.start_ms, whole.step_ms)
        np.testing.assert_array_equal(one.values[0], whole.values[whole.labels.index(labels)])


# --- aggregation -------------------------------------------------------------------------------


def agg_store(op: str = "sum", settle_s: float = 600.0, lookback_s: float = 300.0) -> Store:
    spec = TargetConfig(
        name="used",
        selector=name_is("used"),
        history=3600.0,
        aggregate=AggregateConfig(op=op, by=("cluster",), lookback=lookback_s, settle=settle_s),  # type: ignore[arg-type]
    )
    return Store([spec])


def reference_aggregate(
    samples: list[tuple[Labels, int, float]], op: str, lookback_ms: int, first: int, last: int
) -> dict[Labels, list[float]]:
    """PromQL ``op by (cluster)`` evaluated at each step: the latest sample within the lookback, not stale."""
    by_series: dict[Labels, list[tuple[int, float]]] = defaultdict(list)
    for labels, t, v in samples:
        by_series[labels].append((t, v))
    out: dict[Labels, list[float]] = {}
    for k in range(first, last + 1):
        at = k * STEP
        groups: dict[Labels, list[float]] = defaultdict(list)
        for labels, points in by_series.items():
            group = tuple(p for p in labels if p[0] == "cluster")
            out.setdefault(group, [])
            before = [(t, v) for t, v in points if t <= at]
            if before:
                t, v = max(before, key=lambda p: p[0])
                if t >= at - lookback_ms and np.float64(v).view(np.uint64) != np.float64(STALE_NAN).view(
                    np.uint64
                ):
                    groups[group].append(v)
        for group, column in out.items():
            vals = groups.get(group, [])
            if not vals:
                column.append(nan)
            elif op == "sum":
                column.append(sum(vals))
            elif op == "max":
                column.append(max(vals))
            elif op == "min":
                column.append(min(vals))
            elif op == "count":
                column.append(float(len(vals)))
            else:
                column.append(sum(vals) / len(vals))
    return out


@settings(max_examples=30, deadline=None)
@given(
    points=st.lists(
        st.tuples(
            st.integers(0, 3),  # member
            st.integers(0, 30 * STEP // 1000),  # seconds after T0
            st.sampled_from([1.0, 2.0, 4.0, 8.0, STALE_NAN]),
        ),
        min_size=1,
        max_size=40,
        unique_by=lambda p: (p[0], p[1]),
    ),
    op=st.sampled_from(["sum", "avg", "max", "min", "count"]),
    lookback_s=st.sampled_from([60.0, 150.0, 300.0]),
    settle_s=st.sampled_from([0.0, 60.0, 600.0]),
    n_batches=st.integers(1, 5),
)
def test_aggregation_follows_promql_instant_vector_semantics(
    points: list[tuple[int, int, float]], op: str, lookback_s: float, settle_s: float, n_batches: int
) -> None:
    members = [lbl("used", cluster=c, vol=str(i)) for i, c in enumerate(["a", "a", "b", "a"])]
    samples = sorted(((members[m], T0 + s * 1000, v) for m, s, v in points), key=lambda p: p[1])
    store = agg_store(op, settle_s=settle_s, lookback_s=lookback_s)
    for chunk in np.array_split(np.arange(len(samples)), n_batches):
        if chunk.size:
            push(store, [samples[i] for i in chunk])
    got = store.batch("used", drop_empty=False)
    assert got is not None
    first, last = got.start_ms // STEP, got.end_ms // STEP
    assert first == (samples[0][1] + STEP - 1) // STEP and last == (samples[-1][1] + STEP - 1) // STEP
    expected = reference_aggregate(samples, op, int(lookback_s * 1000), first, last)
    assert set(got.labels) == set(expected)
    for row, group in enumerate(got.labels):
        np.testing.assert_allclose(got.values[row], expected[group], rtol=1e-12, equal_nan=True)
    assert store.targets["used"].current_stats().dropped_too_old == 0


def test_aggregation_from_one_unordered_backfill_batch_equals_streaming() -> None:
    members = [lbl("used", cluster=c, vol=str(i)) for i, c in enumerate(["a", "b", "a"])]
    samples = [
        (m, T0 + k * 30_000 + i * 7_000, float(k + i)) for k in range(40) for i, m in enumerate(members)
    ]
    streamed, backfilled = agg_store(settle_s=0), agg_store(settle_s=0)
    for k in range(0, len(samples), 3):
        push(streamed, samples[k : k + 3])
    # Backfill arrives series by series, each in time order: not globally sorted.
    push(backfilled, sorted(samples, key=lambda p: p[0]))
    a, b = streamed.batch("used"), backfilled.batch("used")
    assert a is not None and b is not None
    assert a.labels == b.labels == ((("cluster", "a"),), (("cluster", "b"),))
    np.testing.assert_array_equal(a.values, b.values)
    assert np.isnan(a.values).sum() == 1  # cluster b has no sample at or before T0 yet
    one = streamed.history("used", (("cluster", "b"),), steps=1_000)  # a group's history: its row
    assert one is not None and one.start_ms == a.start_ms
    np.testing.assert_array_equal(one.values[0], a.values[1])
    assert streamed.history("used", (("cluster", "c"),), steps=10) is None


def test_aggregation_drops_samples_that_arrive_after_their_step_is_final() -> None:
    store = agg_store(settle_s=60.0)
    m = lbl("used", cluster="a", vol="0")
    push(store, [(m, T0, 1.0), (m, T0 + 3 * STEP, 2.0)])  # step T0 is final now
    push(store, [(m, T0 - 1, 5.0), (m, T0 + 2 * STEP, 3.0)])  # first is late, second within settle
    assert store.targets["used"].current_stats().dropped_too_old == 1
    batch = store.batch("used")
    assert batch is not None
    assert batch.values.tolist() == [[1.0, 1.0, 3.0, 2.0]]


def test_aggregation_labels_keep_only_the_by_labels() -> None:
    store = agg_store("max")
    push(store, [(lbl("used", cluster="a", vol="0"), T0, 1.0), (lbl("used", vol="1"), T0, 2.0)])
    batch = store.batch("used")
    assert batch is not None
    assert batch.labels == ((("cluster", "a"),), ())
    assert store.targets["used"].current_stats().series == 2


# The grid rules (step, history, lookback, settle) are the decoder's: see tests/config/test_config.py.


def test_duplicate_target_names_are_rejected() -> None:
    spec = TargetConfig(name="t", selector=name_is("x"))
    with pytest.raises(ValueError, match="duplicate target name 't'"):
        Store([spec, spec])


def test_reconfigure_keeps_a_grid_unless_what_it_holds_changes() -> None:
    disk = TargetConfig(name="disk", selector=name_is("disk"), history=600.0)
    store = Store([disk])
    push(store, [(lbl("disk"), T0, 1.0)])
    # Horizons and model say what is done with the series, not which are kept: the grid stays.
    store.reconfigure([dataclasses.replace(disk, horizons=(60.0,))])
    kept = store.batch("disk")
    assert kept is not None and kept.values.tolist() == [[1.0]]
    assert store.targets["disk"].target.horizons == (60.0,)
    store.reconfigure([dataclasses.replace(disk, step=120.0)])
    assert store.batch("disk") is None
