"""Backfill: read each target's history by remote-read and put it into the store.

Reading is asynchronous and bounded (``concurrency`` targets at once; each read
splits its range into sub-queries of its own, bounded by the read client). The
store is only touched by :func:`install`, a plain function for the ingest thread,
which reconfigures the store's targets, appends every backfilled sample and points
the receiver at the new selectors in one go: no received sample can slip in
between, which matters for aggregating targets (a step finalised by a new sample
would make the older backfilled samples late).

A target whose read fails is logged and starts with what it receives: an
unreachable Prometheus must not keep the daemon from forecasting at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tsf_adapter.config import TargetConfig
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.series import SeriesSamples
from tsf_adapter.remote.ingest import Ingester
from tsf_adapter.remote.read_client import RemoteReadClient
from tsf_adapter.store.store import Store

logger = logging.getLogger("tsf_adapter.backfill")


@dataclass(frozen=True, slots=True)
class Backfilled:
    """The history read for one store target (empty when the read failed)."""

    spec: TargetConfig
    series: list[SeriesSamples]

    @property
    def samples(self) -> int:
        return sum(len(s) for s in self.series)


async def read_history(
    client: RemoteReadClient, specs: Sequence[TargetConfig], now_ms: int, *, concurrency: int = 2
) -> list[Backfilled]:
    """Read ``[now - history, now]`` of every spec, ``concurrency`` specs at a time, logging progress."""
    semaphore = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(spec: TargetConfig) -> Backfilled:
        nonlocal done
        async with semaphore:
            start_ms = now_ms - round(spec.history * 1000)
            try:
                series = await client.read(spec.selector, start_ms, now_ms)
            except Exception as exc:
                series = []
                logger.warning(
                    "backfill: target %s: remote-read failed, starting without history: %s: %s",
                    spec.name,
                    type(exc).__name__,
                    exc,
                )
            done += 1
            result = Backfilled(spec, series)
            logger.info(
                "backfill: target %s: %d series, %d samples (%d/%d targets)",
                spec.name,
                len(series),
                result.samples,
                done,
                len(specs),
            )
            return result

    return list(await asyncio.gather(*(one(spec) for spec in specs)))


def install(
    store: Store,
    ingester: Ingester,
    specs: Iterable[TargetConfig],
    selectors: Sequence[Selector],
    history: Sequence[Backfilled],
) -> int:
    """Ingest thread: switch the store to ``specs``, append ``history``, select ``selectors``.

    Returns the number of samples stored. Series outside every target are skipped.
    """
    store.reconfigure(specs)
    refs: list[np.ndarray] = []
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for item in history:
        for series in item.series:
            if len(series) == 0:
                continue
            ref = store.series_ref(series.labels)
            if ref is None:
                continue
            refs.append(np.full(len(series), ref, dtype=np.int64))
            times.append(series.timestamps)
            values.append(series.values)
    stored = 0
    if refs:
        all_refs = np.concatenate(refs)
        store.append(all_refs, np.concatenate(times), np.concatenate(values))
        stored = int(all_refs.size)
    ingester.set_selectors(selectors)
    return stored
