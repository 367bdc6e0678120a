"""The REST API under ``/api/v1/``: targets, series, models, retraining and ad hoc forecasts, as JSON.

Routes (described in full by the OpenAPI document at ``/api/v1/openapi.json``, :mod:`.openapi`):

- ``GET /api/v1/status``: the daemon: version, ready, its schedule's clock, the last reload;
- ``GET /api/v1/targets``: every target with its settings and health (training, forecasts, errors);
- ``GET /api/v1/series?target=&match=&search=&sort=&limit=&offset=``: the series of the latest
  forecasts, soonest to reach their threshold first, one page at a time;
- ``GET /api/v1/series/{id}``: one series: its recent history, forecast paths at every quantile,
  threshold, time to it per quantile, crossing probabilities, forecast errors and model;
- ``GET /api/v1/models``: each target's model, where it is saved and how its last training went;
- ``POST /api/v1/targets/{name}/retrain``: start a training now (202), 409 while one runs;
- ``POST /api/v1/forecast``: a target's model applied to posted samples, or to a selector read from
  Prometheus, changing nothing (:mod:`tsf_adapter.pipeline.adhoc`).

The API reads what the runners already keep (their latest :class:`ForecastView` and
:class:`RunnerStatus`): a request costs no forecast and never waits on a training. Only a series'
history is read from the store, on the ingest thread that owns it. Before the daemon is ready
(backfill) every route but ``status`` answers 503.

Times are unix seconds of the schedule's clock (``status.time``): the wall clock, except in the
demo, whose simulated time runs ahead; a client reads "how long ago" against ``status.time``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
from aiohttp import web

from tsf_adapter import __version__
from tsf_adapter.config import Config, TargetConfig
from tsf_adapter.core.clock import Clock
from tsf_adapter.core.errors import InputError, RemoteError, SelectorError
from tsf_adapter.core.lifecycle import Readiness
from tsf_adapter.core.selector import Selector, parse_selector
from tsf_adapter.core.series import Labels, SeriesSamples, format_labels
from tsf_adapter.core.units import parse_duration, spelled
from tsf_adapter.pipeline import adhoc
from tsf_adapter.pipeline.models import candidate_scores, serving_scope
from tsf_adapter.pipeline.output import quantile_label
from tsf_adapter.pipeline.output.view import ForecastView
from tsf_adapter.pipeline.runner import TargetRunner
from tsf_adapter.pipeline.scheduler import Scheduler
from tsf_adapter.remote.read_client import RemoteReadClient
from tsf_adapter.server import api_json as js
from tsf_adapter.server.openapi import document
from tsf_adapter.store.store import Store

PREFIX: Final = "/api/v1"
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
SORTS: Final = ("time_to_threshold", "probability", "name")
# Series a posted ad hoc forecast may carry, and samples in all: a request is not an ingest path.
MAX_ADHOC_SERIES: Final = 1000
MAX_ADHOC_SAMPLES: Final = 1_000_000
# A series' history shown with its forecast: this many times its longest horizon, at most what is stored.
HISTORY_PER_HORIZON: Final = 4


class DaemonState(Protocol):
    """What the API reads of the running daemon (``server.daemon.Daemon``)."""

    config: Config
    config_path: Path
    scheduler: Scheduler | None
    store: Store
    reader: RemoteReadClient | None
    state: Readiness
    clock: Clock
    started_at: float
    reloaded_at: float
    reload_error: str | None


class BadRequest(Exception):
    """A request the API cannot answer: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def add_api_routes(app: web.Application, daemon: DaemonState, ingest: Executor) -> None:
    """Register every ``/api/v1/`` route of the REST API on ``app``."""
    api = Api(daemon, ingest)
    app.router.add_get(f"{PREFIX}/openapi.json", api.openapi)
    app.router.add_get(f"{PREFIX}/status", api.status)
    app.router.add_get(f"{PREFIX}/targets", api.guard(api.targets))
    app.router.add_get(f"{PREFIX}/series", api.guard(api.series))
    app.router.add_get(f"{PREFIX}/series/{{id}}", api.guard(api.one_series))
    app.router.add_get(f"{PREFIX}/models", api.guard(api.models))
    app.router.add_post(f"{PREFIX}/targets/{{name}}/retrain", api.guard(api.retrain))
    app.router.add_post(f"{PREFIX}/forecast", api.guard(api.forecast))


Handler = Callable[[web.Request], Any]


