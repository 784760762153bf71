"""Honest champions (same data and split only, registry errors surface) and credentials that never leak."""
import os

import pytest
from mlflow.exceptions import MlflowException

import mlflow
from common import tracking


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def _register(experiment_id: str, auc: float, fingerprint: str, split: str = "by time") -> str:
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.set_tags({tracking.TAG_DATA_FINGERPRINT: fingerprint, tracking.TAG_SPLIT: split})
        tracking.log_metrics({"test_auc": auc})
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), registered_model_name="unit-model",
                                       pip_requirements=[])
    return info.registered_model_version


def test_champion_moves_only_on_the_same_data_and_split(tracking_store):
    exp = tracking.ensure_experiment("unit")
    first = tracking.promote_champion("unit-model", _register(exp, 0.80, "aaaa"), "test_auc")
    assert first.crowned and "first" in first.reason
    other_data = tracking.promote_champion("unit-model", _register(exp, 0.99, "bbbb"), "test_auc")
    assert not other_data.crowned and "other data" in other_data.reason
    other_split = tracking.promote_champion("unit-model", _register(exp, 0.99, "aaaa", "by time (x=1)"), "test_auc")
    assert not other_split.crowned and "other split" in other_split.reason
    worse = tracking.promote_champion("unit-model", _register(exp, 0.70, "aaaa"), "test_auc")
    assert not worse.crowned and "does not beat" in worse.reason
    better = tracking.promote_champion("unit-model", _register(exp, 0.90, "aaaa"), "test_auc")
    assert better.crowned
    assert str(mlflow.MlflowClient().get_model_version_by_alias("unit-model", "champion").version) == "5"


def test_a_registry_error_is_not_taken_for_no_champion(tracking_store, monkeypatch):
    exp = tracking.ensure_experiment("unit")
    version = _register(exp, 0.8, "aaaa")

    def broken(self, name, alias):
        raise MlflowException("database is locked", error_code="INTERNAL_ERROR")

    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", broken)
    with pytest.raises(MlflowException, match="database is locked"):
        tracking.promote_champion("unit-model", version, "test_auc")


def test_no_alias_yet_is_no_champion(tracking_store):
    assert tracking.current_champion("never-registered") is None


@pytest.fixture
def restore_tracking_uri():
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


def test_credentials_in_the_uri_move_to_mlflows_variables_and_are_redacted(monkeypatch, restore_tracking_uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:hunter2@mlflow.example.org:5000/")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, "")  # recorded, so what configure_tracking sets is undone after the test
        monkeypatch.delenv(name)
    uri = tracking.configure_tracking()
    assert uri == "https://mlflow.example.org:5000/" and mlflow.get_tracking_uri() == uri
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "hunter2"
    assert "hunter2" not in tracking.redact("failed: https://alice:hunter2@host/x and the password hunter2")
    assert tracking.redact("https://bob:pw@h/x") == "https://***@h/x"
