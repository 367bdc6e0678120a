"""The remote-write receiver's own metrics, ``tsf_adapter_remote_write_received_*`` and friends.

Defined beside the receiver that counts them (as Prometheus's ``write_handler.go``
registers its own), on a registry passed in, never the global one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

NAMESPACE = "tsf_adapter"

# Reasons a received, acknowledged sample is not stored; fixed so dashboards can rely on them.
DROP_UNSELECTED = "unselected"  # no configured selector keeps the series


DROP_HISTOGRAM = "histogram"  # native histograms are not forecast


# Reasons a whole request is refused (its samples are unknown, so requests are counted).
REJECT_INVALID = "invalid"  # failed to decode (400): the sender drops it


REJECT_TOO_LARGE = "too_large"  # over a size limit (413): the sender drops it


REJECT_UNSUPPORTED = "unsupported"  # content type or encoding (415)


REJECT_OVERLOADED = "overloaded"  # shed with 503: Prometheus resends it


REJECT_STOPPING = "stopping"  # arrived during shutdown (503): Prometheus resends it


REJECT_STARTING = "starting"  # arrived before backfill finished (503): Prometheus resends it


REJECT_INTERNAL = "internal"  # the store failed (500): Prometheus resends it


REJECT_REASONS = (
    REJECT_INVALID,
    REJECT_TOO_LARGE,
    REJECT_UNSUPPORTED,
    REJECT_OVERLOADED,
    REJECT_STOPPING,
    REJECT_STARTING,
    REJECT_INTERNAL,
)


class ReceiverMetrics:
    """Counters of the remote-write receiver."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # ``*_created`` series double the exposition and no dashboard of ours reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "requests_total",
            "Remote-write requests received, by protocol message and HTTP status.",
            ["protocol", "code"],
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
        )
        self.samples = Counter(
            "samples_received_total",
            "Float samples received and handed to the store.",
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
        )
        self.rejected = Counter(
            "requests_rejected_total",
            "Requests refused with a 4xx/5xx answer, by reason.",
            ["reason"],
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
        )
        self.dropped = Counter(
            "samples_dropped_total",
            "Samples (or histograms) acknowledged but not stored, by reason.",
            ["reason"],
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
        )
        self.metadata = Counter(
            "metadata_received_total",
            "Metric metadata entries received (acknowledged, not used).",
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
        )
        self.series_created = Counter(
            "series_created_total",
            "Label sets seen for the first time by the receiver's cache.",
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
        )
        self.inflight = Gauge(
            "requests_in_flight",
            "Requests being decoded or waiting to be.",
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
        )
        self.duration = Histogram(
            "request_duration_seconds",
            "Time to decode and store one request, from body read to answer.",
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.last_success = Gauge(
            "last_success_timestamp_seconds",
            "Unix time of the last request stored successfully.",
            namespace=NAMESPACE,
            subsystem="receiver",
            registry=registry,
        )
        for reason in (DROP_UNSELECTED, DROP_HISTOGRAM):
            self.dropped.labels(reason)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
