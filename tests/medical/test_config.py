"""The medical config as shipped, and combinations that cannot work rejected before any work starts."""
import pytest

from common.config import load_config
from common.errors import ConfigError
from pipelines.medical import MedicalConfig
from pipelines.runner import CONFIG_DIR


def test_shipped_config_loads_and_names_the_seed_loss():
    cfg = load_config(MedicalConfig, CONFIG_DIR / "medical.yaml")
    assert cfg.model.name == "cnn3d" and cfg.train.loss == "weighted_ce"
    assert cfg.patch.size_vox == round(cfg.patch.size_mm / cfg.patch.voxel_mm)


def test_densenet_on_patches_too_small_for_it_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="patch.size_mm=32"):
        load_config(MedicalConfig, CONFIG_DIR / "medical.yaml", ["model.name=densenet121", "patch.size_mm=24"])
    cfg = load_config(MedicalConfig, CONFIG_DIR / "medical.yaml", ["model.name=densenet121", "patch.size_mm=32"])
    assert cfg.patch.size_vox == 32
