"""The ``tsf-adapter`` command: exit codes, messages, and the receiver as a real process.

``check-config`` runs in-process (``main`` raises ``SystemExit``). ``receive``
runs as ``python -m tsf_adapter`` from this tree, so the code under test is the
tree's, not whatever the console script was installed from.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.prometheus import free_port
from tsf_adapter.cli import main
from tsf_adapter.core.address import split_host_port
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.remote.codec import encode_write_request

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "testdata" / "config"
HANG_GUARD = 30.0  # seconds; only against a hang, never a speed assertion


def run_main(*argv: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    code = exited.value.code
    assert isinstance(code, int)
    return code


# --- check-config --------------------------------------------------------------------------------


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "full.good.yaml"
    assert run_main("check-config", "--config", str(path)) == 0
    assert capsys.readouterr().out == "\n".join(
        [
            f"{path}: ok: 0 targets, 2 ingest selectors",
            "  ingest up",
            '  ingest node_load1{instance=~"a|b", job!=""}\n',
        ]
    )


def test_check_config_lists_every_target_as_the_daemon_reads_it(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "deploy" / "tsf-adapter.yml"
    assert run_main("check-config", "--config", str(path)) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: ok: 1 target, 0 ingest selectors",
        "  target storage-quota: storage_used_bytes, step 5m, history 7d, horizons 1h 6h 24h, "
        "quantiles 0.1 0.5 0.9 0.98, model lstm (scope global, calibrate), retrain every 6h, "
        "forecast every 5m, threshold above storage_quota_bytes on (group, user, storage_type, cluster)",
    ]


def test_check_config_reports_every_mistake_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    path = CONFIGS / "several_mistakes.bad.yaml"
    assert run_main("check-config", "--config", str(path)) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 4
    assert all(line.startswith(f"tsf-adapter: {path}: ") for line in lines)
    assert [line.split(": ")[2] for line in lines] == [
        "server.listen_adress",
        "prometheus.remote_write.queue.max_samples_per_send",
        "targets[0].step",
        "targets[1].selector",
    ]


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("unknown_key", "server.listen_adress: unknown key (did you mean listen_address?)"),
        ("int_wrong_type", "prometheus.remote_write.queue.capacity: expected an integer (got 'many')"),
        # A neural target that could never train fails here, not as a training error every hour.
        (
            "target_history_too_short_to_train",
            "targets[0].history: must hold at least 1008 steps (16h48m) for model lstm to train: "
            "288 input + 360 horizon + 360 validation (got 12h = 720 steps of 1m)",
        ),
    ],
)
def test_check_config_bad_exits_2_naming_file_and_key(
    capsys: pytest.CaptureFixture[str], fixture: str, message: str
) -> None:
    path = CONFIGS / f"{fixture}.bad.yaml"
    assert run_main("check-config", "--config", str(path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"tsf-adapter: {path}: {message}\n"


def test_check_config_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.yaml"
    assert run_main("check-config", "--config", str(path)) == 2
    assert capsys.readouterr().err.startswith(f"tsf-adapter: {path}: cannot read config file")


def test_receive_with_a_bad_selector_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("receive", "--listen", "127.0.0.1:0", "--selector", "up{") == 2
    assert capsys.readouterr().err.startswith("tsf-adapter: invalid selector 'up{'")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("no-such-command") == 2
    assert run_main("check-config") == 2  # --config is required
    capsys.readouterr()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.0.0.0:9201", ("0.0.0.0", 9201)),
        (":9201", ("0.0.0.0", 9201)),
        ("[::1]:9201", ("::1", 9201)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


# --- receive, as a process -----------------------------------------------------------------------


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=HANG_GUARD) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


class ReceiverProcess:
    """``python -m tsf_adapter receive`` on a free loopback port, stderr kept for assertions."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"receiver-{self.port}.log"
        self.args = [
            sys.executable,
            "-m",
            "tsf_adapter",
            "receive",
            "--listen",
            f"127.0.0.1:{self.port}",
            *args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ReceiverProcess:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if http("GET", f"{self.url}/-/ready") == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"receiver not ready:\n{self.log()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(HANG_GUARD)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    with ReceiverProcess(tmp_path, "--selector", '{__name__=~"keep_.+"}') as proc:
        yield proc


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=HANG_GUARD) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_receive_process_accepts_a_write_and_stops_cleanly_on_sigterm(receiver: ReceiverProcess) -> None:
    labels = make_labels({"__name__": "keep_a", "job": "x"})
    body = encode_write_request(
        [
            SeriesSamples(labels, [1_700_000_000_000, 1_700_000_060_000], [1.0, 2.0]),
            SeriesSamples(make_labels({"__name__": "other"}), [1_700_000_000_000], [1.0]),
        ]
    )
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    assert http("POST", f"{receiver.url}/api/v1/write", body, headers) == 204
    assert http("POST", f"{receiver.url}/api/v1/write", b"junk", headers) == 400
    assert http("GET", f"{receiver.url}/-/healthy") == 200
    metrics = scrape(receiver.url)
    assert metrics["tsf_adapter_receiver_samples_received_total"] == 2
    assert metrics['tsf_adapter_receiver_samples_dropped_total{reason="unselected"}'] == 1
    assert metrics['tsf_adapter_receiver_requests_total{code="400",protocol="v1"}'] == 1

    assert receiver.terminate() == 0
    log = receiver.log()
    assert "receiver listening on http://127.0.0.1:" in log
    # Not ready first (so a balancer stops sending), then the listener closes.
    assert log.index("stopping: no longer ready") < log.index("stopped")
    assert "Traceback" not in log


