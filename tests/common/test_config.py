from dataclasses import dataclass, field
from typing import Literal

import pytest

from common.config import flatten_config, load_config
from common.errors import ConfigError
from common.trainer import TrainConfig


@dataclass
class ModelSection:
    name: Literal["small", "big"] = "small"
    hidden: int = 8
    use_graph: bool = True


@dataclass
class ExampleConfig:
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hidden: 16\ntrain:\n  epochs: 3\n  lr: 0.01\n")
    cfg = load_config(ExampleConfig, path, ["model.name=big", "train.lr=1e-3", "model.use_graph=false"])
    assert (cfg.model.name, cfg.model.hidden, cfg.model.use_graph) == ("big", 16, False)
    assert cfg.train.epochs == 3 and cfg.train.lr == pytest.approx(1e-3)
    assert flatten_config(cfg)["model.hidden"] == 16


@pytest.mark.parametrize("override, message", [
    (["model.hiden=3"], "unknown config key 'model.hiden'"),
    (["model.hidden=abc"], "must be an integer"),
    (["model.name=huge"], "must be one of"),
    (["model.use_graph=maybe"], "true or false"),
    (["train.epochs=0"], "epochs must be at least 1"),
    (["nonsense"], "key=value"),
])
def test_bad_values_are_rejected_at_the_door(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ExampleConfig, None, override)


def test_missing_config_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(ExampleConfig, tmp_path / "missing.yaml")


def test_shipped_configs_load():
    from pipelines.configs import __path__ as _  # noqa: F401  (the folder ships with the package)
    from pipelines.fraud import FraudConfig
    from pipelines.runner import CONFIG_DIR

    cfg = load_config(FraudConfig, CONFIG_DIR / "fraud.yaml")
    assert cfg.train.loss == "weighted_ce"
