"""Shared fixtures: a factory for real Prometheus processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.prometheus import PrometheusProcess, find_prometheus


def _require_prometheus() -> None:
    if find_prometheus() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus binary missing in CI: .ci/run must apt-get install prometheus")
        pytest.skip("prometheus binary not found (apt-get install prometheus)")


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusProcess]]:
    """Start Prometheus processes with a given config; all are stopped after the test."""
    _require_prometheus()
    started: list[PrometheusProcess] = []

    def start(**kwargs: Any) -> PrometheusProcess:
        workdir = tmp_path / f"prom{len(started)}"
        workdir.mkdir()
        proc = PrometheusProcess(workdir, **kwargs)
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.stop()
