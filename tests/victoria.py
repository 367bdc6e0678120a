"""A real VictoriaMetrics (Debian's ``victoria-metrics`` package) for integration tests.

VictoriaMetrics takes Prometheus remote-write and its own JSON-lines ``/api/v1/import``, and
hands raw samples back by ``/api/v1/export``; it serves no remote-read. Started on a loopback port
with its data in the test's directory, and with no search latency offset, so what was written is
readable at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pytest

from tests.prometheus import free_port
from tsf_adapter.core.series import SeriesSamples
from tsf_adapter.remote.export_codec import decode_export, encode_export


def require_victoria_metrics() -> str:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("victoria-metrics missing in CI: .ci/run must apt-get install victoria-metrics")
        pytest.skip("victoria-metrics not found (apt-get install victoria-metrics)")
    return binary


class VictoriaMetricsProcess:
    """One single-node VictoriaMetrics, stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require_victoria_metrics()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={workdir / 'vm-data'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
        ]
        self.log_path = workdir / "victoria-metrics.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> VictoriaMetricsProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"victoria-metrics not up after 30s:\n{self.log()}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def import_series(self, series: Sequence[SeriesSamples]) -> None:
        """Write samples through the JSON-lines import API; returns once they can be read back
        (the store makes new samples searchable within a second or so)."""
        req = urllib.request.Request(f"{self.url}/api/v1/import", data=encode_export(series), method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 204, resp.status
        deadline = time.monotonic() + 30.0
        for s in series:
            selector = "{" + ", ".join(f'{k}="{v}"' for k, v in s.labels) + "}"
            first, last = int(s.timestamps[0]) / 1000, int(s.timestamps[-1]) / 1000
            while sum(len(found) for found in self.export(selector, first, last)) < len(s):
                assert time.monotonic() < deadline, f"imported samples not readable after 30s:\n{self.log()}"
                time.sleep(0.2)

    def export(self, selector: str, start_s: float, end_s: float) -> list[SeriesSamples]:
        """Every raw sample of the matching series in ``[start_s, end_s]``."""
        query = urllib.parse.urlencode(
            {"match[]": selector, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}"}
        )
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as resp:
            return decode_export(resp.read())
