"""Command line: ``tsf-adapter <command>``.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.
A startup failure is reported once, on one line, and the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from aiohttp import web

from tsf_adapter import __version__
from tsf_adapter.config import Config, TargetConfig, load_config
from tsf_adapter.core.address import split_host_port
from tsf_adapter.core.errors import ConfigError, InputError, RemoteError, SelectorError
from tsf_adapter.core.lifecycle import Readiness
from tsf_adapter.core.selector import Selector, parse_selector
from tsf_adapter.core.units import parse_duration
from tsf_adapter.server.app import REGISTRY, build_app
from tsf_adapter.server.logs import FORMATS, LEVELS, setup_logging
from tsf_adapter.server.loop import run
from tsf_adapter.server.web_config import load_web_config, probe_ssl_context, read_bearer_token
from tsf_adapter.server.web_guard import WebGuard
from tsf_adapter.store.store import Store

logger = logging.getLogger("tsf_adapter")

# Without a config, the receiver keeps every series it is sent.
RECEIVE_ALL = '{__name__=~".+"}'
# What `run` reads when --config.file / --web.listen-address are not given (a container's settings).
CONFIG_ENV = "TSF_ADAPTER_CONFIG"
LISTEN_ENV = "TSF_ADAPTER_LISTEN_ADDRESS"
WEB_CONFIG_ENV = "TSF_ADAPTER_WEB_CONFIG"
SHARD_INDEX_ENV = "TSF_ADAPTER_SHARD_INDEX"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``tsf-adapter`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        code = args.func(args)
    except (ConfigError, SelectorError, InputError) as exc:
        # One line per problem (a config file reports all of its mistakes), each one prefixed.
        print("\n".join(f"tsf-adapter: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        code = 2
    except RemoteError as exc:
        # A command that reads from Prometheus (backtest --prometheus) could not: a runtime failure.
        where = f"{exc.url}: " if exc.url else ""
        print(f"tsf-adapter: {where}{' '.join(str(exc).split())}", file=sys.stderr)
        code = 1
    sys.exit(code)


def _log_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--log.level`` and ``--log.format``, the Prometheus spellings, before or after the subcommand.

    Only the top-level parser has defaults: a subcommand's own (suppressed) default would
    otherwise overwrite a value given before the subcommand.
    """
    parser.add_argument(
        "--log.level",
        "--log-level",
        dest="log_level",
        choices=LEVELS,
        default="info" if defaults else argparse.SUPPRESS,
        help="least level logged (default info; debug adds tracebacks)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        choices=FORMATS,
        default="logfmt" if defaults else argparse.SUPPRESS,
        help="one line per record: logfmt (default) or json",
    )


def _daemon_flags(parser: argparse.ArgumentParser, *, config_required: bool) -> None:
    """Where the daemon's config is and where it listens: Prometheus's flag spellings, then the
    environment (a container's settings), then the config file's ``server.listen_address``."""
    config_env = os.environ.get(CONFIG_ENV)
    parser.add_argument(
        "--config.file",
        "--config",
        dest="config",
        type=Path,
        default=None if config_env is None else Path(config_env),
        required=config_required and config_env is None,
        help=f"config file (default: ${CONFIG_ENV})",
    )
    parser.add_argument(
        "--web.listen-address",
        "--listen",
        dest="listen",
        default=os.environ.get(LISTEN_ENV),
        help=f"host:port, overrides server.listen_address (default: ${LISTEN_ENV}, else the config's)",
    )
    _web_config_flag(parser)


def _web_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--web.config.file``: TLS, basic auth and headers, in Prometheus's web config format."""
    web_env = os.environ.get(WEB_CONFIG_ENV)
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        type=Path,
        default=None if web_env is None else Path(web_env),
        help=f"TLS and authentication of the HTTP server (default: ${WEB_CONFIG_ENV}, else none)",
    )


