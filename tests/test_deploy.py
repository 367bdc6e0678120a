"""The files in deploy/ are real configuration: they must parse, and promtool must accept them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tsf_adapter.config import load_config
from tsf_adapter.pipeline.climb import ClimbGuard

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
YAML_FILES = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
RULE_FILES = sorted((DEPLOY / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "rules" / "tests").glob("*.yml"))


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return promtool


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text()), dict)


def test_prometheus_config_is_valid() -> None:
    result = subprocess.run(
        [_promtool(), "check", "config", "--syntax-only", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    for pattern in config["rule_files"]:
        assert sorted(DEPLOY.glob(pattern)) == RULE_FILES


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rules_are_valid(path: Path) -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(path: Path) -> None:
    # promtool resolves rule_files against the test file's directory.
    result = subprocess.run(
        [_promtool(), "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_alert_on_the_forecast_and_the_straight_line() -> None:
    """The end-to-end test scales these rules, and the benchmark scores the guard it reads from
    :class:`ClimbGuard`: the shipped text must be the one both of them use."""
    rules = {
        rule.get("alert") or rule["record"]: rule
        for group in yaml.safe_load((DEPLOY / "rules" / "tsf-adapter.rules.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    forecast = " ".join(rules["StorageQuotaForecastFull"]["expr"].split())
    on = ("group", "user", "storage_type", "cluster")
    assert forecast == (
        'storage_used_bytes:forecast_threshold_seconds{quantile="0.98"} < 6 * 3600 '
        f"and on({', '.join(on)}) " + ClimbGuard().promql("storage_used_bytes", "storage_quota_bytes", on)
    )
    # The quantile the rule reads is one the example config forecasts.
    (target,) = load_config(DEPLOY / "tsf-adapter.yml").targets
    assert 0.98 in target.quantiles
    assert "predict_linear(storage_used_bytes[12h], 6 * 3600)" in rules["StorageQuotaLinearFull"]["expr"]
    assert {"TsfAdapterDown", "TsfAdapterForecastsStale", "TsfAdapterWriteFailures"} <= set(rules)


def test_daemon_example_config_loads() -> None:
    config = load_config(DEPLOY / "tsf-adapter.yml")
    (target,) = config.targets
    assert target.name == "storage-quota"
    assert target.threshold is not None and target.threshold.selector is not None
    assert target.threshold.selector.metric_name == "storage_quota_bytes"
    # The alert asks for 6h at the 0.9 quantile: both must be produced.
    assert 6 * 3600 in target.horizons and 0.9 in target.quantiles
    assert config.output.mode == "remote_write"
    # Where deploy/prometheus.yml sends its samples and scrapes the daemon.
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    port = config.server.listen_address.rsplit(":", 1)[1]
    assert prometheus["remote_write"][0]["url"] == f"http://127.0.0.1:{port}/api/v1/write"
