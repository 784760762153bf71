import pytest

import mlflow
from common import tracking
from common.io import atomic_path


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_a_relative_sqlite_store_keeps_its_artifacts_beside_it(tracking_store, tmp_path, monkeypatch):
    """`sqlite:///mlflow.db`, as MLflow's docs write it, is relative to the folder the user is in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/mlflow.db")
    try:
        tracking.configure_tracking()
        exp = tracking.ensure_experiment("relative")
        location = mlflow.get_experiment(exp).artifact_location
    finally:
        mlflow.set_tracking_uri(tracking_store)
        mlflow.set_registry_uri(tracking_store)
    assert location == (tmp_path / "store" / "artifacts" / "relative").as_uri()


def test_runs_go_to_the_configured_store_and_champion_moves_only_on_improvement(tracking_store, tmp_path):
    assert mlflow.get_tracking_uri() == tracking_store
    exp = tracking.ensure_experiment("unit")
    assert mlflow.get_experiment(exp).artifact_location.startswith((tmp_path / "artifacts").as_uri())

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    versions = []
    for auc in (0.8, 0.7, 0.9):
        with mlflow.start_run(experiment_id=exp):
            tracking.log_metrics({"test_auc": auc, "undefined": float("nan")})
            info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), registered_model_name="unit-model",
                                           pip_requirements=[])
            versions.append(tracking.promote_champion("unit-model", info.registered_model_version, "test_auc").crowned)
    assert versions == [True, False, True]
    champion = mlflow.MlflowClient().get_model_version_by_alias("unit-model", "champion")
    assert str(champion.version) == "3"


def test_a_writer_killed_mid_write_leaves_the_old_file_intact(tmp_path):
    import signal
    import subprocess
    import sys
    import textwrap

    target = tmp_path / "scores.csv"
    target.write_text("old, complete\n")
    script = textwrap.dedent(f"""
        import os, signal
        from common.io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("new, half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == "old, complete\n"


def test_jobs_started_at_once_on_a_fresh_sqlite_store_all_get_it(tmp_path):
    """Without the lock each process ran MLflow's migrations and all but one failed (this test failed twice in two)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"}
    code = "from common import tracking; tracking.configure_tracking(); tracking.ensure_experiment('at-once')"
    jobs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    errors = [job.communicate(timeout=120)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], errors
