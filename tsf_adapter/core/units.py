"""Durations and byte sizes written the way Prometheus writes them.

Durations (``model.Duration`` in Prometheus): integers followed by units, largest unit first,
each unit at most once: ``1h30m``, ``5m``, ``100ms``, ``1y``. ``0`` alone is allowed. A day is 24h,
a week 7d and a year 365d, so the conversion to seconds is exact and does not depend on a calendar.
Fractions (``1.5h``), signs and bare numbers (``5``) are rejected: a bare number is ambiguous between
seconds and milliseconds, and the grammar keeps every duration printable in one canonical form.

Sizes (``units.Base2Bytes`` in Prometheus, e.g. ``storage.tsdb.retention.size``): an integer and an
optional unit. Both ``KiB/MiB/GiB`` and ``KB/MB/GB`` are powers of 1024, because that is what Prometheus
does; a user copying ``512MB`` from a Prometheus flag gets the same number of bytes here.

>>> parse_duration("1h30m"), format_duration(5400.0)
(5400.0, '1h30m')
>>> parse_size("16MiB") == parse_size("16MB") == 16 * 1024 * 1024
True
"""

from __future__ import annotations

import math
import re
from typing import Final

_MS_PER_UNIT: Final[dict[str, int]] = {
    "y": 365 * 24 * 3600 * 1000,
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}
_UNIT_ORDER: Final = tuple(_MS_PER_UNIT)

# Prometheus stores durations as int64 nanoseconds; anything longer overflows there, so we refuse it
# too rather than accept a value that Prometheus itself could not represent (about 292 years).
MAX_DURATION_MS: Final = (2**63 - 1) // 1_000_000

# A number then a unit; "ms" must be tried before "m" and "s".
_DURATION_PART: Final = re.compile(r"([0-9]*)(\.[0-9]*)?(ms|[a-zA-Z]*)")

_BYTES_PER_UNIT: Final[dict[str, int]] = {
    "B": 1,
    **{f"{p}B": 1024 ** (i + 1) for i, p in enumerate("KMGTPE")},
    **{f"{p}iB": 1024 ** (i + 1) for i, p in enumerate("KMGTPE")},
}
_SIZE: Final = re.compile(r"([0-9]+)([a-zA-Z]*)")
_SIZE_UNITS_TEXT: Final = ", ".join(_BYTES_PER_UNIT)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration string; ``ValueError`` says what is wrong and how to write it.

    >>> parse_duration("1d"), parse_duration("100ms"), parse_duration("0")
    (86400.0, 0.1, 0.0)
    """
    return _duration_ms(text) / 1000


def _duration_ms(text: str) -> int:
    if text == "0":
        return 0
    if text == "":
        raise ValueError('empty duration (write e.g. "30s" or "0")')
    if text[0] in "+-":
        raise ValueError(f"{text!r}: a duration cannot have a sign")
    total = 0
    last_rank = -1
    pos = 0
    while pos < len(text):
        part = _DURATION_PART.match(text, pos)
        assert part is not None  # every group may be empty, so it always matches
        digits, fraction, unit = part.groups()
        if part.end() == pos:  # nothing consumed: a character that starts neither a number nor a unit
            raise ValueError(f"{text!r}: unexpected {text[pos]!r}")
        if fraction is not None:
            raise ValueError(f"{text!r}: fractions are not allowed, use a smaller unit (e.g. 90m for 1.5h)")
        if not digits:
            raise ValueError(f"{text!r}: missing number before unit {unit!r}")
        if not unit:
            raise ValueError(f"{text!r}: missing unit after {digits} (one of y, w, d, h, m, s, ms)")
        if unit not in _MS_PER_UNIT:
            raise ValueError(f"{text!r}: unknown unit {unit!r} (expected one of y, w, d, h, m, s, ms)")
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_rank:
            raise ValueError(
                f"{text!r}: unit {unit!r} repeated or out of order (units go from y down to ms, once each)"
            )
        last_rank = rank
        total += int(digits) * _MS_PER_UNIT[unit]
        pos = part.end()
    if total > MAX_DURATION_MS:
        raise ValueError(f"{text!r}: duration out of range (at most about 292y)")
    return total


def format_duration(seconds: float) -> str:
    """The canonical Prometheus spelling of a duration: ``parse_duration(format_duration(s)) == s``.

    Units go largest first and zero parts are left out. Like Prometheus, years and weeks are used
    only when they divide the duration exactly, because ``90d`` reads better than ``12w6d``.

    >>> format_duration(5400.1), format_duration(0), format_duration(14 * 86400), format_duration(90 * 86400)
    ('1h30m100ms', '0s', '2w', '90d')
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration: must be finite and >= 0")
    ms = round(seconds * 1000)
    if not math.isclose(ms, seconds * 1000, rel_tol=1e-12, abs_tol=1e-6):
        raise ValueError(f"cannot format {seconds!r} as a duration: not a whole number of milliseconds")
    if ms > MAX_DURATION_MS:
        raise ValueError(f"cannot format {seconds!r} as a duration: out of range")
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in _MS_PER_UNIT.items():
        if unit in ("y", "w") and ms % size != 0:
            continue
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


