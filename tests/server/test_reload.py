"""A reload is all or nothing: one that fails at any step leaves the running daemon as it was.

The daemon runs in process (so a step can be made to fail), beside the fake Prometheus of the
process tests. Each failure is injected at one step of the reload; after it, the config, every
runner (the same objects, still running), the store's targets and the receiver's selectors are
those from before, the reload metric says it failed, and a good reload then goes through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_config import connection_yaml
from tests.live_daemon import FakePrometheus
from tests.prometheus import free_port
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.pipeline import backfill
from tsf_adapter.server import daemon as daemon_module
from tsf_adapter.server.app import INGESTER
from tsf_adapter.server.daemon import Daemon, read_config

TARGET = """
  - name: {name}
    selector: '{metric}'
    step: 1s
    history: 1m
    horizons: [{horizon}]
    model: {{kind: last_value}}
    forecast_every: 1s
"""


def _config(base: str, *targets: tuple[str, str, str]) -> str:
    listed = "".join(TARGET.format(name=n, metric=m, horizon=h) for n, m, h in targets)
    return f"{base}\noutput:\n  mode: exposition\ntargets:{listed}"


def _history() -> list[SeriesSamples]:
    now = int(time.time() * 1000)
    ts = [now - 1000 * k for k in range(30, 0, -1)]
    return [
        SeriesSamples(make_labels({"__name__": name, "job": "j"}), ts, [float(k) for k in range(30)])
        for name in ("keep", "change", "gone", "new")
    ]


class Running:
    def __init__(self, daemon: Daemon, path: Path, base: str) -> None:
        self.daemon = daemon
        self.path = path
        self.base = base

    def snapshot(self) -> dict[str, Any]:
        d = self.daemon
        assert d.scheduler is not None and d.app is not None
        return {
            "config": d.config,
            "runners": dict(d.scheduler.runners),
            "running": {
                n: r._task is not None and not r._task.done() for n, r in d.scheduler.runners.items()
            },
            "store": set(d.store.targets),
            "selectors": [str(s) for s in d.app[INGESTER].selectors],
        }


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    with FakePrometheus(_history()) as fake:
        fake.read_gate.set()
        base = connection_yaml(
            free_port(), f"{fake.url}/api/v1/read", f"{fake.url}/api/v1/write", tmp_path / "state"
        )
        path = tmp_path / "config.yaml"
        path.write_text(
            _config(base, ("keep", "keep", "2s"), ("change", "change", "2s"), ("gone", "gone", "2s"))
        )
        daemon = Daemon(path, read_config(path))
        task = asyncio.create_task(daemon.run(handle_signals=False))
        for _ in range(400):
            if daemon.state.ready:
                break
            await asyncio.sleep(0.05)
        assert daemon.state.ready
        try:
            yield Running(daemon, path, base)
        finally:
            daemon.request_stop()
            assert await asyncio.wait_for(task, 30) == 0


def _fail(*_: object, **__: object) -> Any:
    raise RuntimeError("injected failure")


async def _async_fail(*_: object, **__: object) -> Any:
    raise RuntimeError("injected failure")


STEPS: dict[str, Callable[[pytest.MonkeyPatch, Running], None]] = {
    "building a runner": lambda mp, r: mp.setattr(r.daemon.scheduler, "build", _fail),
    "reading history": lambda mp, r: mp.setattr(daemon_module, "read_history", _async_fail),
    "applying the web config": lambda mp, r: mp.setattr(r.daemon.guard, "update", _fail),
    "installing the store's targets": lambda mp, r: mp.setattr(daemon_module, "install", _fail_once()),
}


def _fail_once() -> Callable[..., Any]:
    calls = {"n": 0}
    real = backfill.install

    def install(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            # Half way: the store already switched to the new targets, then the failure.
            real(args[0], args[1], args[2], args[3], [])
            raise RuntimeError("injected failure")
        return real(*args, **kwargs)

    return install


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_reload_that_fails_at_any_step_leaves_the_daemon_as_it_was(
    running: Running, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    daemon = running.daemon
    before = running.snapshot()
    assert before["store"] == {"keep", "change", "gone"} and all(before["running"].values())
    # A change of every kind: one target kept, one changed, one removed, one new.
    running.path.write_text(
        _config(running.base, ("keep", "keep", "2s"), ("change", "change", "3s"), ("new", "new", "2s"))
    )
    with monkeypatch.context() as mp:
        STEPS[step](mp, running)
        error = await daemon.reload()
    assert error == "RuntimeError: injected failure"
    after = running.snapshot()
    assert after["config"] is before["config"]
    assert after["runners"] == before["runners"]  # the same runner objects
    assert all(after["running"].values())
    assert after["store"] == before["store"]
    assert after["selectors"] == before["selectors"]
    assert daemon.registry.get_sample_value("tsf_adapter_config_last_reload_successful") == 0.0
    assert daemon.reload_error == error

    # Nothing was left half done: the same reload goes through once nothing fails.
    assert await daemon.reload() is None
    assert daemon.scheduler is not None
    assert set(daemon.scheduler.runners) == {"keep", "change", "new"}
    assert daemon.scheduler.runners["keep"] is before["runners"]["keep"]
    assert set(daemon.store.targets) == {"keep", "change", "new"}
    assert daemon.registry.get_sample_value("tsf_adapter_config_last_reload_successful") == 1.0
