"""A real Prometheus 2.42 scrapes a target we serve and remote-writes to our receiver.

What reached the sink must be exactly what Prometheus stored: the raw samples
of ``m[range]`` at a fixed evaluation time, series by series, timestamps to the
millisecond and values to the bit. One series disappears from the target
half way, so Prometheus sends a staleness marker; the marker must arrive at the
timestamp where Prometheus's own instant query stops returning the series.

Known difference, from the wire format (PROTOCOL.md §4): proto3 does not
transmit a double equal to 0, so a ``-0.0`` Prometheus stored reaches any
remote-write receiver as ``+0.0``.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from tests.prometheus import PrometheusProcess
from tests.remote.test_ingest import RecordingSink
from tsf_adapter.config import Config
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.core.series import Labels, is_stale, make_labels
from tsf_adapter.server.app import build_app

pytestmark = pytest.mark.integration

HANG_GUARD = 45.0  # seconds; only against a hang, never a speed assertion
VANISH_AFTER = 3  # tsf_test_vanish is exposed in scrapes 1..3 only
SCRAPES = 8
RANGE_S = 300
# Values Go's and Python's float formatting must both round-trip, cycled through scrape by scrape.
TRICKY = [0.1 + 0.2, 1e300, -2.5e-300, 5e-324, 123456.789, -0.0, 1.7976931348623157e308]

Row = tuple[int, bytes]  # (timestamp ms, float64 bits)


def fmt(value: float) -> str:
    """A float in the text exposition format; repr is the shortest exact form."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


class Target:
    """A scrape target whose gauges change at every scrape; one series goes away."""

    def __init__(self) -> None:
        self.scrapes = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        n = self.scrapes
        lines = [
            "# HELP tsf_test_gauge Test gauge.",
            "# TYPE tsf_test_gauge gauge",
            f'tsf_test_gauge{{kind="step"}} {fmt(n * 1.5)}',
            f'tsf_test_gauge{{kind="tricky"}} {fmt(TRICKY[n % len(TRICKY)])}',
            f'tsf_test_gauge{{kind="inf"}} {fmt(math.inf if n % 2 else -math.inf)}',
            'tsf_test_gauge{kind="nan"} NaN',
        ]
        if n <= VANISH_AFTER:
            lines += ["# TYPE tsf_test_vanish gauge", f"tsf_test_vanish {n}"]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def bits(value: float) -> bytes:
    return np.float64(value).tobytes()


def same_value(stored: float, received: bytes) -> bool:
    got = float(np.frombuffer(received, dtype=np.float64)[0])
    if math.isnan(stored):  # "NaN" in the API carries no payload; the marker is not an ordinary NaN
        return math.isnan(got) and not is_stale(got)
    if stored == 0.0 and got == 0.0:
        return True  # -0.0 is sent as +0.0 (see the module docstring)
    return bits(stored) == received


