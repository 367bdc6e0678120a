"""The remote-write queue: batching, retries with backoff, and a bound for outages.

A small version of Prometheus's ``queue_manager.go`` for our traffic, which is
bursts of forecasts rather than a continuous scrape stream:

* ``put()`` appends series and never waits, so a receiver that is down never
  stops the forecasts themselves. It takes ``SeriesSamples`` and ``SampleBlock``
  items: a forecast hands over its rows as one columnar block, which costs no
  object per row here and is encoded straight from its columns.
* The queue holds at most ``capacity`` samples (queued plus the batch in
  flight). A put that would go past it drops the oldest queued items, whole,
  counted as ``queue_full``: when Prometheus is back, the newest forecasts are
  the ones worth having. The batch in flight is never dropped for room, and what
  stays keeps its order. One put larger than ``capacity`` on its own is kept
  whole (a forecast cut in part is worse than an older one dropped), so the
  bound is then that put plus the batch in flight.
* Samples older than ``sample_age_limit`` (their timestamps against the
  clock's ``time()``) are dropped before every attempt, counted as
  ``too_old``: Prometheus 2.42 rejects a request holding one sample older than
  about an hour before its newest, so retrying them only delays the rest.
* One sender task takes up to ``max_samples_per_send`` samples at a time, or a
  partial batch once the oldest queued sample has waited
  ``batch_send_deadline``. A single sender keeps every series in order, which
  the spec requires and Prometheus enforces (an out-of-order sample fails the
  whole request); a long series, or a long block, is split across batches in
  order.
* ``RecoverableError`` is retried with exponential backoff (``min_backoff``
  doubling to ``max_backoff``, with jitter so that many adapters do not retry
  in step), or after ``retry_after`` when the server asks for longer, until the
  batch is sent or has aged past ``sample_age_limit``; each retry is counted by
  reason. ``WriteRejected`` drops the batch, counted by reason.
* ``close()`` stops accepting, flushes within a deadline, then cancels and
  counts what is left as dropped with reason ``shutdown``.

Time comes from an injectable ``Clock`` so tests control it.
"""

from __future__ import annotations

import asyncio
import logging
import math
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
from tsf_adapter.config.fields import show_seconds
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
DROP_QUEUE_FULL: Final = "queue_full"
DROP_TOO_OLD: Final = "too_old"
RETRY_TIMEOUT: Final = "timeout"
RETRY_NETWORK: Final = "network"
# The reasons the queue decides itself are exported at 0 from the start (``http_<status>`` ones
# appear with their first count): a series that first shows up already incremented hides that
# increment from increase() and rate(), and so from the alert on drops.
DROP_REASONS: Final = (DROP_QUEUE_FULL, DROP_TOO_OLD, DROP_INVALID, DROP_ERROR, DROP_SHUTDOWN)
RETRY_REASONS: Final = (RETRY_TIMEOUT, RETRY_NETWORK)

# Drops that repeat for as long as an outage lasts (queue_full, too_old) are logged at most this
# often per reason, with the count since the last line: visible, without a line per forecast.
DROP_LOG_INTERVAL: Final = 30.0


@dataclass(slots=True)
class QueueStats:
    """Counters for the metrics module; updated in place, read at scrape time."""

    samples_sent: int = 0
    # By reason: ``http_<status>`` for a rejecting receiver, ``invalid`` for series the
    # codec refused, ``error`` for an unexpected failure, ``shutdown`` for what close() left.
    # ``queue_full`` for the oldest queued samples dropped to make room, ``too_old`` for samples
    # past sample_age_limit.
    samples_dropped: dict[str, int] = field(default_factory=dict)
    # Retries by what failed: ``http_<status>``, ``timeout`` or ``network``.
    retries: dict[str, int] = field(default_factory=dict)
    batches_sent: int = 0
    # Unix seconds of the last successful send; 0 until the first one.
    last_success_timestamp: float = 0.0
    # Samples held: queued plus the batch being sent.
    queue_length: int = 0
    # The configured bound on queue_length (exceeded only by one put larger than it).
    capacity: int = 0


def drop_reason(exc: WriteRejected) -> str:
    """The ``samples_dropped`` key for a rejection: ``http_<status>`` or ``rejected``."""
    return f"http_{exc.status}" if exc.status is not None else "rejected"


