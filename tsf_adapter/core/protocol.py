"""Names the remote-write protocol fixes, shared by the config (which message to send) and the wire code."""

from __future__ import annotations

from typing import Final, Literal

RW1_MESSAGE: Final = "prometheus.WriteRequest"
"""Remote write 1.0: ``prometheus.WriteRequest``, what Prometheus 2.x sends and accepts."""

RW2_MESSAGE: Final = "io.prometheus.write.v2.Request"
"""Remote write 2.0: ``io.prometheus.write.v2.Request`` with interned symbols."""

WriteMessage = Literal["prometheus.WriteRequest", "io.prometheus.write.v2.Request"]
