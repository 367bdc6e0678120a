"""Forecast output speed: 10,000 series x 3 horizons x 3 quantiles, with threshold (seconds and
probability), errors and info.

Measures the output path as the daemon runs it in remote-write mode: the build on the forecast
thread (rows as columns, staleness diff included), ``writes()`` (what the queue is handed), and
the RW1 encoding of every batch the queue sends (``max_samples_per_send`` 2000, the default);
plus the ``/forecasts`` exposition text of exposition mode.

Run: ``python -m bench.output_build [--freeze]`` (medians of 5 runs; the first build fills the label
cache; ``--freeze`` calls ``gc.freeze()`` after it, as a daemon can once warm). About 10 s.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Iterator, Sequence

import numpy as np

from tsf_adapter.config import TargetConfig, decode_section
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import Labels, SampleBlock, SeriesSamples, WriteItem
from tsf_adapter.pipeline.output import ForecastOutputBuilder, render_exposition
from tsf_adapter.remote.codec import encode_write_request

N_SERIES = 10_000
SAMPLES_PER_SEND = 2000


def split(item: WriteItem, n: int) -> tuple[WriteItem, WriteItem]:
    if isinstance(item, SampleBlock):
        return item.split(n)
    return (
        SeriesSamples(item.labels, item.timestamps[:n], item.values[:n]),
        SeriesSamples(item.labels, item.timestamps[n:], item.values[n:]),
    )


def batches(items: Sequence[WriteItem], size: int) -> Iterator[list[WriteItem]]:
    """The queue's batches of ``items``: up to ``size`` samples, long items split in order."""
    batch: list[WriteItem] = []
    room = size
    for item in items:
        while len(item) > room:
            head, item = split(item, room)
            batch.append(head)
            yield batch
            batch, room = [], size
        if len(item):
            batch.append(item)
            room -= len(item)
    if batch:
        yield batch


def storage_target() -> TargetConfig:
    """A storage-quota forecast: 5m step, horizons 1h/6h/24h, a threshold (19 rows a series)."""
    return decode_section(
        TargetConfig,
        {
            "name": "bench",
            "selector": "storage_used_bytes",
            "step": "5m",
            "history": "3d",
            "horizons": ["1h", "6h", "24h"],
            "threshold": {"value": 1e12},
        },
    )


def storage_labels(n_series: int) -> tuple[Labels, ...]:
    """``n_series`` label sets of the metric ``storage_target`` selects, one user each."""
    return tuple(
        (
            ("__name__", "storage_used_bytes"),
            ("cluster", f"c{i % 7}"),
            ("instance", f"host-{i:05d}:9100"),
            ("job", "node"),
            ("user", f"u{i}"),
        )
        for i in range(n_series)
    )


def main(freeze: bool = False) -> None:
    cfg = storage_target()
    rng = np.random.default_rng(0)
    labels = storage_labels(N_SERIES)
    batch = GridBatch("bench", labels, rng.random((N_SERIES, 12)) * 1e12, 300_000, 300_000)
    prediction = rng.random((N_SERIES, 3, 288)) * 1.2e12
    errors = rng.random((N_SERIES, 3))
    builder = ForecastOutputBuilder(cfg, end_series=True)
    now = batch.end_ms + 30_000
    t0 = time.perf_counter()
    builder.build(batch, prediction, now_ms=now, errors=errors)
    first = time.perf_counter() - t0
    if freeze:
        # What the daemon can do once its caches are warm: long-lived objects leave the
        # collector's generations, so it stops traversing them at every collection.
        gc.freeze()
    build, rows, text, encode = [], [], [], []
    for _ in range(5):
        t0 = time.perf_counter()
        out = builder.build(batch, prediction, now_ms=now, errors=errors)
        t1 = time.perf_counter()
        items = out.writes()
        t2 = time.perf_counter()
        render_exposition([out])
        t3 = time.perf_counter()
        for chunk in batches(items, SAMPLES_PER_SEND):
            encode_write_request(chunk)
        t4 = time.perf_counter()
        build.append(t1 - t0)
        rows.append(t2 - t1)
        text.append(t3 - t2)
        encode.append(t4 - t3)
    print(f"{N_SERIES} series -> {len(out)} rows per forecast")
    print(f"first build (labels cached): {first * 1e3:.0f} ms")
    for what, times in (
        ("build", build),
        ("writes()", rows),
        ("exposition", text),
        ("RW1 encode", encode),
    ):
        t = statistics.median(times)
        print(f"{what:>18}: {t * 1e3:7.1f} ms  {N_SERIES / t:10,.0f} series/s")
    t = statistics.median(build) + statistics.median(rows) + statistics.median(encode)
    print(f"{'build+send':>18}: {t * 1e3:7.1f} ms  {N_SERIES / t:10,.0f} series/s")


if __name__ == "__main__":
    main(freeze="--freeze" in sys.argv)
