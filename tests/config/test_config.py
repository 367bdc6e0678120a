from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import get_args

import pytest
import yaml

from tsf_adapter.config import (
    AggregateConfig,
    Config,
    IngestConfig,
    ModelConfig,
    ModelKind,
    OutputConfig,
    PositiveSeconds,
    TargetConfig,
    ThresholdConfig,
    config_from_dict,
    decode_section,
    load_config,
)
from tsf_adapter.config.decoder import _StrictLoader
from tsf_adapter.core.errors import ConfigError
from tsf_adapter.core.protocol import RW2_MESSAGE
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.forecast import registry
from tsf_adapter.pipeline.targets import store_specs, threshold_target
from tsf_adapter.remote.http import auth_headers
from tsf_adapter.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "tests" / "testdata" / "config"

# Fixture name -> the exact message after "<file>: ". {dir} is the fixture directory.
BAD_CONFIGS = {
    "unknown_key": "server.listen_adress: unknown key (did you mean listen_address?)",
    "unknown_section": (
        "forecasts: unknown key (expected one of server, prometheus, ingest, targets, output, state_dir,"
        " shard)"
    ),
    "negative_batch": "prometheus.remote_write.queue.max_samples_per_send: must be > 0 (got -5)",
    "zero_limit": "server.max_inflight_requests: must be > 0 (got 0)",
    "zero_timeout": "prometheus.remote_read.timeout: must be > 0 (got '0s')",
    "backoff_order": (
        "prometheus.remote_write.queue.min_backoff: must not be greater than max_backoff (got 10s > 1s)"
    ),
    "capacity_below_batch": (
        "prometheus.remote_write.queue.capacity: must be >= max_samples_per_send (got 100 < 500)"
    ),
    "sample_age_limit_below_deadline": (
        "prometheus.remote_write.queue.sample_age_limit: must be 0 (off) or longer than"
        " batch_send_deadline (got 5s <= 10s)"
    ),
    "sample_age_limit_negative": (
        "prometheus.remote_write.queue.sample_age_limit: invalid duration '-1h':"
        " a duration cannot have a sign"
    ),
    "fractional_duration": (
        "prometheus.remote_read.timeout: invalid duration '1.5h': fractions are not allowed,"
        " use a smaller unit (e.g. 90m for 1.5h)"
    ),
    "unitless_duration": (
        "prometheus.remote_read.max_query_range: invalid duration '7200': missing unit after 7200"
        " (one of y, w, d, h, m, s, ms)"
    ),
    "null_duration": "prometheus.remote_write.timeout: expected a duration such as 30s or 1h30m (got null)",
    "bad_size_unit": (
        "server.max_compressed_bytes: invalid size '16mb': unknown unit 'mb'"
        " (expected one of B, KB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB, EiB)"
    ),
    "decompressed_below_compressed": (
        "server.max_decompressed_bytes: must be >= max_compressed_bytes (got 1MiB < 16MiB)"
    ),
    "url_scheme": (
        "prometheus.remote_read.url: must be an http:// or https:// URL with a host"
        " (got 'ftp://prometheus:9090/api/v1/read')"
    ),
    "url_no_host": (
        "prometheus.remote_write.url: must be an http:// or https:// URL with a host"
        " (got 'http:///api/v1/write')"
    ),
    "basic_auth_both": (
        "prometheus.remote_read.basic_auth: exactly one of password, password_file must be set (got both)"
    ),
    "basic_auth_neither": (
        "prometheus.remote_read.basic_auth: exactly one of password, password_file must be set (got neither)"
    ),
    "basic_auth_no_username": "prometheus.remote_read.basic_auth.username: missing required key",
    "missing_password_file": (
        "prometheus.remote_write.basic_auth.password_file: cannot read file 'secrets/missing.txt'"
        " (as {dir}/secrets/missing.txt): No such file or directory"
    ),
    "missing_bearer_token_file": (
        "prometheus.remote_read.bearer_token_file: cannot read file '/nonexistent/token':"
        " No such file or directory"
    ),
    "missing_ca_file": (
        "prometheus.remote_read.tls_config.ca_file: cannot read file 'tls/missing-ca.pem'"
        " (as {dir}/tls/missing-ca.pem): No such file or directory"
    ),
    "auth_and_bearer": (
        "prometheus.remote_write: at most one of basic_auth, bearer_token_file may be set (got both)"
    ),
    "cert_without_key": (
        "prometheus.remote_write.tls_config: cert_file and key_file must be set together (got only cert_file)"
    ),
    "protobuf_message": (
        "prometheus.remote_write.protobuf_message: must be one of 'prometheus.WriteRequest',"
        " 'io.prometheus.write.v2.Request' (got 'io.prometheus.write.v3.Request')"
    ),
    "listen_port_range": (
        "server.listen_address: must be host:port with a port from 0 to 65535, e.g. :9201"
        " (got '0.0.0.0:99999')"
    ),
    "listen_no_port": (
        "server.listen_address: must be host:port with a port from 0 to 65535, e.g. :9201 (got 'localhost')"
    ),
    "listen_ipv6_unbracketed": (
        "server.listen_address: must be host:port with a port from 0 to 65535, e.g. :9201 (got '::1:9201')"
    ),
    "int_wrong_type": "prometheus.remote_write.queue.capacity: expected an integer (got 'many')",
    "int_is_bool": "prometheus.remote_read.concurrency: expected an integer (got true)",
    "bool_wrong_type": "prometheus.remote_write.queue.retry_on_http_429: expected true or false (got 'yes')",
    "header_not_string": (
        "prometheus.remote_write.headers.X-Shard: expected a string (got 5); quote it in YAML"
    ),
    "reserved_header": (
        "prometheus.remote_write.headers.Content-Type: reserved: tsf-adapter sets this header itself"
    ),
    "authorization_header": (
        "prometheus.remote_read.headers.authorization: set it with basic_auth or bearer_token_file instead"
    ),
    "section_not_mapping": "server: expected a mapping (got ['listen_address'])",
    "top_level_list": "the top level must be a mapping of sections (got ['server', 'prometheus'])",
    "yaml_syntax": (
        "invalid YAML at line 4, column 1: found unexpected end of stream"
        " (while scanning a quoted scalar at line 2, column 19)"
    ),
    "yaml_indent": "invalid YAML at line 3, column 25: mapping values are not allowed here",
    "duplicate_key": (
        "invalid YAML at line 3, column 3: duplicate key 'max_inflight_requests'"
        " (while constructing a mapping at line 2, column 3)"
    ),
    "selectors_not_list": "ingest.selectors: expected a list (got 'up')",
    "selector_unterminated": (
        "ingest.selectors[1]: invalid selector 'up{job=\"node}' at char 8: unterminated quoted string"
    ),
    "selector_unquoted_braces": (
        "ingest.selectors[0]: expected a selector string (got {'job=\"node\"': None});"
        " YAML reads an unquoted {...} as a mapping, so quote it"
    ),
    "selector_matches_everything": (
        "ingest.selectors[0]: invalid selector '{job=~\".*\"}': it would select every series;"
        ' at least one matcher must not match the empty string (e.g. a metric name or job!="")'
    ),
    "selector_bad_regex": (
        "ingest.selectors[0]: invalid selector 'up{instance=~\"(a|b\"}' at char 14:"
        " invalid regex '(a|b': missing ), unterminated subpattern"
    ),
    # targets and output
    "aggregate_bad_op": (
        "targets[0].aggregate.op: must be one of 'sum', 'avg', 'max', 'min', 'count' (got 'median')"
    ),
    "aggregate_by_twice": "targets[0].aggregate.by[2]: label 'cluster' given twice",
    "aggregate_no_metric_name": (
        "targets[0].aggregate.by: aggregated series have no metric name to name the forecasts after: pin "
        "one in the selector (name{...}) or add __name__ to by"
    ),
    "output_future_timestamps_exposition": (
        "output.future_timestamps: needs mode remote_write (the exposition format carries no timestamps)"
    ),
    "output_mode": "output.mode: must be one of 'remote_write', 'exposition' (got 'pushgateway')",
    "target_bad_selector": (
        "targets[0].selector: invalid selector 'node_filesystem_avail_bytes{mountpoint=\"/\"' at char 43: "
        "expected ',' or '}' (got end of input)"
    ),
    "target_duplicate_name": "targets[2].name: duplicate target name 'disk' (also targets[0])",
    "target_forecast_every_over_lookback": (
        "targets[0].forecast_every: must be at most Prometheus's lookback of 5m with output mode "
        "remote_write, or the forecast series vanish from instant queries between writes (got 10m > 5m)"
    ),
    "target_history_few_steps": "targets[0].history: must hold at least 10 steps (got 8h < 10 x 1h)",
    "target_history_short": (
        "targets[0].history: must be at least twice the longest horizon (got 1d < 2 x 24h)"
    ),
    "target_history_too_short_to_train": (
        "targets[0].history: must hold at least 1008 steps (16h48m) for model lstm to train: "
        "288 input + 360 horizon + 360 validation (got 12h = 720 steps of 1m)"
    ),
    "target_horizon_not_multiple": (
        "targets[0].horizons[1]: must be a whole number of steps (got 1h1m, step 5m)"
    ),
    "target_horizons_empty": "targets[0].horizons: must list at least one horizon (got [])",
    "target_horizons_unsorted": (
        "targets[0].horizons[1]: must be greater than the one before it (got 1h after 6h)"
    ),
    "target_missing_selector": "targets[0].selector: missing required key",
    "target_model_kind": (
        "targets[0].model.kind: must be one of 'lstm', 'gru', 'transformer', 'auto', 'predict_linear', "
        "'holt_winters', 'last_value', 'seasonal_naive' (got 'prophet')"
    ),
    "target_model_calibrate_baseline": (
        "targets[0].model.calibrate: only applies to a model that trains (got kind predict_linear)"
    ),
    "target_model_headroom_baseline": (
        "targets[0].model.headroom: only applies to a model that trains (got kind predict_linear)"
    ),
    "target_model_headroom_no_threshold": (
        "targets[0].model.headroom: needs a threshold to measure the headroom to (got no threshold)"
    ),
    "target_model_headroom_not_bool": "targets[0].model.headroom: expected true or false (got 'yes')",
    "empty": "the config is empty: give at least one section (leave out --config for every default)",
    "target_model_scope": (
        "targets[0].model.scope: must be one of 'auto', 'per_series', 'global' (got 'per_group')"
    ),
    "target_name_invalid": (
        "targets[0].name: must be letters, digits, '_', '.' or '-', starting with a letter or digit (got "
        "'disk/root')"
    ),
    "target_no_median": "targets[0].quantiles: must include 0.5, the median (got [0.1, 0.9])",
    "target_quantile_out_of_range": "targets[0].quantiles[1]: must be strictly between 0 and 1 (got 1.0)",
    "target_quantiles_unsorted": (
        "targets[0].quantiles[2]: must be greater than the one before it (got 0.5 after 0.9)"
    ),
    "target_retrain_before_forecast": "targets[0].retrain_every: must be >= forecast_every (got 30s < 1m)",
    "target_step_below_ms": "targets[0].step: must be a whole number of milliseconds (got 0.0005s)",
    "target_zero_step": "targets[0].step: must be > 0 (got '0s')",
    "threshold_both": "targets[0].threshold: exactly one of value, selector must be set (got both)",
    "threshold_neither": "targets[0].threshold: exactly one of value, selector must be set (got neither)",
    "threshold_on_not_in_by": (
        "targets[0].threshold.on: must be labels of aggregate.by, the only labels left (got storage_type "
        "not in [group, user, cluster])"
    ),
    "threshold_on_with_value": (
        "targets[0].threshold.on: only applies with selector (a constant value has no labels to join on)"
    ),
    "threshold_ratio_zero": "targets[0].threshold.ratio: must be > 0 (got 0)",
    "threshold_same_metric": (
        "targets[0].threshold.selector: must select another metric than the target's own (got "
        "'storage_used_bytes')"
    ),
    "threshold_value_infinite": "targets[0].threshold.value: must be a finite number (got inf)",
    "state_dir_is_file": (
        "state_dir: must be a directory or a path where one can be created (got"
        " 'state_dir_is_file.bad.yaml' (as {dir}/state_dir_is_file.bad.yaml), a file)"
    ),
    "state_dir_empty": "state_dir: must not be empty",
    # Every mistake, one line each, in the order of the file.
    "several_mistakes": "\n{file}: ".join(
        [
            "server.listen_adress: unknown key (did you mean listen_address?)",
            "prometheus.remote_write.queue.max_samples_per_send: must be > 0 (got -5)",
            "targets[0].step: invalid duration '1.5m': fractions are not allowed, use a smaller unit"
            " (e.g. 90m for 1.5h)",
            "targets[1].selector: missing required key",
        ]
    ),
}


