"""A real Prometheus 2.42 talks to ``tsf-adapter receive --web.config.file`` over HTTPS with basic
auth, both ways: it scrapes the receiver's ``/metrics`` and remote-writes the samples back.

Two remote-write queues point at the receiver: one with the right password, whose samples
arrive, and one with a wrong password, whose requests are answered 401 and which Prometheus
counts as failed (a 4xx is not retried), while the right one fails nothing.
"""

from __future__ import annotations

import base64
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest

from tests.prometheus import PrometheusProcess, free_port
from tests.tls import Certificates, make_certificates

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 60.0  # seconds; only against a hang, never a speed assertion
PASSWORD = "remote-write-pw-8b2"


class Receiver:
    """``tsf-adapter receive`` behind a web config with TLS and one bcrypt user."""

    def __init__(self, tmp_path: Path, certs: Certificates) -> None:
        self.certs = certs
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        web = tmp_path / "web.yml"
        web.write_text(
            f"""
tls_server_config:
  cert_file: {certs.server_crt}
  key_file: {certs.server_key}
basic_auth_users:
  prometheus: {bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}
"""
        )
        self.log_path = tmp_path / "receiver.log"
        with self.log_path.open("wb") as log:
            args = ["receive", "--listen", f"127.0.0.1:{self.port}", "--web.config.file", str(web)]
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tsf_adapter", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    def get(self, path: str, password: str | None = PASSWORD) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path)
        if password is not None:
            pair = base64.b64encode(f"prometheus:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {pair}")
        context = ssl.create_default_context(cafile=str(self.certs.ca_crt))
        try:
            with urllib.request.urlopen(req, timeout=10, context=context) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if self.get("/-/ready")[0] == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise TimeoutError(self.log_path.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    server = Receiver(tmp_path, make_certificates(tmp_path / "certs"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def counter(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples in an exposition whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match[1] or "") for k, v in labels.items()):
            total += float(match[2])
    return total


def test_prometheus_scrapes_and_remote_writes_over_https_with_basic_auth(
    receiver: Receiver, prometheus_factory: Callable[..., PrometheusProcess]
) -> None:
    tls = {"ca_file": str(receiver.certs.ca_crt)}
    queue = {"batch_send_deadline": "100ms", "min_backoff": "50ms", "max_backoff": "500ms"}

    def remote(name: str, password: str) -> dict[str, object]:
        return {
            "url": f"{receiver.url}/api/v1/write",
            "name": name,
            "basic_auth": {"username": "prometheus", "password": password},
            "tls_config": tls,
            "queue_config": queue,
        }

    prom = prometheus_factory(
        global_config={"scrape_interval": "1s", "scrape_timeout": "1s"},
        scrape_configs=[
            {
                "job_name": "tsf-adapter",
                "scheme": "https",
                "basic_auth": {"username": "prometheus", "password": PASSWORD},
                "tls_config": tls,
                "static_configs": [{"targets": [f"127.0.0.1:{receiver.port}"]}],
            }
        ],
        remote_write=[remote("right", PASSWORD), remote("wrong", "not-the-password")],
    )

    def prometheus_metrics() -> str:
        with urllib.request.urlopen(f"{prom.url}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    deadline = time.monotonic() + HANG_GUARD
    while True:
        received = counter(receiver.get("/metrics")[1], "tsf_adapter_receiver_samples_received_total")
        failed = counter(
            prometheus_metrics(), "prometheus_remote_storage_samples_failed_total", remote_name="wrong"
        )
        if received > 0 and failed > 0:
            break
        assert time.monotonic() < deadline, f"received {received}, failed {failed}:\n{prom.log()}"
        time.sleep(0.5)

    # The scrape went through TLS and basic auth too, and the right queue lost nothing.
    assert [item["value"][1] for item in prom.query('up{job="tsf-adapter"}')] == ["1"]
    assert (
        counter(prometheus_metrics(), "prometheus_remote_storage_samples_failed_total", remote_name="right")
        == 0
    )
    # Only the 401s: every write that got in was taken (204).
    receiver_metrics = receiver.get("/metrics")[1]
    assert counter(receiver_metrics, "tsf_adapter_receiver_requests_total", code="204") > 0
    assert counter(receiver_metrics, "tsf_adapter_receiver_requests_total") == counter(
        receiver_metrics, "tsf_adapter_receiver_requests_total", code="204"
    )
    assert receiver.get("/metrics", password=None)[0] == 401
    assert PASSWORD not in receiver.log_path.read_text()
