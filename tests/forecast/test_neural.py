"""Neural models built from options: training settings by name, and the clock reaching every fit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tsf_adapter.core.errors import ConfigError
from tsf_adapter.core.grid import GridBatch
from tsf_adapter.core.series import make_labels
from tsf_adapter.forecast.neural.model import AutoModel, NeuralModel, train_config, with_settings
from tsf_adapter.forecast.neural.state import TrainConfig
from tsf_adapter.forecast.options import ModelOptions, ScopeSetting
from tsf_adapter.forecast.registry import NEURAL_MODELS, create_model

OPTIONS = ModelOptions(history_s=3600, horizon_s=600, step_s=60)


def test_settings_replace_train_and_feature_fields() -> None:
    cfg = with_settings(TrainConfig(), [("weight_decay", 0.01), ("features.scale", "min"), ("max_epochs", 3)])
    assert (cfg.weight_decay, cfg.features.scale, cfg.max_epochs) == (0.01, "min", 3)
    # Everything not named keeps its value.
    assert cfg.features.input_steps == TrainConfig().features.input_steps
    assert cfg.hidden_size == TrainConfig().hidden_size


def test_no_settings_is_the_config_itself() -> None:
    assert with_settings(TrainConfig(), []) == TrainConfig()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("weight_decy", 1, "--train-setting: weight_decy: unknown key (did you mean weight_decay?)"),
        ("features.scal", "min", "--train-setting: features.scal: unknown key (did you mean scale?)"),
        ("weight_decay", "abc", "--train-setting: weight_decay: expected a number (got 'abc')"),
        (
            "features.scale",
            "bogus",
            "--train-setting: features.scale: must be one of 'min', 'std' (got 'bogus')",
        ),
        ("features", 1, "--train-setting: features: expected a mapping (got 1)"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_it(name: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        with_settings(TrainConfig(), [(name, value)])
    assert str(info.value) == message


def test_a_group_set_whole_and_by_field_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^--train-setting: features: set both as a whole and by field$"):
        with_settings(TrainConfig(), [("features", 1), ("features.scale", "min")])


def test_values_are_converted_like_the_config_file_does() -> None:
    # JSON gives 1 for "1"; the float field still gets a float, a list becomes the tuple field.
    cfg = with_settings(TrainConfig(), [("weight_decay", 1), ("quantiles", [0.2, 0.8])])
    assert (cfg.weight_decay, type(cfg.weight_decay), cfg.quantiles) == (1.0, float, (0.2, 0.8))


def test_unnamed_fields_keep_the_given_configs_values() -> None:
    base = train_config("lstm", OPTIONS)
    cfg = with_settings(base, [("max_epochs", 2)])
    assert cfg == dataclasses.replace(base, max_epochs=2)


def test_model_options_carry_settings_into_every_neural_model() -> None:
    options = ModelOptions(
        history_s=3600,
        horizon_s=600,
        step_s=60,
        train_settings=(("weight_decay", 0.5), ("features.scale", "min")),
    )
    lstm = create_model("lstm", options)
    assert isinstance(lstm, NeuralModel)
    assert (lstm.config.weight_decay, lstm.config.features.scale) == (0.5, "min")
    # The window sizes still come from the options when not named.
    assert lstm.config.features.input_steps == train_config("lstm", OPTIONS).features.input_steps
    auto = create_model("auto", options)
    assert isinstance(auto, AutoModel)
    assert {c.config.weight_decay for c in auto.candidates} == {0.5}


def test_model_calibrate_reaches_the_training_settings() -> None:
    from tsf_adapter.config import TargetConfig, decode_section
    from tsf_adapter.pipeline.models import model_options

    on = {"name": "d", "selector": "disk", "model": {"kind": "gru", "calibrate": True}}
    assert train_config("gru", model_options(decode_section(TargetConfig, on))).calibrate
    off = {"name": "d", "selector": "disk", "model": {"kind": "gru"}}
    assert not train_config("gru", model_options(decode_section(TargetConfig, off))).calibrate


def test_a_setting_can_override_the_derived_window() -> None:
    options = ModelOptions(
        history_s=3600, horizon_s=600, step_s=60, train_settings=(("features.input_steps", 7),)
    )
    assert train_config("gru", options).features.input_steps == 7


def test_a_kind_that_is_not_an_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="not a neural model: 'auto'"):
        NeuralModel(OPTIONS, kind="auto")


class JumpsAtSecondReading:
    """The daemon's training clock at shutdown: real-looking at first, then past every deadline."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        return 0.0 if self.readings == 1 else math.inf


