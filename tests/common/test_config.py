from dataclasses import dataclass, field
from typing import Literal

import pytest

from common.config import Each, Interval, constraint_violations, flatten_config, load_config
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


# -- constraints as data, errors that name where a value came from -----------------------------------
def test_a_bad_value_in_the_yaml_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text("train:\n  lr: -0.1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(ExampleConfig, path)
    assert str(caught.value) == f"{path}: train.lr must be above 0, got -0.1"


def test_a_bad_value_from_set_names_the_set_item(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text("train:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(ExampleConfig, path, ["train.pct_start=1.5"])
    assert str(caught.value) == "--set train.pct_start=1.5: train.pct_start must be in (0, 1), got 1.5"


@pytest.mark.parametrize("constraint, good, bad, text", [
    (Interval(1), [1, 7], [0, -1, float("nan"), True, "3"], "at least 1"),
    (Interval(0, None, "neither"), [1e-9], [0.0], "above 0"),
    (Interval(0, 1, "left"), [0, 0.99], [1, -0.01], "in [0, 1)"),
    (Interval(0, 1, "right"), [1, 0.5], [0], "in (0, 1]"),
    (Each(Interval(1)), [[1, 2]], [[], [0], 3], "a non-empty list of numbers, each at least 1"),
    (Each(Interval(), length=2), [[0.1, -5]], [[1], [1, 2, 3], [1, float("inf")]], "2 numbers, each a finite"),
])
def test_constraints_accept_and_describe(constraint, good, bad, text):
    assert all(constraint.accepts(v) for v in good)
    assert not any(constraint.accepts(v) for v in bad)
    assert str(constraint).startswith(text)


def test_every_shipped_section_declares_its_ranges():
    """Each config section with numbers declares them as data (no range hidden in a validate())."""
    from pipelines.registry import get_domain

    for domain in ("fraud", "medical", "driving"):
        cfg = get_domain(domain).config_cls()
        for name in vars(cfg):
            section = getattr(cfg, name)
            numeric = [f for f, v in vars(section).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            declared = set(getattr(type(section), "CONSTRAINTS", {}))
            undeclared = [f for f in numeric if f not in declared]
            assert not undeclared, f"{domain}.{name}: {undeclared} have no declared range"
            assert not constraint_violations(section), f"{domain}.{name}: defaults break their own constraints"


@pytest.mark.parametrize("domain", ["fraud", "medical", "driving"])
def test_one_set_of_defaults_the_dataclass_and_the_shipped_yaml_agree(domain):
    from pipelines.registry import get_domain
    from pipelines.runner import CONFIG_DIR

    cls = get_domain(domain).config_cls
    assert flatten_config(load_config(cls, CONFIG_DIR / f"{domain}.yaml")) == flatten_config(cls())


# -- train.monitor: checked against what the domain validates on, mode from the metric ------------------
def test_monitor_is_checked_before_any_epoch_and_its_mode_follows_the_metric():
    from pipelines.registry import get_domain
    from pipelines.runner import load_domain_config

    fraud = get_domain("fraud")
    assert load_domain_config(fraud, None, []).train.monitor_mode == "max"  # val_pr_auc: higher is better
    assert load_domain_config(fraud, None, ["train.monitor=val_loss"]).train.monitor_mode == "min"
    with pytest.raises(ConfigError, match=r"^--set train.monitor=val_acc: train.monitor 'val_acc' is not a "
                                          r"validation metric of this stage \(choose from: .*val_pr_auc"):
        load_domain_config(fraud, None, ["train.monitor=val_acc"])
    with pytest.raises(ConfigError, match="monitor_mode 'max' contradicts val_loss .lower is better"):
        load_domain_config(fraud, None, ["train.monitor=val_loss", "train.monitor_mode=max"])
    driving = get_domain("driving")
    cfg = load_domain_config(driving, None, ["train.monitor=val_heading_reversed"])
    assert (cfg.train.monitor_mode, cfg.camera_train.monitor_mode) == ("min", "max")
    with pytest.raises(ConfigError, match="camera_train.monitor 'val_ap_bev' is not a validation metric"):
        load_domain_config(driving, None, ["camera_train.monitor=val_ap_bev"])


def test_declared_metric_names_are_the_ones_validation_reports():
    import numpy as np

    from apps.driving.kitti_eval import evaluate_kitti, kitti_metric_names
    from common.metrics import binary_metric_names, binary_metrics

    y, p = np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6])
    assert tuple(binary_metrics(y, p, fprs=(0.01,))) == binary_metric_names((0.01,))
    assert tuple(binary_metrics(y, p, fprs=())) == binary_metric_names(())
    assert list(evaluate_kitti({"000000": []}, {"000000": []})) == kitti_metric_names()