def _shard_index(text: str) -> int:
    """A shard index from ``--shard.index`` or the environment: a whole number from 0."""
    try:
        index = int(text)
    except ValueError:
        index = -1
    if index < 0:
        raise ConfigError(
            f"--shard.index (or ${SHARD_INDEX_ENV}): must be a whole number from 0 (got {text!r})"
        )
    return index


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsf-adapter", description="Forecasting daemon for Prometheus.")
    parser.add_argument("--version", action="version", version=f"tsf-adapter {__version__}")
    _log_flags(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _log_flags(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True)

    receive = sub.add_parser(
        "receive",
        parents=[common],
        help="run the remote-write receiver alone",
        description="Run the remote-write receiver and keep the selected series in memory.",
    )
    receive.add_argument("--config", type=Path, help="config file (default: built-in defaults)")
    receive.add_argument("--listen", help="host:port, overrides server.listen_address")
    receive.add_argument(
        "--selector",
        action="append",
        default=[],
        help=f"series to keep, repeatable (default: ingest.selectors, else {RECEIVE_ALL})",
    )
    receive.add_argument("--step", type=float, default=60.0, help="grid step in seconds (default 60)")
    _web_config_flag(receive)
    receive.set_defaults(func=_cmd_receive)

    daemon = sub.add_parser(
        "run",
        parents=[common],
        help="run the forecasting daemon",
        description=(
            "Receive, backfill, train and forecast every configured target; SIGHUP reloads the"
            " config, SIGTERM stops after flushing the forecasts still queued."
        ),
    )
    _daemon_flags(daemon, config_required=True)
    shard_env = os.environ.get(SHARD_INDEX_ENV)
    daemon.add_argument(
        "--shard.index",
        dest="shard_index",
        default=shard_env,
        help=(
            f"this replica's shard, overrides shard.index (default: ${SHARD_INDEX_ENV}, else the"
            " config's); a StatefulSet passes each pod its ordinal"
        ),
    )
    daemon.set_defaults(func=_cmd_run)

    health = sub.add_parser(
        "healthcheck",
        parents=[common],
        help="exit 0 when a running daemon answers /-/healthy (a container's HEALTHCHECK)",
        description=(
            "Probe the daemon's /-/healthy at its listen address: --web.listen-address, else"
            f" ${LISTEN_ENV}, else server.listen_address of --config.file (or ${CONFIG_ENV});"
            " over HTTPS and with the bearer token when the web config has them."
        ),
    )
    _daemon_flags(health, config_required=False)
    health.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    health.set_defaults(func=_cmd_healthcheck)

    check = sub.add_parser("check-config", parents=[common], help="validate a config file and exit")
    check.add_argument("--config.file", "--config", dest="config", type=Path, required=True)
    check.set_defaults(func=_cmd_check_config)

    _add_backtest(sub, common)
    _add_demo(sub, common)
    return parser


def _add_demo(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="the whole pipeline on a simulated storage cluster, no Prometheus needed",
        description=(
            "Simulate a storage cluster (users near their quotas, bursts, runaway jobs), feed it to"
            " the daemon by remote-read and remote-write, and show which user fills a quota next."
        ),
    )
    demo.add_argument("--listen", default="127.0.0.1:9201", help="daemon address (port 0: a free one)")
    demo.add_argument("--state-dir", type=Path, help="where models and demo.log go (default: a temp dir)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    demo.add_argument(
        "--catch-up", type=float, default=600.0, help="real seconds at --speed before reaching now"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--clusters", type=int, default=2)
    demo.add_argument("--groups", type=int, default=2, help="groups per cluster")
    demo.add_argument("--users", type=int, default=3, help="users per group")
    demo.add_argument(
        "--model", default="lstm", help="model kind (lstm, gru, transformer, predict_linear...)"
    )
    demo.add_argument("--status-every", type=float, default=10.0, help="seconds between status lines")
    demo.set_defaults(func=_cmd_demo)


def _add_backtest(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    bt = sub.add_parser(
        "backtest",
        parents=[common],
        help="forecast at past origins and score the models",
        description="Rolling-origin backtest: forecasts at past origins to a CSV, and a summary table.",
    )
    bt.add_argument(
        "--input", action="append", type=Path, default=[], help="timestamp,value CSV (repeatable)"
    )
    bt.add_argument("--prometheus", help="read the inputs through remote-read from this Prometheus URL")
    bt.add_argument(
        "--read-api",
        default="remote_read",
        choices=["remote_read", "export"],
        help="with --prometheus: remote-read, or the JSON-lines export of a store without it"
        " (VictoriaMetrics: --read-api export)",
    )
    bt.add_argument("--selector", help="series to read with --prometheus")
    bt.add_argument("--start", help="with --prometheus: unix seconds or RFC 3339")
    bt.add_argument("--end", help="with --prometheus: unix seconds or RFC 3339")
    bt.add_argument("--history", required=True, help="input window per forecast, e.g. 12h")
    bt.add_argument("--horizon", required=True, help="forecast length, e.g. 6h")
    bt.add_argument("--origin-every", required=True, help="time between origins, e.g. 1h")
    start = bt.add_mutually_exclusive_group(required=True)
    start.add_argument("--start-frac", type=float, help="first origin at this fraction of each series")
    start.add_argument("--start-origin", type=float, help="first origin at this unix time (seconds)")
    bt.add_argument("--models", required=True, help="comma-separated model names")
    bt.add_argument("--out", type=Path, required=True, help="forecasts CSV to write")
    bt.add_argument("--step", help="grid step (default: each series' median sample interval)")
    bt.add_argument("--quantiles", default="0.1,0.5,0.9", help="quantiles of quantile models")
    bt.add_argument("--retrain-every", type=int, help="retrain learning models every N origins")
    bt.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bt.add_argument(
        "--scope",
        default="auto",
        choices=["auto", "per_series", "global"],
        help="neural models: a network per series, one for each group of series trained together, "
        "or (auto) as the daemon chooses by the group's size",
    )
    bt.set_defaults(func=_cmd_backtest)


def _load(path: Path | None) -> Config:
    return load_config(path) if path is not None else Config()


def _cmd_check_config(args: argparse.Namespace) -> int:
    """The file's verdict, then what the daemon would do with it: every target and ingest selector."""
    config = _load(args.config)
    n_targets, n_selectors = len(config.targets), len(config.ingest.selectors)
    lines = [f"{args.config}: ok: {_count(n_targets, 'target')}, {_count(n_selectors, 'ingest selector')}"]
    lines += [f"  target {target.summary()}" for target in config.targets]
    lines += [f"  ingest {selector}" for selector in config.ingest.selectors]
    print("\n".join(lines))
    return 0


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    """0 when ``/-/healthy`` answers 200 at the daemon's listen address, else 1 with the reason."""
    listen = args.listen or _load(args.config).server.listen_address
    web_config = load_web_config(args.web_config)
    context = probe_ssl_context(web_config)
    try:
        url = probe_url(listen, "http" if context is None else "https") + "/-/healthy"
    except ValueError as exc:
        raise ConfigError(f"--web.listen-address: {exc}") from None
    request = urllib.request.Request(url)
    token = read_bearer_token(web_config, str(args.web_config))
    if token is not None:
        request.add_header("Authorization", f"Bearer {token.decode()}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout, context=context) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"tsf-adapter: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"tsf-adapter: {url}: HTTP {status}", file=sys.stderr)
        return 1
    print(f"{url}: healthy")
    return 0


def probe_url(listen: str, scheme: str = "http") -> str:
    """Where to reach a server listening on ``listen`` from the same host: every address is loopback.

    >>> probe_url(":9201"), probe_url("0.0.0.0:80"), probe_url("[::]:9201"), probe_url("10.0.0.5:9201")
    ('http://127.0.0.1:9201', 'http://127.0.0.1:80', 'http://[::1]:9201', 'http://10.0.0.5:9201')
    >>> probe_url(":9201", "https")
    'https://127.0.0.1:9201'
    """
    host, port = split_host_port(listen)
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cmd_receive(args: argparse.Namespace) -> int:
    config = _load(args.config)
    texts = args.selector or [str(s) for s in config.ingest.selectors] or [RECEIVE_ALL]
    selectors = [parse_selector(t) for t in texts]
    listen = args.listen or config.server.listen_address
    guard = WebGuard.from_file(args.web_config)
    targets = [TargetConfig(name=f"ingest-{i}", selector=s, step=args.step) for i, s in enumerate(selectors)]
    _check_grid(targets[0])
    store = Store(targets, max_series=config.ingest.max_series)
    return run(_serve_receiver(config, store, selectors, listen, guard))


def _check_grid(target: TargetConfig) -> None:
    """``--step`` comes from the command line, not the decoder, so its grid rules are checked here."""
    where = f"targets.{target.name}"
    if target.step <= 0 or target.step * 1000 != int(target.step * 1000):
        raise ConfigError(f"{where}.step: must be a positive whole number of ms (got {target.step}s)")
    if target.history < target.step:
        raise ConfigError(f"{where}.history: must be at least one step (got {target.history}s)")


def _cmd_run(args: argparse.Namespace) -> int:
    # Imported here: the daemon pulls in the scheduler and models, which `receive` never needs.
    from tsf_adapter.server.daemon import run_daemon

    shard_index = None if args.shard_index is None else _shard_index(args.shard_index)
    return run(
        run_daemon(args.config, listen=args.listen, web_config=args.web_config, shard_index=shard_index)
    )


async def _serve_receiver(
    config: Config, store: Store, selectors: Sequence[Selector], listen: str, guard: WebGuard
) -> int:
    state = Readiness(ready=False)
    app = build_app(config, store, selectors=selectors, state=state)
    guard.install(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    host, port = split_host_port(listen)
    site = web.TCPSite(runner, host, port, ssl_context=guard.ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        logger.error("cannot listen on %s: %s", listen, exc)
        return 1
    state.ready = True
    scheme = "http" if guard.ssl_context is None else "https"
    for address in runner.addresses:
        logger.info("receiver listening on %s://%s:%s/api/v1/write", scheme, *address[:2])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry = app[REGISTRY]
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=30)
        except TimeoutError:
            logger.info(
                "received %d samples so far; %d series kept",
                int(registry.get_sample_value("tsf_adapter_receiver_samples_received_total") or 0),
                store.n_series,
            )
    logger.info("stopping: no longer ready, draining requests")
    state.stopping = True
    await runner.cleanup()
    logger.info("stopped")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tsf_adapter.tools.demo import DemoOptions, run_demo

    if args.speed < 1 or args.catch_up < 0 or min(args.clusters, args.groups, args.users) < 1:
        raise InputError("demo: --speed must be >= 1, --catch-up >= 0, and sizes >= 1")
    options = DemoOptions(
        listen=args.listen,
        state_dir=args.state_dir,
        duration=args.duration,
        speed=args.speed,
        catch_up=args.catch_up,
        seed=args.seed,
        clusters=args.clusters,
        groups=args.groups,
        users=args.users,
        model=args.model,
        status_every=args.status_every,
    )
    return run(run_demo(options))


def _cmd_backtest(args: argparse.Namespace) -> int:
    from tsf_adapter.tools.backtest import BacktestRun, BacktestSpec, run_command

    try:
        quantiles = tuple(float(q) for q in args.quantiles.split(","))
    except ValueError:
        raise ConfigError(f"--quantiles: want numbers like 0.1,0.5,0.9 (got {args.quantiles!r})") from None
    spec = BacktestSpec(
        history_s=_duration("--history", args.history),
        horizon_s=_duration("--horizon", args.horizon),
        origin_every_s=_duration("--origin-every", args.origin_every),
        start_frac=args.start_frac,
        start_origin_s=args.start_origin,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        step_s=None if args.step is None else _duration("--step", args.step),
        quantiles=quantiles,
        retrain_every=args.retrain_every,
        device=args.device,
        scope=args.scope,
    )
    if bool(args.input) == bool(args.prometheus):
        raise ConfigError("give --input files or --prometheus with --selector, --start and --end")
    if args.input:
        return run_command(BacktestRun(spec=spec, out=args.out, inputs=tuple(args.input)))
    if not args.selector:
        raise ConfigError("--prometheus needs --selector")
    start, end = _unix_ms("--start", args.start), _unix_ms("--end", args.end)
    if end <= start:
        raise ConfigError("--end must be after --start")
    run = BacktestRun(
        spec=spec,
        out=args.out,
        prometheus=args.prometheus,
        read_api=args.read_api,
        selector=parse_selector(args.selector),
        start_ms=start,
        end_ms=end,
    )
    return run_command(run)


def _duration(flag: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _unix_ms(flag: str, text: str | None) -> int:
    if text is None:
        raise ConfigError(f"--prometheus needs {flag}")
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    try:
        return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise ConfigError(f"{flag}: want unix seconds or RFC 3339 (got {text!r})") from None
