"""A benchmark's daemon: started as ``tsf-adapter run`` with a JSON log (``--log.format json``),
and that log read back as (unix seconds, message) pairs, to time what the daemon did from what it
says."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_daemon(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``tsf-adapter run --config config`` as a process of this Python, logging JSON to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tsf_adapter", "--log.format", "json", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


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
