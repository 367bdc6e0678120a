"""The vocabulary of config fields: rules carried by a field's type, and how messages show values.

A field's type says how the decoder reads and checks it (``PositiveSeconds`` is a
duration that must be > 0), so one generic decoder serves every section; the
rules that relate two fields live in each section's ``problems()``, which yield
``Problems`` written with the helpers below, e.g. ``(got 1d < 2 x 1d)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from typing import Annotated

from tsf_adapter.core.series import LABEL_NAME_RE
from tsf_adapter.core.units import spelled


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
PositiveFloat = Annotated[float, Check.POSITIVE]
ByteSize = Annotated[int, Check.SIZE, Check.POSITIVE]
FilePath = Annotated[str, Check.FILE]
HttpUrl = Annotated[str, Check.HTTP_URL]
HostPort = Annotated[str, Check.HOST_PORT]
DirPath = Annotated[str, Check.DIRECTORY]

Problems = Iterator[tuple[str, str]]
"""``(key relative to the section, message)`` pairs; key ``""`` names the section itself."""


def show(value: object) -> str:
    """A value as the user wrote it in YAML, short enough for a one-line message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def show_seconds(seconds: float) -> str:
    """Seconds as a Prometheus duration (``1h30m``), the way durations are written in the config:
    as the user spelt it where it came from the config (``Duration``)."""
    try:
        return spelled(seconds)
    except ValueError:  # sub-millisecond values given as plain numbers
        return f"{seconds}s"


def label_name_problems(key: str, names: tuple[str, ...]) -> Problems:
    """Each name a valid Prometheus label name, none given twice (``by``, ``on``)."""
    for i, name in enumerate(names):
        if not LABEL_NAME_RE.match(name):
            yield f"{key}[{i}]", f"not a valid label name (got {show(name)})"
        elif name in names[:i]:
            yield f"{key}[{i}]", f"label {name!r} given twice"
