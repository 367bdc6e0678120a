"""Remote-read client for backfill: long ranges split, streamed XOR chunks first, SAMPLES as fallback.

Why each rule exists:

* **Split.** A range is cut into closed sub-ranges of at most
  ``max_query_range`` seconds that do not overlap (Prometheus ranges are
  ``[start, end]``, so the next one starts 1 ms after the previous end). Small
  sub-queries keep each answer small and let ``concurrency`` of them run at once.
* **Streamed first.** ``STREAMED_XOR_CHUNKS`` is ~10x smaller than SAMPLES, has
  no sample limit and keeps ``-0.0``. We fall back to SAMPLES when the server
  answers SAMPLES anyway, answers 400 to the streamed request, or sends a chunk
  encoding we cannot decode (XOR2 from 3.11+, histograms); after the first
  fallback this client asks for SAMPLES only, so a server is probed once.
* **Halve on the sample limit.** SAMPLES answers are capped by the server's
  ``--storage.remote.read-sample-limit`` (400 ``exceeded sample limit``); the
  sub-range is halved and both halves retried until they fit.
* **Errors** are classified here, once: connection problems, timeouts and 5xx
  raise ``RecoverableError`` (the caller may retry); any other non-200 answer
  raises ``RemoteError`` with the server's one-line reason.

Usage::

    async with aiohttp.ClientSession() as session:
        client = RemoteReadClient(RemoteReadConfig(url="http://prom:9090/api/v1/read"), session)
        series = await client.read(parse_selector('node_load1{job="node"}'), start_ms, end_ms)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final, TypeVar

import aiohttp
import numpy as np
import numpy.typing as npt

from tsf_adapter.config import RemoteReadConfig
from tsf_adapter.core.errors import DecodeError, RecoverableError, RemoteError, UnsupportedEncodingError
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.series import Labels, SeriesSamples
from tsf_adapter.remote.export_codec import decode_export
from tsf_adapter.remote.http import auth_headers, response_reason, retry_after, server_hostname, ssl_context
from tsf_adapter.remote.read_codec import (
    DEFAULT_MAX_FRAME_BYTES,
    SAMPLES_CONTENT_TYPE,
    ChunkedSeriesAssembler,
    FrameReader,
    ReadQuery,
    ResponseType,
    decode_samples_response,
    encode_read_request,
    merge_samples,
)

logger = logging.getLogger("tsf_adapter.remote.read")

REMOTE_READ_VERSION: Final = "0.1.0"
# Decoding more than this many bytes at once (~8k XOR samples, ~10 ms) runs in a worker thread
# so the event loop keeps serving.
EXECUTOR_THRESHOLD_BYTES: Final = 64 * 1024
_READ_PIECE_BYTES: Final = 256 * 1024
_PROGRESS_EVERY_S: Final = 10.0
_SAMPLE_LIMIT_REASON: Final = "exceeded sample limit"
_STREAMED_FIRST: Final = (ResponseType.STREAMED_XOR_CHUNKS, ResponseType.SAMPLES)
_SAMPLES_ONLY: Final = (ResponseType.SAMPLES,)

_T = TypeVar("_T")


@dataclass(slots=True)
class ReadStats:
    """Counters over the client's lifetime, for logs and tests."""

    requests: int = 0
    streamed_responses: int = 0
    samples_responses: int = 0
    fallbacks: int = 0
    halvings: int = 0
    samples: int = 0
    frames: int = 0
    chunks: int = 0


class _SampleLimitExceeded(Exception):
    """SAMPLES answer refused by the server's sample limit: split the range."""


class _StreamRefused(Exception):
    """The streamed answer cannot be used: ask again for SAMPLES."""


def split_range(start_ms: int, end_ms: int, max_range_ms: int) -> list[tuple[int, int]]:
    """Closed, non-overlapping sub-ranges covering ``[start_ms, end_ms]``, each spanning at most
    ``max_range_ms`` milliseconds of timestamps.

    >>> split_range(0, 2500, 1000)
    [(0, 999), (1000, 1999), (2000, 2500)]
    """
    if end_ms < start_ms:
        raise ValueError(f"end {end_ms} is before start {start_ms}")
    step = max(1, max_range_ms)
    return [(s, min(s + step - 1, end_ms)) for s in range(start_ms, end_ms + 1, step)]


