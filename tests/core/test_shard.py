"""Shards: the split of series between replicas, in the config, the store and the metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tsf_adapter.config import config_from_dict
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.core.series import make_labels
from tsf_adapter.core.shard import Shard, hashmod
from tsf_adapter.pipeline.metrics import StoreCollector
from tsf_adapter.store.store import Store

QUOTA = {"value": None, "selector": "quota_bytes", "on": ["user"]}


def _config(shard: dict[str, Any], *targets: dict[str, Any]) -> Any:
    listed = targets or ({"name": "disk", "selector": "used_bytes", "threshold": QUOTA},)
    return config_from_dict({"shard": shard, "targets": [dict(t) for t in listed]}, "c.yaml")


def _threshold(**over: Any) -> dict[str, Any]:
    return {k: v for k, v in {**QUOTA, **over}.items() if v is not None}


def test_every_series_is_kept_by_exactly_one_of_the_shards() -> None:
    series = [make_labels({"__name__": "m", "user": f"u{i}", "kind": k}) for i in range(200) for k in "ab"]
    shards = [Shard(i, 4, ("user",)) for i in range(4)]
    owners = [[s.index for s in shards if s.keeps(lab)] for lab in series]
    assert all(len(o) == 1 for o in owners)
    counts = np.bincount([o[0] for o in owners], minlength=4)
    assert counts.min() > 0.15 * len(series)  # spread, not piled on one replica
    # Both series of a user land together: the split is by the user alone.
    assert all(owners[2 * i] == owners[2 * i + 1] for i in range(200))


def test_an_absent_label_hashes_as_empty_as_prometheus_does() -> None:
    assert Shard(hashmod([""], 5), 5, ("user",)).keeps((("__name__", "m"),))


def test_the_shard_labels_default_to_the_thresholds_on_labels() -> None:
    config = _config({"index": 1, "total": 3}, {"name": "d", "selector": "used", "threshold": _threshold()})
    assert config.shard_filter() == Shard(1, 3, ("user",))
    assert _config({}).shard_filter() is None  # one replica keeps everything


@pytest.mark.parametrize(
    ("shard", "targets", "problem"),
    [
        ({"index": 3, "total": 3}, (), "c.yaml: shard.index: must be from 0 to total - 1 = 2 (got 3)"),
        (
            {"total": 2},
            ({"name": "d", "selector": "used"},),
            "c.yaml: shard.labels: must name the labels series are split by: no target has"
            " threshold.on labels",
        ),
        (
            {"total": 2},
            (
                {"name": "a", "selector": "used", "threshold": _threshold()},
                {"name": "b", "selector": "free", "threshold": _threshold(on=["group"])},
            ),
            "c.yaml: shard.labels: must name the labels series are split by: the targets' threshold.on"
            " differ ([('group',), ('user',)])",
        ),
        (
            {"total": 2, "labels": ["user"]},
            ({"name": "g", "selector": "used", "aggregate": {"op": "sum", "by": ["group"]}},),
            "c.yaml: targets[0].aggregate.by: must include every shard label ['user'], or one group's"
            " series would be split between replicas (got ['group'])",
        ),
    ],
)
def test_a_shard_that_cannot_work_fails_at_start(
    shard: dict[str, Any], targets: tuple[dict[str, Any], ...], problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"shard": shard, "targets": list(targets)}, "c.yaml")
    assert problem in str(err.value).splitlines()


def test_the_store_keeps_only_its_shard_and_counts_the_rest() -> None:
    config = _config({"index": 0, "total": 2}, {"name": "d", "selector": "used", "threshold": _threshold()})
    store = Store(config.targets, shard=config.shard_filter())
    mine = theirs = 0
    for i in range(50):
        labels = make_labels({"__name__": "used", "user": f"u{i}"})
        ref = store.series_ref(labels)
        if Shard(0, 2, ("user",)).keeps(labels):
            assert ref is not None
            store.append(np.array([ref]), np.array([60_000]), np.array([1.0]))
            mine += 1
        else:
            assert ref is None
            theirs += 1
    assert mine and theirs
    batch = store.batch("d")
    assert batch is not None and batch.n_series == mine
    assert store.other_shards == theirs
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    assert registry.get_sample_value("tsf_adapter_shard_series_skipped_total") == theirs
    info = {"index": "0", "total": "2", "labels": "user"}
    assert registry.get_sample_value("tsf_adapter_shard_info", info) == 1.0