def retry_reason(exc: RecoverableError) -> str:
    """The ``retries`` key for a failure worth retrying: ``http_<status>``, ``timeout`` or ``network``.

    A timeout is told apart from a refused connection because they call for different fixes
    (a receiver too slow for ``timeout`` against one that is down).
    """
    if exc.status is not None:
        return f"http_{exc.status}"
    return RETRY_TIMEOUT if isinstance(exc.__cause__, TimeoutError) else RETRY_NETWORK


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
        self.stats = QueueStats(capacity=cfg.capacity)
        # (arrival on the monotonic clock, series): arrival drives the partial-batch deadline.
        self._pending: deque[tuple[float, WriteItem]] = deque()
        self._pending_samples = 0
        self._inflight_samples = 0
        self._data = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._drop_log = _DropLog(self._clock)
        self._warned_oversize = False

    # --- producer side ---------------------------------------------------------------------

    async def put(self, series: Sequence[WriteItem]) -> None:
        """Queue ``series``; never waits (a coroutine for the producers' ``Send`` signature).

        Past ``capacity``, the oldest queued items make room and are counted as
        ``queue_full``; queued items already past ``sample_age_limit`` go first, as
        ``too_old``. A put that arrives after ``close()`` began is dropped and counted
        as ``shutdown``: during shutdown producers may still be finishing a round.
        """
        items = [s for s in series if len(s) > 0]
        n = sum(len(s) for s in items)
        if n == 0:
            return
        if self._closing:
            self._drop(n, DROP_SHUTDOWN, "queue is closing")
            return
        self._expire_pending()
        self._make_room(n)
        now = self._clock.monotonic()
        self._pending.extend((now, s) for s in items)
        self._pending_samples += n
        self._update_length()
        self._data.set()

    def _make_room(self, n: int) -> None:
        """Drop the oldest queued items, whole, until ``n`` more samples fit in ``capacity``.

        Whole items, because an item is one forecast's rows: a forecast is delivered complete
        or not at all. The batch in flight stays (it may be half-written already, and it is
        older than anything queued, so order holds); so does the new put when it is larger
        than ``capacity`` on its own.
        """
        capacity = self._cfg.capacity
        dropped = 0
        while self._pending and self._held() + n > capacity:
            _, oldest = self._pending.popleft()
            self._pending_samples -= len(oldest)
            dropped += len(oldest)
        if dropped:
            detail = f"the queue is at its capacity of {capacity} samples, so the oldest make room"
            self._drop_quietly(dropped, DROP_QUEUE_FULL, detail)
        if n > capacity and not self._warned_oversize:
            self._warned_oversize = True
            logger.warning(
                "a put of %d samples is larger than the queue's capacity of %d: kept whole, but it "
                "displaces everything queued before it; raise queue.capacity above one round of forecasts",
                n,
                capacity,
            )

    def _expire_pending(self) -> None:
        """Drop queued items past ``sample_age_limit``, from the oldest, up to the first fresh one.

        Items arrive in time order (a forecast is stamped when it is made), so the stale ones
        are at the head; anything this misses is still checked before it is sent. Run before
        ``_make_room`` so that samples Prometheus would refuse anyway count as ``too_old``,
        not as room made.
        """
        cutoff = self._cutoff_ms()
        if cutoff is None:
            return
        dropped = 0
        while self._pending:
            arrived, head = self._pending[0]
            kept = _fresh(head, cutoff)
            if kept is head:
                break
            dropped += len(head) - len(kept)
            if len(kept):
                self._pending[0] = (arrived, kept)
                break
            self._pending.popleft()
        if dropped:
            self._pending_samples -= dropped
            self._drop_too_old_note(dropped)

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
        self._drop_log.flush()
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
        """Send one batch until it is delivered, rejected, or too old to be worth sending.

        Before every attempt the samples past ``sample_age_limit`` leave the batch: while
        Prometheus is down a batch would otherwise be retried forever, and once it is back it
        would refuse the whole request for one sample too old.
        """
        backoff = self._cfg.min_backoff
        attempt = n = 0
        body: bytes | None = None
        while True:
            fresh = self._drop_too_old(batch)
            if body is None or fresh is not batch:
                batch = fresh
                n = sum(len(s) for s in batch)
                if n == 0:
                    return
                try:
                    body = encode_write_request(batch, message=self._message)
                except (TsfAdapterError, ValueError) as exc:
                    self._drop(n, DROP_INVALID, f"could not encode: {exc}")
                    return
            try:
                await self._client.store(body, samples=n)
            except RecoverableError as exc:
                delay = backoff * (1.0 - JITTER * self._jitter())
                if exc.retry_after is not None and exc.retry_after > delay:
                    delay = exc.retry_after
                attempt += 1
                retries = self.stats.retries
                reason = retry_reason(exc)
                retries[reason] = retries.get(reason, 0) + 1
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

    def _drop_too_old(self, batch: list[WriteItem]) -> list[WriteItem]:
        """``batch`` without its samples past ``sample_age_limit``; the same list when none are."""
        cutoff = self._cutoff_ms()
        if cutoff is None:
            return batch
        kept = [_fresh(item, cutoff) for item in batch]
        if all(k is item for k, item in zip(kept, batch, strict=True)):
            return batch
        dropped = sum(len(item) for item in batch) - sum(len(k) for k in kept)
        self._inflight_samples -= dropped
        self._update_length()
        self._drop_too_old_note(dropped)
        return [k for k in kept if len(k)]

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

    def _cutoff_ms(self) -> int | None:
        """The oldest timestamp still worth sending, in ms; None when ``sample_age_limit`` is 0."""
        limit = self._cfg.sample_age_limit
        if limit <= 0:
            return None
        return math.ceil((self._clock.time() - limit) * 1000)

    def _drop_too_old_note(self, samples: int) -> None:
        limit = show_seconds(self._cfg.sample_age_limit)
        self._drop_quietly(samples, DROP_TOO_OLD, f"older than sample_age_limit ({limit})")

    def _held(self) -> int:
        return self._pending_samples + self._inflight_samples

    def _update_length(self) -> None:
        self.stats.queue_length = self._held()

    def _count_drop(self, samples: int, reason: str) -> None:
        dropped = self.stats.samples_dropped
        dropped[reason] = dropped.get(reason, 0) + samples

    def _drop(self, samples: int, reason: str, detail: str, *, series: int | None = None) -> None:
        self._count_drop(samples, reason)
        what = f"{samples} samples" if series is None else f"{samples} samples in {series} series"
        logger.error("dropping %s (%s): %s", what, reason, detail)

    def _drop_quietly(self, samples: int, reason: str, detail: str) -> None:
        """Count a drop that an outage repeats at every forecast; log it through ``_DropLog``."""
        self._count_drop(samples, reason)
        self._drop_log.add(reason, samples, detail)


