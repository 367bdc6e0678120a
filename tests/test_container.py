"""The container image: its command, user, paths and config agree, and that command runs.

No image is built here (no container runtime on the test machine). The Dockerfile is read as
data and checked against the config it copies in; then the image's command (``tsf-adapter run``
reading ``TSF_ADAPTER_CONFIG``) runs as a process against a temporary root holding the same
config, its paths moved under that root, and the image's healthcheck probes it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.prometheus import free_port
from tsf_adapter.config import load_config
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.server.daemon import check_writable

ROOT = Path(__file__).resolve().parents[1]
CONTAINER_CONFIG = ROOT / "deploy" / "container" / "config.yaml"
HANG_GUARD = 60.0  # seconds; only against a hang, never a speed assertion


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def one(name: str) -> str:
    (found,) = [rest for word, rest in instructions() if word == name]
    return found


def exec_form(text: str) -> list[str]:
    parsed = json.loads(text)
    assert isinstance(parsed, list), f"{text!r}: use the exec form, so signals reach the daemon"
    return [str(p) for p in parsed]


def env_of_image() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return env


def test_the_image_runs_the_daemon_as_an_unprivileged_user() -> None:
    assert exec_form(one("ENTRYPOINT")) + exec_form(one("CMD")) == ["tsf-adapter", "run"]
    assert one("USER") == "65534:65534"
    healthcheck = one("HEALTHCHECK")
    assert exec_form(healthcheck[healthcheck.index("CMD") + 3 :].strip()) == ["tsf-adapter", "healthcheck"]


def test_the_config_the_image_reads_is_the_one_it_copies_in() -> None:
    config_path = env_of_image()["TSF_ADAPTER_CONFIG"]
    copies = [rest.split() for word, rest in instructions() if word == "COPY"]
    assert ["deploy/container/config.yaml", config_path] in copies


def test_models_go_to_the_declared_volume_owned_by_the_user() -> None:
    config = load_config(CONTAINER_CONFIG)
    assert exec_form(one("VOLUME")) == [config.state_dir]
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert f"chown 65534:65534 {config.state_dir}" in runs


def test_the_listen_port_is_exposed_and_prometheus_is_reached_by_name() -> None:
    config = load_config(CONTAINER_CONFIG)
    assert config.server.listen_address == f":{one('EXPOSE')}"  # every address, the exposed port
    assert config.prometheus.remote_read.url == "http://prometheus:9090/api/v1/read"
    assert config.prometheus.remote_write.url == "http://prometheus:9090/api/v1/write"
    assert [t.name for t in config.targets] == ["root-disk"]


def test_a_state_dir_the_process_cannot_write_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"^state_dir: .*a-file/models is not writable by uid \d+: "):
        check_writable(blocker / "models")
    check_writable(tmp_path / "new" / "models")  # created when missing
    assert (tmp_path / "new" / "models").is_dir() and not list((tmp_path / "new" / "models").iterdir())


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return -1


def test_the_image_command_runs_against_a_temporary_root(tmp_path: Path) -> None:
    """The image's config, its paths under ``tmp_path``; Prometheus is absent, so the daemon starts
    without history (as a container started before its Prometheus does) and is still ready."""
    data = yaml.safe_load(CONTAINER_CONFIG.read_text())
    data["state_dir"] = str(tmp_path / "var" / "lib" / "tsf-adapter")
    nowhere = f"http://127.0.0.1:{free_port()}"
    data["prometheus"]["remote_read"]["url"] = f"{nowhere}/api/v1/read"
    data["prometheus"]["remote_write"]["url"] = f"{nowhere}/api/v1/write"
    config = tmp_path / "etc" / "tsf-adapter" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    env = {
        **os.environ,
        **env_of_image(),
        "TSF_ADAPTER_CONFIG": str(config),
        "TSF_ADAPTER_LISTEN_ADDRESS": f"127.0.0.1:{port}",
    }
    command = [sys.executable, "-m", "tsf_adapter", *exec_form(one("CMD"))]
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while _http_status(f"http://127.0.0.1:{port}/-/ready") != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        health = [sys.executable, "-m", "tsf_adapter", "healthcheck"]
        checked = subprocess.run(
            health, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD
        )
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout == f"http://127.0.0.1:{port}/-/healthy: healthy\n"
        assert (tmp_path / "var" / "lib" / "tsf-adapter").is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(HANG_GUARD) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Nothing listens now: the healthcheck says so and fails.
    down = subprocess.run(health, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
    assert down.returncode == 1 and down.stderr.startswith(
        f"tsf-adapter: http://127.0.0.1:{port}/-/healthy: "
    )


def test_a_build_argument_chooses_the_torch_build_and_the_pin_stays_the_projects() -> None:
    """CPU by default; ``--build-arg TORCH_INDEX_URL=`` (PyPI) or a CUDA index gives the GPU build.
    Either way torch is the version CI pins (.ci/setup), installed before the package."""
    assert one("ARG") == 'TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"'
    runs = [rest for word, rest in instructions() if word == "RUN"]
    torch_install = runs[0]
    assert '--index-url "$TORCH_INDEX_URL" torch==2.13.0' in torch_install
    assert "pip install torch==2.13.0" in torch_install  # the empty argument: PyPI's (CUDA) build
    assert "'torch==2.13.0'" in (ROOT / ".ci" / "setup").read_text()
