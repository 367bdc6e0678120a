"""The queue and the real ``RemoteWriteClient`` against a receiver that fails as Prometheus can.

Over real HTTP (aiohttp's test server), each answer is retried or dropped as the remote-write
spec says: 5xx and timeouts retried with backoff, honouring ``Retry-After``; other 4xx dropped;
429 dropped unless ``retry_on_http_429``. Each outcome shows in exactly one metric, read from a
registry of its own: ``retries_total{reason}``, ``samples_dropped_total{reason}`` or
``samples_sent_total``.

The queue's clock is virtual (``FakeClock(auto=True)``), so backoffs and ``Retry-After`` are
read from the sleeps it asked for, never timed. Only the client's ``timeout`` runs in real time:
a hanging answer is one that never comes before it, and a slow one answers well inside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import snappy
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from tests.remote.test_queue import FakeClock, eventually, series
from tests.remote.test_write_client import FakeReceiver, Reply
from tsf_adapter.config import QueueConfig, RemoteWriteConfig
from tsf_adapter.remote.codec import decode_write_request
from tsf_adapter.remote.queue import QueueCollector, WriteQueue
from tsf_adapter.remote.write_client import RemoteWriteClient

OUTCOMES = ("samples_sent_total", "samples_dropped_total", "retries_total")
# An answer that never comes before the client's timeout (the handler is cancelled when it gives up).
HANG = 60.0
# A slow answer, and the timeout it stays well inside: margin enough for any machine.
SLOW, SLOW_TIMEOUT = 0.3, 5.0


@dataclass
class Sender:
    """A started queue and the real client, pointed at a scripted receiver; metrics in ``registry``."""

    receiver: FakeReceiver
    queue: WriteQueue
    clock: FakeClock
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def counters(self) -> dict[str, float]:
        """The outcome counters that are not 0, as ``name{reason}``: what a scrape shows moving.

        ``batches_sent_total`` is left out: it counts the sent samples' requests, not an outcome.
        """
        out = {}
        for family in self.registry.collect():
            for sample in family.samples:
                name = sample.name.removeprefix("tsf_adapter_remote_write_")
                if name in OUTCOMES and sample.value:
                    reason = sample.labels.get("reason")
                    out[f"{name}{{{reason}}}" if reason else name] = sample.value
        return out

    def bodies(self) -> list[bytes]:
        return [body for _, body in self.receiver.requests]


Serve = Callable[..., Awaitable[Sender]]


@pytest.fixture
async def serve(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> AsyncIterator[Serve]:
    """A receiver answering ``replies`` in turn (then 204), and a sender writing to it."""
    async with aiohttp.ClientSession() as session:
        queues: list[WriteQueue] = []

        async def start(*replies: Reply, client_timeout: float = SLOW_TIMEOUT, **queue_cfg: Any) -> Sender:
            receiver = FakeReceiver(list(replies))
            app = web.Application()
            app.router.add_post("/api/v1/write", receiver.handle)
            server = await aiohttp_server(app)
            cfg = QueueConfig(min_backoff=0.5, max_backoff=4.0, **queue_cfg)
            url = str(server.make_url("/api/v1/write"))
            rw = RemoteWriteConfig(url=url, timeout=client_timeout, queue=cfg)
            clock = FakeClock(auto=True)
            queue = WriteQueue(RemoteWriteClient(rw, session), cfg, clock=clock, jitter=lambda: 0.0)
            sender = Sender(receiver, queue, clock)
            sender.registry.register(QueueCollector(queue.stats, "prometheus", url))
            queue.start()
            queues.append(queue)
            return sender

        yield start
        for queue in queues:
            await queue.close(deadline=0)


RETRY_AFTER = {"Retry-After": "1"}


@dataclass(frozen=True)
class Fault:
    replies: tuple[Reply, ...]
    counters: dict[str, float]  # what moved, and nothing else
    sleeps: list[float]  # after the 5s partial-batch deadline: backoff or Retry-After
    cfg: dict[str, Any] = field(default_factory=dict)
    client_timeout: float = SLOW_TIMEOUT


FAULTS = {
    "500 retried with backoff": Fault(
        (Reply(500, b"internal error"),), {"retries_total{http_500}": 1, "samples_sent_total": 3}, [0.5]
    ),
    "503 retried after its Retry-After": Fault(
        (Reply(503, headers=RETRY_AFTER),), {"retries_total{http_503}": 1, "samples_sent_total": 3}, [1.0]
    ),
    "429 dropped by default, Retry-After or not": Fault(
        (Reply(429, headers=RETRY_AFTER),), {"samples_dropped_total{http_429}": 3}, []
    ),
    "429 retried after its Retry-After when asked to": Fault(
        (Reply(429, headers=RETRY_AFTER),),
        {"retries_total{http_429}": 1, "samples_sent_total": 3},
        [1.0],
        {"retry_on_http_429": True},
    ),
    "400 dropped": Fault((Reply(400, b"out of bounds"),), {"samples_dropped_total{http_400}": 3}, []),
    "a hang past the timeout retried": Fault(
        (Reply(204, delay=HANG),),
        {"retries_total{timeout}": 1, "samples_sent_total": 3},
        [0.5],
        client_timeout=0.3,
    ),
    "a slow answer inside the timeout sent once": Fault(
        (Reply(204, delay=SLOW),), {"samples_sent_total": 3}, []
    ),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_each_fault_is_retried_or_dropped_and_counted_once(serve: Serve, fault: Fault) -> None:
    sender = await serve(*fault.replies, client_timeout=fault.client_timeout, **fault.cfg)
    await sender.queue.put([series("a", 0, 3)])
    await eventually(lambda: sender.queue.stats.queue_length == 0 and bool(sender.counters()))
    assert sender.counters() == fault.counters
    retried = "samples_sent_total" in fault.counters and len(fault.counters) == 2
    assert len(sender.bodies()) == (2 if retried else 1)
    assert len(set(sender.bodies())) == 1  # a retry sends the same bytes again
    assert sender.clock.sleeps == [5.0, *fault.sleeps]
    if "samples_sent_total" in fault.counters:
        assert decode_write_request(snappy.decompress(sender.bodies()[-1])).series == [series("a", 0, 3)]


async def test_faults_in_turn_each_show_in_one_metric_and_order_holds(serve: Serve) -> None:
    """One receiver answering 500, 503, 429, 400, a hang and a slow 204 in turn, as one outage
    after another might; the metrics add up to what happened, and what is sent stays in order."""
    sender = await serve(
        Reply(500),
        Reply(503, headers=RETRY_AFTER),
        Reply(204),  # a: sent after two retries
        Reply(429, headers=RETRY_AFTER),  # b: dropped
        Reply(400, b"out of order sample"),  # c: dropped
        Reply(204, delay=HANG),
        Reply(204, delay=SLOW),  # d: sent after a timeout
        client_timeout=2.0,
    )
    expected = [
        {"retries_total{http_500}": 1, "retries_total{http_503}": 1, "samples_sent_total": 3},
        {"samples_dropped_total{http_429}": 3},
        {"samples_dropped_total{http_400}": 3},
        {"retries_total{timeout}": 1, "samples_sent_total": 3},
    ]
    totals: dict[str, float] = {}
    for k, step in enumerate(expected):
        await sender.queue.put([series("a", 3 * k, 3)])
        for name, value in step.items():
            totals[name] = totals.get(name, 0) + value
        await eventually(lambda: sender.counters() == totals)
    sent = [decode_write_request(snappy.decompress(b)).series for b in dict.fromkeys(sender.bodies())]
    assert sent == [[series("a", 0, 3)], [series("a", 3, 3)], [series("a", 6, 3)], [series("a", 9, 3)]]
    assert len(sender.bodies()) == 7
