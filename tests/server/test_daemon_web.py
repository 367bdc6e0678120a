"""``tsf-adapter run --web.config.file`` as a real process: HTTPS, authentication on the reload
endpoint, the healthcheck through both, and the web config reloaded (or refused) with the config.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from tests.prometheus import free_port
from tests.tls import Certificates, make_certificates

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 45.0  # seconds; only against a hang, never a speed assertion
FIRST, SECOND, TOKEN = "pw-first-7c1", "pw-second-9d4", "probe-token-51e"


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def web_yaml(certs: Certificates, password_hash: str) -> str:
    return f"""
tls_server_config:
  cert_file: {certs.server_crt}
  key_file: {certs.server_key}
basic_auth_users:
  prometheus: {password_hash}
bearer_token_file: token
"""


def request(url: str, certs: Certificates, *, method: str = "GET", password: str | None = None) -> int:
    req = urllib.request.Request(url, method=method)
    if password is not None:
        pair = base64.b64encode(f"prometheus:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {pair}")
    context = ssl.create_default_context(cafile=str(certs.ca_crt))
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


def ready(url: str, certs: Certificates) -> bool:
    try:
        return request(f"{url}/-/ready", certs, password=FIRST) == 200
    except (OSError, urllib.error.URLError):  # not listening yet
        return False


def tsf_adapter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tsf_adapter", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, Path, Path, Certificates]]:
    """A daemon with no targets behind a web config: (https URL, config, web config, certs)."""
    certs = make_certificates(tmp_path / "certs")
    (tmp_path / "token").write_text(TOKEN + "\n")
    web = tmp_path / "web.yml"
    first_hash = hashed(FIRST)
    web.write_text(web_yaml(certs, first_hash))
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f'server:\n  listen_address: "127.0.0.1:{port}"\nstate_dir: "{tmp_path / "state"}"\n')
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        args = ["run", "--config", str(config), "--web.config.file", str(web)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tsf_adapter", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HANG_GUARD
        while not ready(url, certs):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url, config, web, certs
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert not [secret for secret in (FIRST, SECOND, TOKEN, first_hash) if secret in text], text


def test_reload_needs_credentials_and_reloads_the_web_config(
    daemon: tuple[str, Path, Path, Certificates],
) -> None:
    url, _, web, certs = daemon
    assert request(f"{url}/-/reload", certs, method="POST") == 401
    assert request(f"{url}/-/reload", certs, method="PUT", password="wrong") == 401
    assert request(f"{url}/-/reload", certs, method="POST", password=FIRST) == 200

    web.write_text("basic_auth_users: {prometheus: not-a-hash}\n")
    assert request(f"{url}/-/reload", certs, method="POST", password=FIRST) == 500
    assert request(f"{url}/metrics", certs, password=FIRST) == 200  # the running one is kept

    web.write_text(web_yaml(certs, hashed(SECOND)))
    assert request(f"{url}/-/reload", certs, method="POST", password=FIRST) == 200
    assert request(f"{url}/metrics", certs, password=FIRST) == 401
    assert request(f"{url}/metrics", certs, password=SECOND) == 200


def test_healthcheck_uses_https_and_the_bearer_token(daemon: tuple[str, Path, Path, Certificates]) -> None:
    url, config, web, _ = daemon
    listen = url.removeprefix("https://")
    ok = tsf_adapter("healthcheck", "--web.listen-address", listen, "--web.config.file", str(web))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{url}/-/healthy: healthy"
    # Without the web config it speaks plain HTTP to an HTTPS port, and fails.
    plain = tsf_adapter("healthcheck", "--config", str(config))
    assert plain.returncode == 1


def test_a_bad_web_config_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f'server:\n  listen_address: "127.0.0.1:0"\nstate_dir: "{tmp_path / "state"}"\n')
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {prometheus: secret}\ntls_server_config: {cert_file: a.crt}\n")
    result = tsf_adapter("run", "--config", str(config), "--web.config.file", str(web))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"tsf-adapter: {web}: tls_server_config.cert_file: cannot read file 'a.crt' (as {tmp_path}/a.crt):"
        " No such file or directory",
        f"tsf-adapter: {web}: tls_server_config.key_file: missing required key",
    ]
    assert "secret" not in result.stderr