def test_every_bad_fixture_has_an_expected_message() -> None:
    on_disk = {p.name.removesuffix(".bad.yaml") for p in TESTDATA.glob("*.bad.yaml")}
    assert on_disk == set(BAD_CONFIGS)


@pytest.mark.parametrize(("name", "expected"), sorted(BAD_CONFIGS.items()), ids=sorted(BAD_CONFIGS))
def test_bad_config_is_rejected_with_its_exact_message(name: str, expected: str) -> None:
    path = TESTDATA / f"{name}.bad.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        str(caught.value)
        == f"{path}: {expected.replace('{dir}', str(TESTDATA)).replace('{file}', str(path))}"
    )


def test_root_example_config_loads_and_documents_the_defaults() -> None:
    cfg = load_config(ROOT / "config.yaml")
    # Everything but the examples is the default: the comments cannot drift from the code.
    assert dataclasses.replace(cfg, ingest=IngestConfig(), targets=()) == Config()
    # The first example target spells out every default but its threshold.
    first = cfg.targets[0]
    defaults = TargetConfig(name=first.name, selector=first.selector)
    assert dataclasses.replace(first, threshold=None) == defaults
    assert first.threshold == ThresholdConfig(value=0.0, direction="below")
    second = cfg.targets[1]
    assert second.aggregate == AggregateConfig(op="sum", by=("group", "user", "storage_type", "cluster"))
    assert second.threshold is not None and second.threshold.on == second.aggregate.by
    assert [str(s) for s in cfg.ingest.selectors] == [
        'node_filesystem_avail_bytes{mountpoint="/", fstype!="tmpfs"}',
        '{__name__=~"node_memory_(MemAvailable|MemTotal)_bytes", job="node"}',
    ]


def test_empty_sections_mean_defaults() -> None:
    assert load_config(TESTDATA / "null_sections.good.yaml") == Config()


def test_full_config_decodes_every_kind_of_value() -> None:
    cfg = load_config(TESTDATA / "full.good.yaml")
    assert cfg.server.listen_address == "[::1]:0"
    assert cfg.server.max_compressed_bytes == 1024 * 1024
    assert cfg.server.max_decompressed_bytes == 8 * 1024 * 1024
    read, write = cfg.prometheus.remote_read, cfg.prometheus.remote_write
    assert read.timeout == 90.0  # a plain number is seconds
    assert read.max_query_range == 86400.0
    assert read.headers == {"X-Scope-OrgID": "tenant-a"}
    # Relative file names are resolved against the config file's directory.
    assert read.bearer_token_file == str(TESTDATA / "secrets" / "token.txt")
    assert read.tls_config.ca_file == str(TESTDATA / "tls" / "ca.pem")
    assert read.tls_config.key_file == str(TESTDATA / "tls" / "client.key")
    assert read.tls_config.server_name == "prometheus.internal"
    assert write.timeout == 150.0
    assert write.protobuf_message == RW2_MESSAGE
    assert write.basic_auth is not None
    assert write.basic_auth.password_file == str(TESTDATA / "secrets" / "password.txt")
    queue = write.queue
    assert (queue.batch_send_deadline, queue.min_backoff, queue.max_backoff) == (0.5, 0.25, 60.0)
    assert (queue.capacity, queue.retry_on_http_429, queue.flush_deadline) == (500, True, 0.0)
    assert queue.sample_age_limit == 7200.0
    assert cfg.ingest.selectors == (
        parse_selector("up"),
        parse_selector('node_load1{instance=~"a|b", job!=""}'),
    )


