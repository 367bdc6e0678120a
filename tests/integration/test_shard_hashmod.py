"""Shards split series exactly as a real Prometheus's ``hashmod`` relabelling does.

Prometheus 2.42 scrapes 90 series and remote-writes them to three receivers, each through the
``write_relabel_configs`` a replica's ``Shard`` gives (the documented Prometheus side of a
sharded deployment). Every receiver must get exactly the series its ``Shard.keeps``, so a
replica sent everything keeps the same share as one Prometheus sends only its share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.test_receive_from_prometheus import until
from tests.prometheus import PrometheusProcess
from tests.remote.test_ingest import RecordingSink
from tsf_adapter.config import Config
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.core.series import Labels
from tsf_adapter.core.shard import Shard
from tsf_adapter.server.app import build_app

pytestmark = pytest.mark.integration

USERS = 30
KINDS = ("ssd", "hdd", "object")
TOTAL = 3


async def metrics(request: web.Request) -> web.Response:
    lines = ["# TYPE quota_used gauge"]
    for u in range(USERS):
        for kind in KINDS:
            lines.append(f'quota_used{{user="user-{u}",storage_type="{kind}"}} {u}')
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


@pytest.mark.parametrize("labels", [("user",), ("user", "storage_type")])
async def test_each_replica_gets_exactly_its_shard(
    prometheus_factory: Callable[..., PrometheusProcess],
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    labels: tuple[str, ...],
) -> None:
    target_app = web.Application()
    target_app.router.add_get("/metrics", metrics)
    target = await aiohttp_server(target_app)
    shards = [Shard(i, TOTAL, labels) for i in range(TOTAL)]
    sinks = [RecordingSink() for _ in shards]
    selectors = [parse_selector("quota_used")]
    receivers = [await aiohttp_server(build_app(Config(), sink, selectors=selectors)) for sink in sinks]
    prom = await asyncio.to_thread(
        prometheus_factory,
        global_config={"scrape_interval": "1s", "scrape_timeout": "1s"},
        scrape_configs=[{"job_name": "quota", "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}]}],
        remote_write=[
            {
                "url": f"http://127.0.0.1:{r.port}/api/v1/write",
                "queue_config": {
                    "batch_send_deadline": "100ms",
                    "min_backoff": "50ms",
                    "max_backoff": "500ms",
                },
                "write_relabel_configs": shard.write_relabel_configs(),
            }
            for r, shard in zip(receivers, shards, strict=True)
        ],
    )
    assert prom is not None

    def received() -> list[set[Labels]]:
        return [{lab for lab in sink.labels if dict(lab)["__name__"] == "quota_used"} for sink in sinks]

    await until(lambda: sum(len(s) for s in received()) == USERS * len(KINDS), "every series at some replica")
    got = received()
    everything = set().union(*got)
    assert len(everything) == USERS * len(KINDS)
    for shard, series in zip(shards, got, strict=True):
        assert series == {lab for lab in everything if shard.keeps(lab)}, shard
        assert series  # 90 series over 3 shards: none is empty
    # The temporary label never leaves Prometheus.
    assert not any(name.startswith("__tmp") for s in got for lab in s for name, _ in lab)
