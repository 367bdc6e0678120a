"""The daemon: ``tsf-adapter run --config config.yaml``, wired from the parts and torn down in order.

Start, in this order (each step's teardown is registered as it succeeds, and runs in
reverse, as aiohttp's ``cleanup_ctx`` does, also when a later step fails):

1. executors (forecast, train; the receiver brings the ingest thread) and torch's thread count;
2. the HTTP client session, and the remote-write queue (``output.mode: remote_write``);
3. the HTTP server: the status page at ``/`` and the REST API (``/api/v1/``), probes,
   ``/metrics``, ``/forecasts`` (exposition) and the receiver, which
   answers 503 to writes until ready, so Prometheus keeps and resends them after the backfill;
4. saved models loaded, every target's history backfilled by remote-read, then **ready**;
5. one runner per target (see :mod:`tsf_adapter.pipeline.scheduler`).

SIGTERM / SIGINT: not ready and writes answered 503 at once; runners stop (a running
training ends early and saves its model); the write queue flushes within
``queue.flush_deadline``; the server closes; exit 0.

SIGHUP or ``POST /-/reload`` (what config-reloader sidecars call; 200, or 500 with the reason):
reload the config file and the web config file (``--web.config.file``: users, token, headers and
certificates; see :mod:`.web_guard`). Reloads run one at a time, and
``tsf_adapter_config_last_reload_successful`` says how the last one went. Targets equal to their
running config keep their runner, model and history; changed and new ones get a new runner (a
saved model is reused only when its settings hash matches) and are backfilled; removed ones stop.
``server``, ``prometheus``, ``output``, ``state_dir`` and ``shard`` need a restart: a change there is logged
and not applied.

A reload is all or nothing. First everything that can fail on its own account is done aside: the
files are read and checked, the new runners built with their saved state, their history read.
A failure there changes nothing. Then it is applied: the store's targets, then the web config (on
a failure of either the store is put back on the running config's), and only then are runners
stopped, started and the config replaced, steps that do not fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from tsf_adapter.config import Config, TargetConfig, load_config
from tsf_adapter.core.address import split_host_port
from tsf_adapter.core.clock import Clock, SystemClock
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.core.lifecycle import Readiness
from tsf_adapter.pipeline.backfill import Backfilled, install, read_history
from tsf_adapter.pipeline.metrics import DaemonMetrics, StoreCollector
from tsf_adapter.pipeline.models import is_neural
from tsf_adapter.pipeline.output import EXPOSITION_CONTENT_TYPE, markers, render_exposition
from tsf_adapter.pipeline.runner import RunnerDeps, TargetRunner, Workers
from tsf_adapter.pipeline.scheduler import Scheduler
from tsf_adapter.pipeline.targets import receiver_selectors, store_specs
from tsf_adapter.remote.queue import QueueCollector, WriteQueue
from tsf_adapter.remote.read_client import RemoteReadClient
from tsf_adapter.remote.write_client import RemoteWriteClient
from tsf_adapter.server.api import add_api_routes
from tsf_adapter.server.app import INGEST_EXECUTOR, INGESTER, build_app
from tsf_adapter.server.self_metrics import ReloadMetrics
from tsf_adapter.server.status_page import add_status_page
from tsf_adapter.server.web_config import load_web_config
from tsf_adapter.server.web_guard import WebGuard
from tsf_adapter.store.store import Store

logger = logging.getLogger("tsf_adapter.daemon")

# Targets read at once during a backfill (each read runs remote_read.concurrency sub-queries).
BACKFILL_TARGETS_AT_ONCE: Final = 2
# Sections a reload cannot change in a running process.
_RESTART_ONLY: Final = ("server", "prometheus", "output", "state_dir", "shard")


def state_dir(config: Config, config_path: Path) -> Path:
    """``state_dir`` as configured, a relative one taken from the config file's directory."""
    path = Path(config.state_dir)
    return path if path.is_absolute() else config_path.absolute().parent / path


def check_writable(directory: Path, source: str = "state_dir") -> None:
    """Create ``directory`` if needed and prove it takes a file, or raise ``ConfigError`` saying why
    (``source`` names the setting: the config file and its key).

    Models are saved there after every training, an hour or more after start: a directory the
    process cannot write to (a container's user without a volume there) would otherwise fail every
    save, one log line an hour, and lose every model at each restart.
    """
    probe = directory / f".write-test-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        who = f"uid {os.getuid()}" if hasattr(os, "getuid") else "this process"
        raise ConfigError(
            f"{source}: {directory} is not writable by {who}: {exc.strerror or exc}"
            " (models are saved there; mount a volume or set state_dir)"
        ) from None