def test_loaded_config_feeds_the_http_helpers() -> None:
    cfg = load_config(TESTDATA / "full.good.yaml")
    read_headers = auth_headers(cfg.prometheus.remote_read)
    assert read_headers["Authorization"] == "Bearer test-token"
    assert read_headers["X-Scope-OrgID"] == "tenant-a"
    assert auth_headers(cfg.prometheus.remote_write)["Authorization"].startswith("Basic ")


def test_config_is_frozen_all_the_way_down() -> None:
    cfg = load_config(TESTDATA / "full.good.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.listen_address = "x:1"  # type: ignore[misc]
    assert isinstance(cfg.prometheus.remote_read.headers, MappingProxyType)
    with pytest.raises(TypeError):
        cfg.prometheus.remote_read.headers["X"] = "y"  # type: ignore[index]


def test_missing_file_and_non_utf8_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file: No such file or directory$"):
        load_config(missing)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"server:\n  listen_address: \xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 26\)$"):
        load_config(latin1)


def test_relative_files_in_a_dict_are_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("t")
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict({"prometheus": {"remote_read": {"bearer_token_file": "token"}}})
    assert cfg.prometheus.remote_read.bearer_token_file == "token"


def test_source_names_the_origin_of_a_dict() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"server": {"max_inflight_requests": -1}}, source="--set")
    assert str(caught.value) == "--set: server.max_inflight_requests: must be > 0 (got -1)"


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"prometheus": {"remote_read": {"zzz": 1}}}, source="c.yaml")
    assert str(caught.value) == (
        "c.yaml: prometheus.remote_read.zzz: unknown key (expected one of url, timeout, headers, basic_auth,"
        " bearer_token_file, tls_config, api, max_query_range, concurrency, prefer_streamed)"
    )


