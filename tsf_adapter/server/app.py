"""Wiring: ``build_app(config, sink) -> web.Application``, the receiver's HTTP face.

Routes:

- ``POST /api/v1/write``: remote-write 1.0 and 2.0 (see ``remote.write_handler``)
- ``GET /-/healthy``, ``GET /-/ready``: probes
- ``GET /metrics``: the daemon's own metrics, ``tsf_adapter_*``, with build info and the
  ``process_*`` and ``python_*`` collectors (:mod:`.self_metrics`)

Everything the routes share is stored under typed ``AppKey``s; the ingest
worker thread is created and shut down by a ``cleanup_ctx`` generator, so
teardown runs in reverse order even when startup fails half way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tsf_adapter.config import Config
from tsf_adapter.core.lifecycle import Readiness
from tsf_adapter.core.selector import Selector
from tsf_adapter.remote.ingest import Ingester, SampleSink
from tsf_adapter.remote.receive_metrics import ReceiverMetrics
from tsf_adapter.remote.write_handler import make_write_handler
from tsf_adapter.server.health import add_health_routes
from tsf_adapter.server.self_metrics import register_runtime_metrics

CONFIG = web.AppKey("config", Config)
REGISTRY = web.AppKey("registry", CollectorRegistry)
STATE = web.AppKey("state", Readiness)
INGESTER = web.AppKey("ingester", Ingester)
RECEIVER_METRICS = web.AppKey("receiver_metrics", ReceiverMetrics)
# The one thread that owns the Ingester and the store: whoever else touches the store runs there.
INGEST_EXECUTOR = web.AppKey("ingest_executor", ThreadPoolExecutor)


def build_app(
    config: Config,
    sink: SampleSink,
    *,
    selectors: Sequence[Selector] | None = None,
    registry: CollectorRegistry | None = None,
    state: Readiness | None = None,
) -> web.Application:
    """The receiver application; ``selectors`` default to ``config.ingest.selectors``."""
    # The handler owns Content-Encoding (snappy, else 415). Left on, aiohttp would
    # inflate gzip/deflate bodies itself and answer 400 for br/zstd before we see them.
    app = web.Application(
        client_max_size=config.server.max_compressed_bytes, handler_args={"auto_decompress": False}
    )
    registry = registry if registry is not None else CollectorRegistry()
    register_runtime_metrics(registry)
    state = state if state is not None else Readiness()
    metrics = ReceiverMetrics(registry)
    ingester = Ingester(sink, selectors if selectors is not None else config.ingest.selectors)
    # One thread: decoding holds the GIL anyway, and the Ingester and store stay single-writer.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsf-ingest")

    async def executor_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        executor.shutdown(wait=True, cancel_futures=False)

    app.cleanup_ctx.append(executor_ctx)
    app[CONFIG] = config
    app[REGISTRY] = registry
    app[STATE] = state
    app[INGESTER] = ingester
    app[RECEIVER_METRICS] = metrics
    app[INGEST_EXECUTOR] = executor
    app.router.add_post(
        "/api/v1/write", make_write_handler(ingester, config.server, metrics, executor, state)
    )
    add_health_routes(app, state)

    async def metrics_handler(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics_handler)
    return app
