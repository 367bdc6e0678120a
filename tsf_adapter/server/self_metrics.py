"""What every Prometheus component says about itself: build, process, runtime and config reloads.

An operator's standard dashboards and alerts expect them under these names:
``tsf_adapter_build_info`` (as ``prometheus_build_info``: constant 1, the versions as labels),
the ``process_*`` and ``python_*`` series of client_python's collectors (CPU, memory, open files,
garbage collection), and ``tsf_adapter_config_last_reload_successful`` with
``..._success_timestamp_seconds`` (as Prometheus's own, which an alert such as
``tsf_adapter_config_last_reload_successful == 0`` watches after a config-reloader sidecar's
``POST /-/reload``).
"""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge, GCCollector, PlatformCollector, ProcessCollector

from tsf_adapter import __version__
from tsf_adapter.pipeline.metrics import NAMESPACE


def installed_version(package: str) -> str:
    """The installed distribution's version, ``""`` when it is not installed (torch is optional)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def register_runtime_metrics(registry: CollectorRegistry) -> None:
    """Build info and the process and Python collectors, on ``registry`` (not the global one)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    info = Gauge(
        "build_info",
        "A metric with a constant '1' value labeled by the versions tsf-adapter was built from.",
        ["version", "python_version", "torch_version"],
        namespace=NAMESPACE,
        registry=registry,
    )
    info.labels(__version__, platform.python_version(), installed_version("torch")).set(1)


class ReloadMetrics:
    """Whether the last config (re)load worked, and when one last did."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.successful = Gauge(
            "config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.success_time = Gauge(
            "config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload (or of the load at start).",
            namespace=NAMESPACE,
            registry=registry,
        )

    def record(self, ok: bool, now: float) -> None:
        self.successful.set(1 if ok else 0)
        if ok:
            self.success_time.set(now)