# A list of sections, as a later `targets:` key will be: item paths read `targets[1].step`.
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    name: str
    step: PositiveSeconds = 60.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _WithTargets:
    targets: tuple[_Target, ...] = ()


def test_lists_of_sections_decode_with_indexed_paths() -> None:
    data = {"targets": [{"name": "disk"}, {"name": "cpu", "step": "5m"}]}
    decoded = decode_section(_WithTargets, data)
    assert decoded == _WithTargets(targets=(_Target(name="disk"), _Target(name="cpu", step=300.0)))
    bad = {"targets": [{"name": "disk"}, {"name": "cpu", "step": "0s"}]}
    with pytest.raises(ConfigError, match=r"^t\.yaml: targets\[1\]\.step: must be > 0 \(got '0s'\)$"):
        decode_section(_WithTargets, bad, source="t.yaml")
    typo = {"targets": [{"name": "disk", "stp": "1m"}]}
    with pytest.raises(ConfigError, match=r"targets\[0\]\.stp: unknown key \(did you mean step\?\)$"):
        decode_section(_WithTargets, typo, source="t.yaml")
    with pytest.raises(ConfigError, match=r"targets\[0\]\.name: missing required key$"):
        decode_section(_WithTargets, {"targets": [{}]}, source="t.yaml")


def test_a_target_decodes_with_its_defaults_and_is_its_own_store_target() -> None:
    cfg = config_from_dict({"targets": [{"name": "disk", "selector": "node_filesystem_avail_bytes"}]})
    (target,) = cfg.targets
    assert (target.step, target.history, target.horizons) == (60.0, 172800.0, (3600.0, 21600.0))
    assert (target.quantiles, target.model) == ((0.1, 0.5, 0.9), ModelConfig(kind="lstm", scope="auto"))
    assert (target.retrain_every, target.forecast_every, target.threshold) == (3600.0, 60.0, None)
    assert target.horizon_steps == (60, 360)
    assert cfg.output == OutputConfig(mode="remote_write", future_timestamps=False)
    assert target == TargetConfig(name="disk", selector=parse_selector("node_filesystem_avail_bytes"))
    assert store_specs([target]) == [target]
    assert threshold_target(target) is None


