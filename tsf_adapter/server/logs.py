"""Log records as Prometheus and its exporters write them: one line each, UTC, logfmt or JSON.

``ts=2026-12-04T12:00:00.123Z level=info logger=tsf_adapter.daemon msg="ready: 1 targets"``

One line per record, always, so a log shipper never splits a record and ``grep`` finds all of
it: a value with spaces, quotes or line breaks is quoted and escaped (logfmt) or JSON-encoded.
A record that carries an exception says its type and message (``err="OSError: disk full"``);
its traceback is added only at the debug level, where someone is looking for it.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Final, Literal

LogFormat = Literal["logfmt", "json"]
LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final[tuple[LogFormat, ...]] = ("logfmt", "json")


def utc_timestamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Prometheus's logs: ``2026-12-04T12:00:00.123Z``.

    >>> utc_timestamp(0.1234)
    '1970-01-01T00:00:00.123Z'
    """
    stamp = datetime.fromtimestamp(created, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def logfmt_value(value: str) -> str:
    """``value`` bare when it is a plain word, else double-quoted with backslashes, quotes and
    control characters escaped (JSON's string escapes, which logfmt readers accept).

    >>> logfmt_value("ready"), logfmt_value("two words"), logfmt_value("")
    ('ready', '"two words"', '""')
    """
    if value and not any(c in value for c in ' ="\\') and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=False)


class LineFormatter(logging.Formatter):
    """One line per record in ``logfmt`` or ``json``; tracebacks only when ``tracebacks`` is on."""

    def __init__(self, fmt: LogFormat = "logfmt", *, tracebacks: bool = False) -> None:
        super().__init__()
        self.fmt = fmt
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            fields["err"] = self.error_text(record)
        if self.fmt == "json":
            return json.dumps(fields, ensure_ascii=False)
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())

    def error_text(self, record: logging.LogRecord) -> str:
        """``Type: message``, with the traceback after it when tracebacks are on."""
        assert record.exc_info is not None
        kind, exc, tb = record.exc_info
        assert kind is not None and exc is not None
        head = f"{kind.__name__}: {exc}" if str(exc) else kind.__name__
        if not self.tracebacks:
            return head
        return "".join(traceback.format_exception(kind, exc, tb)).rstrip("\n")


def setup_logging(level: str = "info", fmt: LogFormat = "logfmt") -> None:
    """Every logger of the process to stderr, one line per record (replaces earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(fmt, tracebacks=level == "debug"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
