"""Series store: bytes per stored point and per series, and append cost per sample.

Run: ``python -m bench.store_memory [--series 2000] [--history-steps 2880] [--batches 300]``

Memory is measured with tracemalloc around building a store, registering the
series (7 labels each, as the receiver would) and filling its whole history.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from tsf_adapter.config import AggregateConfig, TargetConfig
from tsf_adapter.core.selector import Matcher, MatchOp, Selector
from tsf_adapter.core.series import Labels, make_labels
from tsf_adapter.forecast.baselines import HoltWinters, PredictLinear
from tsf_adapter.store.store import Store

STEP_MS = 60_000
T0 = 1_699_999_920_000


def series_labels(n: int) -> list[Labels]:
    return [
        make_labels(
            {
                "__name__": "storage_used_bytes",
                "cluster": f"c{i % 4}",
                "group": f"g{i % 50}",
                "instance": f"node-{i // 20}:9100",
                "job": "storage",
                "storage_type": ("ssd", "hdd", "nvme")[i % 3],
                "volume": f"vol-{i}",
            }
        )
        for i in range(n)
    ]


def selector() -> Selector:
    return Selector((Matcher("__name__", MatchOp.EQ, "storage_used_bytes"),))


def raw_spec(history_steps: int) -> TargetConfig:
    return TargetConfig(name="raw", selector=selector(), history=history_steps * 60.0)


def agg_spec(history_steps: int) -> TargetConfig:
    agg = AggregateConfig(op="sum", by=("cluster", "group", "storage_type"))
    return TargetConfig(name="agg", selector=selector(), history=history_steps * 60.0, aggregate=agg)


def fill(store: Store, labels: list[Labels], steps: int) -> np.ndarray:
    refs = np.array([store.series_ref(lbl) for lbl in labels], dtype=np.int64)
    values = np.arange(len(labels), dtype=np.float64) * 1e9
    for k in range(steps):
        store.append(refs, np.full(refs.size, T0 + k * STEP_MS, dtype=np.int64), values + k)
    return refs


def memory(specs: list[TargetConfig], n: int, steps: int) -> tuple[int, int]:
    labels = series_labels(n)  # the receiver's objects, not the store's
    tracemalloc.start()
    store = Store(specs)
    fill(store, labels, steps)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    grid = sum(t.current_stats().nbytes for t in store.targets.values())
    return current, grid


def append_speed(specs: list[TargetConfig], n: int, batches: int) -> float:
    """Microseconds per sample for batches of ``n`` samples, one per series, time moving forward."""
    store = Store(specs)
    labels = series_labels(n)
    refs = fill(store, labels, 10)
    values = np.arange(n, dtype=np.float64)
    stamps = [np.full(n, T0 + (10 + k) * STEP_MS + 1_500, dtype=np.int64) for k in range(batches)]
    start = time.perf_counter()
    for ts in stamps:
        store.append(refs, ts, values)
    return (time.perf_counter() - start) / (batches * n) * 1e6


def read_speed(n: int, steps: int) -> None:
    """Reading a full GridBatch and running the PromQL baselines on it (12h range, 6h horizon)."""
    store = Store([raw_spec(steps)])
    fill(store, series_labels(n), steps)
    start = time.perf_counter()
    batch = store.batch("raw")
    read_ms = (time.perf_counter() - start) * 1e3
    assert batch is not None
    print(f"\nread: batch() of {batch.n_series} x {batch.n_steps}: {read_ms:.1f} ms")
    for model in (PredictLinear(range_s=12 * 3600), HoltWinters(range_s=12 * 3600)):
        start = time.perf_counter()
        model.predict(batch, 360)
        print(f"{model.name:<16}{(time.perf_counter() - start) * 1e3:>8.1f} ms for {n} series, 12h range")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--history-steps", type=int, default=2880, help="2 days of 60 s steps")
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    n, steps = args.series, args.history_steps

    print(f"memory: {n} series x {steps} steps (float64)")
    print(f"{'target':<12}{'total MiB':>10}{'grid B/point':>14}{'B/point':>10}{'other B/series':>16}")
    for name, spec in (("raw", raw_spec(steps)), ("sum by 3", agg_spec(steps))):
        total, grid = memory([spec], n, steps)
        points = n * steps
        print(
            f"{name:<12}{total / 2**20:>10.1f}{grid / points:>14.2f}{total / points:>10.2f}"
            f"{(total - grid) / n:>16.0f}"
        )

    print(f"\nappend: batches of {n} samples of {n} distinct known series")
    for name, specs in (
        ("raw", [raw_spec(steps)]),
        ("sum by 3", [agg_spec(steps)]),
        ("raw + sum", [raw_spec(steps), agg_spec(steps)]),
    ):
        best = min(append_speed(specs, n, args.batches) for _ in range(3))
        print(f"{name:<12}{best:>8.3f} us/sample  ({best * n / 1000:.2f} ms per batch)")
    read_speed(n, steps)


if __name__ == "__main__":
    main()
