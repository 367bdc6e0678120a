"""Configuration: typed, frozen sections with documented defaults, and their YAML loader.

Follows Prometheus's three steps: a default value for every key (commented
with why), a strict decode that rejects unknown keys, then validation with
messages that name the file, the dotted key and what was expected, e.g.
``config.yaml: prometheus.remote_write.queue.max_samples_per_send: must be > 0 (got -5)``.

Per-field rules ride on the field's type (``PositiveSeconds``, ``ByteSize``, ``FilePath``...), so
the one generic decoder at the bottom applies them to any section, and to lists of sections with
paths such as ``targets[0].step``. Rules that relate two fields live in a section's ``problems()``.

>>> cfg = config_from_dict({"server": {"listen_address": ":9201", "max_compressed_bytes": "8MiB"}})
>>> cfg.server.max_compressed_bytes, cfg.prometheus.remote_write.queue.min_backoff
(8388608, 0.03)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType, NoneType, UnionType
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    NoReturn,
    Protocol,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    runtime_checkable,
)
from urllib.parse import urlsplit

import yaml

from tsf_adapter.core.address import split_host_port
from tsf_adapter.core.errors import ConfigError, SelectorError
from tsf_adapter.core.protocol import RW1_MESSAGE
from tsf_adapter.core.selector import Selector, parse_selector
from tsf_adapter.core.series import LABEL_NAME_RE, METRIC_NAME_LABEL
from tsf_adapter.core.units import format_duration, format_size, parse_duration, parse_size


class Check(Enum):
    """A rule attached to a field's type with ``Annotated``; the decoder applies it to YAML values."""

    DURATION = "duration"  # "30s", "1h30m" or a plain number of seconds
    SIZE = "size"  # "16MiB", "1GB" or a plain number of bytes
    POSITIVE = "positive"  # > 0
    FILE = "file"  # readable at load time; a relative path is taken from the config file's directory
    HTTP_URL = "http_url"  # http:// or https:// with a host
    HOST_PORT = "host_port"  # "host:port" to listen on
    DIRECTORY = "directory"  # a directory, or a path where one can be created; kept as written


Seconds = Annotated[float, Check.DURATION]
PositiveSeconds = Annotated[float, Check.DURATION, Check.POSITIVE]
PositiveInt = Annotated[int, Check.POSITIVE]
ByteSize = Annotated[int, Check.SIZE, Check.POSITIVE]
FilePath = Annotated[str, Check.FILE]
HttpUrl = Annotated[str, Check.HTTP_URL]
HostPort = Annotated[str, Check.HOST_PORT]
DirPath = Annotated[str, Check.DIRECTORY]

