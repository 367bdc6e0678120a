"""Shared fixtures: a factory for real Prometheus processes; logging left as each test found it."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Commands run in-process set up the process's logging (handlers, root level), as ``main``
    does; put it back, so one test's setup never decides what another one logs or captures."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
