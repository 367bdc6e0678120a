"""The remote-write queue: batching, retries with backoff, and back-pressure.

A small version of Prometheus's ``queue_manager.go`` for our traffic, which is
bursts of forecasts rather than a continuous scrape stream:

* ``put()`` appends series and waits while ``capacity`` samples are already
  held (queued plus the batch in flight), so a slow receiver slows producers
  instead of growing memory. It takes ``SeriesSamples`` and ``SampleBlock``
  items: a forecast hands over its rows as one columnar block, which costs no
  object per row here and is encoded straight from its columns.
* One sender task takes up to ``max_samples_per_send`` samples at a time, or a
  partial batch once the oldest queued sample has waited
  ``batch_send_deadline``. A single sender keeps every series in order, which
  the spec requires and Prometheus enforces (an out-of-order sample fails the
  whole request); a long series, or a long block, is split across batches in
  order.
* ``RecoverableError`` is retried forever with exponential backoff
  (``min_backoff`` doubling to ``max_backoff``, with jitter so that many
  adapters do not retry in step), or after ``retry_after`` when the server asks
  for longer. ``WriteRejected`` drops the batch, counted by reason.
* ``close()`` stops accepting, flushes within a deadline, then cancels and
  counts what is left as dropped with reason ``shutdown``.

Time comes from an injectable ``Clock`` so tests control it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tsf_adapter.config import QueueConfig
from tsf_adapter.core.clock import Clock, SystemClock
from tsf_adapter.core.errors import RecoverableError, TsfAdapterError, WriteRejected
from tsf_adapter.core.protocol import RW1_MESSAGE
from tsf_adapter.core.series import SampleBlock, SeriesSamples, WriteItem
from tsf_adapter.remote.codec import encode_write_request
from tsf_adapter.remote.write_client import WriteClient

logger = logging.getLogger("tsf_adapter.remote.write")

# A retry waits between (1 - JITTER) and 1 times the current backoff: never longer than
# max_backoff, and spread enough that restarted adapters do not hammer a receiver together.
JITTER: Final = 0.2

DROP_SHUTDOWN: Final = "shutdown"
DROP_INVALID: Final = "invalid"
DROP_ERROR: Final = "error"


@dataclass(slots=True)
class QueueStats:
    """Counters for the metrics module; updated in place, read at scrape time."""

    samples_sent: int = 0
    # By reason: ``http_<status>`` for a rejecting receiver, ``invalid`` for series the
    # codec refused, ``error`` for an unexpected failure, ``shutdown`` for what close() left.
    samples_dropped: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    batches_sent: int = 0
    # Unix seconds of the last successful send; 0 until the first one.
    last_success_timestamp: float = 0.0
    # Samples held: queued plus the batch being sent.
    queue_length: int = 0


def drop_reason(exc: WriteRejected) -> str:
    """The ``samples_dropped`` key for a rejection: ``http_<status>`` or ``rejected``."""
    return f"http_{exc.status}" if exc.status is not None else "rejected"


class WriteQueue:
    """Batches series and sends them through a ``WriteClient`` in the background.

    Usage::

        queue = WriteQueue(RemoteWriteClient(cfg, session), cfg.queue, message=cfg.protobuf_message)
        queue.start()
        await queue.put([SeriesSamples(labels, [now_ms], [42.0]), SampleBlock(rows, now_ms, values)])
        ...
        await queue.close()          # flushes within cfg.queue.flush_deadline
        queue.stats.samples_sent

    ``message`` picks the encoding and must match what the client announces.
    """

    def __init__(
        self,
        client: WriteClient,
        cfg: QueueConfig,
        *,
        message: str = RW1_MESSAGE,
        clock: Clock | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._cfg = cfg
        self._message = message
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._jitter = jitter
        self.stats = QueueStats()
        # (arrival on the monotonic clock, series): arrival drives the partial-batch deadline.
        self._pending: deque[tuple[float, WriteItem]] = deque()
        self._pending_samples = 0
        self._inflight_samples = 0
        self._data = asyncio.Event()
        # Replaced on every notification, so one set() wakes all current waiters (a broadcast
        # without a lock, unlike asyncio.Condition).
        self._space = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False

    # --- producer side ---------------------------------------------------------------------

    async def put(self, series: Sequence[WriteItem]) -> None:
        """Queue ``series``; waits while the queue holds ``capacity`` samples or more.

        A put that arrives after ``close()`` began is dropped and counted as
        ``shutdown``: during shutdown producers may still be finishing a round.
        """
        items = [s for s in series if len(s) > 0]
        n = sum(len(s) for s in items)
        if n == 0:
            return
        while not self._closing and self._held() >= self._cfg.capacity:
            await self._space.wait()
        if self._closing:
            self._drop(n, DROP_SHUTDOWN, "queue is closing")
            return
        now = self._clock.monotonic()
        self._pending.extend((now, s) for s in items)
        self._pending_samples += n
        self._update_length()
        self._data.set()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender task. Does not block; calling it again does nothing."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="tsf-adapter remote-write queue"
            )

    async def close(self, deadline: float | None = None) -> None:
        """Stop accepting, flush within ``deadline`` seconds, then drop the rest.

        ``deadline`` defaults to ``cfg.flush_deadline``. What is still queued or
        in flight when it passes is counted in ``samples_dropped["shutdown"]``.
        """
        if self._closed:
            return
        self._closing = True
        self._data.set()
        self._notify_space()
        timeout = self._cfg.flush_deadline if deadline is None else deadline
        task = self._task
        if task is not None and not task.done():
            await self._race(task, timeout)
            if not task.done():
                task.cancel("remote-write flush deadline passed")
                with suppress(asyncio.CancelledError):
                    await task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("remote-write sender failed", exc_info=task.exception())
        left = self._pending_samples + self._inflight_samples
        self._pending.clear()
        self._pending_samples = self._inflight_samples = 0
        self._update_length()
        if left:
            self._drop(left, DROP_SHUTDOWN, f"not sent within the {timeout}s flush deadline")
        self._closed = True

    async def __aenter__(self) -> WriteQueue:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- sender side -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            await self._send(batch)
            # Not in a finally: when close() cancels a send, these samples count as dropped.
            self._inflight_samples = 0
            self._update_length()
            self._notify_space()

    async def _next_batch(self) -> list[WriteItem] | None:
        """Wait for a full batch, the oldest sample's deadline, or close(); None when done."""
        while True:
            # Cleared before checking, so a put() between the check and the wait is not lost.
            self._data.clear()
            if not self._pending:
                if self._closing:
                    return None
                await self._data.wait()
                continue
            if self._closing or self._pending_samples >= self._cfg.max_samples_per_send:
                return self._take_batch()
            oldest = self._pending[0][0]
            remaining = oldest + self._cfg.batch_send_deadline - self._clock.monotonic()
            if remaining <= 0:
                return self._take_batch()
            await self._race(asyncio.ensure_future(self._data.wait()), remaining, cancel=True)

    def _take_batch(self) -> list[WriteItem]:
        room = self._cfg.max_samples_per_send
        batch: list[WriteItem] = []
        while self._pending and room > 0:
            arrived, head = self._pending[0]
            if len(head) <= room:
                self._pending.popleft()
                batch.append(head)
                room -= len(head)
            else:
                # Split a long series or block: its first part now, the rest stays first in line.
                first, rest = _split(head, room)
                batch.append(first)
                self._pending[0] = (arrived, rest)
                room = 0
        taken = self._cfg.max_samples_per_send - room
        self._pending_samples -= taken
        self._inflight_samples = taken
        return batch

    async def _send(self, batch: list[WriteItem]) -> None:
        """Send one batch until it is delivered or rejected; retries never give up."""
        n = sum(len(s) for s in batch)
        try:
            body = encode_write_request(batch, message=self._message)
        except (TsfAdapterError, ValueError) as exc:
            self._drop(n, DROP_INVALID, f"could not encode: {exc}")
            return
        backoff = self._cfg.min_backoff
        attempt = 0
        while True:
            try:
                await self._client.store(body, samples=n)
            except RecoverableError as exc:
                delay = backoff * (1.0 - JITTER * self._jitter())
                if exc.retry_after is not None and exc.retry_after > delay:
                    delay = exc.retry_after
                attempt += 1
                self.stats.retries += 1
                # Once per batch at warning level: an outage must be visible without one line per try.
                log = logger.warning if attempt == 1 else logger.debug
                log("remote write failed, retrying in %.3gs (attempt %d): %s", delay, attempt, exc)
                await self._clock.sleep(delay)
                backoff = min(backoff * 2, self._cfg.max_backoff)
                continue
            except WriteRejected as exc:
                self._drop(n, drop_reason(exc), str(exc), series=_series_count(batch))
                return
            except Exception:
                # A bug in a client must not stop the queue; the batch is lost, loudly.
                logger.exception("remote write failed unexpectedly; dropping %d samples", n)
                self._count_drop(n, DROP_ERROR)
                return
            self.stats.samples_sent += n
            self.stats.batches_sent += 1
            self.stats.last_success_timestamp = self._clock.time()
            return

    # --- helpers ---------------------------------------------------------------------------

    async def _race(self, fut: asyncio.Future[Any], seconds: float, *, cancel: bool = False) -> None:
        """Wait for ``fut`` or ``seconds`` on our clock (not asyncio's), whichever is first."""
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({fut, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            if cancel:
                fut.cancel()
            await asyncio.gather(sleeper, *([fut] if cancel else []), return_exceptions=True)

    def _held(self) -> int:
        return self._pending_samples + self._inflight_samples

    def _update_length(self) -> None:
        self.stats.queue_length = self._held()

    def _notify_space(self) -> None:
        self._space.set()
        self._space = asyncio.Event()

    def _count_drop(self, samples: int, reason: str) -> None:
        dropped = self.stats.samples_dropped
        dropped[reason] = dropped.get(reason, 0) + samples

    def _drop(self, samples: int, reason: str, detail: str, *, series: int | None = None) -> None:
        self._count_drop(samples, reason)
        what = f"{samples} samples" if series is None else f"{samples} samples in {series} series"
        logger.error("dropping %s (%s): %s", what, reason, detail)


def _split(item: WriteItem, n: int) -> tuple[WriteItem, WriteItem]:
    """The first ``n`` samples of a series (or rows of a block) and the rest."""
    if isinstance(item, SampleBlock):
        return item.split(n)
    return (
        SeriesSamples(item.labels, item.timestamps[:n], item.values[:n]),
        SeriesSamples(item.labels, item.timestamps[n:], item.values[n:]),
    )


def _series_count(batch: Sequence[WriteItem]) -> int:
    """Series in a batch: a block is one series per row."""
    return sum(len(item) if isinstance(item, SampleBlock) else 1 for item in batch)


class QueueCollector(Collector):
    """Exposes a write queue's ``QueueStats`` at scrape time."""

    def __init__(self, stats: QueueStats, remote_name: str, url: str) -> None:
        self.stats = stats
        self.labels = {"remote_name": remote_name, "url": url}

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        names, values = list(self.labels), list(self.labels.values())
        prefix = "tsf_adapter_remote_write"
        sent = CounterMetricFamily(f"{prefix}_samples_sent", "Samples written to the remote.", labels=names)
        sent.add_metric(values, self.stats.samples_sent)
        yield sent
        dropped = CounterMetricFamily(
            f"{prefix}_samples_dropped", "Samples given up on, by reason.", labels=[*names, "reason"]
        )
        for reason, count in sorted(self.stats.samples_dropped.items()):
            dropped.add_metric([*values, reason], count)
        yield dropped
        retries = CounterMetricFamily(
            f"{prefix}_retries", "Batches retried after a recoverable error.", labels=names
        )
        retries.add_metric(values, self.stats.retries)
        yield retries
        batches = CounterMetricFamily(
            f"{prefix}_batches_sent", "Requests written successfully.", labels=names
        )
        batches.add_metric(values, self.stats.batches_sent)
        yield batches
        length = GaugeMetricFamily(f"{prefix}_queue_length", "Samples queued or in flight.", labels=names)
        length.add_metric(values, self.stats.queue_length)
        yield length
        last = GaugeMetricFamily(
            f"{prefix}_last_success_timestamp_seconds",
            "Unix time of the last successful write.",
            labels=names,
        )
        last.add_metric(values, self.stats.last_success_timestamp)
        yield last