async def until(predicate: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(HANG_GUARD):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_received_samples_equal_prometheus_raw_samples(
    prometheus_factory: Callable[..., PrometheusProcess],
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> None:
    target = Target()
    target_app = web.Application()
    target_app.router.add_get("/metrics", target.handle)
    target_server = await aiohttp_server(target_app)

    sink = RecordingSink()
    registry = CollectorRegistry()
    selectors = [parse_selector('{__name__=~"tsf_test_.+"}'), parse_selector("up")]
    receiver = await aiohttp_server(build_app(Config(), sink, selectors=selectors, registry=registry))

    prom = await asyncio.to_thread(
        prometheus_factory,
        global_config={"scrape_interval": "1s", "scrape_timeout": "1s"},
        scrape_configs=[
            {
                "job_name": "target",
                "static_configs": [{"targets": [f"127.0.0.1:{target_server.port}"]}],
            }
        ],
        remote_write=[
            {
                "url": f"http://127.0.0.1:{receiver.port}/api/v1/write",
                "queue_config": {
                    "batch_send_deadline": "100ms",
                    "max_samples_per_send": 50,
                    "min_backoff": "50ms",
                    "max_backoff": "500ms",
                },
                "metadata_config": {"send": True, "send_interval": "1s"},
            }
        ],
    )
    try:
        vanish = make_labels(
            {"__name__": "tsf_test_vanish", "instance": f"127.0.0.1:{target_server.port}", "job": "target"}
        )
        step = make_labels(
            {"__name__": "tsf_test_gauge", "instance": vanish[1][1], "job": "target", "kind": "step"}
        )

        def received(labels: Labels) -> list[Row]:
            return [(t, v) for lb, t, v in sink.rows if lb == labels]

        await until(lambda: target.scrapes >= SCRAPES, f"{SCRAPES} scrapes")
        await until(
            lambda: any(is_stale(float(np.frombuffer(v)[0])) for _, v in received(vanish)),
            "the staleness marker of tsf_test_vanish",
        )
        await until(lambda: len(received(step)) >= SCRAPES - 1, "the step gauge's samples")
        await until(
            lambda: (registry.get_sample_value("tsf_adapter_receiver_metadata_received_total") or 0) > 0,
            "a metadata request",
        )
        # Every sample of a series up to the last one received has arrived (senders keep
        # per-series order). Evaluating exactly there also pins the closed end of a 2.x range.
        eval_ms = received(step)[-1][0]
        eval_s = eval_ms / 1000

        stored = await asyncio.to_thread(prom.range_samples, '{__name__=~"tsf_test_.+|up"}', eval_s, RANGE_S)
        want: dict[Labels, list[tuple[int, float]]] = {
            make_labels(item["metric"]): [(round(float(t) * 1000), float(v)) for t, v in item["values"]]
            for item in stored
        }
        got: dict[Labels, list[Row]] = defaultdict(list)
        for labels, t, v in sink.rows:
            if t <= eval_ms and not is_stale(float(np.frombuffer(v)[0])):
                got[labels].append((t, v))

        names = {dict(labels)["__name__"] for labels in want}
        assert names == {"tsf_test_gauge", "tsf_test_vanish", "up"}
        assert sorted(got) == sorted(want)
        for labels, samples in want.items():
            assert [t for t, _ in got[labels]] == [t for t, _ in samples], labels
            mismatched = [
                (t, v, np.frombuffer(r)[0])
                for (t, v), (_, r) in zip(samples, got[labels], strict=True)
                if not same_value(v, r)
            ]
            assert not mismatched, (labels, mismatched)
        assert len(want[step]) >= SCRAPES - 1
        assert [v for _, v in want[vanish]] == [1.0, 2.0, 3.0]

        # The marker came at the first scrape without the series; Prometheus's own
        # instant query returns the last value just before it and nothing from it on.
        markers = [t for t, v in received(vanish) if is_stale(float(np.frombuffer(v)[0]))]
        up = make_labels({"__name__": "up", "instance": vanish[1][1], "job": "target"})
        scrape_times = [t for t, _ in want[up]]
        last_seen = want[vanish][-1][0]
        assert markers == [scrape_times[scrape_times.index(last_seen) + 1]]
        before = await asyncio.to_thread(prom.query, "tsf_test_vanish", (markers[0] - 1) / 1000)
        at = await asyncio.to_thread(prom.query, "tsf_test_vanish", markers[0] / 1000)
        assert [float(item["value"][1]) for item in before] == [3.0]
        assert at == []

        # Nothing was refused, and series no selector keeps were acknowledged and dropped.
        def counter(name: str, **labels: str) -> float:
            return registry.get_sample_value(f"tsf_adapter_receiver_{name}", labels) or 0.0

        assert counter("requests_total", protocol="v1", code="204") > 0
        assert all(
            counter("requests_rejected_total", reason=r) == 0
            for r in ("invalid", "too_large", "unsupported", "overloaded", "stopping", "internal")
        )
        assert counter("samples_dropped_total", reason="unselected") > 0
    finally:
        await asyncio.to_thread(prom.stop)
