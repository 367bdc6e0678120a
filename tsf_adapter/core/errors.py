"""The exception hierarchy of tsf-adapter, in one place.

::

    TsfAdapterError
    ├── ConfigError            bad configuration; message names file, dotted key, expectation
    ├── SelectorError          a PromQL series selector that does not parse
    ├── InputError             input data that cannot be used (missing file, bad CSV, series too short)
    ├── DecodeError            bytes on the wire that are not what they claim (→ HTTP 400)
    │   └── UnsupportedEncodingError   a remote-read chunk encoding we cannot decode
    ├── RemoteError            talking to a remote endpoint failed
    │   ├── RecoverableError   5xx, 429 (when configured) or network error: retry with backoff
    │   └── WriteRejected      other 4xx: the batch is dropped, never retried
    └── TrainingError          a model could not be trained

The type decides what happens next: only ``RecoverableError`` is retried,
only ``DecodeError`` turns into a 400 on the receive side.
"""

from __future__ import annotations


class TsfAdapterError(Exception):
    """Root of every error raised by tsf-adapter on purpose."""


class ConfigError(TsfAdapterError):
    """Configuration is invalid. ``str()`` is the whole message shown to the user."""


class SelectorError(TsfAdapterError, ValueError):
    """A PromQL series selector failed to parse or is not allowed."""


class InputError(TsfAdapterError, ValueError):
    """Input data of a command (e.g. a backtest CSV) cannot be used; ``str()`` is one line for the user."""


class DecodeError(TsfAdapterError, ValueError):
    """Input bytes could not be decoded; the message is one line, safe to send back."""


class UnsupportedEncodingError(DecodeError):
    """A remote-read chunk used an encoding we cannot decode (e.g. XOR2, histograms)."""

    def __init__(self, encoding: int) -> None:
        super().__init__(f"unsupported chunk encoding {encoding}")
        self.encoding = encoding


class RemoteError(TsfAdapterError):
    """A request to a remote endpoint failed."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class RecoverableError(RemoteError):
    """Worth retrying: network failure, 5xx, or 429 when retries on 429 are enabled.

    ``retry_after`` carries the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self, message: str, *, url: str = "", status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class WriteRejected(RemoteError):
    """The remote refused the data for good (4xx other than a retried 429)."""


class TrainingError(TsfAdapterError):
    """Training a model failed; the scheduler logs and counts it per series."""
