"""Series identity and sample values: data only, no I/O.

A label set is a ``Labels`` tuple of ``(name, value)`` pairs sorted by name,
the canonical form everywhere inside tsf-adapter (hashable, cheap to compare,
and the order Prometheus requires on the wire).

Staleness: Prometheus marks the end of a series with one particular NaN,
bits ``0x7ff0000000000002``. Every NaN compares unequal to itself, so the
marker can only be told apart from an ordinary NaN by its bit pattern.

What is written: ``SeriesSamples`` (one series, many samples) and ``SampleBlock``
(many one-sample series at one timestamp, columnar: a forecast's rows), together
``WriteItem``, what the remote-write queue holds.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by name, names unique, no empty values."""

METRIC_NAME_LABEL = "__name__"

STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def is_stale(value: float) -> bool:
    """True only for Prometheus's staleness marker, not for other NaNs.

    >>> is_stale(STALE_NAN), is_stale(float("nan"))
    (True, False)
    """
    return value != value and struct.pack("<d", value) == _STALE_BYTES


_STALE_BYTES = struct.pack("<Q", STALE_NAN_BITS)


def stale_mask(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Vectorised :func:`is_stale` over a float64 array."""
    bits = np.asarray(values, dtype=np.float64).view(np.uint64)
    mask: npt.NDArray[np.bool_] = bits == np.uint64(STALE_NAN_BITS)
    return mask


def make_labels(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> Labels:
    """Build canonical ``Labels``: sorted by name, empty values dropped, duplicate names rejected.

    Empty values are dropped because Prometheus treats an empty label as an absent one.

    >>> make_labels({"job": "x", "__name__": "up", "empty": ""})
    (('__name__', 'up'), ('job', 'x'))
    """
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    out = sorted((n, v) for n, v in items if v != "")
    for (a, _), (b, _) in itertools.pairwise(out):
        if a == b:
            raise ValueError(f'label name "{a}" is not unique')
    return tuple(out)


def metric_name(labels: Labels) -> str:
    """The ``__name__`` of a label set, or ``""`` when it has none."""
    for name, value in labels:
        if name == METRIC_NAME_LABEL:
            return value
    return ""


def format_labels(labels: Labels) -> str:
    """PromQL-style text, for logs and error messages: ``up{job="x"}``."""
    name = metric_name(labels)
    rest = ",".join(f'{n}="{_escape(v)}"' for n, v in labels if n != METRIC_NAME_LABEL)
    return f"{name}{{{rest}}}" if rest or not name else name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class SeriesSamples:
    """One series and its samples: timestamps in int64 milliseconds, values as float64.

    The unit the codecs exchange: decoded remote-read results, and the rows the
    remote-write sender encodes. Arrays are kept as given (no copy).
    """

    __slots__ = ("labels", "timestamps", "values")

    def __init__(
        self,
        labels: Labels,
        timestamps: npt.ArrayLike,
        values: npt.ArrayLike,
    ) -> None:
        self.labels = labels
        self.timestamps: npt.NDArray[np.int64] = np.asarray(timestamps, dtype=np.int64)
        self.values: npt.NDArray[np.float64] = np.asarray(values, dtype=np.float64)
        if self.timestamps.shape != self.values.shape or self.timestamps.ndim != 1:
            raise ValueError("timestamps and values must be 1-d arrays of the same length")

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def __repr__(self) -> str:
        return f"SeriesSamples({format_labels(self.labels)}, n={len(self)})"

    def __eq__(self, other: object) -> bool:
        """Bit-exact equality: NaNs (and the staleness marker) compare by their bits."""
        if not isinstance(other, SeriesSamples):
            return NotImplemented
        return (
            self.labels == other.labels
            and np.array_equal(self.timestamps, other.timestamps)
            and np.array_equal(self.values.view(np.uint64), other.values.view(np.uint64))
        )

    __hash__ = None  # type: ignore[assignment]


class SampleBlock:
    """Many series with one sample each, all stamped ``timestamp_ms``: one forecast's rows, columnar.

    A forecast writes every output series once at the forecast time. Kept as a list of label
    sets and one value array, the forecast's columns go to the queue as they are built and the
    encoder writes them without an object per row (160,000 rows per forecast at 10,000 input
    series). Row ``i`` is the series ``labels[i]`` with the sample ``(timestamp_ms, values[i])``;
    the label sets are distinct. Arrays are kept as given (no copy).

    >>> block = SampleBlock([(("__name__", "a"),), (("__name__", "b"),)], 1000, [1.0, 2.0])
    >>> len(block), block.split(1)[1].rows()
    (2, [SeriesSamples(b, n=1)])
    """

    __slots__ = ("labels", "timestamp_ms", "values")

    def __init__(self, labels: Sequence[Labels], timestamp_ms: int, values: npt.ArrayLike) -> None:
        self.labels = labels
        self.timestamp_ms = int(timestamp_ms)
        self.values: npt.NDArray[np.float64] = np.asarray(values, dtype=np.float64)
        if self.values.shape != (len(labels),):
            raise ValueError(f"{len(labels)} label sets and values of shape {self.values.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        first = format_labels(self.labels[0]) if self.labels else ""
        return f"SampleBlock({first}..., n={len(self)}, t={self.timestamp_ms})"

    def __eq__(self, other: object) -> bool:
        """Bit-exact, as ``SeriesSamples`` compares: NaNs (and the staleness marker) by their bits."""
        if not isinstance(other, SampleBlock):
            return NotImplemented
        return (
            list(self.labels) == list(other.labels)
            and self.timestamp_ms == other.timestamp_ms
            and np.array_equal(self.values.view(np.uint64), other.values.view(np.uint64))
        )

    __hash__ = None  # type: ignore[assignment]

    def split(self, n: int) -> tuple[SampleBlock, SampleBlock]:
        """The first ``n`` rows and the rest, in order (the queue fills a batch with the first)."""
        return (
            SampleBlock(self.labels[:n], self.timestamp_ms, self.values[:n]),
            SampleBlock(self.labels[n:], self.timestamp_ms, self.values[n:]),
        )

    def rows(self) -> list[SeriesSamples]:
        """One ``SeriesSamples`` per row: for the reference encoders and tests, not the hot path."""
        stamp = [self.timestamp_ms]
        return [
            SeriesSamples(lab, stamp, [v]) for lab, v in zip(self.labels, self.values.tolist(), strict=True)
        ]


WriteItem: TypeAlias = SeriesSamples | SampleBlock
"""What the remote-write queue holds and the encoder writes."""
