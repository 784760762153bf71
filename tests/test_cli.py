"""The `suite` surface from CONTRACT.md: help everywhere, exit codes, one-line errors."""
import pytest
from suite_cli import assert_clear_error, suite


@pytest.mark.parametrize("command", [[], ["synth"], ["run"], ["score"], ["compare"], ["ui"]])
def test_help_works_everywhere(command):
    result = suite(*command, "--help")
    assert result.code == 0 and "Usage" in result.stdout


def test_an_unknown_domain_is_one_clear_line(tmp_path):
    assert_clear_error(suite("synth", "weather", "--out", str(tmp_path)), "unknown domain 'weather'")


def test_scale_full_is_the_real_size_where_a_domain_defines_it(tmp_path):
    from apps.fraud.synthetic import SCALES

    assert SCALES["full"].approx_rows == 6_300_000 and SCALES["full"].n_steps == 743  # PaySim's size
    assert_clear_error(suite("synth", "medical", "--out", str(tmp_path), "--scale", "full"), "unknown scale 'full'")
    assert_clear_error(suite("synth", "fraud", "--out", str(tmp_path), "--scale", "huge"), "--scale", "full")


@pytest.mark.parametrize("setting, fragment", [
    ("model.fusion=late", "fusion"), ("grid.pillar_size=[0.3]", "pillar_size"), ("augment.paste_cars=-1", "paste_cars"),
])
def test_bad_driving_settings_are_refused_before_any_work(tmp_path, setting, fragment):
    result = suite("run", "driving", "--data", str(tmp_path), "--set", setting,
                   env={"SUITE_CHECKPOINT_DIR": str(tmp_path)})
    assert_clear_error(result, fragment)


def test_compare_on_an_empty_store_points_at_the_next_step(tmp_path):
    result = suite("compare", env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.code == 0 and "no finished runs yet" in result.stdout


@pytest.mark.parametrize("domain", ["fraud", "medical", "driving"])
def test_shipped_configs_load(domain):
    from common.config import load_config
    from pipelines.registry import get_domain
    from pipelines.runner import CONFIG_DIR

    pipeline = get_domain(domain)
    assert isinstance(load_config(pipeline.config_cls, CONFIG_DIR / f"{domain}.yaml"), pipeline.config_cls)
