"""A team's MLflow for real: PostgreSQL-backed `mlflow server` with proxied artifacts, basic auth, REST serving.

Every server here is a real process on 127.0.0.1; the suite talks to it only through MLFLOW_TRACKING_URI,
as a team's jobs do.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import requests
from suite_cli import assert_clear_error, suite
from team_server import (
    background_server,
    create_database,
    free_port,
    mlflow_server,
    postgres_cluster,
    server_env,
)

import mlflow

FRAUD_MODEL = "fraud-lstm-gat"
ADMIN_PASSWORD = "s3cret-Pa55word-for-tests"


@pytest.fixture(scope="module")
def fraud_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("team_data")
    made = suite("synth", "fraud", "--out", str(root), "--scale", "small", "--seed", "3")
    assert made.code == 0, made.stderr
    return root / "transactions.csv"


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    """`mlflow server` over a fresh PostgreSQL database, artifacts proxied into a local folder."""
    root = tmp_path_factory.mktemp("team_pg")
    with postgres_cluster() as base_url:
        backend = create_database(base_url, "mlflow")
        with mlflow_server(backend, root / "artifacts", root / "server.log") as url:
            yield url, root


@pytest.fixture(scope="module")
def team_runs(postgres_server, fraud_data):
    """Two experiments with different settings, trained through the server."""
    url, root = postgres_server
    env = {"MLFLOW_TRACKING_URI": url, "SUITE_CHECKPOINT_DIR": str(root / "ckpt")}
    runs = {}
    for experiment, settings in (("fraud-baseline", ["train.epochs=2"]),
                                 ("fraud-no-graph", ["train.epochs=2", "model.graph=false"])):
        args = ["run", "fraud", "--data", str(fraud_data), "--experiment", experiment]
        for setting in settings:
            args += ["--set", setting]
        result = suite(*args, env=env)
        assert result.code == 0, result.stderr[-3000:]
        runs[experiment] = result
    return url, env, runs


def test_runs_land_in_postgres_with_identity_tags_and_curve_tables(team_runs, fraud_data):
    url, env, runs = team_runs
    client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
    for result in runs.values():
        run = client.get_run(result.value("run_id"))
        tags = run.data.tags
        assert tags["suite.domain"] == "fraud"
        assert len(tags["suite.data_fingerprint"]) == 16
        assert tags["suite.split"].startswith("by time")
        assert tags["suite.git_commit"]
        curves = {a.path for a in client.list_artifacts(run.info.run_id, "curves")}
        assert {"curves/roc_test.json", "curves/pr_test.json"} <= curves
    fingerprints = {client.get_run(r.value("run_id")).data.tags["suite.data_fingerprint"] for r in runs.values()}
    assert len(fingerprints) == 1  # the same file


def test_compare_lists_both_experiments_best_first_with_only_the_params_that_differ(team_runs, tmp_path):
    url, env, runs = team_runs
    plot = tmp_path / "compare.png"
    shown = suite("compare", "fraud", "--format", "json", "--plot", str(plot), env=env)
    assert shown.code == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert {r["experiment"] for r in rows} == {"fraud-baseline", "fraud-no-graph"}
    aucs = [r["metrics"]["test_auc"] for r in rows]
    assert aucs == sorted(aucs, reverse=True)
    assert set(rows[0]["params"]) == {"model.graph"}  # epochs, seeds ... are the same in both
    assert sum(r["champion"] for r in rows) == 1
    assert plot.stat().st_size > 10_000
    table = suite("compare", "--experiment", "fraud-baseline", env=env)
    assert table.code == 0 and runs["fraud-baseline"].value("run_id")[:8] in table.stdout
    assert runs["fraud-no-graph"].value("run_id")[:8] not in table.stdout


def test_score_and_models_through_the_server(team_runs, fraud_data, tmp_path):
    url, env, runs = team_runs
    new = pd.read_csv(fraud_data).drop(columns=["isFraud", "isFlaggedFraud"]).tail(500)
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "scored.csv"
    scored = suite("score", "fraud", "--model", f"models:/{FRAUD_MODEL}@champion", "--input",
                   str(tmp_path / "new.csv"), "--output", str(out), env=env)
    assert scored.code == 0, scored.stderr[-2000:]
    assert len(pd.read_csv(out)) == 500
    listed = suite("models", "fraud", "--format", "json", env=env)
    versions = json.loads(listed.stdout)
    assert len(versions) == 2 and sum("champion" in v["aliases"] for v in versions) == 1
    assert all(len(v["data_fingerprint"]) == 16 and v["key_metric"] > 0.5 for v in versions)


def test_mlflow_models_serve_answers_with_the_same_probabilities_as_suite_score(team_runs, fraud_data, tmp_path):
    url, env, runs = team_runs
    rows = pd.read_csv(fraud_data).drop(columns=["isFraud", "isFlaggedFraud"]).head(200)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    scored = suite("score", "fraud", "--model", f"models:/{FRAUD_MODEL}@champion", "--input",
                   str(tmp_path / "rows.csv"), "--output", str(tmp_path / "scored.csv"), env=env)
    assert scored.code == 0, scored.stderr[-2000:]
    port = free_port()
    args = ["mlflow", "models", "serve", "-m", f"models:/{FRAUD_MODEL}@champion", "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port)]
    with background_server(args, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", server_env(**env)):
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=60,
                               json={"dataframe_split": json.loads(rows.to_json(orient="split", index=False))})
    assert answer.status_code == 200, answer.text[:500]
    served = pd.DataFrame(answer.json()["predictions"])
    expected = pd.read_csv(tmp_path / "scored.csv")["fraud_probability"].to_numpy()
    np.testing.assert_allclose(served["fraud_probability"].to_numpy(), expected, atol=1e-6)


def test_medical_model_serves_patches_over_rest(tmp_path, monkeypatch):
    """The medical pyfunc over HTTP: patches in as a tensor, nodule probabilities out, equal to local predict."""
    import torch

    from apps.medical.model import MedicalModelConfig, build_medical_model
    from apps.medical.patches import PatchConfig
    from apps.medical.scorer import MedicalScorer
    from pipelines.medical import MLFLOW_ENTRY

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from common import tracking

    tracking.configure_tracking()
    torch.manual_seed(0)
    model_cfg, patch_cfg = MedicalModelConfig(), PatchConfig()
    bundle = MedicalScorer(build_medical_model(model_cfg), model_cfg, patch_cfg, 0.5).save(tmp_path / "bundle")
    size = patch_cfg.size_vox
    patches = np.random.default_rng(0).random((3, 1, size, size, size), dtype=np.float32)
    with mlflow.start_run(experiment_id=tracking.ensure_experiment("serve")):
        info = mlflow.pyfunc.log_model(name="model", python_model=MLFLOW_ENTRY, artifacts={"bundle": str(bundle)},
                                       input_example=patches[:1], pip_requirements=[])
    expected = mlflow.pyfunc.load_model(info.model_uri).predict(patches)
    port = free_port()
    args = ["mlflow", "models", "serve", "-m", info.model_uri, "--env-manager", "local", "--host", "127.0.0.1",
            "--port", str(port)]
    with background_server(args, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log",
                           server_env(MLFLOW_TRACKING_URI=uri)):
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": patches.tolist()}, timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    np.testing.assert_allclose(np.asarray(answer.json()["predictions"]).ravel(), expected, atol=1e-6)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """`mlflow server --app-name basic-auth`, the admin password only in the server's environment."""
    root = tmp_path_factory.mktemp("team_auth")
    config = root / "auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{root / 'auth.db'}\n"
                      f"admin_username = admin\nadmin_password = {ADMIN_PASSWORD}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key"}
    with mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", root / "server.log",
                       app_name="basic-auth", env=env) as url:
        yield url, root