Problems = Iterator[tuple[str, str]]
"""``(key relative to the section, message)`` pairs; key ``""`` names the section itself."""


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
                yield f"headers.{name}", f"must not contain line breaks (got {_show(value)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """Remote-write queue; defaults follow Prometheus's queue_config where it has one."""

    # Samples held before producers are made to wait (back-pressure). Prometheus: 2500 per shard.
    capacity: PositiveInt = 10_000
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

    def problems(self) -> Problems:
        if self.min_backoff > self.max_backoff:
            got = f"{_show_seconds(self.min_backoff)} > {_show_seconds(self.max_backoff)}"
            yield "min_backoff", f"must not be greater than max_backoff (got {got})"
        if self.capacity < self.max_samples_per_send:
            # A batch could never fill, so every send would wait for batch_send_deadline.
            got = f"{self.capacity} < {self.max_samples_per_send}"
            yield "capacity", f"must be >= max_samples_per_send (got {got})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteWriteConfig(HttpClientConfig):
    url: HttpUrl = "http://127.0.0.1:9090/api/v1/write"
    # RW1 is what every Prometheus accepts; RW2 needs a 2.54+ receiver.
    protobuf_message: Literal["prometheus.WriteRequest", "io.prometheus.write.v2.Request"] = RW1_MESSAGE
    queue: QueueConfig = field(default_factory=QueueConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteReadConfig(HttpClientConfig):
    url: HttpUrl = "http://127.0.0.1:9090/api/v1/read"
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


# ---------------------------------------------------------------------------------------------
# Targets: what to forecast, and how the forecasts go out

PositiveFloat = Annotated[float, Check.POSITIVE]

ModelKind = Literal[
    "lstm", "gru", "transformer", "auto", "predict_linear", "holt_winters", "last_value", "seasonal_naive"
]
ModelScope = Literal["per_series", "global"]
AggregationOp = Literal["sum", "avg", "max", "min", "count"]

# A target needs some past on its grid before any model (even predict_linear) says anything useful.
MIN_HISTORY_STEPS: Final = 10
# Prometheus's default --query.lookback-delta: an instant query finds a series only when its newest
# sample is at most this old, so forecasts written less often than this flicker in and out.
LOOKBACK_S: Final = 300.0
_TARGET_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateConfig:
    """``op by (by...)`` applied as series arrive, like a recording rule ``sum by (...) (selector)``."""

    op: AggregationOp
    # No labels: one series for the whole selector, as `sum(x)` gives.
    by: tuple[str, ...] = ()
    # Prometheus's default --query.lookback-delta: a member counts while its last sample is this recent.
    lookback: PositiveSeconds = 300.0
    # How long a step waits for late samples before it is final (remote-write delivers in seconds).
    settle: Seconds = 120.0

    def problems(self) -> Problems:
        yield from _label_name_problems("by", self.by)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    # LSTM per series: the model this daemon exists for; the trainer fits every series of a target
    # as one stacked program, so per-series costs one tensor program, not one Python loop per series.
    # `global` (one shared network) is the choice for tens of thousands of series on a CPU.
    kind: ModelKind = "lstm"
    scope: ModelScope = "per_series"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdConfig:
    """What a forecast is compared with: a constant ``value``, or a limit series joined ``on`` labels.

    The threshold is ``value * ratio`` or ``latest limit * ratio``; e.g. ratio 0.9 warns at 90% of a quota.
    """

    value: float | None = None
    selector: Selector | None = None
    # Labels that pair a forecast series with its limit series (many-to-one). Empty: one limit for all.
    on: tuple[str, ...] = ()
    ratio: PositiveFloat = 1.0
    # "above": time until the forecast rises to the threshold (quotas, capacity); "below": until it
    # falls to it (free space, remaining budget).
    direction: Literal["above", "below"] = "above"

    def problems(self) -> Problems:
        if (self.value is None) == (self.selector is None):
            got = "neither" if self.value is None else "both"
            yield "", f"exactly one of value, selector must be set (got {got})"
        if self.value is not None and not math.isfinite(self.value):
            yield "value", f"must be a finite number (got {_show(self.value)})"
        if self.value is not None and self.on:
            yield "on", "only applies with selector (a constant value has no labels to join on)"
        yield from _label_name_problems("on", self.on)
        if not math.isfinite(self.ratio):
            yield "ratio", f"must be a finite number (got {_show(self.ratio)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetConfig:
    """One forecasting target: which series, on which grid, which horizons, which model.

    >>> t = decode_section(TargetConfig, {"name": "disk", "selector": "node_filesystem_avail_bytes"})
    >>> t.horizons, t.quantiles, t.step_ms
    ((3600.0, 21600.0), (0.1, 0.5, 0.9), 60000)
    """

    # Names the target in logs, self-metrics and the store; letters, digits, '_', '.', '-'.
    name: str
    selector: Selector
    aggregate: AggregateConfig | None = None
    # One minute: a whole number of scrape intervals for the usual 15s-1m, fine enough for hour-scale
    # horizons, and 1,440 steps a day for the models to learn daily patterns from.
    step: PositiveSeconds = 60.0
    # Two days on the grid (2,880 steps, 23 KiB per series): two daily cycles for the models and
    # seasonal_naive, and far more than predict_linear over the longest default horizon needs.
    history: PositiveSeconds = 2 * 86_400.0
    # 1h for "soon", 6h for "plan today"; longer horizons need a longer history (2x, checked).
    horizons: tuple[PositiveSeconds, ...] = (3600.0, 6 * 3600.0)
    # The median and an 80% interval: wide enough to act on, not so wide that it says nothing.
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    model: ModelConfig = field(default_factory=ModelConfig)
    # New series wait at most this long for a model of their own (predict_linear until then), and an
    # hour of new data is about the least that changes a model trained on two days.
    retrain_every: PositiveSeconds = 3600.0
    # Under Prometheus's 5m lookback, so the forecast series never drop out of instant queries; a
    # forecast from a trained model is about 1 ms per series, so each minute costs little.
    forecast_every: PositiveSeconds = 60.0
    threshold: ThresholdConfig | None = None

    @property
    def step_ms(self) -> int:
        return round(self.step * 1000)

    @property
    def horizon_steps(self) -> tuple[int, ...]:
        """Each horizon in grid steps (a whole number: validated)."""
        return tuple(round(h * 1000) // self.step_ms for h in self.horizons)

    @property
    def metric_name(self) -> str | None:
        """The name the selector pins with ``=``: what aggregated forecast series are named after."""
        return self.selector.metric_name

    def problems(self) -> Problems:
        if not _TARGET_NAME.fullmatch(self.name):
            rule = "must be letters, digits, '_', '.' or '-', starting with a letter or digit"
            yield "name", f"{rule} (got {_show(self.name)})"
        step_ms = self.step * 1000
        if step_ms != round(step_ms):
            yield "step", f"must be a whole number of milliseconds (got {self.step}s)"
            return
        yield from self._horizon_problems()
        yield from self._quantile_problems()
        if self.retrain_every < self.forecast_every:
            got = f"{_show_seconds(self.retrain_every)} < {_show_seconds(self.forecast_every)}"
            yield "retrain_every", f"must be >= forecast_every (got {got})"
        agg = self.aggregate
        if agg is not None and METRIC_NAME_LABEL not in agg.by and self.metric_name is None:
            yield (
                "aggregate.by",
                (
                    "aggregated series have no metric name to name the forecasts after: "
                    "pin one in the selector (name{...}) or add __name__ to by"
                ),
            )
        if self.threshold is not None:
            yield from self._threshold_problems(self.threshold)

    def _horizon_problems(self) -> Problems:
        if not self.horizons:
            yield "horizons", "must list at least one horizon (got [])"
            return
        step = _show_seconds(self.step)
        for i, h in enumerate(self.horizons):
            if round(h * 1000) % self.step_ms:
                yield (
                    f"horizons[{i}]",
                    f"must be a whole number of steps (got {_show_seconds(h)}, step {step})",
                )
            if i and h <= self.horizons[i - 1]:
                got = f"{_show_seconds(h)} after {_show_seconds(self.horizons[i - 1])}"
                yield f"horizons[{i}]", f"must be greater than the one before it (got {got})"
        longest = max(self.horizons)
        if self.history < 2 * longest:
            got = f"{_show_seconds(self.history)} < 2 x {_show_seconds(longest)}"
            yield "history", f"must be at least twice the longest horizon (got {got})"
        elif self.history < MIN_HISTORY_STEPS * self.step:
            got = f"{_show_seconds(self.history)} < {MIN_HISTORY_STEPS} x {step}"
            yield "history", f"must hold at least {MIN_HISTORY_STEPS} steps (got {got})"

    def _quantile_problems(self) -> Problems:
        for i, q in enumerate(self.quantiles):
            if not 0 < q < 1:
                yield f"quantiles[{i}]", f"must be strictly between 0 and 1 (got {_show(q)})"
            elif i and q <= self.quantiles[i - 1]:
                got = f"{_show(q)} after {_show(self.quantiles[i - 1])}"
                yield f"quantiles[{i}]", f"must be greater than the one before it (got {got})"
        if 0.5 not in self.quantiles:
            # The median is the point forecast: forecast_error and the baselines are scored on it.
            yield "quantiles", f"must include 0.5, the median (got {list(self.quantiles)})"

    def _threshold_problems(self, threshold: ThresholdConfig) -> Problems:
        if threshold.selector is None:
            return
        agg = self.aggregate
        if agg is not None:
            missing = [name for name in threshold.on if name not in agg.by]
            if missing:
                got = f"{', '.join(missing)} not in [{', '.join(agg.by)}]"
                yield "threshold.on", f"must be labels of aggregate.by, the only labels left (got {got})"
        name = threshold.selector.metric_name
        if name is not None and name == self.metric_name:
            yield "threshold.selector", f"must select another metric than the target's own (got {name!r})"


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


def _label_name_problems(key: str, names: tuple[str, ...]) -> Problems:
    for i, name in enumerate(names):
        if not LABEL_NAME_RE.match(name):
            yield f"{key}[{i}]", f"not a valid label name (got {_show(name)})"
        elif name in names[:i]:
            yield f"{key}[{i}]", f"label {name!r} given twice"


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

    def problems(self) -> Problems:
        seen: dict[str, int] = {}
        for i, target in enumerate(self.targets):
            first = seen.setdefault(target.name, i)
            if first != i:
                yield f"targets[{i}].name", f"duplicate target name {target.name!r} (also targets[{first}])"
            if self.output.mode == "remote_write" and target.forecast_every > LOOKBACK_S:
                # A scrape repeats the last values, so only pushed forecasts have this problem.
                got = f"{_show_seconds(target.forecast_every)} > {_show_seconds(LOOKBACK_S)}"
                yield (
                    f"targets[{i}].forecast_every",
                    (
                        f"must be at most Prometheus's lookback of 5m with output mode remote_write, or the"
                        f" forecast series vanish from instant queries between writes (got {got})"
                    ),
                )


# ---------------------------------------------------------------------------------------------
# Loading

_T = TypeVar("_T")


def load_config(path: str | Path) -> Config:
    """Read, decode and validate a YAML config file; every failure is a ``ConfigError`` naming it.

    Relative file paths inside (``password_file``, ``ca_file``...) are taken from the config
    file's directory, as Prometheus does, and stored absolute.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{source}: cannot read config file: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text (byte {err.start})") from err
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = ""
        if err.context and err.context_mark is not None and err.context_mark != mark:
            start = err.context_mark
            context = f" ({err.context} at line {start.line + 1}, column {start.column + 1})"
        raise ConfigError(f"{source}: invalid YAML{where}: {err.problem}{context}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {' '.join(str(err).split())}") from err
    return config_from_dict(data, source, base_dir=Path(path).absolute().parent)


def config_from_dict(data: object, source: str = "<dict>", *, base_dir: Path | None = None) -> Config:
    """Decode and validate an already parsed config; ``None`` (an empty file) means all defaults.

    ``source`` prefixes error messages; ``base_dir`` anchors relative file paths (default: cwd).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (got {_show(data)})")
    return decode_section(Config, data, source=source, base_dir=base_dir)


def decode_section(
    cls: type[_T], data: object, *, source: str = "<dict>", base_dir: Path | None = None, path: str = ""
) -> _T:
    """Strictly decode one config dataclass (and everything under it) from YAML-shaped data."""
    decoded: _T = _Decoder(source, base_dir).section(cls, data, path)
    return decoded


@runtime_checkable
class _HasProblems(Protocol):
    def problems(self) -> Problems: ...


class _Decoder:
    """Turns plain YAML data into frozen dataclasses by their type hints, failing on the first problem."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, path: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def section(self, cls: Any, data: object, path: str) -> Any:
        if data is None:  # "server:" with nothing under it: all defaults
            data = {}
        if not isinstance(data, dict):
            self.fail(path, f"expected a mapping (got {_show(data)})")
        hints = get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings (got {_show(key)})")
            if key not in fields:
                self.fail(_join(path, key), _unknown_key(key, list(fields)))
            values[key] = self.value(hints[key], raw, _join(path, key), ())
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and name not in values:
                self.fail(_join(path, name), "missing required key")
        obj = cls(**values)
        if isinstance(obj, _HasProblems):
            for key, message in obj.problems():
                self.fail(_join(path, key), message)
        return obj

    def value(self, tp: Any, data: object, path: str, checks: tuple[Check, ...]) -> Any:
        origin, args = get_origin(tp), get_args(tp)
        if origin is Annotated:
            extra = tuple(a for a in args[1:] if isinstance(a, Check))
            return self.value(args[0], data, path, checks + extra)
        if origin in (Union, UnionType):
            if data is None and NoneType in args:
                return None
            (inner,) = (a for a in args if a is not NoneType)
            return self.value(inner, data, path, checks)
        if tp is Selector:  # a dataclass too, but written as PromQL text
            return self.selector(data, path)
        if dataclasses.is_dataclass(tp):
            return self.section(tp, data, path)
        # An empty list or mapping in YAML is often every item commented out, which reads as null.
        if origin is tuple:
            if data is None:
                data = []
            if not isinstance(data, list):
                self.fail(path, f"expected a list (got {_show(data)})")
            return tuple(self.value(args[0], item, f"{path}[{i}]", checks) for i, item in enumerate(data))
        if origin is Mapping:
            if data is None:
                data = {}
            if not isinstance(data, dict):
                self.fail(path, f"expected a mapping (got {_show(data)})")
            out = {}
            for key, item in data.items():
                if not isinstance(key, str):
                    self.fail(path, f"keys must be strings (got {_show(key)})")
                out[key] = self.value(args[1], item, _join(path, key), ())
            return MappingProxyType(out)
        if origin is Literal:
            if not isinstance(data, str) or data not in args:
                self.fail(path, f"must be one of {', '.join(map(repr, args))} (got {_show(data)})")
            return data
        return self.scalar(tp, data, path, checks)

    def scalar(self, tp: Any, data: object, path: str, checks: tuple[Check, ...]) -> Any:
        value: Any
        if Check.DURATION in checks:
            value = self.duration(data, path)
        elif Check.SIZE in checks:
            value = self.size(data, path)
        elif tp is bool:
            if not isinstance(data, bool):
                self.fail(path, f"expected true or false (got {_show(data)})")
            value = data
        elif tp is int:
            if isinstance(data, bool) or not isinstance(data, int):
                self.fail(path, f"expected an integer (got {_show(data)})")
            value = data
        elif tp is float:
            if isinstance(data, bool) or not isinstance(data, int | float):
                self.fail(path, f"expected a number (got {_show(data)})")
            value = float(data)
        elif tp is str:
            if not isinstance(data, str):
                self.fail(path, f"expected a string (got {_show(data)}); quote it in YAML")
            value = data
        else:  # a section field of a type this decoder was never taught: a bug, not bad config
            raise TypeError(f"{path}: config fields of type {tp!r} are not supported")
        if Check.POSITIVE in checks and not value > 0:
            self.fail(path, f"must be > 0 (got {_show(data)})")
        if Check.FILE in checks:
            value = self.readable_file(value, path)
        if Check.HTTP_URL in checks and not _is_http_url(value):
            self.fail(path, f"must be an http:// or https:// URL with a host (got {_show(data)})")
        if Check.DIRECTORY in checks:
            self.directory(value, path)
        if Check.HOST_PORT in checks and not _is_host_port(value):
            self.fail(path, f"must be host:port with a port from 0 to 65535, e.g. :9201 (got {_show(data)})")
        return value

    def duration(self, data: object, path: str) -> float:
        if isinstance(data, str):
            try:
                return parse_duration(data)
            except ValueError as err:
                self.fail(path, f"invalid duration {err}")
        if isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data) and data >= 0:
            return float(data)  # a plain number is seconds
        self.fail(path, f"expected a duration such as 30s or 1h30m (got {_show(data)})")

    def size(self, data: object, path: str) -> int:
        if isinstance(data, str):
            try:
                return parse_size(data)
            except ValueError as err:
                self.fail(path, f"invalid size {err}")
        if isinstance(data, int) and not isinstance(data, bool):
            return data  # a plain number is bytes; the sign is left to POSITIVE
        self.fail(path, f"expected a size such as 16MiB (got {_show(data)})")

    def readable_file(self, name: str, path: str) -> str:
        """Open the file now, so a typo fails at startup rather than at the first request."""
        if not name:
            self.fail(path, "must not be empty")
        file = Path(name)
        if not file.is_absolute() and self.base_dir is not None:
            file = self.base_dir / file
        try:
            with file.open("rb"):
                pass
        except OSError as err:
            shown = repr(name) if str(file) == name else f"{name!r} (as {file})"
            self.fail(path, f"cannot read file {shown}: {err.strerror or err}")
        return str(file)

    def directory(self, name: str, path: str) -> None:
        """Only what can be known now: a path that is not empty and, where it exists, a directory.

        The directory itself may be created later (the daemon makes it before its first save),
        and the value is kept as written so that ``config.yaml`` still equals the defaults.
        """
        if not name:
            self.fail(path, "must not be empty")
        target = Path(name)
        if not target.is_absolute() and self.base_dir is not None:
            target = self.base_dir / target
        if target.exists() and not target.is_dir():
            shown = repr(name) if str(target) == name else f"{name!r} (as {target})"
            self.fail(path, f"must be a directory or a path where one can be created (got {shown}, a file)")

    def selector(self, data: object, path: str) -> Selector:
        if not isinstance(data, str):
            hint = (
                "; YAML reads an unquoted {...} as a mapping, so quote it" if isinstance(data, dict) else ""
            )
            self.fail(path, f"expected a selector string (got {_show(data)}){hint}")
        try:
            return parse_selector(data)
        except SelectorError as err:
            self.fail(path, str(err))


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects a key given twice in one mapping; PyYAML would keep the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if (key_node.tag, key_node.value) in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 booleans and floats instead of PyYAML's YAML 1.1 ones. In YAML 1.1 the key `on:` (as in
# `threshold: {on: [...]}`) is the boolean true, `yes`/`no`/`off` are booleans too, and `1e12` is a
# string because a float needs a dot; YAML 1.2, like Go's yaml.v3 and most users' intuition, differs.
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_FLOAT_TAG: Final = "tag:yaml.org,2002:float"
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in (_BOOL_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_StrictLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and key else path or key


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    return f"unknown key (expected one of {', '.join(known)})"


def _show(value: object) -> str:
    """A value as the user wrote it in YAML, short enough for a one-line message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _show_seconds(seconds: float) -> str:
    try:
        return format_duration(seconds)
    except ValueError:  # sub-millisecond values given as plain numbers
        return f"{seconds}s"


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_host_port(address: str) -> bool:
    try:
        split_host_port(address)
    except ValueError:
        return False
    return True
