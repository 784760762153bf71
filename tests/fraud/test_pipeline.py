"""End to end through the CLI: synth → run (train, evaluate, log, register) → score, and bad input."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from suite_cli import assert_clear_error, suite

import mlflow

MODEL = "models:/fraud-lstm-gat@champion"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fraud_e2e")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "SUITE_CHECKPOINT_DIR": str(root / "ckpt")}
    return root, env


@pytest.fixture(scope="module")
def trained(store):
    root, env = store
    synth = suite("synth", "fraud", "--out", str(root / "data"), "--scale", "small", "--seed", "7", env=env)
    assert synth.code == 0, synth.stderr
    data = root / "data" / "transactions.csv"
    # Batches of 256, not the default 1024 (set for PaySim-sized files): the small set's 35k training rows
    # would give 35 steps an epoch.
    run = suite("run", "fraud", "--data", str(data), "--set", "train.epochs=4", "--set", "train.batch_size=256",
                env=env)
    assert run.code == 0, run.stderr[-3000:]
    return root, env, data, run


def test_run_learns_far_above_chance_and_registers_a_champion(trained):
    root, env, data, run = trained
    # The small set (10 days, ~70 test frauds, a third of them ring laundering) after 4 epochs; chance is
    # 0.5 AUC and 0.01 recall at 1 % FPR. Per-row logistic regression reaches ~0.89 AUC on it.
    assert float(run.value("test_auc")) >= 0.93
    assert float(run.value("test_recall_at_1pct_fpr")) >= 0.25
    # A client bound to this store: another test may have pointed the process-wide registry elsewhere.
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    logged = client.get_run(run.value("run_id"))
    assert logged.data.params["model.graph"] == "True" and logged.data.params["train.loss"] == "weighted_ce"
    assert {"test_auc", "test_recall", "test_precision", "test_recall_at_1pct_fpr"} <= set(logged.data.metrics)
    history = client.get_metric_history(logged.info.run_id, "val_auc")
    assert len(history) >= 1
    # What validation logged is exactly what the domain declares for `train.monitor` to choose from.
    from pipelines.fraud import DOMAIN

    assert {k for k in logged.data.metrics if k.startswith("val_")} == set(DOMAIN.validation_metrics["train"])
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "plots")}
    assert {"plots/roc_test.png", "plots/pr_test.png", "plots/learning_curves.png"} <= artifacts
    champion = client.get_model_version_by_alias("fraud-lstm-gat", "champion")
    assert champion.run_id == logged.info.run_id


def test_score_writes_every_input_column_plus_probability(trained, tmp_path):
    root, env, data, _ = trained
    scoring_input = pd.read_csv(data).drop(columns=["isFraud", "isFlaggedFraud"])
    scoring_input.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "scores.csv"
    result = suite("score", "fraud", "--model", MODEL, "--input", str(tmp_path / "new.csv"), "--output", str(out),
                   env=env)
    assert result.code == 0, result.stderr[-2000:]
    scored = pd.read_csv(out)
    assert list(scored.columns) == [*scoring_input.columns, "fraud_probability"]
    pd.testing.assert_frame_equal(scored.drop(columns="fraud_probability"), scoring_input)
    assert scored["fraud_probability"].between(0, 1).all()
    # Later steps were held out in training; the model must rank them well.
    labels = pd.read_csv(data)["isFraud"]
    late = scored["step"] > scored["step"].quantile(0.8)
    assert roc_auc_score(labels[late], scored.loc[late, "fraud_probability"]) >= 0.9

    # Causality: rewriting the last 30 % of rows leaves every earlier score exactly as it was.
    cut = int(len(scoring_input) * 0.7)
    tampered = scoring_input.copy()
    tampered.loc[cut:, "amount"] = tampered.loc[cut:, "oldbalanceOrg"] + 1.0
    tampered.loc[cut:, "type"] = "TRANSFER"
    tampered.to_csv(tmp_path / "tampered.csv", index=False)
    again = suite("score", "fraud", "--model", MODEL, "--input", str(tmp_path / "tampered.csv"),
                  "--output", str(tmp_path / "tampered.parquet"), env=env)
    assert again.code == 0, again.stderr[-2000:]
    rescored = pd.read_parquet(tmp_path / "tampered.parquet")
    before = scoring_input.index < cut
    assert np.allclose(rescored.loc[before, "fraud_probability"], scored.loc[before, "fraud_probability"], atol=1e-6)


@pytest.mark.parametrize("content, fragments", [
    (None, ["missing.csv", "not found"]),
    ("", ["empty.csv"]),
    ("step,type,amount\n1,PAYMENT,10\n", ["empty.csv", "nameOrig"]),
    ("step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest\n"
     "1,PAYMENT,ten,C1,100,90,M1,0,0\n", ["empty.csv", "line 2", "amount", "ten"]),
])
def test_bad_scoring_input_is_one_clear_line_and_no_output(trained, tmp_path, content, fragments):
    _, env, _, _ = trained
    path = tmp_path / ("missing.csv" if content is None else "empty.csv")
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out.csv"
    result = suite("score", "fraud", "--model", MODEL, "--input", str(path), "--output", str(out), env=env)
    assert_clear_error(result, *fragments)
    assert not out.exists()


def test_unknown_model_uri_is_a_clear_error(trained, tmp_path):
    _, env, data, _ = trained
    out = tmp_path / "out.csv"
    result = suite("score", "fraud", "--model", "models:/no-such-model/1", "--input", str(data),
                   "--output", str(out), env=env)
    assert_clear_error(result, "models:/no-such-model/1")
    assert not out.exists()


def test_training_on_a_file_with_a_missing_column_is_a_clear_error(store, tmp_path):
    _, env = store
    bad = tmp_path / "nolabels.csv"
    bad.write_text("step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest\n"
                   "1,PAYMENT,10,C1,100,90,M1,0,0\n")
    assert_clear_error(suite("run", "fraud", "--data", str(bad), env=env), "nolabels.csv", "isFraud")
    assert_clear_error(suite("run", "fraud", "--set", "model.hiden=3", env=env), "model.hiden")


def test_strict_training_refuses_the_duplicate_rows_it_would_skip(store, tmp_path):
    _, env = store
    twice = tmp_path / "twice.csv"
    twice.write_text("step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,"
                     "isFraud,isFlaggedFraud\n" + "1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0\n" * 2)
    assert_clear_error(suite("run", "fraud", "--data", str(twice), "--strict", env=env),
                       "twice.csv", "repeat an earlier row", "line 3, same as line 2", "--strict")
