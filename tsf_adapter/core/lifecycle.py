"""Where the process is in its life: starting (not ready), serving, or stopping.

One object, owned by the daemon, read by the receiver (503 while not ready or
stopping, so Prometheus resends) and by the ``/-/ready`` probe.
"""

from __future__ import annotations


class Readiness:
    """Started, and not stopping; flipped by the daemon, read by the handlers."""

    def __init__(self, *, ready: bool = True) -> None:
        self.ready = ready
        self.stopping = False
