"""The JSON-lines export format: how a store without remote-read hands over raw samples.

VictoriaMetrics serves no Prometheus remote-read; its ``/api/v1/export`` answers a series
selector and a time range with every raw sample, one series per line, and ``/api/v1/import``
takes the same lines::

    {"metric":{"__name__":"up","job":"node"},"values":[1,1],"timestamps":[1700000000000,1700000015000]}

A series may come in several lines (one per storage block); they are merged in time order, and
a timestamp given twice keeps its first value (as remote-read's merge does). ``NaN`` and
``Infinity`` are read as numbers, as the store writes them. A line that is not such an object is
a ``DecodeError`` naming the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.series import Labels, SeriesSamples, make_labels
from tsf_adapter.remote.read_codec import merge_samples


def decode_export(body: bytes, start_ms: int | None = None, end_ms: int | None = None) -> list[SeriesSamples]:
    """The series of an export response, sorted by labels, each one's samples in time order
    (only those in ``[start_ms, end_ms]`` when given: the store may answer a little wider).

    >>> body = b'{"metric":{"__name__":"up"},"values":[1,0],"timestamps":[2000,1000]}\\n'
    >>> [(dict(s.labels), s.timestamps.tolist(), s.values.tolist()) for s in decode_export(body)]
    [({'__name__': 'up'}, [1000, 2000], [0.0, 1.0])]
    """
    runs: dict[Labels, list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]] = {}
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            metric, values, stamps = item["metric"], item["values"], item["timestamps"]
            labels = make_labels({str(k): str(v) for k, v in metric.items()})
            ts = np.asarray(stamps, dtype=np.int64)
            vs = np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DecodeError(f"export line {number}: not a series of samples: {exc}") from None
        if ts.shape != vs.shape or ts.ndim != 1:
            raise DecodeError(f"export line {number}: {len(vs)} values for {len(ts)} timestamps")
        order = np.argsort(ts, kind="stable")
        runs.setdefault(labels, []).append((ts[order], vs[order]))
    out = []
    for labels in sorted(runs):
        timestamps, values = merge_samples(runs[labels], start_ms, end_ms)
        out.append(SeriesSamples(labels, timestamps, values))
    return out


def encode_export(series: Iterable[SeriesSamples]) -> bytes:
    """JSON lines that ``/api/v1/import`` takes and :func:`decode_export` reads back."""
    lines = []
    for s in series:
        item = {
            "metric": dict(s.labels),
            "values": [float(v) for v in s.values],
            "timestamps": [int(t) for t in s.timestamps],
        }
        lines.append(json.dumps(item, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode() if lines else b""
