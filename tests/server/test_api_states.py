"""REST API answers that depend on a moment a live daemon cannot be held at: before it is ready,
and while a training runs. The API runs in process on a real aiohttp server, over runners of the
scheduler tests' fake model (its fit waits on a gate the test opens)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from tests.pipeline.test_scheduler import T0, Env, FakeClock, FakeModel, env, pools, runner
from tsf_adapter.config import Config
from tsf_adapter.core.clock import Clock
from tsf_adapter.core.lifecycle import Readiness
from tsf_adapter.pipeline.output.view import ForecastView
from tsf_adapter.pipeline.scheduler import Scheduler
from tsf_adapter.remote.read_client import RemoteReadClient
from tsf_adapter.server import api_json
from tsf_adapter.server.api import Api, add_api_routes
from tsf_adapter.store.store import Store

__all__ = ["env", "pools"]  # fixtures, used by name


@dataclass
class State:
    scheduler: Scheduler | None
    store: Store
    state: Readiness
    config: Config = field(default_factory=Config)
    config_path: Path = Path("config.yaml")
    reader: RemoteReadClient | None = None
    clock: Clock = field(default_factory=lambda: FakeClock())
    started_at: float = T0
    reloaded_at: float = T0
    reload_error: str | None = None


async def serve(aiohttp_client: Any, env: Env, state: State) -> Any:
    app = web.Application()
    add_api_routes(app, state, env.deps.workers.ingest)
    return await aiohttp_client(app)


async def test_every_route_answers_503_until_the_daemon_is_ready(aiohttp_client: Any, env: Env) -> None:
    state = State(None, env.store, Readiness(ready=False))
    client = await serve(aiohttp_client, env, state)
    for method, path in (("GET", "/api/v1/targets"), ("GET", "/api/v1/series"), ("POST", "/api/v1/forecast")):
        resp = await client.request(method, path)
        assert resp.status == 503
        body = await resp.json()
        assert body == {
            "status": "error",
            "errorType": "unavailable",
            "error": "not ready: the daemon is starting (backfill) or stopping",
        }
    resp = await client.get("/api/v1/openapi.json")  # the document needs nothing of the daemon
    assert resp.status == 200
    resp = await client.get("/api/v1/status")  # tells starting from broken
    assert resp.status == 200
    status = (await resp.json())["data"]
    assert status["ready"] is False and status["targets"] == 0 and status["time"] == T0


async def test_retrain_while_a_training_runs_is_409_and_the_status_shows_it(
    aiohttp_client: Any, env: Env
) -> None:
    env.put("a", T0, 1.0)
    model = FakeModel((0.1, 0.5, 0.9))
    model.gate = threading.Event()
    scheduler = Scheduler(env.deps)
    scheduler.runners["t"] = r = runner(env, model)
    client = await serve(
        aiohttp_client, env, State(scheduler, env.store, Readiness(ready=True), clock=env.clock)
    )

    resp = await client.post("/api/v1/targets/t/retrain")
    assert resp.status == 202
    resp = await client.post("/api/v1/targets/t/retrain")
    assert resp.status == 409
    assert (await resp.json())["error"] == "target t: a training is already running"
    (target,) = (await (await client.get("/api/v1/targets")).json())["data"]
    assert target["training"]["running"] is True and target["training"]["since"] == pytest.approx(T0)
    model.gate.set()
    assert r.training is not None and await r.training
    (target,) = (await (await client.get("/api/v1/targets")).json())["data"]
    assert target["training"]["running"] is False
    assert target["training"]["last"]["error"] is None and target["model"]["trained_at"] == T0


def test_the_id_index_is_built_once_per_forecast_and_forgets_removed_targets(env: Env) -> None:
    def view(target: str, users: list[str]) -> ForecastView:
        n = len(users)
        labels = tuple(((("__name__", "used"), ("user", u))) for u in users)
        return ForecastView(
            target=target, made_ms=0, origin_ms=0, step_ms=60_000, quantiles=(0.5,), horizons=("1h",),
            labels=labels, paths=np.zeros((n, 1, 1)), last=np.zeros(n), models=(("lstm", "global"),) * n,
        )  # fmt: skip

    scheduler = Scheduler(env.deps)
    state = State(scheduler, env.store, Readiness(ready=True))
    api = Api(state, env.deps.workers.ingest)
    scheduler.runners = {"a": runner(env), "b": runner(env)}  # only the names matter here
    first, other = view("a", ["x", "y"]), view("b", ["z"])
    ids = api._series_ids(first)
    assert ids == {api_json.series_id("a", labels): i for i, labels in enumerate(first.labels)}
    assert api._series_ids(first) is ids  # the same forecast: not hashed again
    api._series_ids(other)
    newer = view("a", ["y"])
    assert api._series_ids(newer) is not ids  # a new forecast: a new index
    del scheduler.runners["b"]  # a reload removed target b
    api._series_ids(view("a", ["x"]))
    assert set(api._ids) == {"a"}
