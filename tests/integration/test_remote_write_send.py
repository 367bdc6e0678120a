"""The remote-write sender against a real Prometheus 2.42 (no scraping: an empty TSDB).

Samples are written at recent timestamps only: Prometheus refuses samples more
than about an hour old once its head is initialised, and future ones break its
ingestion (PROTOCOL.md §7a/b). A small aiohttp proxy in front of Prometheus
injects failures and records what was sent, so retries are seen on the wire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.prometheus import PrometheusProcess
from tests.remote.test_queue import eventually
from tsf_adapter.config import QueueConfig, RemoteWriteConfig
from tsf_adapter.core.protocol import RW2_MESSAGE
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.remote.queue import WriteQueue
from tsf_adapter.remote.write_client import RemoteWriteClient

pytestmark = pytest.mark.integration

VALUES = [1.5, -0.25, 1e300, 123456.789, 0.1 + 0.2, 5e-324]


@dataclass
class FlakyProxy:
    """Answers the first ``fail_first`` requests itself, forwards the rest to Prometheus."""

    target: str
    session: aiohttp.ClientSession
    fail_first: list[int] = field(default_factory=list)
    seen: list[bytes] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(body)
        if self.fail_first:
            status = self.fail_first.pop(0)
            self.answers.append(status)
            return web.Response(status=status, text="injected failure")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self.session.post(self.target, data=body, headers=headers) as resp:
            text = await resp.read()
            self.answers.append(resp.status)
            return web.Response(status=resp.status, body=text)


Start = Callable[..., Awaitable[tuple[PrometheusProcess, FlakyProxy, WriteQueue]]]


@pytest.fixture
async def start(
    prometheus_factory: Callable[..., PrometheusProcess],
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> AsyncIterator[Start]:
    """Prometheus, a proxy in front of it, and a started queue writing to the proxy."""
    async with aiohttp.ClientSession() as session:
        queues: list[WriteQueue] = []

        async def make(
            *fail_first: int, message: str = "prometheus.WriteRequest", **queue_cfg: Any
        ) -> tuple[PrometheusProcess, FlakyProxy, WriteQueue]:
            prom = prometheus_factory()
            proxy = FlakyProxy(f"{prom.url}/api/v1/write", session, list(fail_first))
            app = web.Application()
            app.router.add_post("/api/v1/write", proxy.handle)
            server = await aiohttp_server(app)
            cfg = QueueConfig(batch_send_deadline=0.05, **queue_cfg)
            rw = RemoteWriteConfig(
                url=str(server.make_url("/api/v1/write")),
                queue=cfg,
                protobuf_message=message,  # type: ignore[arg-type]
            )
            queue = WriteQueue(RemoteWriteClient(rw, session), cfg, message=message)
            queue.start()
            queues.append(queue)
            return prom, proxy, queue

        yield make
        for queue in queues:
            await queue.close(deadline=5.0)


def recent_series(case: str, now_ms: int, n: int = len(VALUES), *, ago_s: int = 50) -> SeriesSamples:
    """``n`` samples, 10s apart, ending ``ago_s - 10*(n-1)`` seconds before now."""
    timestamps = now_ms - ago_s * 1000 + np.arange(n, dtype=np.int64) * 10_000
    labels = make_labels({"__name__": "tsf_send_test", "case": case, "job": "tsf"})
    return SeriesSamples(labels, timestamps, np.array(VALUES[:n]))


def stored(prom: PrometheusProcess, case: str, now_ms: int) -> list[tuple[int, float]]:
    result = prom.range_samples(f'tsf_send_test{{case="{case}"}}', end_s=now_ms / 1000 + 1, range_s=600)
    if not result:
        return []
    [item] = result
    assert item["metric"] == {"__name__": "tsf_send_test", "case": case, "job": "tsf"}
    return [(round(float(t) * 1000), float(v)) for t, v in item["values"]]


def as_pairs(s: SeriesSamples) -> list[tuple[int, float]]:
    return list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))


async def test_written_series_reads_back_exactly(start: Start) -> None:
    # 4 samples a request: the series is split, and any reordering would get a 400.
    prom, proxy, queue = await start(max_samples_per_send=4)
    now_ms = int(time.time() * 1000)
    sent = [recent_series("a", now_ms), recent_series("b", now_ms, 3)]
    await queue.put(sent)
    await eventually(lambda: queue.stats.samples_sent == 9)
    assert len(proxy.seen) == 3
    assert queue.stats.samples_dropped == {}
    assert stored(prom, "a", now_ms) == as_pairs(sent[0])
    assert stored(prom, "b", now_ms) == as_pairs(sent[1])


async def test_5xx_is_retried_and_written_once(start: Start) -> None:
    prom, proxy, queue = await start(500, 503)
    now_ms = int(time.time() * 1000)
    sent = recent_series("retry", now_ms)
    await queue.put([sent])
    await eventually(lambda: queue.stats.samples_sent == len(sent))
    assert proxy.answers == [500, 503, 204]
    assert proxy.seen[0] == proxy.seen[1] == proxy.seen[2]
    assert queue.stats.retries == {"http_500": 1, "http_503": 1}
    assert stored(prom, "retry", now_ms) == as_pairs(sent)


async def test_400_from_prometheus_is_not_retried(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    prom, proxy, queue = await start()
    now_ms = int(time.time() * 1000)
    first = recent_series("ooo", now_ms, 2, ago_s=20)
    await queue.put([first])
    await eventually(lambda: queue.stats.samples_sent == 2)
    # Older than what is stored: Prometheus answers 400 "out of order sample".
    with caplog.at_level(logging.ERROR, logger="tsf_adapter.remote.write"):
        await queue.put([recent_series("ooo", now_ms, 1, ago_s=40)])
        await eventually(lambda: queue.stats.samples_dropped == {"http_400": 1})
    assert proxy.answers == [204, 400]
    assert queue.stats.retries == {}
    assert "out of order sample" in caplog.text
    assert stored(prom, "ooo", now_ms) == as_pairs(first)


async def test_rw2_to_prometheus_2_42_is_rejected_as_unsupported(start: Start) -> None:
    # 2.42 reads an RW2 body as an empty RW1 request and answers 204 without the
    # Samples-Written header; the client must not count that as delivered.
    prom, proxy, queue = await start(message=RW2_MESSAGE)
    now_ms = int(time.time() * 1000)
    await queue.put([recent_series("rw2", now_ms, 2)])
    await eventually(lambda: queue.stats.samples_dropped == {"http_415": 2})
    assert proxy.answers == [204]
    assert queue.stats.samples_sent == 0
    assert stored(prom, "rw2", now_ms) == []
