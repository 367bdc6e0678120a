"""``POST /api/v1/write``: Prometheus's remote-write, received.

The status code is the contract with the sender (Prometheus drops a batch on
4xx and 429, and retries 5xx), so every outcome maps to one on purpose:

=====  ==========================================================================
204    stored (or deliberately filtered out by the selectors)
400    corrupt snappy, bad protobuf, invalid labels: resending cannot help
413    body or declared decompressed size over the configured limits
415    a Content-Type or Content-Encoding we do not speak
503    shedding load (too many requests in flight), starting (history not yet backfilled)
       or shutting down: resend later
500    the store failed: resend later
=====  ==========================================================================

Answers carry a one-line plain-text reason. Size limits are checked before
the body is read (Content-Length) and before it is decompressed (the snappy
header states the length). Decoding runs on one worker thread, which keeps
the event loop free and the ``Ingester`` single-threaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from tsf_adapter.config import ServerConfig
from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.lifecycle import Readiness
from tsf_adapter.core.protocol import RW2_MESSAGE
from tsf_adapter.remote.codec import PayloadTooLarge, decompress, parse_content_type
from tsf_adapter.remote.ingest import Ingester, IngestResult
from tsf_adapter.remote.receive_metrics import (
    DROP_HISTOGRAM,
    DROP_UNSELECTED,
    REJECT_INTERNAL,
    REJECT_INVALID,
    REJECT_OVERLOADED,
    REJECT_STARTING,
    REJECT_STOPPING,
    REJECT_TOO_LARGE,
    REJECT_UNSUPPORTED,
    ReceiverMetrics,
)

logger = logging.getLogger("tsf_adapter.remote.receive")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAMPLES_WRITTEN = "X-Prometheus-Remote-Write-Samples-Written"
HISTOGRAMS_WRITTEN = "X-Prometheus-Remote-Write-Histograms-Written"
EXEMPLARS_WRITTEN = "X-Prometheus-Remote-Write-Exemplars-Written"


def make_write_handler(
    ingester: Ingester,
    limits: ServerConfig,
    metrics: ReceiverMetrics,
    executor: Executor,
    state: Readiness | None = None,
) -> Handler:
    """Build the aiohttp handler for ``POST /api/v1/write``."""
    state = state or Readiness()
    inflight = 0
    # Writes turned away while starting: expected (the sender resends them), so each is logged at
    # debug and the count once, when the first write is taken.
    turned_away = 0

    def decode_and_store(body: bytes, message: str) -> IngestResult:
        return ingester.ingest(decompress(body, limits.max_decompressed_bytes), message)

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal inflight, turned_away
        message = parse_content_type(request.headers.get("Content-Type"))
        protocol = "v2" if message == RW2_MESSAGE else "v1"
        if state.stopping:
            return _answer(metrics, protocol, 503, "shutting down", reason=REJECT_STOPPING, quiet=True)
        if not state.ready:
            # Samples must not reach the store before its backfill: an aggregating target would
            # finalise the newest steps and then drop the backfilled past as late. Prometheus
            # keeps what it could not send and resends it once we are ready.
            turned_away += 1
            return _answer(
                metrics, protocol, 503, "starting: not ready yet", reason=REJECT_STARTING, quiet=True
            )
        if turned_away:
            logger.info(
                "answered 503 to %d remote-write requests while starting; senders resend them", turned_away
            )
            turned_away = 0
        if message is None:
            return _answer(
                metrics,
                protocol,
                415,
                f"unsupported content type {request.headers.get('Content-Type')!r}",
                reason=REJECT_UNSUPPORTED,
            )
        encoding = request.headers.get("Content-Encoding", "snappy").strip().lower()
        if encoding not in ("snappy", ""):
            return _answer(
                metrics,
                protocol,
                415,
                f"unsupported content encoding {encoding!r}",
                reason=REJECT_UNSUPPORTED,
            )
        length = request.content_length
        if length is not None and length > limits.max_compressed_bytes:
            return _answer(
                metrics,
                protocol,
                413,
                f"body of {length} bytes exceeds limit {limits.max_compressed_bytes}",
                reason=REJECT_TOO_LARGE,
            )
        if inflight >= limits.max_inflight_requests:
            return _answer(
                metrics, protocol, 503, "overloaded: too many requests in flight", reason=REJECT_OVERLOADED
            )
        inflight += 1
        metrics.inflight.inc()
        start = time.perf_counter()
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _answer(
                    metrics,
                    protocol,
                    413,
                    f"body exceeds limit {limits.max_compressed_bytes}",
                    reason=REJECT_TOO_LARGE,
                )
            except (ConnectionError, HttpProcessingError) as exc:
                # The sender went away or broke the framing mid-body. Nobody may be left to
                # read this, but it is counted, and aiohttp does not log a traceback for it.
                return _answer(
                    metrics,
                    protocol,
                    400,
                    f"incomplete request body ({type(exc).__name__})",
                    reason=REJECT_INVALID,
                )
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(executor, decode_and_store, body, message)
            except PayloadTooLarge as exc:
                return _answer(metrics, protocol, 413, str(exc), reason=REJECT_TOO_LARGE)
            except DecodeError as exc:
                return _answer(metrics, protocol, 400, str(exc), reason=REJECT_INVALID)
            except Exception:
                logger.exception("storing a remote-write request failed")
                return _answer(
                    metrics, protocol, 500, "internal error storing samples", reason=REJECT_INTERNAL
                )
        finally:
            inflight -= 1
            metrics.inflight.dec()
            metrics.duration.observe(time.perf_counter() - start)
        _count(metrics, result)
        response = web.Response(status=204)
        if message == RW2_MESSAGE:
            response.headers[SAMPLES_WRITTEN] = str(result.acknowledged_samples)
            response.headers[HISTOGRAMS_WRITTEN] = "0"
            response.headers[EXEMPLARS_WRITTEN] = "0"
        metrics.requests.labels(protocol, "204").inc()
        return response

    return handle


def _count(metrics: ReceiverMetrics, result: IngestResult) -> None:
    metrics.samples.inc(result.samples)
    if result.unselected:
        metrics.dropped.labels(DROP_UNSELECTED).inc(result.unselected)
    if result.histograms:
        metrics.dropped.labels(DROP_HISTOGRAM).inc(result.histograms)
    if result.metadata:
        metrics.metadata.inc(result.metadata)
    if result.new_series:
        metrics.series_created.inc(result.new_series)
    metrics.last_success.set(time.time())


def _answer(
    metrics: ReceiverMetrics, protocol: str, status: int, text: str, *, reason: str, quiet: bool = False
) -> web.Response:
    """A plain-text one-line answer, counted by status and by reason; ``quiet``: logged at debug."""
    metrics.requests.labels(protocol, str(status)).inc()
    metrics.rejected.labels(reason).inc()
    if quiet:
        logger.debug("remote-write answered %d: %s", status, text)
    elif status >= 500:
        logger.warning("remote-write answered %d: %s", status, text)
    else:
        logger.info("remote-write rejected with %d: %s", status, text)
    line = text.splitlines()[0] if text else ""
    return web.Response(status=status, text=line + "\n", content_type="text/plain")