def read_config(config_path: Path, listen: str | None = None, shard_index: int | None = None) -> Config:
    """The config file, with ``server.listen_address`` replaced by ``listen`` and ``shard.index`` by
    ``shard_index`` (the command line's: a StatefulSet gives each pod its index, not its own file).

    Raises ``ConfigError`` for a bad file or a bad ``listen`` or ``shard_index``.
    """
    config = load_config(config_path)
    if listen is not None:
        try:
            split_host_port(listen)
        except ValueError as exc:
            raise ConfigError(f"--web.listen-address: {exc}") from None
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, listen_address=listen))
    if shard_index is not None:
        total = config.shard.total
        if not 0 <= shard_index < total:
            raise ConfigError(
                f"--shard.index: must be from 0 to {total - 1}, shard.total - 1 in {config_path}"
                f" (got {shard_index})"
            )
        config = dataclasses.replace(config, shard=dataclasses.replace(config.shard, index=shard_index))
    return config


async def run_daemon(
    config_path: Path,
    *,
    listen: str | None = None,
    web_config: Path | None = None,
    shard_index: int | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop, 1 when the listener cannot start.

    ``listen`` overrides the config's ``server.listen_address``, at start and at every reload.
    Raises ``ConfigError`` when the config file or the web config file is invalid at start, or
    the ``state_dir`` cannot be written to.
    """
    config = read_config(config_path, listen, shard_index)
    check_writable(state_dir(config, config_path), f"{config_path}: state_dir")
    daemon = Daemon(config_path, config, listen=listen, web_config=web_config, shard_index=shard_index)
    return await daemon.run()


class Daemon:
    """The running daemon's state: config, store, scheduler, outputs. One per process."""

    def __init__(
        self,
        config_path: Path,
        config: Config,
        *,
        clock: Clock | None = None,
        listen: str | None = None,
        web_config: Path | None = None,
        shard_index: int | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        # TLS, authentication and headers of the HTTP server; raises ConfigError for a bad file.
        self.web_config = web_config
        self.guard = WebGuard.from_file(web_config)
        # The command line's listen address, which every reload applies again.
        self.listen = listen
        self.shard_index = shard_index
        # The schedulers' clock: the real one, or the demo's simulated time.
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._stop = asyncio.Event()
        self.store = Store([], max_series=config.ingest.max_series, shard=config.shard_filter())
        self.state = Readiness(ready=False)
        self.registry = CollectorRegistry()
        self.metrics = DaemonMetrics(self.registry)
        self.registry.register(StoreCollector(self.store))
        self.reloads = ReloadMetrics(self.registry)
        self.reloads.record(True, time.time())  # the config it starts with loaded
        self.started_at = time.time()
        # Why the last reload failed; None when it succeeded (or none was tried).
        self.reload_error: str | None = None
        self.reloaded_at = self.started_at  # the last successful (re)load
        self._reloading = asyncio.Lock()
        self.queue: WriteQueue | None = None
        self.reader: RemoteReadClient | None = None
        self.app: web.Application | None = None
        self.scheduler: Scheduler | None = None
        self._torch_ready = False

    def request_stop(self) -> None:
        """Stop as SIGTERM does; for a process that embeds the daemon (the demo's ``--duration``)."""
        self._stop.set()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Start, serve until stopped, stop in order. ``handle_signals=False`` leaves SIGTERM, SIGINT
        and SIGHUP to an embedding process, which stops the daemon with :meth:`request_stop`."""
        stop = self._stop
        reload = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if handle_signals else ()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGHUP, reload.set)
        try:
            async with AsyncExitStack() as stack:
                if not await self._start(stack):
                    return 1
                while not stop.is_set():
                    stopped = asyncio.ensure_future(stop.wait())
                    reloaded = asyncio.ensure_future(reload.wait())
                    await asyncio.wait({stopped, reloaded}, return_when=asyncio.FIRST_COMPLETED)
                    stopped.cancel()
                    reloaded.cancel()
                    if reload.is_set() and not stop.is_set():
                        reload.clear()
                        await self.reload()
                logger.info("stopping: no longer ready, writes answered 503")
                self.state.stopping = True
            logger.info("stopped")
            return 0
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    # --- start -----------------------------------------------------------------------------------

    async def _start(self, stack: AsyncExitStack) -> bool:
        config = self.config
        forecast_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsf-forecast")
        train_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsf-train")
        stack.callback(train_pool.shutdown, wait=True)
        stack.callback(forecast_pool.shutdown, wait=True)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        self.reader = RemoteReadClient(config.prometheus.remote_read, session)
        if config.output.mode == "remote_write":
            await stack.enter_async_context(self._write_queue(session))

        app = build_app(
            config, self.store, selectors=receiver_selectors(config), registry=self.registry, state=self.state
        )
        if config.output.mode == "exposition":
            app.router.add_get("/forecasts", self._forecasts_handler)
        add_api_routes(app, self, app[INGEST_EXECUTOR])
        add_status_page(app)
        app.router.add_post("/-/reload", self._reload_handler)
        app.router.add_put("/-/reload", self._reload_handler)
        self.guard.install(app)
        self.app = app
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        host, port = split_host_port(config.server.listen_address)
        try:
            await web.TCPSite(runner, host, port, ssl_context=self.guard.ssl_context).start()
        except OSError as exc:
            logger.error("cannot listen on %s: %s", config.server.listen_address, exc)
            return False
        scheme = "http" if self.guard.ssl_context is None else "https"
        for address in runner.addresses:
            logger.info("listening on %s://%s:%s (not ready until backfilled)", scheme, *address[:2])

        deps = RunnerDeps(
            store=self.store,
            workers=Workers(ingest=app[INGEST_EXECUTOR], forecast=forecast_pool, train=train_pool),
            metrics=self.metrics,
            send=None if self.queue is None else self.queue.put,
            state_dir=state_dir(config, self.config_path),
            future_timestamps=config.output.future_timestamps,
            clock=self.clock,
        )
        self.scheduler = Scheduler(deps)
        stack.push_async_callback(self._stop_scheduler)
        runners, history = await self._prepare(config.targets)
        await self._install(config, history)
        self._adopt(runners, history)
        self.state.ready = True
        logger.info("ready: %d targets, %d series", len(config.targets), self.store.n_series)
        self.scheduler.start()
        return True

    @asynccontextmanager
    async def _write_queue(self, session: aiohttp.ClientSession) -> AsyncIterator[WriteQueue]:
        cfg = self.config.prometheus.remote_write
        # The clock that stamps the forecasts, which the queue's sample_age_limit is measured against.
        queue = WriteQueue(
            RemoteWriteClient(cfg, session), cfg.queue, message=cfg.protobuf_message, clock=self.clock
        )
        self.registry.register(QueueCollector(queue.stats, "prometheus", cfg.url))
        self.queue = queue
        queue.start()
        try:
            yield queue
        finally:
            held = queue.stats.queue_length
            logger.info("flushing %d queued samples (deadline %gs)", held, cfg.queue.flush_deadline)
            await queue.close()
            logger.info(
                "write queue closed: %d samples sent, %d dropped",
                queue.stats.samples_sent,
                sum(queue.stats.samples_dropped.values()),
            )

    async def _stop_scheduler(self) -> None:
        self.state.stopping = True
        if self.scheduler is not None:
            await self.scheduler.stop()
            saved = [r.model_path for r in self.scheduler.runners.values() if r.fitted and r.model_path]
            logger.info("runners stopped; %d models in %s", len(saved), self.scheduler.deps.state_dir)

    async def _prepare(self, targets: Iterable[TargetConfig]) -> tuple[list[TargetRunner], list[Backfilled]]:
        """Runners for ``targets`` (saved state loaded) and their history, read by remote-read.

        Changes nothing the daemon runs on: a reload that fails here leaves everything as it was.
        """
        assert self.scheduler is not None and self.reader is not None
        targets = list(targets)
        if any(is_neural(t.model) for t in targets) and not self._torch_ready:
            # Imported here, as torch is: a daemon of baselines never loads it.
            from tsf_adapter.forecast.neural.runtime import set_torch_threads

            threads = await asyncio.to_thread(set_torch_threads)
            self._torch_ready = True
            logger.info("torch uses %d threads", threads)
        runners = [await asyncio.to_thread(self.scheduler.build, target) for target in targets]
        specs = store_specs(targets)
        start = time.monotonic()
        history = await read_history(
            self.reader, specs, int(time.time() * 1000), concurrency=BACKFILL_TARGETS_AT_ONCE
        )
        logger.info(
            "backfill done: %d targets, %d samples read in %.1fs",
            len(specs),
            sum(item.samples for item in history),
            time.monotonic() - start,
        )
        return runners, history

    async def _install(self, config: Config, history: Sequence[Backfilled]) -> int:
        """Ingest thread: the store keeps ``config``'s targets (equal grids keep their history) and
        ``history``; the receiver lets in ``config``'s selectors. Returns the samples stored."""
        assert self.app is not None
        return await asyncio.get_running_loop().run_in_executor(
            self.app[INGEST_EXECUTOR],
            install,
            self.store,
            self.app[INGESTER],
            store_specs(config.targets),
            receiver_selectors(config),
            history,
        )

    def _adopt(self, runners: Iterable[TargetRunner], history: Sequence[Backfilled]) -> None:
        assert self.scheduler is not None
        for runner in runners:
            self.scheduler.adopt(runner)
        for item in history:
            if item.spec.name in self.scheduler.runners:  # a limits grid counts for nobody
                self.metrics.backfill_samples.labels(item.spec.name).inc(item.samples)

    # --- output ----------------------------------------------------------------------------------

    # Forecasts reach the write queue from the runners themselves (RunnerDeps.send), built on
    # the forecast thread; what is left here is the end of a removed target and /forecasts.

    async def _end_series(self, target: str) -> None:
        """Staleness markers for everything a removed target wrote, so it vanishes at once."""
        assert self.scheduler is not None
        ended = self.scheduler.end_series(target)
        if self.queue is not None and ended:
            now_ms = int(self.clock.time() * 1000)
            await self.queue.put([markers(ended, now_ms)])

    async def _forecasts_handler(self, request: web.Request) -> web.Response:
        latest = [] if self.scheduler is None else self.scheduler.latest()
        body = render_exposition(latest)
        return web.Response(body=body.encode(), headers={"Content-Type": EXPOSITION_CONTENT_TYPE})

    # --- reload ----------------------------------------------------------------------------------

    async def _reload_handler(self, request: web.Request) -> web.Response:
        """``POST /-/reload``: answers once the reload is done, as Prometheus does."""
        if self.scheduler is None or not self.state.ready:
            return web.Response(status=503, text="not ready: starting, reload once ready\n")
        error = await self.reload()
        if error is not None:
            return web.Response(status=500, text=f"failed to reload config: {error}\n")
        return web.Response(text="OK\n")

    async def reload(self) -> str | None:
        """Apply a new config's targets (see the module docstring); never raises.

        Returns None when it was applied, else why not (also logged and in the metrics).
        """
        async with self._reloading:
            error = await self._reload()
        now = time.time()
        self.reloads.record(error is None, now)
        self.reload_error = error
        if error is None:
            self.reloaded_at = now
        return error

    async def _restore_store(self, config: Config) -> None:
        """After a failed install: the store and the receiver back on ``config``'s targets."""
        try:
            await self._install(config, [])
        except Exception as exc:  # nothing left to fall back to: say so, keep running
            logger.error(
                "restoring the store's targets failed: %s: %s", type(exc).__name__, exc, exc_info=exc
            )

    async def _reload(self) -> str | None:
        assert self.scheduler is not None
        try:
            new = await asyncio.to_thread(read_config, self.config_path, self.listen, self.shard_index)
            web_config = await asyncio.to_thread(load_web_config, self.web_config)
        except ConfigError as exc:
            logger.error("reload failed, keeping the running config: %s", exc)
            return str(exc)
        old = self.config
        for section in _RESTART_ONLY:
            if getattr(new, section) != getattr(old, section):
                logger.warning("reload: %s changed; restart to apply it", section)
        if new.shard_filter() != self.store.shard:
            logger.warning("reload: the labels series are sharded by changed; restart to apply it")
        running = {t.name: t for t in old.targets}
        wanted = {t.name: t for t in new.targets}
        kept = [name for name, t in wanted.items() if running.get(name) == t]
        fresh = [t for name, t in wanted.items() if running.get(name) != t]
        gone = [name for name in running if wanted.get(name) != running[name]]
        applied = dataclasses.replace(old, targets=new.targets, ingest=new.ingest)
        # Everything that can fail for reasons of its own (model files, remote-read, building
        # models) is done before anything running changes.
        try:
            runners, history = await self._prepare(fresh)
        except Exception as exc:
            logger.error("reload failed, keeping the running config: %s: %s", type(exc).__name__, exc)
            return f"{type(exc).__name__}: {exc}"
        try:
            await self._install(applied, history)
            self.guard.update(web_config)
        except Exception as exc:
            logger.error("reload failed, keeping the running config: %s: %s", type(exc).__name__, exc)
            await self._restore_store(old)
            return f"{type(exc).__name__}: {exc}"
        for name in gone:
            await self.scheduler.remove(name)
            if name not in wanted:
                await self._end_series(name)
        self._adopt(runners, history)
        self.config = applied
        self.store.max_series = applied.ingest.max_series
        for runner in runners:
            runner.start()
        logger.info(
            "reloaded %s: %d targets kept, %d started, %d stopped",
            self.config_path,
            len(kept),
            len(fresh),
            len([n for n in gone if n not in wanted]),
        )
        return None
