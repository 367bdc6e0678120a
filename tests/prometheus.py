"""A real Prometheus for tests: Debian's ``prometheus`` binary on a free loopback port.

Usage::

    with PrometheusProcess(tmp_path, scrape_configs=[...], remote_write=[...]) as prom:
        prom.query("up")

When the binary is missing the caller skips, except in CI (``CI=true``), where a
missing binary is a failure: the integration tests are the point of CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN", "prometheus")


def find_prometheus() -> str | None:
    return shutil.which(PROMETHEUS_BIN) or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusProcess:
    """Start Prometheus with a generated config in ``workdir``; stop it on exit."""

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_configs: list[dict[str, Any]] | None = None,
        remote_write: list[dict[str, Any]] | None = None,
        global_config: dict[str, Any] | None = None,
        rule_files: list[str] | None = None,
        extra_config: dict[str, Any] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        binary = find_prometheus()
        if binary is None:
            raise FileNotFoundError("prometheus binary not found (apt-get install prometheus)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s", **(global_config or {})},
            "scrape_configs": scrape_configs or [],
        }
        if remote_write:
            config["remote_write"] = remote_write
        if rule_files:
            config["rule_files"] = rule_files
        config.update(extra_config or {})
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.args = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=30d",
            "--storage.remote.flush-deadline=5s",
            *(extra_args or []),
        ]
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    # --- HTTP API helpers -------------------------------------------------------------------
    def api(self, path: str, **params: str | float) -> Any:
        """GET /api/v1/<path> and return ``data``; raises on an API error."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus API error: {body}")
        return body["data"]

    def query(self, expr: str, time_s: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, str | float] = {"query": expr}
        if time_s is not None:
            params["time"] = time_s
        result: list[dict[str, Any]] = self.api("query", **params)["result"]
        return result

    def range_samples(self, selector: str, end_s: float, range_s: int) -> list[dict[str, Any]]:
        """Raw samples of ``selector[range]`` at ``end_s``: exactly what is stored."""
        return self.query(f"{selector}[{range_s}s]", end_s)

    def reload(self) -> None:
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass
