"""The files in deploy/ are real configuration: they must parse, and promtool must accept them."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path
from typing import Any

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
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs and all(isinstance(doc, dict) for doc in docs)


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


# --- Kubernetes and systemd: the fields that must agree with each other and with the daemon ------


def _kubernetes() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "tsf-adapter.yaml").read_text()))
    return {doc["kind"]: doc for doc in docs}


def test_kubernetes_statefulset_config_volume_probes_and_scrape_agree(tmp_path: Path) -> None:
    objects = _kubernetes()
    assert set(objects) == {"ConfigMap", "Service", "StatefulSet"}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(objects["ConfigMap"]["data"]["config.yaml"])
    config = load_config(config_file)  # the daemon's own decoder accepts it

    sts = objects["StatefulSet"]["spec"]
    assert sts["replicas"] == 1  # two replicas would write every forecast twice
    pod = sts["template"]
    (container,) = pod["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # Models on the claim, at the config's state_dir; the config from the ConfigMap.
    assert [c["metadata"]["name"] for c in sts["volumeClaimTemplates"]] == ["models"]
    assert mounts["models"] == config.state_dir
    args = container["args"]
    assert args[0] == "run" and args[args.index("--config.file") + 1] == f"{mounts['config']}/config.yaml"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    # One port everywhere: the listen address, the container, the Service, the scrape annotation.
    port = int(args[args.index("--web.listen-address") + 1].rsplit(":", 1)[1])
    assert config.server.listen_address == f":{port}"
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert objects["Service"]["spec"]["ports"][0]["port"] == port
    annotations = pod["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    # The image's user, and a volume it can write.
    security = pod["spec"]["securityContext"]
    assert (security["runAsUser"], security["fsGroup"], security["runAsNonRoot"]) == (65534, 65534, True)
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert (
        objects["Service"]["spec"]["selector"] == sts["selector"]["matchLabels"] == pod["metadata"]["labels"]
    )


def test_systemd_unit_runs_the_daemon_hardened_with_its_state_directory() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(DEPLOY / "systemd" / "tsf-adapter.service")
    service = unit["Service"]
    assert service["ExecStart"].endswith("/tsf-adapter run")
    assert service["Environment"] == "TSF_ADAPTER_CONFIG=/etc/tsf-adapter/config.yaml"
    assert service["ConfigurationDirectory"] == "tsf-adapter"  # /etc/tsf-adapter
    # StateDirectory=tsf-adapter is /var/lib/tsf-adapter, writable by the DynamicUser: the
    # container config's state_dir, which the unit's comment asks the config to use.
    assert service["StateDirectory"] == "tsf-adapter" and service["DynamicUser"] == "yes"
    assert load_config(DEPLOY / "container" / "config.yaml").state_dir == "/var/lib/tsf-adapter"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP reloads the config
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    assert {k: service[k] for k in hardening} == hardening
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_sharded_statefulset_and_prometheus_split_the_series_alike(tmp_path: Path) -> None:
    """Replicas, the config's shard.total and Prometheus's remote_write entries agree; each entry
    sends its pod exactly the share the pod keeps (the same rules a ``Shard`` gives)."""
    from tsf_adapter.core.shard import Shard

    sharded = DEPLOY / "kubernetes" / "sharded"
    objects = {d["kind"]: d for d in yaml.safe_load_all((sharded / "tsf-adapter.yaml").read_text())}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(objects["ConfigMap"]["data"]["config.yaml"])
    config = load_config(config_file)
    total = config.shard.total
    sts = objects["StatefulSet"]["spec"]
    assert sts["replicas"] == total == 3
    assert objects["Service"]["spec"]["clusterIP"] == "None"  # a name per pod
    (container,) = sts["template"]["spec"]["containers"]
    (env,) = container["env"]
    assert env["name"] == "TSF_ADAPTER_SHARD_INDEX"
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    labels = config.shard_labels()
    assert labels == ("user",)

    prometheus = yaml.safe_load((sharded / "prometheus.yml").read_text())
    entries = prometheus["remote_write"]
    assert len(entries) == total
    service, port = objects["Service"]["metadata"]["name"], objects["Service"]["spec"]["ports"][0]["port"]
    selectors = {str(t.selector) for t in config.targets} | {
        str(t.threshold.selector) for t in config.targets if t.threshold and t.threshold.selector
    }
    for index, entry in enumerate(entries):
        assert entry["url"] == f"http://{sts['serviceName']}-{index}.{service}:{port}/api/v1/write"
        keep_names, *split = entry["write_relabel_configs"]
        assert set(keep_names["regex"].split("|")) == selectors
        assert split == Shard(index, total, labels).write_relabel_configs()
    result = subprocess.run(
        [_promtool(), "check", "config", "--syntax-only", str(sharded / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
