"""Remote-write client: POST one encoded request and classify the answer.

This is the boundary where HTTP outcomes become our error types, so that the
queue decides what to do from the exception type alone (Prometheus's
``client.go`` / ``RecoverableError`` split):

=====================================  =====================================
outcome                                raises
=====================================  =====================================
2xx                                    nothing (RW2: only with the
                                       ``…-Samples-Written`` header)
5xx, connection error, timeout         ``RecoverableError`` (``retry_after``)
429                                    ``RecoverableError`` if
                                       ``queue.retry_on_http_429``, else
                                       ``WriteRejected``
other status                           ``WriteRejected`` with the server's
                                       first body line as the reason
=====================================  =====================================

The client never retries; only ``remote/queue.py`` does.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Final, Protocol

import aiohttp

from tsf_adapter.config import RemoteWriteConfig
from tsf_adapter.core.errors import RecoverableError, WriteRejected
from tsf_adapter.core.protocol import RW2_MESSAGE
from tsf_adapter.remote.codec import content_type, version_header
from tsf_adapter.remote.http import auth_headers, response_reason, retry_after, server_hostname, ssl_context

SAMPLES_WRITTEN_HEADER: Final = "X-Prometheus-Remote-Write-Samples-Written"


class WriteClient(Protocol):
    """What the queue needs from a sender: store one encoded request or raise.

    Implementations raise ``RecoverableError`` for failures worth retrying and
    ``WriteRejected`` for data the receiver will never take.
    """

    async def store(self, body: bytes, *, samples: int) -> None: ...


def protocol_headers(message: str) -> dict[str, str]:
    """The headers the remote-write spec requires for ``message`` (RW1 or RW2).

    >>> protocol_headers("prometheus.WriteRequest")["X-Prometheus-Remote-Write-Version"]
    '0.1.0'
    """
    return {
        "Content-Encoding": "snappy",
        "Content-Type": content_type(message),
        "X-Prometheus-Remote-Write-Version": version_header(message),
    }


class RemoteWriteClient:
    """Sends encoded remote-write requests to one URL over a shared session.

    Usage::

        async with aiohttp.ClientSession() as session:
            client = RemoteWriteClient(cfg.prometheus.remote_write, session)
            await client.store(encode_write_request(series), samples=n)

    ``wall_clock`` (Unix seconds) is only used to turn a ``Retry-After`` date
    into a delay; tests replace it.
    """

    def __init__(
        self,
        cfg: RemoteWriteConfig,
        session: aiohttp.ClientSession,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._session = session
        self._wall_clock = wall_clock
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        # Built once: loading certificates per request would cost more than the request.
        ctx = ssl_context(cfg)
        self._ssl: ssl.SSLContext | bool = ctx if ctx is not None else True
        self._protocol_headers = protocol_headers(cfg.protobuf_message)

    @property
    def url(self) -> str:
        return self._cfg.url

    @property
    def message(self) -> str:
        """The protobuf message this client announces (and so the encoding it expects)."""
        return self._cfg.protobuf_message

    async def store(self, body: bytes, *, samples: int) -> None:
        """POST ``body`` (a snappy-compressed request holding ``samples`` samples).

        Returns on success; raises ``RecoverableError`` or ``WriteRejected``.
        """
        # Auth headers are rebuilt per request so rotated secrets apply; protocol
        # headers go last so that user-configured headers cannot break the wire format.
        headers = {**auth_headers(self._cfg), **self._protocol_headers}
        url = self._cfg.url
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                ssl=self._ssl,
                server_hostname=server_hostname(self._cfg),
            ) as resp:
                await self._check(resp, samples)
        except (WriteRejected, RecoverableError):
            raise
        # Prometheus treats every error before a status arrives as recoverable: the
        # request may never have reached the receiver, so sending it again is safe.
        except TimeoutError as exc:
            raise RecoverableError(f"timed out after {self._cfg.timeout}s", url=url) from exc
        except aiohttp.ClientError as exc:
            raise RecoverableError(f"{type(exc).__name__}: {exc}", url=url) from exc

    async def _check(self, resp: aiohttp.ClientResponse, samples: int) -> None:
        status = resp.status
        url = self._cfg.url
        if 200 <= status < 300:
            if (
                self._cfg.protobuf_message == RW2_MESSAGE
                and samples > 0
                and SAMPLES_WRITTEN_HEADER not in resp.headers
            ):
                # The 2.0 spec: a 1.x receiver decodes a 2.0 body as an empty 1.x request
                # and answers 2xx having written nothing; treat that as 415.
                raise WriteRejected(
                    f"HTTP {status} without {SAMPLES_WRITTEN_HEADER}: "
                    "the receiver does not support remote write 2.0",
                    url=url,
                    status=415,
                )
            return
        reason = await response_reason(resp)
        message = f"server returned HTTP status {status} {resp.reason or ''}".rstrip()
        if reason:
            message = f"{message}: {reason}"
        retryable = status >= 500 or (status == 429 and self._cfg.queue.retry_on_http_429)
        if retryable:
            delay = retry_after(resp, now=self._wall_clock())
            raise RecoverableError(message, url=url, status=status, retry_after=delay)
        raise WriteRejected(message, url=url, status=status)
