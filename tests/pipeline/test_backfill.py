"""Backfill install and reloads: the store keeps unchanged targets, the receiver selects anew."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tsf_adapter.config import AggregateConfig, TargetConfig
from tsf_adapter.core.errors import RecoverableError, RemoteError
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.pipeline.backfill import (
    BACKFILL_ATTEMPTS,
    MAX_RETRY_WAIT_S,
    Backfilled,
    install,
    read_history,
)
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


class FlakyReader:
    """A read client that fails with the given errors first, then returns one series."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    async def read(self, selector: object, start_ms: int, end_ms: int) -> list[SeriesSamples]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [SeriesSamples(make_labels({"__name__": "disk"}), [end_ms], [1.0])]


def run_backfill(reader: FlakyReader) -> tuple[list[Backfilled], list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    spec = TargetConfig(name="disk", selector=parse_selector("disk"))
    result = asyncio.run(read_history(reader, [spec], 1_700_000_000_000, sleep=sleep))  # type: ignore[arg-type]
    return result, waits


def test_a_recoverable_read_error_is_retried_with_backoff_then_the_history_arrives() -> None:
    reader = FlakyReader([RecoverableError("down"), RecoverableError("503", retry_after=7.0)])
    (result,), waits = run_backfill(reader)
    assert reader.calls == 3 and result.samples == 1
    assert waits == [1.0, 7.0]  # doubling from 1 s, or what Retry-After asks


def test_a_read_that_keeps_failing_starts_the_target_without_history(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = FlakyReader([RecoverableError("down", retry_after=600.0)] * BACKFILL_ATTEMPTS)
    (result,), waits = run_backfill(reader)
    assert reader.calls == BACKFILL_ATTEMPTS and result.series == []
    assert waits == [MAX_RETRY_WAIT_S] * (BACKFILL_ATTEMPTS - 1)  # Retry-After, capped
    assert "remote-read failed, starting without history" in caplog.text


def test_a_refused_read_is_not_retried() -> None:
    reader = FlakyReader([RemoteError("HTTP 400: bad selector", status=400)])
    (result,), waits = run_backfill(reader)
    assert (reader.calls, waits, result.series) == (1, [], [])
