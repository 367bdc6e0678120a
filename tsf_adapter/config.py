"""Configuration: typed, frozen sections with documented defaults.

Follows Prometheus's three steps: a default value for every key (commented
with why), a strict decode that rejects unknown keys, then validation with
messages that name the file, the dotted key and what was expected, e.g.
``config.yaml: prometheus.remote_write.queue.max_samples_per_send: must be > 0 (got -5)``.

The loader (``load_config``) lives at the bottom of this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

RW1_MESSAGE: Final = "prometheus.WriteRequest"
RW2_MESSAGE: Final = "io.prometheus.write.v2.Request"


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicAuth:
    username: str
    # Exactly one of password / password_file; a file keeps secrets out of the config.
    password: str | None = None
    password_file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpClientConfig:
    """What every outgoing connection to Prometheus needs: where, how long, and who we are."""

    url: str
    # Prometheus's own remote_timeout default is 30s; reads of long ranges take longer.
    timeout: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    # Read at each request, so a rotated token is picked up without a restart.
    bearer_token_file: str | None = None
    tls_config: TLSConfig = field(default_factory=TLSConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """Remote-write queue; defaults follow Prometheus's queue_config where it has one."""

    # Samples held before producers are made to wait (back-pressure). Prometheus: 2500 per shard.
    capacity: int = 10_000
    # Prometheus 2.42 sends 500, 3.x 2000; 2000 keeps request overhead low for forecast batches.
    max_samples_per_send: int = 2000
    # A partial batch goes out after this long, so forecasts never sit in memory.
    batch_send_deadline: float = 5.0
    min_backoff: float = 0.03
    max_backoff: float = 5.0
    # Prometheus drops batches on 429 by default; we follow, but let users opt in to retrying.
    retry_on_http_429: bool = False
    # On shutdown, how long to keep trying to send what is queued.
    flush_deadline: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteWriteConfig(HttpClientConfig):
    url: str = "http://127.0.0.1:9090/api/v1/write"
    # RW1 is what every Prometheus accepts; RW2 needs a 2.54+ receiver.
    protobuf_message: Literal["prometheus.WriteRequest", "io.prometheus.write.v2.Request"] = RW1_MESSAGE
    queue: QueueConfig = field(default_factory=QueueConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteReadConfig(HttpClientConfig):
    url: str = "http://127.0.0.1:9090/api/v1/read"
    timeout: float = 60.0
    # Each query covers at most this much time: a sub-query of a long backfill stays far below
    # Prometheus's --storage.remote.read-sample-limit (5e7) even for thousands of series.
    max_query_range: float = 2 * 3600.0
    # Sub-queries in flight at once; Prometheus allows 10 concurrent reads by default.
    concurrency: int = 4
    # Ask for XOR chunks first (no sample limit, 10x smaller); fall back to SAMPLES if refused.
    prefer_streamed: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig:
    remote_read: RemoteReadConfig = field(default_factory=RemoteReadConfig)
    remote_write: RemoteWriteConfig = field(default_factory=RemoteWriteConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """The receiver's HTTP server and the limits that protect it."""

    # 9201 is the port of Prometheus's own example remote-storage adapter.
    listen_address: str = "0.0.0.0:9201"
    # Checked before reading the body. Prometheus sends ~100 KiB batches; 16 MiB is generous.
    max_compressed_bytes: int = 16 * 1024 * 1024
    # Checked from the snappy header before decompressing, so a small bomb cannot expand.
    max_decompressed_bytes: int = 64 * 1024 * 1024
    # Requests being decoded at once; beyond this the receiver answers 503 (Prometheus retries).
    max_inflight_requests: int = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    # Selectors of the series the receiver keeps; later the targets' selectors join them.
    ingest_selectors: tuple[str, ...] = ()