class RemoteReadClient:
    """Reads raw samples from a Prometheus-compatible ``/api/v1/read`` endpoint, or with
    ``api: export`` from a JSON-lines export (VictoriaMetrics's ``/api/v1/export``).

    The session is the caller's (one per process, closed by its owner). Settings
    come from ``cfg``: ``url``, ``timeout`` (per HTTP request), ``max_query_range``
    (seconds per sub-query), ``concurrency``, ``prefer_streamed``, and the
    headers, auth and TLS of :mod:`tsf_adapter.remote.http`.
    """

    def __init__(
        self,
        cfg: RemoteReadConfig,
        session: aiohttp.ClientSession,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if cfg.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1 (got {cfg.concurrency})")
        self.cfg = cfg
        self.stats = ReadStats()
        self._session = session
        self._max_frame_bytes = max_frame_bytes
        self._streamed = cfg.prefer_streamed
        self._ssl = ssl_context(cfg)
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)

    async def read(self, selector: Selector, start_ms: int, end_ms: int) -> list[SeriesSamples]:
        """All samples of the matching series with ``start_ms <= t <= end_ms``, sorted by labels."""
        ranges = split_range(start_ms, end_ms, round(self.cfg.max_query_range * 1000))
        progress = _Progress(str(selector), len(ranges))
        semaphore = asyncio.Semaphore(self.cfg.concurrency)

        async def one(start: int, end: int) -> list[SeriesSamples]:
            result = await self._read_range(selector, start, end, semaphore)
            progress.done(sum(len(s) for s in result))
            return result

        parts = await _gather_or_cancel([one(s, e) for s, e in ranges])
        merged = _merge_series(parts)
        progress.finish(len(merged))
        return merged

    async def _read_range(
        self, selector: Selector, start_ms: int, end_ms: int, semaphore: asyncio.Semaphore
    ) -> list[SeriesSamples]:
        query = ReadQuery(start_ms, end_ms, selector.matchers)
        try:
            async with semaphore:
                if self.cfg.api == "export":
                    return await self._export(selector, start_ms, end_ms)
                return await self._query(query)
        except _SampleLimitExceeded as exc:
            # The slot is released before recursing, so halves never wait on their parent.
            if end_ms <= start_ms:
                raise RemoteError(
                    f"remote read: {exc} even for the single millisecond {start_ms}",
                    url=self.cfg.url,
                    status=400,
                ) from None
            mid = start_ms + (end_ms - start_ms) // 2
            self.stats.halvings += 1
            logger.debug("remote read %s: %s; halving [%d, %d] at %d", selector, exc, start_ms, end_ms, mid)
            halves = await _gather_or_cancel(
                [
                    self._read_range(selector, start_ms, mid, semaphore),
                    self._read_range(selector, mid + 1, end_ms, semaphore),
                ]
            )
            return _merge_series(halves)

    async def _query(self, query: ReadQuery) -> list[SeriesSamples]:
        if self._streamed:
            try:
                return await self._post(query, _STREAMED_FIRST)
            except _StreamRefused as exc:
                self.stats.fallbacks += 1
                if self._streamed:
                    self._streamed = False
                    logger.warning("remote read %s: %s; using SAMPLES from now on", self.cfg.url, exc)
        return await self._post(query, _SAMPLES_ONLY)

    async def _post(self, query: ReadQuery, types: Sequence[ResponseType]) -> list[SeriesSamples]:
        streamed_asked = types[0] is ResponseType.STREAMED_XOR_CHUNKS
        headers = {
            **auth_headers(self.cfg),
            "Content-Type": SAMPLES_CONTENT_TYPE,
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Read-Version": REMOTE_READ_VERSION,
        }
        self.stats.requests += 1
        url = self.cfg.url
        try:
            async with self._post_to(encode_read_request([query], types), headers) as resp:
                if resp.status != 200:
                    reason = await response_reason(resp)
                    if resp.status >= 500:
                        raise RecoverableError(
                            f"remote read: HTTP {resp.status}: {reason}",
                            url=url,
                            status=resp.status,
                            retry_after=retry_after(resp, now=time.time()),
                        )
                    if resp.status == 400 and streamed_asked:
                        raise _StreamRefused(f"streamed request refused with 400: {reason}")
                    if resp.status == 400 and _SAMPLE_LIMIT_REASON in reason:
                        raise _SampleLimitExceeded(reason)
                    raise RemoteError(
                        f"remote read: HTTP {resp.status}: {reason}", url=url, status=resp.status
                    )
                content_type = resp.headers.get("Content-Type", "")
                if content_type.startswith("application/x-streamed-protobuf"):
                    result = await self._read_stream(resp, query)
                    self.stats.streamed_responses += 1
                else:
                    if streamed_asked and self._streamed:
                        self._streamed = False
                        self.stats.fallbacks += 1
                        logger.warning(
                            "remote read %s: server answered %r to a streamed request; using SAMPLES",
                            url,
                            content_type,
                        )
                    result = await self._read_samples(resp)
                    self.stats.samples_responses += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecoverableError(f"remote read: {type(exc).__name__}: {exc}", url=url) from exc
        self.stats.samples += sum(len(s) for s in result)
        return result

    def _post_to(
        self, data: bytes | dict[str, str], headers: dict[str, str]
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """A POST to ``cfg.url`` with the configured timeout and TLS."""
        return self._session.post(
            self.cfg.url,
            data=data,
            headers=headers,
            timeout=self._timeout,
            ssl=self._ssl if self._ssl is not None else True,
            server_hostname=server_hostname(self.cfg),
        )

    async def _export(self, selector: Selector, start_ms: int, end_ms: int) -> list[SeriesSamples]:
        """``api: export``: the raw samples of ``[start_ms, end_ms]`` as JSON lines (:mod:`.export_codec`)."""
        form = {"match[]": str(selector), "start": f"{start_ms / 1000:.3f}", "end": f"{end_ms / 1000:.3f}"}
        url = self.cfg.url
        self.stats.requests += 1
        try:
            async with self._post_to(form, auth_headers(self.cfg)) as resp:
                if resp.status != 200:
                    reason = await response_reason(resp)
                    error = RecoverableError if resp.status >= 500 else RemoteError
                    raise error(f"export read: HTTP {resp.status}: {reason}", url=url, status=resp.status)
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecoverableError(f"export read: {type(exc).__name__}: {exc}", url=url) from exc
        try:
            result = await _maybe_in_thread(len(body), decode_export, body, start_ms, end_ms)
        except DecodeError as exc:
            raise RemoteError(f"export read: {exc}", url=url) from None
        self.stats.samples_responses += 1
        self.stats.samples += sum(len(s) for s in result)
        return result

    async def _read_samples(self, resp: aiohttp.ClientResponse) -> list[SeriesSamples]:
        body = await resp.read()
        results = await _maybe_in_thread(len(body), decode_samples_response, body)
        if len(results) != 1:
            raise RemoteError(f"remote read: {len(results)} results for 1 query", url=self.cfg.url)
        return results[0]

    async def _read_stream(self, resp: aiohttp.ClientResponse, query: ReadQuery) -> list[SeriesSamples]:
        reader = FrameReader(self._max_frame_bytes)
        assembler = ChunkedSeriesAssembler([query])
        try:
            async for piece in resp.content.iter_chunked(_READ_PIECE_BYTES):
                frames = reader.feed(piece)
                if frames:
                    await _maybe_in_thread(len(piece), assembler.add_all, frames)
        except UnsupportedEncodingError as exc:
            raise _StreamRefused(str(exc)) from None
        except DecodeError as exc:
            raise RemoteError(f"remote read: bad streamed response: {exc}", url=self.cfg.url) from exc
        try:
            reader.close()
        except DecodeError as exc:
            # The server (or a proxy) closed the body mid-frame: worth another try.
            raise RecoverableError(f"remote read: {exc}", url=self.cfg.url) from exc
        self.stats.frames += reader.frames_read
        self.stats.chunks += assembler.chunks_decoded
        return assembler.result()[0]


class _Progress:
    """Logs long reads: start, every ``_PROGRESS_EVERY_S`` seconds, and the end."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.finished = 0
        self.samples = 0
        self.started = self.last_log = time.monotonic()
        # One sub-query is routine; only split reads are worth an INFO line.
        self.level = logging.INFO if total > 1 else logging.DEBUG
        logger.log(self.level, "remote read %s: %d sub-queries", what, total)

    def done(self, samples: int) -> None:
        self.finished += 1
        self.samples += samples
        now = time.monotonic()
        if now - self.last_log >= _PROGRESS_EVERY_S and self.finished < self.total:
            self.last_log = now
            logger.info(
                "remote read %s: %d/%d sub-queries, %d samples, %.0fs",
                self.what,
                self.finished,
                self.total,
                self.samples,
                now - self.started,
            )

    def finish(self, series: int) -> None:
        logger.log(
            self.level,
            "remote read %s: done, %d series, %d samples in %.1fs",
            self.what,
            series,
            self.samples,
            time.monotonic() - self.started,
        )


def _merge_series(parts: Sequence[list[SeriesSamples]]) -> list[SeriesSamples]:
    """Join per-sub-range results (given in time order) into one series per label set."""
    runs: dict[Labels, list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]] = {}
    for part in parts:
        for series in part:
            runs.setdefault(series.labels, []).append((series.timestamps, series.values))
    merged = []
    for labels in sorted(runs):
        timestamps, values = merge_samples(runs[labels])
        merged.append(SeriesSamples(labels, timestamps, values))
    return merged


async def _gather_or_cancel(aws: Sequence[Awaitable[_T]]) -> list[_T]:
    """Like ``gather``, but the first failure cancels the rest and is raised as itself
    (a TaskGroup would wrap it in an ExceptionGroup, hiding the error class callers decide on)."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _maybe_in_thread(size: int, fn: Callable[..., _T], *args: object) -> _T:
    if size > EXECUTOR_THRESHOLD_BYTES:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    return fn(*args)
