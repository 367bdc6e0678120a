"""WriteQueue: batching, order, retries, the bound and age limit for outages, and shutdown.

Time is virtual (``FakeClock``): no assertion depends on how fast this machine
runs. Waiting for the sender uses ``eventually``, whose wall-clock timeout is a
safety net only. The client is faked at the seam; ``test_queue_faults.py`` runs
the real ``RemoteWriteClient`` against a scripted aiohttp receiver.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import snappy
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tsf_adapter.config import QueueConfig
from tsf_adapter.core.errors import RecoverableError, WriteRejected
from tsf_adapter.core.protocol import RW1_MESSAGE, RW2_MESSAGE
from tsf_adapter.core.series import Labels, SampleBlock, SeriesSamples, make_labels
from tsf_adapter.remote.codec import decode_write_request
from tsf_adapter.remote.queue import DROP_LOG_INTERVAL, QueueCollector, WriteQueue

# --- fakes ------------------------------------------------------------------------------------


class FakeClock:
    """Virtual time. ``auto``: every sleep advances time at once (for backoff sequences).

    Otherwise sleepers wait until ``advance()`` moves time past their wake-up.
    ``sleeps`` records every requested duration, in order. Wall time is the virtual
    time itself, seconds from the epoch, so samples stamped a few seconds after 0
    (``series()``) are recent and ``sample_age_limit`` applies as it would live.
    """

    def __init__(self, *, auto: bool) -> None:
        self.auto = auto
        self.now = 0.0
        self.sleeps: list[float] = []
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.auto:
            self.now += seconds
            await asyncio.sleep(0)
            return
        entry = (self.now + seconds, asyncio.get_running_loop().create_future())
        self.sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self.sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for wake, fut in self.sleepers:
            if wake <= self.now and not fut.done():
                fut.set_result(None)


class RecordingWriteClient:
    """The queue's seam: decodes what it is given and plays scripted outcomes."""

    def __init__(self, *outcomes: Exception | None, message: str = RW1_MESSAGE) -> None:
        self.outcomes: deque[Exception | None] = deque(outcomes)
        self.message = message
        self.attempts = 0
        self.batches: list[list[SeriesSamples]] = []
        self.gate: asyncio.Event | None = None

    async def store(self, body: bytes, *, samples: int) -> None:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        outcome = self.outcomes.popleft() if self.outcomes else None
        if outcome is not None:
            raise outcome
        decoded = decode_write_request(snappy.decompress(body), message=self.message)
        assert decoded.samples == samples
        self.batches.append(decoded.series)

    def release(self) -> None:
        """Let a receiver held by ``gate`` answer."""
        if self.gate is not None:
            self.gate.set()

    @property
    def delivered(self) -> list[SeriesSamples]:
        return [s for batch in self.batches for s in batch]

    @property
    def batch_sizes(self) -> list[int]:
        return [sum(len(s) for s in batch) for batch in self.batches]


HANG_GUARD = 10.0