class Duration(float):
    """Seconds that remember how they were written: a configured ``24h`` stays ``24h``.

    Arithmetic sees a float. Labels that name a configured duration read :attr:`text`, so a
    horizon written ``24h`` is published as ``horizon="24h"``, the value a panel or an alert was
    written against, not the canonical ``1d`` that :func:`format_duration` would give. Two
    durations are equal only when their seconds and their spellings are, so a config reload sees
    a respelt horizon as the change it is.

    >>> h = Duration.parse("24h")
    >>> h, h.text, h == 86400.0, h == Duration(86400.0), Duration(5400.0).text
    (86400.0, '24h', True, False, '1h30m')
    """

    _text: str | None

    def __new__(cls, seconds: float, text: str | None = None) -> Duration:
        self = super().__new__(cls, seconds)
        self._text = text
        return self

    @property
    def text(self) -> str:
        """As written; seconds given as a number, in the canonical spelling (:func:`format_duration`)."""
        return format_duration(self) if self._text is None else self._text

    @classmethod
    def parse(cls, text: str) -> Duration:
        """``text`` as a duration (``ValueError`` as :func:`parse_duration` says), spelt as given."""
        return cls(parse_duration(text), text)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Duration):
            return float(self) == float(other) and self.text == other.text
        return float(self) == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = float.__hash__

    def __reduce__(self) -> tuple[type[Duration], tuple[float, str | None]]:
        return (Duration, (float(self), self._text))


def spelled(seconds: float) -> str:
    """A duration as the config wrote it (a :class:`Duration`), else in the canonical spelling.

    >>> spelled(Duration.parse("24h")), spelled(86400.0)
    ('24h', '1d')
    """
    return seconds.text if isinstance(seconds, Duration) else format_duration(seconds)


def parse_size(text: str) -> int:
    """Bytes in a size such as ``16MiB``, ``1GB``, ``512KiB``, ``1024B`` or ``1024``.

    Every unit is a power of 1024 (``KB`` = ``KiB``), as in Prometheus. Units are case-sensitive,
    so a typo such as ``16mb`` is reported instead of guessed at.

    >>> parse_size("512KiB"), parse_size("1GB"), parse_size("1024")
    (524288, 1073741824, 1024)
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        if text.startswith(("-", "+")):
            raise ValueError(f"{text!r}: a size cannot have a sign")
        if "." in text:
            raise ValueError(f"{text!r}: fractions are not allowed, use a smaller unit (e.g. 1536KiB)")
        raise ValueError(f"{text!r}: expected an integer and an optional unit, e.g. 16MiB")
    digits, unit = match.groups()
    if unit and unit not in _BYTES_PER_UNIT:
        raise ValueError(f"{text!r}: unknown unit {unit!r} (expected one of {_SIZE_UNITS_TEXT})")
    return int(digits) * _BYTES_PER_UNIT[unit or "B"]


def format_size(size: int) -> str:
    """The largest binary unit that divides ``size`` exactly: ``parse_size(format_size(n)) == n``.

    >>> format_size(16 * 1024 * 1024), format_size(1000), format_size(0)
    ('16MiB', '1000B', '0B')
    """
    if size < 0:
        raise ValueError(f"cannot format {size!r} as a size: must be >= 0")
    for unit in ("EiB", "PiB", "TiB", "GiB", "MiB", "KiB"):
        scale = _BYTES_PER_UNIT[unit]
        if size and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"
