"""Backfill: read each target's history by remote-read and put it into the store.

Reading is asynchronous and bounded (``concurrency`` targets at once; each read
splits its range into sub-queries of its own, bounded by the read client). The
store is only touched by :func:`install`, a plain function for the ingest thread,
which reconfigures the store's targets, appends every backfilled sample and points
the receiver at the new selectors in one go: no received sample can slip in
between, which matters for aggregating targets (a step finalised by a new sample
would make the older backfilled samples late).

A read that fails in a way worth retrying (unreachable, 5xx, a cut-off body) is tried again,
``BACKFILL_ATTEMPTS`` times in all, after 1, 2, 4... seconds (or the server's ``Retry-After``, at
most ``MAX_RETRY_WAIT_S``); one the server refused for good (4xx) is not. A target whose read
still fails is logged and starts with what it receives: an unreachable Prometheus must not keep
the daemon from forecasting at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from tsf_adapter.config import TargetConfig
from tsf_adapter.core.errors import RecoverableError
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.series import SeriesSamples
from tsf_adapter.remote.ingest import Ingester
from tsf_adapter.remote.read_client import RemoteReadClient
from tsf_adapter.store.store import Store

logger = logging.getLogger("tsf_adapter.backfill")

# Tries of one target's read when it fails in a way worth retrying; the waits double from 1 s.
BACKFILL_ATTEMPTS: Final = 4
MAX_RETRY_WAIT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Backfilled:
    """The history read for one store target (empty when the read failed)."""

    spec: TargetConfig
    series: list[SeriesSamples]

    @property
    def samples(self) -> int:
        return sum(len(s) for s in self.series)


async def read_with_retries(
    client: RemoteReadClient,
    spec: TargetConfig,
    start_ms: int,
    end_ms: int,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[SeriesSamples]:
    """``client.read`` of one target, retried on a ``RecoverableError`` (see the module docstring)."""
    attempt = 1
    while True:
        try:
            return await client.read(spec.selector, start_ms, end_ms)
        except RecoverableError as exc:
            if attempt >= BACKFILL_ATTEMPTS:
                raise
            wait = min(
                MAX_RETRY_WAIT_S, exc.retry_after if exc.retry_after is not None else 2.0 ** (attempt - 1)
            )
            logger.warning(
                "backfill: target %s: remote-read failed (try %d of %d), again in %gs: %s",
                spec.name,
                attempt,
                BACKFILL_ATTEMPTS,
                wait,
                exc,
            )
            await sleep(wait)
            attempt += 1


async def read_history(
    client: RemoteReadClient,
    specs: Sequence[TargetConfig],
    now_ms: int,
    *,
    concurrency: int = 2,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[Backfilled]:
    """Read ``[now - history, now]`` of every spec, ``concurrency`` specs at a time, logging progress."""
    semaphore = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(spec: TargetConfig) -> Backfilled:
        nonlocal done
        async with semaphore:
            start_ms = now_ms - round(spec.history * 1000)
            try:
                series = await read_with_retries(client, spec, start_ms, now_ms, sleep=sleep)
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
