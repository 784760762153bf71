"""End to end through the CLI: synth → run (camera, painting, PointPillars; log, register) → score, bad input."""
import shutil

import pytest
from real_kitti import REAL, needs_real
from suite_cli import assert_clear_error, suite

import mlflow
from apps.driving.kitti import find_frames, read_label, read_label_dir
from apps.driving.kitti_eval import evaluate_kitti

MODEL = "models:/driving-fusion-detector@champion"
# Small enough for CI on two cores, long enough to learn: the acceptance runs use the YAML defaults.
FAST = ["--set", "train.epochs=10", "--set", "camera_train.epochs=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("driving_e2e")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "SUITE_CHECKPOINT_DIR": str(root / "ckpt")}
    synth = suite("synth", "driving", "--out", str(root / "kitti"), "--seed", "5", env=env)
    assert synth.code == 0, synth.stderr[-3000:]
    run = suite("run", "driving", "--data", str(root / "kitti"), *FAST, env=env)
    assert run.code == 0, run.stderr[-3000:]
    return root, env, run


def test_run_detects_cars_and_logs_kitti_metrics_and_plots(trained):
    root, env, run = trained
    # Measured with these settings (seed 5): AP BEV@0.5 0.60, recall 0.89; chance is 0. The bars leave room for
    # run-to-run float differences on other CPUs.
    assert float(run.value("test_ap_bev_50")) > 0.3
    assert float(run.value("test_recall")) > 0.4
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    logged = client.get_run(run.value("run_id"))
    assert {"test_ap_bev", "test_ap_3d", "test_recall", "test_aos", "test_ap_bev_hard", "camera_val_loss",
            "val_ap_bev_50", "test_heading_error_deg", "test_heading_reversed"} <= set(logged.data.metrics)
    assert 0 <= logged.data.metrics["test_heading_reversed"] <= 1
    # What each stage's validation logged is exactly what the domain declares for its `monitor`.
    from pipelines.driving import DOMAIN

    assert {k for k in logged.data.metrics if k.startswith("val_")} == set(DOMAIN.validation_metrics["train"])
    assert ({k[len("camera_"):] for k in logged.data.metrics if k.startswith("camera_val_")}
            == set(DOMAIN.validation_metrics["camera_train"]))
    assert logged.data.metrics["test_heading_error_deg"] < 45  # the axis is learnt; the direction see README
    plots = {a.path for a in client.list_artifacts(logged.info.run_id, "plots")}
    assert [a.path for a in client.list_artifacts(logged.info.run_id, "curves")] == ["curves/pr_bev_test.json"]
    assert {"plots/bev_detections_test.png", "plots/camera_detections_test.png"} <= plots


def test_score_writes_one_kitti_result_per_frame(trained, tmp_path):
    root, env, _ = trained
    split = root / "kitti" / "training"
    frames = find_frames(split)
    out = tmp_path / "results"
    result = suite("score", "driving", "--model", MODEL, "--input", str(split), "--output", str(out), env=env)
    assert result.code == 0, result.stderr[-2000:]
    assert sorted(p.stem for p in out.glob("*.txt")) == frames
    detections = read_label_dir(out, frames)
    assert all(obj.type == "Car" and obj.score is not None for objs in detections.values() for obj in objs)
    truth = {f: read_label(split / "label_2" / f"{f}.txt") for f in frames}
    assert evaluate_kitti(truth, detections)["recall"] > 0.4


@needs_real
def test_real_kitti_frame_scores_into_a_well_formed_result(trained, tmp_path):
    _, env, _ = trained
    out = tmp_path / "real"
    result = suite("score", "driving", "--model", MODEL, "--input", str(REAL), "--output", str(out), env=env)
    assert result.code == 0, result.stderr[-2000:]
    assert [p.name for p in out.iterdir()] == ["000008.txt"]
    for obj in read_label(out / "000008.txt"):
        assert obj.type == "Car" and 0 <= obj.score <= 1


def _break(folder, how):
    if how == "no velodyne":
        shutil.rmtree(folder / "training" / "velodyne")
    elif how == "truncated scan":
        scan = sorted((folder / "training" / "velodyne").glob("*.bin"))[0]
        scan.write_bytes(scan.read_bytes()[:10])
    elif how == "bad calib":
        calib = sorted((folder / "training" / "calib").glob("*.txt"))[0]
        calib.write_text("P2: 1 2 3\n")
    elif how == "missing image":
        sorted((folder / "training" / "image_2").glob("*.png"))[0].unlink()


@pytest.mark.parametrize("how, fragments", [
    ("missing folder", ["not found"]),
    ("no velodyne", ["velodyne"]),
    ("truncated scan", [".bin"]),
    ("bad calib", ["calib", ".txt"]),
    ("missing image", ["image_2"]),
])
def test_bad_input_is_one_clear_line_and_no_output(trained, tmp_path, how, fragments):
    root, env, _ = trained
    folder = tmp_path / "broken"
    if how != "missing folder":
        shutil.copytree(root / "kitti", folder, ignore=shutil.ignore_patterns("label_2"))
        _break(folder, how)
    out = tmp_path / "out"
    result = suite("score", "driving", "--model", MODEL, "--input", str(folder), "--output", str(out), env=env)
    assert_clear_error(result, *fragments)
    assert not out.exists()


def test_scoring_refuses_to_write_over_its_own_input(trained):
    root, env, _ = trained
    split = root / "kitti" / "training"
    result = suite("score", "driving", "--model", MODEL, "--input", str(split), "--output", str(split / "results"),
                   env=env)
    assert_clear_error(result, "outside the input")
    assert (split / "velodyne").is_dir() and not (split / "results").exists()
