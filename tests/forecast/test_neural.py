"""Training settings by name: what benchmarks use to try a setting without editing code."""

from __future__ import annotations

import pytest

from tsf_adapter.errors import ConfigError
from tsf_adapter.forecast.neural import AutoModel, NeuralModel, train_config, with_settings
from tsf_adapter.forecast.registry import ModelOptions, create_model
from tsf_adapter.forecast.trainer import TrainConfig

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
    ("name", "listed"),
    [("weight_decy", "weight_decay"), ("features.scal", "features.scale"), ("features", "weight_decay")],
)
def test_unknown_setting_is_a_config_error_listing_the_known_ones(name: str, listed: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown training setting '{name}' \(known: .*{listed}"):
        with_settings(TrainConfig(), [(name, 1)])


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


def test_a_setting_can_override_the_derived_window() -> None:
    options = ModelOptions(
        history_s=3600, horizon_s=600, step_s=60, train_settings=(("features.input_steps", 7),)
    )
    assert train_config("gru", options).features.input_steps == 7
