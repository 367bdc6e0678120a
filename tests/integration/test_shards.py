"""Three replicas forecast their shards beside one real Prometheus, as one replica would alone.

Prometheus 2.42 scrapes twelve users' usage and quotas and remote-writes them to three
``tsf-adapter run`` processes through the ``write_relabel_configs`` their shards give, and, with no
rules, to a fourth that runs unsharded (serving its forecasts at ``/forecasts``, so that they do
not reach Prometheus). The replicas backfill from Prometheus and write their forecasts back to it.

Checked: each replica forecasts exactly its share; the shares are disjoint and cover every user;
the forecast series in Prometheus are exactly those the unsharded daemon makes; and once one
replica stops, the shipped ``TsfAdapterForecastsAbsent`` expression names its users and no others.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.prometheus import PrometheusProcess, free_port
from tsf_adapter.core.shard import Shard

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "rules" / "tsf-adapter.rules.yml"
USERS = [f"user-{i}" for i in range(12)]
TOTAL = 3
HANG_GUARD = 60.0  # seconds; only against a hang
# Families every forecast writes for every series (the error appears only once forecasts mature).
COMPARED = (
    "storage_used_bytes:forecast",
    "storage_used_bytes:forecast_threshold_seconds",
    "storage_used_bytes:forecast_model_info",
)

CONFIG = """
server: {{listen_address: "127.0.0.1:{port}"}}
prometheus:
  remote_read: {{url: "{prom}/api/v1/read"}}
  remote_write: {{url: "{prom}/api/v1/write", queue: {{batch_send_deadline: 100ms}}}}
state_dir: "{state}"
output: {{mode: {mode}}}
{shard}
targets:
  - name: storage-used
    selector: storage_used_bytes
    step: 1s
    history: 1m
    horizons: [5s, 10s]
    model: {{kind: predict_linear}}
    forecast_every: 1s
    threshold: {{selector: storage_quota_bytes, on: [user]}}
"""


class Scrapes:
    """Usage growing by a megabyte a scrape, and a quota, per user."""

    def __init__(self) -> None:
        self.n = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.n += 1
        lines = ["# TYPE storage_used_bytes gauge", "# TYPE storage_quota_bytes gauge"]
        for i, user in enumerate(USERS):
            lines.append(
                f'storage_used_bytes{{user="{user}",storage_type="ssd"}} {1e9 * (i + 1) + 1e6 * self.n}'
            )
            lines.append(f'storage_quota_bytes{{user="{user}",storage_type="ssd"}} {2e9 * (i + 1)}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


class Replica:
    def __init__(self, tmp: Path, name: str, port: int, prom: str, shard: int | None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.shard = shard
        self.log = tmp / f"{name}.log"
        self.config = tmp / f"{name}.yaml"
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                prom=prom,
                state=tmp / f"{name}-state",
                mode="remote_write" if shard is not None else "exposition",
                shard=f"shard: {{total: {TOTAL}}}" if shard is not None else "",
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "tsf_adapter", "run", "--config", str(self.config)]
        if self.shard is not None:
            args += ["--shard.index", str(self.shard)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return str(resp.read().decode())

    def users(self) -> set[str]:
        try:
            body = json.loads(self.get("/api/v1/series?limit=1000"))
        except OSError:
            return set()
        return {row["labels"]["user"] for row in body["data"]["series"]}

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(30)


def wait_for(what: str, check: Callable[[], bool], logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for {what}\n{logs()}")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for r in made:
        if r.proc is not None and r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def _series(prom: PrometheusProcess, expr: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    out = set()
    for item in prom.query(expr):
        labels = dict(item["metric"])
        name = labels.pop("__name__", "")
        out.add((name, frozenset(labels.items())))
    return out


def _exposition(text: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    out = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in COMPARED:
                out.add((sample.name, frozenset(sample.labels.items())))
    return out


async def test_shards_together_forecast_what_one_replica_does_and_a_lost_one_alerts_for_its_share(
    tmp_path: Path,
    prometheus_factory: Callable[..., PrometheusProcess],
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    replicas: list[Replica],
) -> None:
    scrapes = Scrapes()
    app = web.Application()
    app.router.add_get("/metrics", scrapes.handle)
    target = await aiohttp_server(app)
    # Ports are chosen before Prometheus starts, so that its remote_write entries can name them.
    ports = [free_port() for _ in range(TOTAL + 1)]
    shards = [Shard(i, TOTAL, ("user",)) for i in range(TOTAL)]
    remote_write = [
        {
            "url": f"http://127.0.0.1:{port}/api/v1/write",
            "queue_config": {"batch_send_deadline": "100ms", "min_backoff": "50ms", "max_backoff": "1s"},
            **({"write_relabel_configs": shards[i].write_relabel_configs()} if i < TOTAL else {}),
        }
        for i, port in enumerate(ports)
    ]
    prom = await asyncio.to_thread(
        prometheus_factory,
        global_config={"scrape_interval": "1s", "scrape_timeout": "1s"},
        scrape_configs=[
            {"job_name": "storage", "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}]}
        ],
        remote_write=remote_write,
        extra_args=["--query.lookback-delta=5s"],
    )
    for i, port in enumerate(ports):
        index = i if i < TOTAL else None
        replicas.append(
            Replica(tmp_path, f"replica{i}" if index is not None else "single", port, prom.url, index)
        )
    for r in replicas:
        r.start()
    *sharded, single = replicas

    def logs() -> str:
        return "\n".join(f"--- {r.log.name}\n{r.log.read_text()[-3000:]}" for r in replicas) + prom.log()

    # Each replica forecasts exactly its share; together, every user once.
    for replica, shard in zip(sharded, shards, strict=True):
        want = {u for u in USERS if shard.keeps((("user", u),))}

        def has_its_share(replica: Replica = replica, want: set[str] = want) -> bool:
            return replica.users() == want

        await asyncio.to_thread(wait_for, f"replica {shard.index}'s users", has_its_share, logs)
    await asyncio.to_thread(
        wait_for, "the single replica's users", lambda: single.users() == set(USERS), logs
    )
    shares = [r.users() for r in sharded]
    assert set().union(*shares) == set(USERS)
    assert sum(len(s) for s in shares) == len(USERS)

    # The forecast series in Prometheus are those the unsharded daemon makes, no more, no fewer.
    expr = "{" + f'__name__=~"{"|".join(COMPARED)}"' + "}"
    alone = await asyncio.to_thread(lambda: _exposition(single.get("/forecasts")))
    assert len(alone) == len(USERS) * (2 * 3 + 3 + 1)  # 2 horizons x 3 quantiles, 3 crossing times, info
    await asyncio.to_thread(
        wait_for, "every shard's forecasts in Prometheus", lambda: _series(prom, expr) == alone, logs
    )

    # One replica stops: the shipped alert's expression names its users, and only them.
    rules = yaml.safe_load(RULES.read_text())
    (rule,) = [
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "TsfAdapterForecastsAbsent"
    ]
    assert sharded[1].stop() == 0
    lost = shares[1]
    assert lost

    def absent() -> set[str]:
        return {item["metric"].get("user", "") for item in prom.query(rule["expr"])}

    await asyncio.to_thread(wait_for, "the lost share's alert", lambda: absent() == lost, logs)
    await asyncio.sleep(2)  # and it stays that share: the other replicas keep forecasting theirs
    assert absent() == lost
    for r in (sharded[0], sharded[2], single):
        assert r.stop() == 0