def test_the_issue_example_target_decodes_and_wires_into_the_store() -> None:
    text = """
targets:
  - name: storage-quota
    selector: 'storage_used_bytes{cluster=~".+"}'
    aggregate: {op: sum, by: [group, user, storage_type, cluster]}
    step: 5m
    history: 7d
    horizons: [1h, 6h, 24h]
    quantiles: [0.1, 0.5, 0.9]
    model: {kind: lstm, scope: per_series}
    retrain_every: 1h
    forecast_every: 1m
    threshold:
      selector: 'storage_quota_bytes'
      on: [group, user, storage_type, cluster]
      ratio: 1.0
"""
    (target,) = _load_text(text).targets
    by = ("group", "user", "storage_type", "cluster")
    assert target.horizon_steps == (12, 72, 288)
    assert (target.name, target.selector, target.step, target.history) == (
        "storage-quota",
        parse_selector('storage_used_bytes{cluster=~".+"}'),
        300.0,
        7 * 86400.0,
    )
    assert target.aggregate == AggregateConfig(op="sum", by=by, lookback=300.0, settle=120.0)
    # The limit series get a store target of their own, on the same step, under a name no
    # configured target can have; its history is short because only the latest value is used.
    limit_spec = threshold_target(target)
    assert limit_spec is not None
    assert (limit_spec.name, limit_spec.selector, limit_spec.step, limit_spec.history) == (
        "storage-quota/threshold",
        parse_selector("storage_quota_bytes"),
        300.0,
        3600.0,
    )
    assert (limit_spec.aggregate, limit_spec.threshold) == (None, None)
    assert store_specs([target]) == [target, limit_spec]
    store = Store([target, limit_spec])
    assert set(store.targets) == {"storage-quota", "storage-quota/threshold"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"step": 0}, "step: must be > 0 (got 0)"),
        ({"step": 0.0001}, "step: must be a whole number of milliseconds (got 0.0001s)"),
        ({"history": "2h"}, "history: must be at least twice the longest horizon (got 2h < 2 x 6h)"),
        ({"aggregate": {"op": "sum", "lookback": 0}}, "aggregate.lookback: must be > 0 (got 0)"),
        (
            {"aggregate": {"op": "sum", "settle": -1}},
            "aggregate.settle: expected a duration such as 30s or 1h30m (got -1)",
        ),
    ],
)
def test_the_decoder_rejects_grids_the_store_cannot_hold(data: dict[str, object], message: str) -> None:
    # The store takes a decoded TargetConfig as it is and does not check it again.
    with pytest.raises(ConfigError) as caught:
        decode_section(TargetConfig, {"name": "t", "selector": "x", **data}, source="t.yaml")
    assert str(caught.value) == f"t.yaml: {message}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # The input window grows with the history (a third of it, up to 288 steps), so the least
        # history that trains is the one whose own window fits: 863 steps, 287 of them input.
        (
            {"step": "10m", "history": "4d", "horizons": ["2d"], "model": {"kind": "auto"}},
            "history: must hold at least 863 steps (5d23h50m) for model auto to train: "
            "287 input + 288 horizon + 288 validation (got 4d = 576 steps of 10m)",
        ),
        (
            {"step": "1s", "history": "28s", "horizons": ["10s"], "model": {"kind": "gru"}},
            "history: must hold at least 29 steps (29s) for model gru to train: "
            "9 input + 10 horizon + 10 validation (got 28s = 28 steps of 1s)",
        ),
    ],
)
def test_a_trained_model_needs_a_history_that_can_hold_a_training_window(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        decode_section(TargetConfig, {"name": "t", "selector": "x", **data}, source="t.yaml")
    assert str(caught.value) == f"t.yaml: {message}"


@pytest.mark.parametrize("kind", ["predict_linear", "holt_winters", "last_value", "seasonal_naive"])
def test_a_baseline_needs_no_training_window(kind: str) -> None:
    data = {"name": "t", "selector": "x", "history": "12h", "horizons": ["6h"], "model": {"kind": kind}}
    assert not decode_section(TargetConfig, data).model.trains


def test_the_kinds_that_train_are_the_registry_s_neural_models() -> None:
    for kind in get_args(ModelKind):
        assert ModelConfig(kind=kind).trains == registry.is_neural(kind), kind


def test_the_least_history_that_trains_is_accepted_and_one_step_less_is_not() -> None:
    base = {"name": "t", "selector": "x", "horizons": ["1h", "6h"]}
    target = decode_section(TargetConfig, {**base, "history": "16h48m"})
    assert (target.history_steps, target.input_steps, target.train_steps) == (1008, 288, 1008)
    with pytest.raises(ConfigError, match="must hold at least 1008 steps"):
        decode_section(TargetConfig, {**base, "history": "16h47m"})


def _load_text(text: str) -> Config:
    return config_from_dict(yaml.load(text, Loader=_StrictLoader), "t.yaml")


def test_yaml_reads_on_yes_and_exponents_as_yaml_1_2_does() -> None:
    # YAML 1.1 (PyYAML's default) reads the key `on` as true and `1e12` as a string.
    text = "targets:\n  - {name: a, selector: a, threshold: {value: 1e12, on: []}}\n"
    (target,) = _load_text(text).targets
    assert target.threshold == ThresholdConfig(value=1e12)
    with pytest.raises(ConfigError, match=r"expected true or false \(got 'yes'\)$"):
        _load_text("prometheus: {remote_write: {queue: {retry_on_http_429: yes}}}")


def test_forecast_every_may_pass_the_lookback_when_prometheus_scrapes() -> None:
    data = {"targets": [{"name": "a", "selector": "a", "forecast_every": "10m", "retrain_every": "1h"}]}
    with pytest.raises(ConfigError, match=r"targets\[0\]\.forecast_every: must be at most"):
        config_from_dict(data)
    cfg = config_from_dict({**data, "output": {"mode": "exposition"}})
    assert cfg.targets[0].forecast_every == 600.0