def test_receive_process_sigint_also_exits_0(receiver: ReceiverProcess) -> None:
    assert receiver.proc is not None
    receiver.proc.send_signal(signal.SIGINT)
    assert receiver.proc.wait(HANG_GUARD) == 0
    assert "Traceback" not in receiver.log()


def test_receive_exits_1_when_the_port_is_taken(receiver: ReceiverProcess, tmp_path: Path) -> None:
    second = ReceiverProcess(tmp_path)
    second.port = receiver.port
    second.args[second.args.index("--listen") + 1] = f"127.0.0.1:{receiver.port}"
    with second.log_path.open("wb") as log:
        proc = subprocess.run(second.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=HANG_GUARD)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{receiver.port}" in second.log()
    assert receiver.alive()


def test_backtest_from_an_unreachable_prometheus_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    code = run_main(
        "backtest",
        *("--prometheus", f"http://127.0.0.1:{port}", "--selector", "up"),
        *("--start", "1700000000", "--end", "1700086400"),
        *("--history", "1h", "--horizon", "10m", "--origin-every", "10m", "--start-frac", "0.6"),
        *("--models", "last_value", "--out", str(tmp_path / "f.csv")),
    )
    assert code == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("tsf-adapter:")]
    assert line.startswith(f"tsf-adapter: http://127.0.0.1:{port}/api/v1/read: remote read: ")
    assert "Traceback" not in err


def test_run_with_a_state_dir_it_cannot_write_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tmp_path / "config.yaml"
    config.write_text(f'state_dir: "{blocker / "models"}"\n')
    assert run_main("run", "--config.file", str(config)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tsf-adapter: {config}: state_dir: {blocker / 'models'} is not writable by uid ")
    assert err.count("\n") == 1


SHARDED = """
shard: {total: 3}
state_dir: %s
targets:
  - {name: d, selector: used, threshold: {selector: quota, on: [user]}}
"""


@pytest.mark.parametrize(
    ("flag", "env", "message"),
    [
        (
            ["--shard.index", "3"],
            None,
            "--shard.index: must be from 0 to 2, shard.total - 1 in {config} (got 3)",
        ),
        ([], "x", "--shard.index (or $TSF_ADAPTER_SHARD_INDEX): must be a whole number from 0 (got 'x')"),
        (
            ["--shard.index", "-1"],
            None,
            "--shard.index (or $TSF_ADAPTER_SHARD_INDEX): must be a whole number from 0 (got '-1')",
        ),
    ],
)
def test_a_shard_index_out_of_range_is_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: list[str],
    env: str | None,
    message: str,
) -> None:
    config = tmp_path / "sharded.yaml"
    config.write_text(SHARDED % (tmp_path / "state"))
    if env is not None:
        monkeypatch.setenv("TSF_ADAPTER_SHARD_INDEX", env)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--config", str(config), *flag])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"tsf-adapter: {message.format(config=config)}\n"
