"""A daemon under test: ``tsf-adapter run`` as a real process, beside a fake Prometheus.

The fake answers remote-read with fixed history (encoded with our own read codec) and records
every remote-write it is sent; ``Daemon`` runs the CLI in a subprocess with its log in a file.
Timing never decides a pass: every wait polls for a state, with a guard against hangs only.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.prometheus import free_port
from tsf_adapter.core.selector import Selector
from tsf_adapter.core.series import SeriesSamples
from tsf_adapter.remote.codec import decode_write_request, decompress
from tsf_adapter.remote.read_codec import SAMPLES_CONTENT_TYPE, decode_read_request, encode_samples_response

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD = 45.0  # seconds; only against a hang, never a speed assertion


class FakePrometheus:
    """Remote-read of fixed history and a recording remote-write endpoint, on a thread of its own."""

    def __init__(self, history: list[SeriesSamples]) -> None:
        self.history = history
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.written: list[SeriesSamples] = []
        self.lock = threading.Lock()
        self.read_gate = threading.Event()  # reads wait until the test opens it
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> FakePrometheus:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.read_gate.set()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/read", self._read)
        app.router.add_post("/api/v1/write", self._write)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _read(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.get_running_loop().run_in_executor(None, self.read_gate.wait)
        queries, _ = decode_read_request(body)
        results = []
        for q in queries:
            selector = Selector(q.matchers)
            found = []
            for s in self.history:
                if selector.matches(s.labels):
                    keep = (s.timestamps >= q.start_ms) & (s.timestamps <= q.end_ms)
                    found.append(SeriesSamples(s.labels, s.timestamps[keep], s.values[keep]))
            results.append(found)
        return web.Response(
            body=encode_samples_response(results), headers={"Content-Type": SAMPLES_CONTENT_TYPE}
        )

    async def _write(self, request: web.Request) -> web.Response:
        decoded = decode_write_request(decompress(await request.read(), 1 << 26))
        with self.lock:
            self.written.extend(decoded.series)
        return web.Response(status=204)

    def series(self) -> list[SeriesSamples]:
        with self.lock:
            return list(self.written)

    def infos(self, name: str) -> set[tuple[str, str]]:
        """(instance, model) of every ``name`` row written so far."""
        out = set()
        for s in self.series():
            labels = dict(s.labels)
            if labels["__name__"] == name:
                out.add((labels.get("instance", ""), labels["model"]))
        return out


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/x-protobuf")
        req.add_header("Content-Encoding", "snappy")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_for(what: str, check: Callable[[], bool], log: Callable[[], str]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}:\n{log()}")


class Daemon:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            args = [sys.executable, "-m", "tsf_adapter", "run", "--config", str(self.config)]
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[[Path], Daemon]]:
    made: list[Daemon] = []

    def make(config: Path) -> Daemon:
        d = Daemon(config, tmp_path / f"daemon{len(made)}.log")
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
