"""Forecast output build speed: 10,000 series x 3 horizons x 3 quantiles, with threshold, errors and info.

Run: ``python -m bench.output_build [--freeze]`` (medians of 5 runs; the first build fills the label
cache; ``--freeze`` calls ``gc.freeze()`` after it, as a daemon can once warm).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time

import numpy as np

from tsf_adapter.config import TargetConfig, decode_section
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.pipeline.output import ForecastOutputBuilder, render_exposition
from tsf_adapter.remote.codec import encode_write_request

N_SERIES = 10_000


def main(freeze: bool = False) -> None:
    cfg = decode_section(
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
    rng = np.random.default_rng(0)
    labels = tuple(
        (
            ("__name__", "storage_used_bytes"),
            ("cluster", f"c{i % 7}"),
            ("instance", f"host-{i:05d}:9100"),
            ("job", "node"),
            ("user", f"u{i}"),
        )
        for i in range(N_SERIES)
    )
    batch = GridBatch("bench", labels, rng.random((N_SERIES, 12)) * 1e12, 300_000, 300_000)
    prediction = rng.random((N_SERIES, 3, 288)) * 1.2e12
    errors = rng.random((N_SERIES, 3))
    builder = ForecastOutputBuilder(cfg)
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
        samples = out.samples()
        t2 = time.perf_counter()
        render_exposition([out])
        t3 = time.perf_counter()
        encode_write_request(samples[:20_000])
        t4 = time.perf_counter()
        build.append(t1 - t0)
        rows.append(t2 - t1)
        text.append(t3 - t2)
        encode.append((t4 - t3) * len(samples) / 20_000)
    n_rows = len(out)
    print(f"{N_SERIES} series -> {n_rows} rows per forecast")
    print(f"first build (labels cached): {first * 1e3:.0f} ms")
    for what, times in (
        ("build", build),
        ("samples()", rows),
        ("exposition", text),
        ("RW1 encode (est.)", encode),
    ):
        t = statistics.median(times)
        print(f"{what:>18}: {t * 1e3:7.1f} ms  {N_SERIES / t:10,.0f} series/s")
    t = statistics.median(build) + statistics.median(rows)
    print(f"{'build+samples':>18}: {t * 1e3:7.1f} ms  {N_SERIES / t:10,.0f} series/s")


if __name__ == "__main__":
    main(freeze="--freeze" in sys.argv)