def _no_password_anywhere(*texts: str) -> None:
    for text in texts:
        assert ADMIN_PASSWORD not in text


def test_basic_auth_refused_fast_without_credentials_and_never_printed(auth_server, fraud_data):
    url, root = auth_server
    env = {"MLFLOW_TRACKING_URI": url, "SUITE_CHECKPOINT_DIR": str(root / "ckpt")}
    started = time.monotonic()
    refused = suite("run", "fraud", "--data", str(fraud_data), env=env)
    assert time.monotonic() - started < 60
    assert_clear_error(refused, "401", "MLFLOW_TRACKING_USERNAME")
    assert "epoch" not in refused.stdout.lower()
    wrong = suite("compare", "fraud", env={**env, "MLFLOW_TRACKING_USERNAME": "admin",
                                           "MLFLOW_TRACKING_PASSWORD": "not-the-password"})
    assert_clear_error(wrong, "401", "rejected")
    _no_password_anywhere(wrong.stdout, wrong.stderr)


def test_basic_auth_works_with_credentials_and_the_password_stays_secret(auth_server, fraud_data, monkeypatch):
    url, root = auth_server
    with_env = {"MLFLOW_TRACKING_URI": url, "SUITE_CHECKPOINT_DIR": str(root / "ckpt"),
                "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
    trained = suite("run", "fraud", "--data", str(fraud_data), "--set", "train.epochs=1", env=with_env)
    assert trained.code == 0, trained.stderr[-3000:]
    _no_password_anywhere(trained.stdout, trained.stderr)
    # The same credentials inside the URI (https://user:pass@host form) also work and are never shown.
    in_uri = url.replace("http://", f"http://admin:{ADMIN_PASSWORD}@")
    listed = suite("compare", "fraud", "--format", "json", env={"MLFLOW_TRACKING_URI": in_uri})
    assert listed.code == 0, listed.stderr
    _no_password_anywhere(listed.stdout, listed.stderr)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    run = mlflow.MlflowClient(tracking_uri=url).get_run(trained.value("run_id"))
    _no_password_anywhere(json.dumps(run.data.params), json.dumps(run.data.tags))


def test_unreachable_server_fails_in_seconds_before_training(fraud_data, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = suite("run", "fraud", "--data", str(fraud_data), env={"MLFLOW_TRACKING_URI": url,
                                                                   "SUITE_CHECKPOINT_DIR": str(tmp_path)})
    assert time.monotonic() - started < 30
    assert_clear_error(result, "cannot reach the MLflow tracking server", "127.0.0.1")