@pytest.mark.usefixtures("_one_thread")
@pytest.mark.parametrize("name", NEURAL_MODELS)
def test_the_options_clock_reaches_the_fit_of_every_neural_model(name: str) -> None:
    # A generous budget: only the clock given in the options can end these fits at once.
    clock = JumpsAtSecondReading()
    options = ModelOptions(
        history_s=3600,
        horizon_s=600,
        step_s=60,
        train_budget_s=3600.0,
        input_steps=8,
        horizon_steps=2,
        train_settings=(("hidden_size", 4), ("max_epochs", 50), ("patience", 50)),
        clock=clock,
    )
    model = create_model(name, options)
    steps = np.arange(60, dtype=np.float64)
    batch = GridBatch("t", (make_labels({"__name__": "m", "i": "0"}),), np.sin(steps / 5)[None], 0, 60_000)
    model.fit(batch)
    fitted = model.candidates if isinstance(model, AutoModel) else [model]
    assert isinstance(model, AutoModel | NeuralModel)
    for m in fitted:
        assert isinstance(m, NeuralModel)
        report = m.last_report
        assert report is not None
        assert (report.stopped, report.epochs) == ("budget", 0), m.name
    assert clock.readings > 1


def tiny_options(scope: ScopeSetting = "auto") -> ModelOptions:
    """Small windows and one epoch of a tiny network: a fit of a few series in milliseconds."""
    settings = (("hidden_size", 4), ("max_epochs", 1))
    return ModelOptions(
        history_s=3600,
        horizon_s=600,
        step_s=60,
        input_steps=8,
        horizon_steps=2,
        scope=scope,
        train_settings=settings,
    )


def tiny_batch(n_series: int) -> GridBatch:
    steps = np.arange(60, dtype=np.float64)
    labels = tuple(make_labels({"__name__": "m", "i": str(i)}) for i in range(n_series))
    values = np.stack([np.sin(steps / 5) + i for i in range(n_series)])
    return GridBatch("t", labels, values, 0, 60_000)


@pytest.mark.usefixtures("_one_thread")
def test_scope_auto_trains_a_network_each_up_to_the_limit_and_one_above(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tsf_adapter.forecast.neural import model as neural_model

    monkeypatch.setattr(neural_model, "AUTO_GLOBAL_ABOVE", 3)
    model = NeuralModel(tiny_options(), kind="lstm")
    scopes = []
    for n_series in (3, 4, 3, 2):
        model.fit(tiny_batch(n_series))
        assert model.state is not None
        scopes.append(model.state.scope)
        if n_series == 4:
            # Global training settings come with the scope; the named ones still apply on top.
            assert (model.config.batch_size, model.config.hidden_size) == (neural_model.GLOBAL_BATCH_SIZE, 4)
    # Once global, a target a little under the limit stays global rather than starting cold.
    assert scopes == ["per_series", "global", "global", "per_series"]
    assert model.config.batch_size == TrainConfig().batch_size


def test_an_explicit_scope_does_not_depend_on_the_series(monkeypatch: pytest.MonkeyPatch) -> None:
    from tsf_adapter.forecast.neural import model as neural_model

    monkeypatch.setattr(neural_model, "AUTO_GLOBAL_ABOVE", 1)
    model = NeuralModel(tiny_options(scope="per_series"), kind="gru")
    model.fit(tiny_batch(3))
    assert model.state is not None and model.state.scope == "per_series"
