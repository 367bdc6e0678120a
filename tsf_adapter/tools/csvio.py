"""CSV files of the backtest: input series (``timestamp,value``) and the forecasts file.

Input: one series per file, header exactly ``timestamp,value``, unix seconds
(integers, or decimals down to the millisecond), strictly increasing; an empty
or ``NaN`` value is a gap. The series is named after the file stem. Errors are
one line naming the file and the line, because the backtest prints them as-is
and exits.

Forecasts: header ``series,model,origin,timestamp,quantile,value``, one row per
forecast value. Timestamps are written in unix seconds (integers when whole),
values with ``repr`` so a float survives the round trip bit for bit.

>>> format_seconds(1_700_000_000_000), format_seconds(1_500)
('1700000000', '1.5')
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.errors import InputError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

INPUT_HEADER = ("timestamp", "value")
FORECAST_HEADER = ("series", "model", "origin", "timestamp", "quantile", "value")


@dataclass(frozen=True, slots=True, eq=False)
class InputSeries:
    """One input series: a name, int64 unix-millisecond timestamps (increasing) and float64 values."""

    name: str
    timestamps_ms: IntArray
    values: FloatArray

    def __len__(self) -> int:
        return int(self.timestamps_ms.shape[0])


def read_series_csv(path: Path) -> InputSeries:
    """Read a ``timestamp,value`` file; ``InputError`` (one line) for anything unusable.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "disk.csv"
    >>> _ = p.write_text("timestamp,value\\n60,1.5\\n120,\\n")
    >>> s = read_series_csv(p)
    >>> s.name, s.timestamps_ms.tolist(), s.values.tolist()
    ('disk', [60000, 120000], [1.5, nan])
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != INPUT_HEADER:
        got = "an empty file" if header is None else ",".join(header)
        raise InputError(f"{path}: header must be 'timestamp,value' (got {got!r})")
    stamps: list[int] = []
    values: list[float] = []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != 2:
            raise InputError(f"{path}:{line}: expected 2 fields, got {len(row)}")
        stamps.append(_parse_timestamp(row[0], path, line))
        values.append(_parse_value(row[1], path, line))
        if len(stamps) > 1 and stamps[-1] <= stamps[-2]:
            raise InputError(
                f"{path}:{line}: timestamps must increase ({row[0].strip()} is not after the previous)"
            )
    return InputSeries(path.stem, np.array(stamps, dtype=np.int64), np.array(values, dtype=np.float64))


def _parse_timestamp(text: str, path: Path, line: int) -> int:
    try:
        seconds = float(text)
    except ValueError:
        raise InputError(f"{path}:{line}: bad timestamp {text.strip()!r} (want unix seconds)") from None
    if not math.isfinite(seconds):
        raise InputError(f"{path}:{line}: bad timestamp {text.strip()!r} (want unix seconds)")
    return round(seconds * 1000)


def _parse_value(text: str, path: Path, line: int) -> float:
    if not text.strip():
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}:{line}: bad value {text.strip()!r}") from None


def write_series_csv(path: Path, timestamps_ms: IntArray, values: FloatArray) -> None:
    """Write a ``timestamp,value`` file that :func:`read_series_csv` reads back exactly."""
    lines = [",".join(INPUT_HEADER)]
    lines.extend(
        f"{format_seconds(t)},{v!r}" for t, v in zip(timestamps_ms.tolist(), values.tolist(), strict=True)
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def format_seconds(ms: int) -> str:
    """Unix milliseconds as seconds: an integer when whole, else the shortest decimal."""
    whole, frac = divmod(ms, 1000)
    return str(whole) if frac == 0 else f"{ms / 1000:.3f}".rstrip("0")


def csv_field(text: str) -> str:
    """One CSV field, quoted only when it must be (series named by labels contain commas and quotes)."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


class ForecastWriter:
    """Streams forecast rows to a text file, one block (series, model, origin, quantile) at a time."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.rows = 0
        out.write(",".join(FORECAST_HEADER) + "\n")

    def write_block(
        self,
        series: str,
        model: str,
        origin_ms: int,
        timestamps_ms: IntArray,
        quantiles: Sequence[float],
        values: FloatArray,
    ) -> None:
        """``values[quantile, sample]`` for the sample ``timestamps_ms`` after ``origin_ms``."""
        prefix = f"{csv_field(series)},{csv_field(model)},{format_seconds(origin_ms)},"
        stamps = [format_seconds(t) for t in timestamps_ms.tolist()]
        parts: list[str] = []
        for q, row in zip(quantiles, values.tolist(), strict=True):
            tail = f",{q!r},"
            parts.extend(f"{prefix}{t}{tail}{v!r}\n" for t, v in zip(stamps, row, strict=True))
        self._out.write("".join(parts))
        self.rows += len(parts)


@dataclass(frozen=True, slots=True, eq=False)
class ForecastRows:
    """All rows of one (series, model) from a forecasts file, quantiles pivoted into columns.

    ``values[row, quantile]``; NaN where the file had no row for that quantile.
    """

    series: str
    model: str
    quantiles: tuple[float, ...]
    origins_ms: IntArray
    timestamps_ms: IntArray
    values: FloatArray


def read_forecasts_csv(path: Path) -> list[ForecastRows]:
    """Read a forecasts file back, grouped by (series, model) in order of first appearance."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    with handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None or tuple(header) != FORECAST_HEADER:
            raise InputError(f"{path}: header must be {','.join(FORECAST_HEADER)!r}")
        groups: dict[tuple[str, str], dict[tuple[int, int], dict[float, float]]] = {}
        for line, row in enumerate(rows, start=2):
            if len(row) != len(FORECAST_HEADER):
                raise InputError(f"{path}:{line}: expected {len(FORECAST_HEADER)} fields, got {len(row)}")
            series, model, origin, stamp, q, v = row
            key = (_parse_timestamp(origin, path, line), _parse_timestamp(stamp, path, line))
            groups.setdefault((series, model), {}).setdefault(key, {})[float(q)] = float(v)
    return [_pivot(series, model, cells) for (series, model), cells in groups.items()]


def _pivot(series: str, model: str, cells: dict[tuple[int, int], dict[float, float]]) -> ForecastRows:
    quantiles = tuple(sorted({q for by_q in cells.values() for q in by_q}))
    keys = list(cells)
    values = np.full((len(keys), len(quantiles)), np.nan)
    col = {q: i for i, q in enumerate(quantiles)}
    for r, key in enumerate(keys):
        for q, v in cells[key].items():
            values[r, col[q]] = v
    origins = np.array([k[0] for k in keys], dtype=np.int64)
    stamps = np.array([k[1] for k in keys], dtype=np.int64)
    return ForecastRows(series, model, quantiles, origins, stamps, values)


def iter_inputs(paths: Iterable[Path]) -> Iterator[InputSeries]:
    """Read several input files; two files with the same stem would be one series name twice: refused."""
    seen: set[str] = set()
    for path in paths:
        series = read_series_csv(path)
        if series.name in seen:
            raise InputError(
                f"{path}: another input is also named {series.name!r} (series are named by file stem)"
            )
        seen.add(series.name)
        yield series
