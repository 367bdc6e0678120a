"""Backfill install and reloads: the store keeps unchanged targets, the receiver selects anew."""

from __future__ import annotations

import numpy as np

from tsf_adapter.config import AggregateConfig, TargetConfig
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.pipeline.backfill import Backfilled, install
from tsf_adapter.remote.codec import decompress, encode_write_request
from tsf_adapter.remote.ingest import Ingester
from tsf_adapter.store.store import Store

A = make_labels({"__name__": "m", "instance": "a"})
B = make_labels({"__name__": "n", "instance": "b"})


def spec(name: str, selector: str, aggregate: AggregateConfig | None = None) -> TargetConfig:
    return TargetConfig(
        name=name, selector=parse_selector(selector), step=60.0, history=3600.0, aggregate=aggregate
    )


def write(ingester: Ingester, series: list[SeriesSamples]) -> None:
    ingester.ingest(decompress(encode_write_request(series), 1 << 20))


def test_install_appends_history_and_a_reload_keeps_unchanged_targets() -> None:
    store = Store([])
    ingester = Ingester(store, [])
    history = [Backfilled(spec("m", "m"), [SeriesSamples(A, [60_000, 120_000], [1.0, 2.0])])]
    assert install(store, ingester, [spec("m", "m")], [parse_selector("m")], history) == 2
    write(ingester, [SeriesSamples(A, [180_000], [3.0])])
    write(ingester, [SeriesSamples(B, [180_000], [7.0])])  # unselected for now, and cached as such
    batch = store.batch("m")
    assert batch is not None and batch.values.tolist() == [[1.0, 2.0, 3.0]]

    # Reload: m unchanged, a new target n that wants the series the receiver dropped before.
    targets = [spec("m", "m"), spec("n", "n")]
    install(store, ingester, targets, [parse_selector("m"), parse_selector("n")], [])
    write(ingester, [SeriesSamples(B, [240_000], [8.0])])
    kept = store.batch("m")
    assert kept is not None and kept.values.tolist() == [[1.0, 2.0, 3.0]]
    new = store.batch("n")
    assert new is not None and new.labels == (B,) and new.values.tolist() == [[8.0]]

    # A changed target starts empty but picks up the series already known to the store.
    install(store, ingester, [spec("m", "m", AggregateConfig(op="sum"))], [parse_selector("m")], [])
    assert store.batch("m") is None
    assert set(store.targets) == {"m"}
    write(ingester, [SeriesSamples(A, [300_000], [4.0])])
    write(ingester, [SeriesSamples(A, [600_000], [5.0])])  # finalises the earlier steps
    summed = store.batch("m")
    assert summed is not None and np.nanmax(summed.values) >= 4.0