class Api:
    """The handlers; each reads the daemon's state as it is at the request."""

    def __init__(self, daemon: DaemonState, ingest: Executor) -> None:
        self.daemon = daemon
        self.ingest = ingest
        self._document = json.dumps(document(), separators=(",", ":"))
        # Per target, its latest view and that view's series by id: built once per forecast, so
        # opening one series of ten thousand hashes none of them again.
        self._ids: dict[str, tuple[ForecastView, dict[str, int]]] = {}

    def guard(self, handler: Handler) -> Handler:
        """503 before ready; a ``BadRequest`` or our own input errors as JSON with their status."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.daemon.scheduler is None or not self.daemon.state.ready:
                return js.failure(503, "not ready: the daemon is starting (backfill) or stopping")
            try:
                response: web.StreamResponse = await handler(request)
            except BadRequest as exc:
                return js.failure(exc.status, str(exc))
            except (InputError, SelectorError) as exc:
                return js.failure(400, str(exc))
            return response

        return guarded

    @property
    def scheduler(self) -> Scheduler:
        assert self.daemon.scheduler is not None  # guard() answered 503 before
        return self.daemon.scheduler

    def runner(self, name: str) -> TargetRunner:
        runner = self.scheduler.runners.get(name)
        if runner is None:
            raise BadRequest(404, f"no target named {name!r}")
        return runner

    # --- documents -------------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=self._document, content_type=js.JSON_TYPE)

    # --- the daemon ------------------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        """Answers before ready too: it is how a page or a script tells starting from broken."""
        d = self.daemon
        runners = [] if d.scheduler is None else list(d.scheduler.runners.values())
        return js.success(
            {
                "version": __version__,
                "ready": d.state.ready and d.scheduler is not None,
                "stopping": d.state.stopping,
                "time": d.clock.time(),
                "wall_time": time.time(),
                "started_at": d.started_at,
                "config_file": str(d.config_path),
                "last_reload": {
                    "successful": d.reload_error is None,
                    "success_at": d.reloaded_at,
                    "error": d.reload_error,
                },
                "targets": len(runners),
                "training": sum(r.status.training_since is not None for r in runners),
                "stored_series": d.store.n_series,
            }
        )

    # --- targets ---------------------------------------------------------------------------------

    async def targets(self, request: web.Request) -> web.Response:
        return js.success([self._target(r) for r in self.scheduler.runners.values()])

    def _target(self, runner: TargetRunner) -> dict[str, object]:
        t = runner.target
        status = runner.status
        view = _view(runner)
        stored = self.daemon.store.targets.get(t.name)
        return {
            "name": t.name,
            "selector": str(t.selector),
            "step_seconds": t.step,
            "history_seconds": t.history,
            "horizons": [spelled(h) for h in t.horizons],
            "quantiles": [quantile_label(q) for q in t.quantiles],
            "model": {
                "kind": t.model.kind,
                "scope": t.model.scope,
                "serving_scope": serving_scope(runner.forecaster, t.model),
                "trains": runner.trains,
                "fitted": runner.fitted,
                "trained_at": status.trained_at,
            },
            "threshold": _threshold(t),
            "series": 0 if view is None else len(view),
            "stored_series": 0 if stored is None else stored.stats.series,
            "waiting_for_history": runner.waiting_for_history,
            "models_in_use": {} if view is None else js.counts(m for m, _ in view.models),
            "training": {
                "running": status.training_since is not None,
                "since": status.training_since,
                "epoch": js.epoch(status.epoch),
                "last": js.outcome(status.last_training),
                "next_at": js.number(runner.next_train) if runner.trains else None,
            },
            "forecast": {
                "last": js.outcome(status.last_forecast),
                "next_at": js.number(runner.next_forecast),
                "every_seconds": t.forecast_every,
            },
        }

    # --- series ----------------------------------------------------------------------------------

    async def series(self, request: web.Request) -> web.Response:
        q = request.query
        target = q.get("target")
        if target is not None:
            self.runner(target)
        match = _selector(q.get("match"))
        search = q.get("search", "").strip().lower()
        sort = q.get("sort", SORTS[0])
        if sort not in SORTS:
            raise BadRequest(400, f"sort: must be one of {', '.join(SORTS)} (got {sort!r})")
        limit = _int(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int(q, "offset", 0, 0, None)
        rows: list[tuple[ForecastView, int, float]] = []
        for runner in self.scheduler.runners.values():
            view = _view(runner)
            if view is None or (target is not None and runner.name != target):
                continue
            soonest = view.first_crossing()
            for i, labels in enumerate(view.labels):
                if match is not None and not match.matches(labels):
                    continue
                if search and search not in format_labels(labels).lower():
                    continue
                rows.append((view, i, float(soonest[i])))
        rows.sort(key=_sort_key(sort))
        page = rows[offset : offset + limit]
        return js.success(
            {
                "series": [js.series_summary(v, i, s) for v, i, s in page],
                "total": len(rows),
                "offset": offset,
                "limit": limit,
            }
        )

    async def one_series(self, request: web.Request) -> web.Response:
        wanted = request.match_info["id"]
        for runner in self.scheduler.runners.values():
            view = _view(runner)
            if view is None:
                continue
            i = self._series_ids(view).get(wanted)
            if i is not None:
                labels = view.labels[i]
                history = await self._history(runner, labels)
                detail = js.series_detail(view, i, history)
                scores = candidate_scores(runner.forecaster, labels)
                detail["model_scores"] = {name: js.number(v) for name, v in scores.items()}
                return js.success(detail)
        raise BadRequest(404, f"no series with id {wanted!r} in the latest forecasts")

    def _series_ids(self, view: ForecastView) -> dict[str, int]:
        cached = self._ids.get(view.target)
        if cached is not None and cached[0] is view:
            return cached[1]
        ids = {js.series_id(view.target, labels): i for i, labels in enumerate(view.labels)}
        # Built at most once per forecast: the moment to let go of targets a reload removed.
        self._ids = {name: kept for name, kept in self._ids.items() if name in self.scheduler.runners}
        self._ids[view.target] = (view, ids)
        return ids

    async def _history(
        self, runner: TargetRunner, labels: Labels
    ) -> tuple[int, int, npt.NDArray[np.float64]] | None:
        steps = HISTORY_PER_HORIZON * runner.horizon_steps

        def read() -> tuple[int, int, npt.NDArray[np.float64]] | None:
            batch = self.daemon.store.history(runner.name, labels, steps=steps)
            return None if batch is None else (batch.start_ms, batch.step_ms, batch.values[0])

        return await asyncio.get_running_loop().run_in_executor(self.ingest, read)

    # --- models ----------------------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        out = []
        for runner in self.scheduler.runners.values():
            t = runner.target
            view = _view(runner)
            path = runner.model_path if runner.trains else None
            out.append(
                {
                    "target": t.name,
                    "kind": t.model.kind,
                    "scope": serving_scope(runner.forecaster, t.model),
                    "trains": runner.trains,
                    "fitted": runner.fitted,
                    "trained_at": runner.status.trained_at,
                    "file": None if path is None else str(path),
                    "file_bytes": _size(path),
                    "series_by_model": {} if view is None else js.counts(m for m, _ in view.models),
                    "last_training": js.outcome(runner.status.last_training),
                    "retrain_every_seconds": t.retrain_every if runner.trains else None,
                }
            )
        return js.success(out)

    async def retrain(self, request: web.Request) -> web.Response:
        runner = self.runner(request.match_info["name"])
        if not runner.trains:
            raise BadRequest(400, f"target {runner.name}: model {runner.target.model.kind} does not train")
        if not runner.start_training():
            raise BadRequest(409, f"target {runner.name}: a training is already running")
        return js.success({"target": runner.name, "training": "started"}, status=202)

    # --- ad hoc forecast -------------------------------------------------------------------------

    async def forecast(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"body: not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "body: must be a JSON object")
        unknown = set(body) - {"target", "series", "selector", "history", "horizon"}
        if unknown:
            raise BadRequest(400, f"body: unknown keys {sorted(unknown)}")
        name = body.get("target")
        if not isinstance(name, str):
            raise BadRequest(400, "target: must name a configured target (a string)")
        runner = self.runner(name)
        history_s = _duration(body, "history")
        steps = adhoc.horizon_steps(runner, _duration(body, "horizon"))
        if ("series" in body) == ("selector" in body):
            raise BadRequest(400, "body: give either series (samples) or selector (read from Prometheus)")
        if "series" in body:
            series = _posted_series(body["series"])
        else:
            series = await self._read(runner.target, body["selector"], history_s)
        batch = adhoc.grid(runner, series, history_s)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self.scheduler.deps.workers.forecast, adhoc.forecast, runner, batch, steps
        )
        return js.success(
            {
                "target": runner.name,
                "origin": batch.end_ms / 1000.0,
                "step_seconds": batch.step_ms / 1000.0,
                "series": [
                    {
                        "labels": js.label_map(labels),
                        "model": model,
                        "scope": scope,
                        "quantiles": {
                            quantile_label(q): js.numbers(result.paths[i, k])
                            for k, q in enumerate(runner.target.quantiles)
                        },
                    }
                    for i, (labels, (model, scope)) in enumerate(
                        zip(batch.labels, result.models, strict=True)
                    )
                ],
            }
        )

    async def _read(self, target: TargetConfig, text: object, history_s: float | None) -> list[SeriesSamples]:
        if not isinstance(text, str):
            raise BadRequest(400, "selector: must be a PromQL series selector (a string)")
        selector = parse_selector(text)
        reader = self.daemon.reader
        if reader is None:
            raise BadRequest(503, "no remote-read client: the daemon reads nothing from Prometheus")
        end_ms = int(time.time() * 1000)
        start_ms = end_ms - round((history_s if history_s is not None else target.history) * 1000)
        try:
            return await reader.read(selector, start_ms, end_ms)
        except RemoteError as exc:
            raise BadRequest(502, f"reading {selector} from Prometheus failed: {exc}") from None


def _view(runner: TargetRunner) -> ForecastView | None:
    return None if runner.latest is None else runner.latest.view


def _threshold(t: TargetConfig) -> dict[str, object] | None:
    th = t.threshold
    if th is None:
        return None
    return {
        "value": th.value,
        "selector": None if th.selector is None else str(th.selector),
        "on": list(th.on),
        "ratio": th.ratio,
        "direction": th.direction,
    }


def _sort_key(sort: str) -> Callable[[tuple[ForecastView, int, float]], tuple[object, ...]]:
    def name(row: tuple[ForecastView, int, float]) -> str:
        return format_labels(row[0].labels[row[1]])

    if sort == "name":
        return lambda row: (name(row),)
    if sort == "probability":

        def by_probability(row: tuple[ForecastView, int, float]) -> tuple[object, ...]:
            view, i, _ = row
            p = math.nan if view.probability is None else float(view.probability[i, -1])
            return (math.isnan(p), -p if not math.isnan(p) else 0.0, name(row))

        return by_probability

    def by_time(row: tuple[ForecastView, int, float]) -> tuple[object, ...]:
        s = row[2]
        return (math.isnan(s), s if not math.isnan(s) else 0.0, name(row))

    return by_time


def _selector(text: str | None) -> Selector | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise BadRequest(400, f"match: {exc}") from None


def _int(query: Any, key: str, default: int, least: int, most: int | None) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, f"{key}: must be a whole number (got {raw!r})") from None
    if value < least or (most is not None and value > most):
        bound = f"from {least} to {most}" if most is not None else f"at least {least}"
        raise BadRequest(400, f"{key}: must be {bound} (got {value})")
    return value


def _duration(body: dict[str, Any], key: str) -> float | None:
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise BadRequest(400, f'{key}: must be a duration such as "6h" (got {raw!r})')
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise BadRequest(400, f"{key}: {exc}") from None
    if seconds <= 0:
        raise BadRequest(400, f"{key}: must be longer than 0s (got {raw!r})")
    return seconds


def _posted_series(raw: object) -> list[SeriesSamples]:
    """``[{"labels": {...}, "samples": [[unix seconds, value], ...]}, ...]`` as ``SeriesSamples``."""
    if not isinstance(raw, list) or not raw:
        raise BadRequest(400, "series: must be a non-empty list of {labels, samples}")
    if len(raw) > MAX_ADHOC_SERIES:
        raise BadRequest(413, f"series: at most {MAX_ADHOC_SERIES} series (got {len(raw)})")
    out: list[SeriesSamples] = []
    total = 0
    for k, item in enumerate(raw):
        where = f"series[{k}]"
        if not isinstance(item, dict) or set(item) - {"labels", "samples"}:
            raise BadRequest(400, f"{where}: must be an object with labels and samples")
        labels = item.get("labels", {})
        if not isinstance(labels, dict) or not all(
            isinstance(n, str) and isinstance(v, str) for n, v in labels.items()
        ):
            raise BadRequest(400, f"{where}.labels: must map label names to string values")
        samples = item.get("samples")
        if not isinstance(samples, list):
            raise BadRequest(400, f"{where}.samples: must be a list of [unix seconds, value]")
        total += len(samples)
        if total > MAX_ADHOC_SAMPLES:
            raise BadRequest(413, f"series: at most {MAX_ADHOC_SAMPLES} samples in all")
        try:
            arr = np.asarray(samples, dtype=np.float64).reshape(-1, 2) if samples else np.zeros((0, 2))
        except (TypeError, ValueError):
            raise BadRequest(400, f"{where}.samples: must be a list of [unix seconds, value]") from None
        if arr.shape[0] != len(samples) or not np.isfinite(arr[:, 0]).all():
            raise BadRequest(400, f"{where}.samples: must be a list of [unix seconds, value]")
        key: Labels = tuple(sorted(labels.items()))
        out.append(SeriesSamples(key, np.round(arr[:, 0] * 1000).astype(np.int64), arr[:, 1]))
    return out


def _size(path: Any) -> int | None:
    try:
        return None if path is None else int(path.stat().st_size)
    except OSError:
        return None
