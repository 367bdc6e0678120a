"""The configuration: sections as frozen dataclasses and the strict YAML decoder that builds them.

A leaf above ``core``: it imports nothing of the package but ``core``, so every
layer can take a config type without loading the store, the models or the wire.

* ``fields``: the rules a field's type carries (``PositiveSeconds``, ``FilePath``...);
* ``sections``: the server, Prometheus, ingest and output sections and the root ``Config``;
* ``target``: a forecasting target (``TargetConfig``), the one description of a target;
* ``decoder``: ``load_config`` and the strict decoder behind it.
"""

from __future__ import annotations

from tsf_adapter.config.decoder import config_from_dict, decode_section, load_config, read_yaml
from tsf_adapter.config.fields import (
    ByteSize,
    Check,
    DirPath,
    FilePath,
    HostPort,
    HttpUrl,
    PositiveFloat,
    PositiveInt,
    PositiveSeconds,
    Problems,
    Seconds,
)
from tsf_adapter.config.sections import (
    BasicAuth,
    Config,
    HttpClientConfig,
    IngestConfig,
    OutputConfig,
    PrometheusConfig,
    QueueConfig,
    RemoteReadConfig,
    RemoteWriteConfig,
    ServerConfig,
    ShardConfig,
    TLSConfig,
)
from tsf_adapter.config.target import (
    LOOKBACK_S,
    MIN_HISTORY_STEPS,
    AggregateConfig,
    AggregationOp,
    ModelConfig,
    ModelKind,
    ModelScope,
    TargetConfig,
    ThresholdConfig,
)

__all__ = [
    "LOOKBACK_S",
    "MIN_HISTORY_STEPS",
    "AggregateConfig",
    "AggregationOp",
    "BasicAuth",
    "ByteSize",
    "Check",
    "Config",
    "DirPath",
    "FilePath",
    "HostPort",
    "HttpClientConfig",
    "HttpUrl",
    "IngestConfig",
    "ModelConfig",
    "ModelKind",
    "ModelScope",
    "OutputConfig",
    "PositiveFloat",
    "PositiveInt",
    "PositiveSeconds",
    "Problems",
    "PrometheusConfig",
    "QueueConfig",
    "RemoteReadConfig",
    "RemoteWriteConfig",
    "Seconds",
    "ServerConfig",
    "ShardConfig",
    "TLSConfig",
    "TargetConfig",
    "ThresholdConfig",
    "config_from_dict",
    "decode_section",
    "load_config",
    "read_yaml",
]
