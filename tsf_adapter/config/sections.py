"""The config's sections: frozen dataclasses, each default commented with its reasoning.

Follows Prometheus's three steps: a default value for every key, a strict decode
that rejects unknown keys (``decoder.py``), then validation: per-field rules ride
on the field's type (``fields.py``), and rules that relate two fields live in a
section's ``problems()``, which names the key and what was expected, e.g.
``remote_write.queue.min_backoff: must not be greater than max_backoff (got 10s > 5s)``.
The targets' section is in ``target.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from tsf_adapter.config.fields import (
    ByteSize,
    DirPath,
    FilePath,
    HostPort,
    HttpUrl,
    PositiveInt,
    PositiveSeconds,
    Problems,
    Seconds,
    show,
    show_seconds,
)
from tsf_adapter.config.target import LOOKBACK_S, TargetConfig
from tsf_adapter.core.protocol import RW1_MESSAGE
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.shard import Shard
from tsf_adapter.core.units import format_size


def _no_headers() -> Mapping[str, str]:
    return MappingProxyType({})


# Headers that tsf-adapter sets itself, or that would fight with basic_auth / bearer_token_file.
_RESERVED_HEADERS: Final = frozenset(
    h.lower()
    for h in (
        "Authorization",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "Host",
        "X-Prometheus-Remote-Read-Version",
        "X-Prometheus-Remote-Write-Version",
    )
)
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicAuth:
    username: str
    # Exactly one of password / password_file; a file keeps secrets out of the config.
    password: str | None = None
    password_file: FilePath | None = None

    def problems(self) -> Problems:
        if (self.password is None) == (self.password_file is None):
            got = "neither" if self.password is None else "both"
            yield "", f"exactly one of password, password_file must be set (got {got})"


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    def problems(self) -> Problems:
        if (self.cert_file is None) != (self.key_file is None):
            only = "key_file" if self.cert_file is None else "cert_file"
            yield "", f"cert_file and key_file must be set together (got only {only})"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpClientConfig:
    """What every outgoing connection to Prometheus needs: where, how long, and who we are."""

    url: HttpUrl
    # Prometheus's own remote_timeout default is 30s; reads of long ranges take longer.
    timeout: PositiveSeconds = 30.0
    # Read-only: a config is shared by every task of the daemon and must not change under them.
    headers: Mapping[str, str] = field(default_factory=_no_headers)
    basic_auth: BasicAuth | None = None
    # Read at each request, so a rotated token is picked up without a restart.
    bearer_token_file: FilePath | None = None
    tls_config: TLSConfig = field(default_factory=TLSConfig)

    def problems(self) -> Problems:
        if self.basic_auth is not None and self.bearer_token_file is not None:
            yield "", "at most one of basic_auth, bearer_token_file may be set (got both)"
        for name, value in self.headers.items():
            if not _HEADER_NAME.fullmatch(name):
                yield f"headers.{name}", "not a valid HTTP header name"
            elif name.lower() == "authorization":
                yield f"headers.{name}", "set it with basic_auth or bearer_token_file instead"
            elif name.lower() in _RESERVED_HEADERS:
                yield f"headers.{name}", "reserved: tsf-adapter sets this header itself"
            elif "\r" in value or "\n" in value:
                yield f"headers.{name}", f"must not contain line breaks (got {show(value)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """Remote-write queue; defaults follow Prometheus's queue_config where it has one."""

    # Samples held (queued plus the batch in flight); past it the oldest queued forecasts are
    # dropped, never the producers stopped: while Prometheus is down, forecasts go on and the
    # newest are kept. Prometheus holds 2500 per shard, but its WAL is its buffer; ours is memory.
    # A queued forecast row costs about 17 bytes (its value and a reference to its label set), so
    # the default costs at most ~16 MiB and holds an hour of 1,000 series forecast every 5m with
    # 19 rows each (BENCHMARKS.md, outage).
    capacity: PositiveInt = 1_000_000
    # Prometheus 2.42 sends 500, 3.x 2000; 2000 keeps request overhead low for forecast batches.
    max_samples_per_send: PositiveInt = 2000
    # A partial batch goes out after this long, so forecasts never sit in memory.
    batch_send_deadline: PositiveSeconds = 5.0
    min_backoff: PositiveSeconds = 0.03
    max_backoff: PositiveSeconds = 5.0
    # Prometheus drops batches on 429 by default; we follow, but let users opt in to retrying.
    retry_on_http_429: bool = False
    # On shutdown, how long to keep trying to send what is queued; 0 drops it at once.
    flush_deadline: Seconds = 60.0
    # Samples older than this when a send is attempted are dropped, counted as too_old, instead
    # of being retried for as long as Prometheus is down (Prometheus's key since 2.50; 0 keeps
    # them). 1h is what Prometheus 2.42's head accepts: it answers 400 "out of bounds" to a
    # request holding a sample older than its newest minus 1h, and that fails the whole request,
    # fresh samples included.
    sample_age_limit: Seconds = 3600.0

    def problems(self) -> Problems:
        if self.min_backoff > self.max_backoff:
            got = f"{show_seconds(self.min_backoff)} > {show_seconds(self.max_backoff)}"
            yield "min_backoff", f"must not be greater than max_backoff (got {got})"
        if self.capacity < self.max_samples_per_send:
            # A batch could never fill, so every send would wait for batch_send_deadline.
            got = f"{self.capacity} < {self.max_samples_per_send}"
            yield "capacity", f"must be >= max_samples_per_send (got {got})"
        if 0 < self.sample_age_limit <= self.batch_send_deadline:
            # A partial batch waits batch_send_deadline: it would be too old before it left.
            got = f"{show_seconds(self.sample_age_limit)} <= {show_seconds(self.batch_send_deadline)}"
            yield "sample_age_limit", f"must be 0 (off) or longer than batch_send_deadline (got {got})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteWriteConfig(HttpClientConfig):
    url: HttpUrl = "http://127.0.0.1:9090/api/v1/write"
    # RW1 is what every Prometheus accepts; RW2 needs a 2.54+ receiver.
    protobuf_message: Literal["prometheus.WriteRequest", "io.prometheus.write.v2.Request"] = RW1_MESSAGE
    queue: QueueConfig = field(default_factory=QueueConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteReadConfig(HttpClientConfig):
    url: HttpUrl = "http://127.0.0.1:9090/api/v1/read"
    # remote_read: Prometheus's protocol at `url` (Prometheus, Thanos, Mimir, ...). export: a store
    # that serves no remote-read but exports raw samples as JSON lines, VictoriaMetrics's
    # /api/v1/export (`url: http://victoria-metrics:8428/api/v1/export`).
    api: Literal["remote_read", "export"] = "remote_read"
    timeout: PositiveSeconds = 60.0
    # Each query covers at most this much time: a sub-query of a long backfill stays far below
    # Prometheus's --storage.remote.read-sample-limit (5e7) even for thousands of series.
    max_query_range: PositiveSeconds = 2 * 3600.0
    # Sub-queries in flight at once; Prometheus allows 10 concurrent reads by default.
    concurrency: PositiveInt = 4
    # Ask for XOR chunks first (no sample limit, 10x smaller); fall back to SAMPLES if refused.
    prefer_streamed: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig:
    remote_read: RemoteReadConfig = field(default_factory=RemoteReadConfig)
    remote_write: RemoteWriteConfig = field(default_factory=RemoteWriteConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """The receiver's HTTP server and the limits that protect it."""

    # 9201 is the port of Prometheus's own example remote-storage adapter. Port 0 picks a free one.
    listen_address: HostPort = "0.0.0.0:9201"
    # Checked before reading the body. Prometheus sends ~100 KiB batches; 16 MiB is generous.
    max_compressed_bytes: ByteSize = 16 * 1024 * 1024
    # Checked from the snappy header before decompressing, so a small bomb cannot expand.
    max_decompressed_bytes: ByteSize = 64 * 1024 * 1024
    # Requests being decoded at once; beyond this the receiver answers 503 (Prometheus retries).
    max_inflight_requests: PositiveInt = 64

    def problems(self) -> Problems:
        if self.max_decompressed_bytes < self.max_compressed_bytes:
            got = f"{format_size(self.max_decompressed_bytes)} < {format_size(self.max_compressed_bytes)}"
            yield "max_decompressed_bytes", f"must be >= max_compressed_bytes (got {got})"


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestConfig:
    # Series the receiver keeps; anything else in a remote-write request is dropped on arrival.
    # Empty keeps nothing until targets (which bring their own selectors) are configured.
    selectors: tuple[Selector, ...] = ()
    # Series kept in all, over every target: a new series beyond it is refused (its samples are
    # acknowledged and dropped, counted in tsf_adapter_target_series_refused_total), so a label
    # explosion upstream cannot exhaust memory. A series costs 8 bytes per step of its target's
    # history: 23 KiB at the default 1m step and 2d history, so 150,000 series take about 3.4 GiB.
    max_series: PositiveInt = 150_000


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputConfig:
    """How forecasts leave the daemon; one destination for all targets, as there is one Prometheus."""

    # remote_write: pushed to prometheus.remote_write at each forecast, stamped with the forecast time.
    # exposition: served at /forecasts for Prometheus to scrape (no timestamps; honor_labels: true).
    mode: Literal["remote_write", "exposition"] = "remote_write"
    # Also write m:forecast_path at future timestamps. Off: Prometheus <= 2.53 breaks its own ingestion
    # on samples more than ~1h ahead and >= 2.54 rejects them; VictoriaMetrics keeps up to 2 days ahead.
    future_timestamps: bool = False

    def problems(self) -> Problems:
        if self.future_timestamps and self.mode != "remote_write":
            yield "future_timestamps", "needs mode remote_write (the exposition format carries no timestamps)"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardConfig:
    """This replica's share of the series, split as Prometheus's ``hashmod`` relabelling splits them.

    With ``total`` replicas, replica ``index`` keeps the series whose ``hashmod`` of the ``labels``
    values is ``index`` (:mod:`tsf_adapter.core.shard`): what Prometheus sends it, and what its
    backfill reads. ``labels`` default to the targets' ``threshold.on`` labels, so a series and the
    quota it is compared with always land on the same replica.
    """

    index: int = 0
    total: PositiveInt = 1
    labels: tuple[str, ...] = ()

    def problems(self) -> Problems:
        if not 0 <= self.index < self.total:
            yield "index", f"must be from 0 to total - 1 = {self.total - 1} (got {self.index})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    # Several targets run side by side; none by default, so the receiver alone can be run.
    targets: tuple[TargetConfig, ...] = ()
    output: OutputConfig = field(default_factory=OutputConfig)
    # Trained models, one file per target. Relative to the config file's directory (the daemon
    # resolves it there), so a service started from any working directory finds the same models.
    state_dir: DirPath = "./state"
    # One replica of several, each forecasting its share of the series (none: this one does all).
    shard: ShardConfig = field(default_factory=ShardConfig)

    def shard_labels(self) -> tuple[str, ...] | None:
        """The labels series are split by: ``shard.labels``, else the one ``threshold.on`` set the
        targets share; None when neither gives one (a problem when ``shard.total`` > 1)."""
        if self.shard.labels:
            return self.shard.labels
        ons = {t.threshold.on for t in self.targets if t.threshold is not None and t.threshold.on}
        return ons.pop() if len(ons) == 1 else None

    def shard_filter(self) -> Shard | None:
        """What the store keeps of the series: None when this replica keeps all of them."""
        labels = self.shard_labels()
        if self.shard.total == 1 or labels is None:
            return None
        return Shard(self.shard.index, self.shard.total, labels)

    def problems(self) -> Problems:
        yield from self._shard_problems()
        seen: dict[str, int] = {}
        for i, target in enumerate(self.targets):
            first = seen.setdefault(target.name, i)
            if first != i:
                yield f"targets[{i}].name", f"duplicate target name {target.name!r} (also targets[{first}])"
            if self.output.mode == "remote_write" and target.forecast_every > LOOKBACK_S:
                # A scrape repeats the last values, so only pushed forecasts have this problem.
                got = f"{show_seconds(target.forecast_every)} > {show_seconds(LOOKBACK_S)}"
                yield (
                    f"targets[{i}].forecast_every",
                    (
                        f"must be at most Prometheus's lookback of 5m with output mode remote_write, or the"
                        f" forecast series vanish from instant queries between writes (got {got})"
                    ),
                )

    def _shard_problems(self) -> Problems:
        if self.shard.total == 1:
            return
        labels = self.shard_labels()
        if labels is None:
            ons = sorted({t.threshold.on for t in self.targets if t.threshold is not None and t.threshold.on})
            why = f"the targets' threshold.on differ ({ons})" if ons else "no target has threshold.on labels"
            yield "shard.labels", f"must name the labels series are split by: {why}"
            return
        for i, target in enumerate(self.targets):
            agg = target.aggregate
            if agg is not None and not set(labels) <= set(agg.by):
                yield (
                    f"targets[{i}].aggregate.by",
                    f"must include every shard label {list(labels)}, or one group's series would be"
                    f" split between replicas (got {list(agg.by)})",
                )