class _DropLog:
    """Warns about drops of one reason at most once per ``DROP_LOG_INTERVAL``, with their count.

    For the drops an outage repeats at every forecast (``queue_full``, ``too_old``): the
    first is logged at once, the next ones are summed into one line per interval, and
    ``flush()`` reports the rest on close. The metric counts every one as it happens.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def add(self, reason: str, samples: int, detail: str) -> None:
        self._unlogged[reason] = self._unlogged.get(reason, 0) + samples
        now = self._clock.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < DROP_LOG_INTERVAL:
            return
        since = "" if last is None else f" in the last {now - last:.0f}s"
        logger.warning("dropped %d samples (%s)%s: %s", self._unlogged.pop(reason), reason, since, detail)
        self._last[reason] = now

    def flush(self) -> None:
        for reason, samples in sorted(self._unlogged.items()):
            logger.warning("dropped %d samples (%s) since the last report", samples, reason)
        self._unlogged.clear()


def _split(item: WriteItem, n: int) -> tuple[WriteItem, WriteItem]:
    """The first ``n`` samples of a series (or rows of a block) and the rest."""
    if isinstance(item, SampleBlock):
        return item.split(n)
    return (
        SeriesSamples(item.labels, item.timestamps[:n], item.values[:n]),
        SeriesSamples(item.labels, item.timestamps[n:], item.values[n:]),
    )


def _fresh(item: WriteItem, cutoff_ms: int) -> WriteItem:
    """``item`` without its samples stamped before ``cutoff_ms``; ``item`` itself when none are."""
    if isinstance(item, SampleBlock):
        return item if item.timestamp_ms >= cutoff_ms else item.split(0)[0]
    keep = item.timestamps >= cutoff_ms
    if keep.all():
        return item
    return SeriesSamples(item.labels, item.timestamps[keep], item.values[keep])


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
        for reason, count in _with_zeros(self.stats.samples_dropped, DROP_REASONS):
            dropped.add_metric([*values, reason], count)
        yield dropped
        retries = CounterMetricFamily(
            f"{prefix}_retries",
            "Batches retried after a recoverable error, by what failed.",
            labels=[*names, "reason"],
        )
        for reason, count in _with_zeros(self.stats.retries, RETRY_REASONS):
            retries.add_metric([*values, reason], count)
        yield retries
        batches = CounterMetricFamily(
            f"{prefix}_batches_sent", "Requests written successfully.", labels=names
        )
        batches.add_metric(values, self.stats.batches_sent)
        yield batches
        length = GaugeMetricFamily(f"{prefix}_queue_length", "Samples queued or in flight.", labels=names)
        length.add_metric(values, self.stats.queue_length)
        yield length
        capacity = GaugeMetricFamily(
            f"{prefix}_queue_capacity", "Samples the queue holds before it drops the oldest.", labels=names
        )
        capacity.add_metric(values, self.stats.capacity)
        yield capacity
        last = GaugeMetricFamily(
            f"{prefix}_last_success_timestamp_seconds",
            "Unix time of the last successful write.",
            labels=names,
        )
        last.add_metric(values, self.stats.last_success_timestamp)
        yield last


def _with_zeros(counts: dict[str, int], known: Sequence[str]) -> list[tuple[str, int]]:
    """``counts`` by reason, sorted, with every ``known`` reason present (0 when not counted yet)."""
    return sorted({**dict.fromkeys(known, 0), **counts}.items())
