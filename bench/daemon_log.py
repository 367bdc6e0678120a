"""The daemon's JSON log (``--log.format json``) as (unix seconds, message) pairs, for benchmarks
that time what the daemon did from what it says."""

from __future__ import annotations

import json
from datetime import datetime


def events(log: str) -> list[tuple[float, str]]:
    """Every record of ``log``, in order; lines that are not JSON records are skipped."""
    out = []
    for line in log.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        ts = datetime.fromisoformat(rec["ts"].replace("Z", "+00:00")).timestamp()
        out.append((ts, str(rec.get("msg", ""))))
    return out
