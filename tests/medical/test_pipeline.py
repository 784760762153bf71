"""End to end through the CLI: synth → run (train, evaluate, log, register) → score, and bad input."""
import shutil

import pandas as pd
import pytest
from suite_cli import assert_clear_error, suite

import mlflow

MODEL = "models:/medical-nodule-3dcnn@champion"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("medical_e2e")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "SUITE_CHECKPOINT_DIR": str(root / "ckpt")}
    synth = suite("synth", "medical", "--out", str(root / "luna"), "--seed", "11", env=env)
    assert synth.code == 0, synth.stderr
    run = suite("run", "medical", "--data", str(root / "luna"), env=env)
    assert run.code == 0, run.stderr[-3000:]
    return root, env, run


def test_run_learns_far_above_chance_and_logs_froc(trained):
    root, env, run = trained
    assert float(run.value("test_auc")) >= 0.85
    assert float(run.value("test_cpm")) > 0.2
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    logged = client.get_run(run.value("run_id"))
    assert {"test_auc", "test_recall", "test_precision", "test_cpm"} <= set(logged.data.metrics)
    # What validation logged is exactly what the domain declares for `train.monitor` to choose from.
    from pipelines.medical import DOMAIN

    assert {k for k in logged.data.metrics if k.startswith("val_")} == set(DOMAIN.validation_metrics["train"])
    plots = {a.path for a in client.list_artifacts(logged.info.run_id, "plots")}
    assert {"plots/roc_test.png", "plots/froc_test.png", "plots/patches_test.png"} <= plots


def test_score_writes_one_row_per_candidate_in_order(trained, tmp_path):
    root, env, _ = trained
    scan_in = tmp_path / "new"
    shutil.copytree(root / "luna", scan_in)
    candidates = pd.read_csv(scan_in / "candidates.csv").drop(columns="class")
    candidates.to_csv(scan_in / "candidates.csv", index=False)
    (scan_in / "annotations.csv").unlink()
    out = tmp_path / "submission.csv"
    result = suite("score", "medical", "--model", MODEL, "--input", str(scan_in), "--output", str(out), env=env)
    assert result.code == 0, result.stderr[-2000:]
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
    pd.testing.assert_frame_equal(scored.drop(columns="probability"), candidates, check_dtype=False)
    assert scored["probability"].between(0, 1).all()


def _break(folder, how):
    if how == "no volumes":
        for mhd in folder.rglob("*.mhd"):
            mhd.unlink()
    elif how == "truncated raw":
        raw = sorted(folder.rglob("*.raw"))[0]
        raw.write_bytes(raw.read_bytes()[:1000])
    elif how == "no coordZ":
        pd.read_csv(folder / "candidates.csv").drop(columns="coordZ").to_csv(folder / "candidates.csv", index=False)
    elif how == "absent volume":
        table = pd.read_csv(folder / "candidates.csv")
        table.loc[0, "seriesuid"] = "1.2.3.absent"
        table.to_csv(folder / "candidates.csv", index=False)


@pytest.mark.parametrize("how, fragments", [
    ("missing folder", ["not found"]),
    ("no volumes", ["no .mhd volumes"]),
    ("truncated raw", [".raw"]),
    ("no coordZ", ["candidates.csv", "coordZ"]),
    ("absent volume", ["1.2.3.absent"]),
])
def test_bad_input_is_one_clear_line_and_no_output(trained, tmp_path, how, fragments):
    root, env, _ = trained
    folder = tmp_path / "broken"
    if how != "missing folder":
        shutil.copytree(root / "luna", folder)
        _break(folder, how)
    out = tmp_path / "out.csv"
    result = suite("score", "medical", "--model", MODEL, "--input", str(folder), "--output", str(out), env=env)
    assert_clear_error(result, *fragments)
    assert not out.exists()