async def eventually(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate()`` holds; the timeout only guards against hangs.

    Polling, not an Event: the predicates read stats that production code has no
    reason to signal.
    """
    async with asyncio.timeout(HANG_GUARD):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def series(name: str, start: int, n: int, **labels: str) -> SeriesSamples:
    ts = np.arange(start, start + n, dtype=np.int64) * 1000
    return SeriesSamples(make_labels({"__name__": name, **labels}), ts, ts.astype(np.float64) / 7)


def joined(items: list[SeriesSamples]) -> dict[Labels, SeriesSamples]:
    """Per series, all samples in the order they were seen."""
    out: dict[Labels, list[SeriesSamples]] = {}
    for s in items:
        out.setdefault(s.labels, []).append(s)
    return {
        labels: SeriesSamples(
            labels, np.concatenate([p.timestamps for p in parts]), np.concatenate([p.values for p in parts])
        )
        for labels, parts in out.items()
    }


def make_queue(client: Any, clock: FakeClock, **cfg: Any) -> WriteQueue:
    defaults: dict[str, Any] = {
        "max_samples_per_send": 10,
        "capacity": 100,
        "batch_send_deadline": 5.0,
        "min_backoff": 0.1,
        "max_backoff": 0.25,
    }
    return WriteQueue(client, QueueConfig(**{**defaults, **cfg}), clock=clock, jitter=lambda: 0.0)


# --- batching and order -----------------------------------------------------------------------


async def test_batches_are_full_then_partial_after_deadline() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=True)
    queue = make_queue(client, clock)
    sent = [series("a", 0, 9), series("b", 0, 9), series("c", 0, 9)]
    await queue.put(sent)
    queue.start()
    await eventually(lambda: queue.stats.samples_sent == 27)
    assert client.batch_sizes == [10, 10, 7]
    assert clock.sleeps == [5.0]  # only the last, partial batch waited
    assert joined(client.delivered) == joined(sent)
    assert queue.stats.batches_sent == 3
    assert queue.stats.queue_length == 0
    assert queue.stats.last_success_timestamp == clock.time()
    await queue.close()


async def test_partial_batch_waits_for_deadline_of_oldest_sample() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=False)
    queue = make_queue(client, clock)
    queue.start()
    await queue.put([series("a", 0, 2)])
    await eventually(lambda: len(clock.sleepers) == 1)
    clock.advance(3.0)
    await queue.put([series("a", 2, 2)])
    # The sender re-arms for the 2s left on the oldest sample, not a fresh 5s.
    await eventually(lambda: clock.sleeps == [5.0, 2.0])
    assert client.attempts == 0
    clock.advance(2.0)
    await eventually(lambda: client.batch_sizes == [4])
    assert client.delivered == [series("a", 0, 2), series("a", 2, 2)]
    await queue.close()


async def test_full_batch_goes_out_without_waiting() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=False)
    queue = make_queue(client, clock)
    queue.start()
    await queue.put([series("a", 0, 4), series("b", 0, 6)])
    await eventually(lambda: client.batch_sizes == [10])
    assert clock.now == 0.0
    await queue.close()


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 25)), min_size=1, max_size=12),
    per_send=st.integers(1, 12),
)
def test_every_sample_once_in_order_and_batches_bounded(sizes: list[tuple[str, int]], per_send: int) -> None:
    async def scenario() -> None:
        client, clock = RecordingWriteClient(), FakeClock(auto=True)
        queue = make_queue(client, clock, max_samples_per_send=per_send, capacity=1000)
        queue.start()
        sent, next_ts = [], dict.fromkeys("abc", 0)
        for name, n in sizes:
            sent.append(series("m", next_ts[name], n, id=name))
            next_ts[name] += n
            await queue.put(sent[-1:])
        total = sum(n for _, n in sizes)
        await eventually(lambda: queue.stats.samples_sent == total)
        await queue.close()
        assert joined(client.delivered) == joined(sent)
        assert all(0 < size <= per_send for size in client.batch_sizes)

    asyncio.run(scenario())


def block(ts_s: int, *names: str, **labels: str) -> SampleBlock:
    """One sample for each of the series ``names`` at ``ts_s``, as a forecast hands its rows over."""
    lab = [make_labels({"__name__": name, **labels}) for name in names]
    return SampleBlock(lab, ts_s * 1000, np.arange(len(names), dtype=np.float64) + ts_s / 7)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.booleans(), st.integers(1, 25)), min_size=1, max_size=12),
    per_send=st.integers(1, 12),
)
def test_blocks_and_series_every_sample_once_in_order(sizes: list[tuple[bool, int]], per_send: int) -> None:
    """Blocks split across batches like long series: per-series order and the batch bound hold."""

    async def scenario() -> None:
        client, clock = RecordingWriteClient(), FakeClock(auto=True)
        queue = make_queue(client, clock, max_samples_per_send=per_send, capacity=1000)
        queue.start()
        sent: list[SeriesSamples] = []
        for ts, (is_block, n) in enumerate(sizes):
            if is_block:
                item = block(ts, *(f"r{i}" for i in range(n)))
                sent.extend(item.rows())
                await queue.put([item])
            else:
                sent.append(series("s", ts * 25, n))
                await queue.put(sent[-1:])
        total = sum(n for _, n in sizes)
        await eventually(lambda: queue.stats.samples_sent == total)
        await queue.close()
        assert joined(client.delivered) == joined(sent)
        assert all(0 < size <= per_send for size in client.batch_sizes)
        assert queue.stats.batches_sent == len(client.batch_sizes)

    asyncio.run(scenario())


async def test_a_block_goes_out_as_one_series_per_row() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=True)
    queue = make_queue(client, clock)
    queue.start()
    rows = block(3, *(f"m{i}" for i in range(14)), job="x")
    await queue.put([series("a", 0, 2), rows, series("a", 2, 1)])
    await eventually(lambda: queue.stats.samples_sent == 17)
    await queue.close()
    assert client.batch_sizes == [10, 7]
    assert client.delivered == [series("a", 0, 2), *rows.rows(), series("a", 2, 1)]


async def test_rw2_encoding() -> None:
    client, clock = RecordingWriteClient(message=RW2_MESSAGE), FakeClock(auto=True)
    queue = WriteQueue(client, QueueConfig(), message=RW2_MESSAGE, clock=clock)
    queue.start()
    await queue.put([series("a", 0, 3, job="x")])
    await eventually(lambda: queue.stats.samples_sent == 3)
    await queue.close()
    assert client.delivered == [series("a", 0, 3, job="x")]


async def test_rw2_encoding_of_a_block() -> None:
    client, clock = RecordingWriteClient(message=RW2_MESSAGE), FakeClock(auto=True)
    queue = WriteQueue(client, QueueConfig(), message=RW2_MESSAGE, clock=clock)
    queue.start()
    rows = block(5, "a", "b", job="x")
    await queue.put([rows])
    await eventually(lambda: queue.stats.samples_sent == 2)
    await queue.close()
    assert client.delivered == rows.rows()


# --- retries ------------------------------------------------------------------------------------


async def test_recoverable_errors_back_off_exponentially_then_deliver_once() -> None:
    client = RecordingWriteClient(*[RecoverableError("HTTP 500", status=500)] * 4)
    clock = FakeClock(auto=True)
    queue = make_queue(client, clock)
    queue.start()
    await queue.put([series("a", 0, 10)])
    await eventually(lambda: queue.stats.samples_sent == 10)
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.25, 0.25])
    assert (client.attempts, queue.stats.retries, len(client.batches)) == (5, {"http_500": 4}, 1)
    await queue.close()


async def test_backoff_restarts_for_each_batch_and_jitter_shortens_it() -> None:
    client = RecordingWriteClient(RecoverableError("a"), RecoverableError("b"), None, RecoverableError("c"))
    clock = FakeClock(auto=True)
    queue = WriteQueue(
        client,
        QueueConfig(max_samples_per_send=10, min_backoff=1.0, max_backoff=8.0),
        clock=clock,
        jitter=lambda: 1.0,
    )
    queue.start()
    await queue.put([series("a", 0, 20)])
    await eventually(lambda: queue.stats.samples_sent == 20)
    assert clock.sleeps == pytest.approx([0.8, 1.6, 0.8])
    await queue.close()


@pytest.mark.parametrize(("retry_after", "expected"), [(7.0, 7.0), (0.01, 0.1), (None, 0.1)])
async def test_retry_after_used_when_longer_than_backoff(retry_after: float | None, expected: float) -> None:
    client = RecordingWriteClient(RecoverableError("HTTP 503", status=503, retry_after=retry_after))
    clock = FakeClock(auto=True)
    queue = make_queue(client, clock)
    queue.start()
    await queue.put([series("a", 0, 10)])
    await eventually(lambda: queue.stats.samples_sent == 10)
    assert clock.sleeps == pytest.approx([expected])
    await queue.close()


async def test_rejected_batch_is_dropped_logged_once_and_queue_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = RecordingWriteClient(WriteRejected("server returned HTTP status 400: out of order", status=400))
    clock = FakeClock(auto=True)
    queue = make_queue(client, clock)
    queue.start()
    with caplog.at_level(logging.WARNING, logger="tsf_adapter.remote.write"):
        await queue.put([series("a", 0, 6), series("b", 0, 4)])
        await eventually(lambda: queue.stats.samples_dropped == {"http_400": 10})
        await queue.put([series("c", 0, 10)])
        await eventually(lambda: queue.stats.samples_sent == 10)
    assert client.attempts == 2
    assert queue.stats.retries == {}
    [record] = caplog.records
    assert record.name == "tsf_adapter.remote.write"
    assert "10 samples in 2 series" in record.getMessage()
    assert "out of order" in record.getMessage()
    await queue.close()


async def test_a_rejected_block_counts_its_rows_as_series(caplog: pytest.LogCaptureFixture) -> None:
    client = RecordingWriteClient(WriteRejected("server returned HTTP status 400: out of order", status=400))
    queue = make_queue(client, FakeClock(auto=True))
    queue.start()
    with caplog.at_level(logging.WARNING, logger="tsf_adapter.remote.write"):
        await queue.put([series("a", 0, 4), block(1, *(f"m{i}" for i in range(8)))])
        await eventually(lambda: queue.stats.samples_sent == 2)
    # The first batch (4 samples of a, 6 rows of the block) is dropped; the block's rest is sent.
    assert queue.stats.samples_dropped == {"http_400": 10}
    [record] = caplog.records
    assert "10 samples in 7 series" in record.getMessage()
    assert [s.labels for s in client.delivered] == [make_labels({"__name__": n}) for n in ("m6", "m7")]
    await queue.close()


async def test_unencodable_and_crashing_batches_are_dropped() -> None:
    client = RecordingWriteClient(RuntimeError("bug"))
    queue = make_queue(client, FakeClock(auto=True))
    queue.start()
    bad = SeriesSamples((("__name__", "x\ud800"),), [1], [1.0])
    await queue.put([bad])
    await eventually(lambda: queue.stats.samples_dropped == {"invalid": 1})
    await queue.put([series("a", 0, 10)])
    await eventually(lambda: "error" in queue.stats.samples_dropped)
    await queue.put([series("b", 0, 10)])
    await eventually(lambda: queue.stats.samples_sent == 10)
    assert queue.stats.samples_dropped == {"invalid": 1, "error": 10}
    await queue.close()


# --- the bound: an outage never stops producers ------------------------------------------------


async def stalled(**cfg: Any) -> tuple[RecordingWriteClient, FakeClock, WriteQueue]:
    """A started queue whose first batch (``a`` 0-9s) is in flight at a receiver that does not
    answer until ``client.gate`` is set: the queue as an outage leaves it."""
    client, clock = RecordingWriteClient(), FakeClock(auto=False)
    client.gate = asyncio.Event()
    queue = make_queue(client, clock, **cfg)
    queue.start()
    await queue.put([series("a", 0, 10)])
    await eventually(lambda: client.attempts == 1)
    return client, clock, queue


async def test_put_never_waits_and_the_oldest_queued_items_make_room() -> None:
    client, _, queue = await stalled(capacity=20)
    await queue.put([series("a", 10, 5)])
    await queue.put([series("a", 15, 5)])
    assert (queue.stats.queue_length, queue.stats.samples_dropped) == (20, {})  # in flight counts
    await queue.put([series("a", 20, 5)])  # returns at once, with the oldest queued item dropped
    assert (queue.stats.queue_length, queue.stats.samples_dropped) == (20, {"queue_full": 5})
    client.release()
    await eventually(lambda: queue.stats.samples_sent == 20)
    await queue.close()
    # The batch in flight is never dropped for room, and what stays keeps its order.
    assert client.delivered == [series("a", 0, 10), series("a", 15, 5), series("a", 20, 5)]


async def test_a_put_larger_than_capacity_is_kept_whole_and_displaces_older_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, queue = await stalled(capacity=10)
    await queue.put([series("a", 10, 4)])  # beyond capacity beside the batch in flight: dropped next
    rows = block(20, *(f"m{i}" for i in range(25)))
    with caplog.at_level(logging.WARNING, logger="tsf_adapter.remote.write"):
        await queue.put([rows])
        await queue.put([block(21, "n")])
    # One forecast is delivered whole or not at all: the block stays until something newer needs room.
    assert queue.stats.samples_dropped == {"queue_full": 4 + 25}
    assert queue.stats.queue_length == 11
    assert sum("larger than the queue's capacity" in r.getMessage() for r in caplog.records) == 1
    client.release()
    await queue.close()  # flushes the partial batch at once
    assert queue.stats.samples_sent == 11
    assert client.delivered == [series("a", 0, 10), *block(21, "n").rows()]


async def test_queue_full_drops_are_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, clock, queue = await stalled(capacity=10)
    with caplog.at_level(logging.WARNING, logger="tsf_adapter.remote.write"):
        for k in range(10, 60):
            await queue.put([series("a", k, 1)])  # from the second on, each one drops the one before
        clock.advance(DROP_LOG_INTERVAL)
        await queue.put([series("a", 60, 1)])
    lines = [r.getMessage() for r in caplog.records if "queue_full" in r.getMessage()]
    assert lines == [
        "dropped 1 samples (queue_full): the queue is at its capacity of 10 samples, so the oldest make room",
        "dropped 49 samples (queue_full) in the last 30s: "
        "the queue is at its capacity of 10 samples, so the oldest make room",
    ]
    assert queue.stats.samples_dropped == {"queue_full": 50}
    client.release()
    await queue.close()


@settings(max_examples=30, deadline=None)
@given(
    puts=st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 8)), min_size=1, max_size=30),
    failures=st.integers(0, 40),
    capacity=st.integers(10, 40),
)
def test_an_outage_keeps_order_and_accounts_for_every_sample(
    puts: list[tuple[str, int]], failures: int, capacity: int
) -> None:
    """Receiver down for ``failures`` attempts while forecasts keep coming: every sample is sent
    or dropped as ``queue_full``, each series arrives in order, and the newest put always arrives."""

    async def scenario() -> None:
        client = RecordingWriteClient(*[RecoverableError("down")] * failures)
        clock = FakeClock(auto=True)
        queue = make_queue(client, clock, capacity=capacity)
        queue.start()
        next_ts = dict.fromkeys("abc", 0)
        for name, n in puts:
            await queue.put([series("m", next_ts[name], n, id=name)])
            next_ts[name] += n
            await asyncio.sleep(0)
        total = sum(n for _, n in puts)
        await eventually(lambda: queue.stats.queue_length == 0)
        await queue.close()
        delivered = joined(client.delivered)
        sent = sum(len(s) for s in delivered.values())
        assert sent + queue.stats.samples_dropped.get("queue_full", 0) == total
        assert set(queue.stats.samples_dropped) <= {"queue_full"}
        for s in delivered.values():
            assert (np.diff(s.timestamps) > 0).all()
        name, n = puts[-1]
        newest = series("m", next_ts[name] - n, n, id=name)
        assert delivered[newest.labels].timestamps[-n:].tolist() == newest.timestamps.tolist()

    asyncio.run(scenario())


# --- the age limit: what Prometheus would refuse is not retried ----------------------------------


async def test_samples_past_the_age_limit_leave_a_batch_being_retried() -> None:
    client, clock = RecordingWriteClient(RecoverableError("down")), FakeClock(auto=False)
    queue = make_queue(client, clock, sample_age_limit=60.0)
    clock.advance(10.0)
    queue.start()
    await queue.put([series("a", 0, 10)])  # stamped 0s to 9s
    await eventually(lambda: queue.stats.retries == {"network": 1})
    clock.advance(55.0)  # now 65s: the samples before 5s are past the limit
    await eventually(lambda: queue.stats.samples_sent == 5)
    assert queue.stats.samples_dropped == {"too_old": 5}
    assert client.delivered == [series("a", 5, 5)]
    assert queue.stats.queue_length == 0
    await queue.close()


async def test_a_batch_entirely_past_the_age_limit_is_dropped_not_retried_forever() -> None:
    client = RecordingWriteClient(*[RecoverableError("down")] * 1000)
    clock = FakeClock(auto=True)  # every backoff moves time on: the batch ages while it is retried
    queue = make_queue(client, clock, sample_age_limit=60.0, min_backoff=5.0, max_backoff=5.0)
    queue.start()
    await queue.put([block(0, "a", "b"), series("c", 0, 8)])
    await eventually(lambda: queue.stats.samples_dropped == {"too_old": 10})
    assert queue.stats.queue_length == 0
    # Attempts at 0, 5, ..., 65s (the block leaves at 65s, c's last sample at 70s): not forever.
    assert queue.stats.retries == {"network": 14}
    await queue.close()


async def test_queued_items_past_the_age_limit_count_as_too_old_not_queue_full() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=False)
    client.gate = asyncio.Event()
    queue = make_queue(client, clock, capacity=20, sample_age_limit=60.0)
    queue.start()
    await queue.put([block(0, *(f"m{i}" for i in range(10)))])
    await eventually(lambda: client.attempts == 1)
    await queue.put([block(0, *(f"o{i}" for i in range(10)))])
    clock.advance(100.0)
    await queue.put([block(100, *(f"n{i}" for i in range(10)))])
    assert queue.stats.samples_dropped == {"too_old": 10}
    assert queue.stats.queue_length == 20


async def test_an_age_limit_of_zero_keeps_old_samples() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=True)
    clock.advance(86_400.0)
    queue = make_queue(client, clock, sample_age_limit=0.0)
    queue.start()
    await queue.put([series("a", 0, 10)])
    await eventually(lambda: queue.stats.samples_sent == 10)
    assert queue.stats.samples_dropped == {}
    await queue.close()


async def test_empty_puts_are_ignored() -> None:
    queue = make_queue(RecordingWriteClient(), FakeClock(auto=False), capacity=1)
    await queue.put([])
    await queue.put([series("a", 0, 0)])
    assert queue.stats.queue_length == 0


# --- shutdown -----------------------------------------------------------------------------------


async def test_close_flushes_partial_batch_without_waiting_for_deadline() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=False)
    queue = make_queue(client, clock)
    queue.start()
    await queue.put([series("a", 0, 3), series("b", 0, 12)])
    await queue.close(deadline=60.0)
    assert client.batch_sizes == [10, 5]
    assert queue.stats.samples_dropped == {}
    assert clock.now == 0.0


async def test_close_drops_what_is_left_when_deadline_passes() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=False)
    client.gate = asyncio.Event()  # the receiver never answers
    queue = make_queue(client, clock, flush_deadline=30.0)
    queue.start()
    await queue.put([series("a", 0, 10), series("b", 0, 5)])
    await eventually(lambda: client.attempts == 1)
    closing = asyncio.create_task(queue.close())
    await eventually(lambda: 30.0 in clock.sleeps)
    assert not closing.done()
    clock.advance(30.0)
    await asyncio.wait_for(closing, 10)
    assert queue.stats.samples_dropped == {"shutdown": 15}
    assert queue.stats.queue_length == 0
    assert queue.stats.samples_sent == 0


async def test_close_counts_the_rows_of_an_unsent_block_as_dropped() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=False)
    client.gate = asyncio.Event()  # the receiver never answers
    queue = make_queue(client, clock, flush_deadline=30.0)
    queue.start()
    await queue.put([block(1, *(f"m{i}" for i in range(25)))])
    await eventually(lambda: client.attempts == 1)
    assert queue.stats.queue_length == 25
    closing = asyncio.create_task(queue.close())
    await eventually(lambda: 30.0 in clock.sleeps)
    clock.advance(30.0)
    await asyncio.wait_for(closing, 10)
    assert queue.stats.samples_dropped == {"shutdown": 25}
    assert queue.stats.queue_length == 0


async def test_close_gives_up_on_a_batch_being_retried() -> None:
    client = RecordingWriteClient(*[RecoverableError("down")] * 1000)
    clock = FakeClock(auto=False)
    queue = make_queue(client, clock)
    queue.start()
    await queue.put([series("a", 0, 10)])
    await eventually(lambda: queue.stats.retries == {"network": 1})
    closing = asyncio.create_task(queue.close(deadline=1.0))
    await eventually(lambda: 1.0 in clock.sleeps)
    clock.advance(1.0)  # also wakes the backoff sleep: whichever runs first, the batch is dropped
    await asyncio.wait_for(closing, 10)
    assert queue.stats.samples_dropped == {"shutdown": 10}


async def test_put_after_or_during_close_is_dropped() -> None:
    client, clock = RecordingWriteClient(), FakeClock(auto=False)
    client.gate = asyncio.Event()
    queue = make_queue(client, clock)
    queue.start()
    await queue.put([series("a", 0, 10)])
    await eventually(lambda: client.attempts == 1)
    closing = asyncio.create_task(queue.close(deadline=7.0))
    await eventually(lambda: 7.0 in clock.sleeps)  # close() is flushing
    await queue.put([series("a", 10, 3)])
    client.gate.set()
    await asyncio.wait_for(closing, 10)
    await queue.put([series("a", 13, 2)])
    assert queue.stats.samples_sent == 10
    assert queue.stats.samples_dropped == {"shutdown": 5}


async def test_close_without_start_drops_queued_and_is_idempotent() -> None:
    queue = make_queue(RecordingWriteClient(), FakeClock(auto=False))
    await queue.put([series("a", 0, 4)])
    await queue.close()
    await queue.close()
    assert queue.stats.samples_dropped == {"shutdown": 4}


async def test_context_manager_starts_and_flushes() -> None:
    client = RecordingWriteClient()
    async with make_queue(client, FakeClock(auto=False)) as queue:
        await queue.put([series("a", 0, 3)])
    assert client.delivered == [series("a", 0, 3)]


def test_the_queues_own_reasons_are_exported_at_zero_with_the_capacity() -> None:
    """So that the first drop or retry shows in increase(), and queue_length / capacity is a ratio."""
    queue = make_queue(RecordingWriteClient(), FakeClock(auto=False), capacity=50)
    registry = CollectorRegistry()
    registry.register(QueueCollector(queue.stats, "prometheus", "http://p/api/v1/write"))
    labels = {"remote_name": "prometheus", "url": "http://p/api/v1/write"}

    def value(name: str, **extra: str) -> float | None:
        return registry.get_sample_value(f"tsf_adapter_remote_write_{name}", {**labels, **extra})

    for reason in ("queue_full", "too_old", "invalid", "error", "shutdown"):
        assert value("samples_dropped_total", reason=reason) == 0
    assert value("samples_dropped_total", reason="http_400") is None  # appears with its first count
    assert value("retries_total", reason="timeout") == value("retries_total", reason="network") == 0
    assert value("queue_capacity") == 50
