"""The `suite` surface from CONTRACT.md: help everywhere, exit codes, one-line errors."""
import pytest
from suite_cli import assert_clear_error, suite


@pytest.mark.parametrize("command", [[], ["synth"], ["run"], ["score"], ["compare"], ["ui"]])
def test_help_works_everywhere(command):
    result = suite(*command, "--help")
    assert result.code == 0 and "Usage" in result.stdout


def test_a_domain_that_is_not_built_yet_says_so(tmp_path):
    assert_clear_error(suite("run", "driving", env={"SUITE_CHECKPOINT_DIR": str(tmp_path)}), "driving", "not available")
    assert_clear_error(suite("synth", "weather", "--out", str(tmp_path)), "unknown domain 'weather'")


def test_compare_on_an_empty_store_points_at_the_next_step(tmp_path):
    result = suite("compare", env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"})
    assert result.code == 0 and "no finished runs yet" in result.stdout
