"""`suite score DOMAIN --engine spark` equals `--engine local` on the same input, spread over several tasks.

The models are randomly initialised (equality needs no trained one, and a random detector finds many
boxes, which makes the comparison strict). One intra-op thread on both engines: Spark gives each task
one core, and the same thread count makes even the last float bit agree.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from suite_cli import Result, assert_clear_error, suite

import mlflow

ENV = {"OMP_NUM_THREADS": "1"}
DRIVING_FRAMES = 9  # scored with --partitions 2: two Spark tasks, of 5 and 4 frames


def save_model(folder: Path, entry: str, bundle: Path, input_example=None) -> str:
    mlflow.pyfunc.save_model(str(folder), python_model=entry, artifacts={"bundle": str(bundle)},
                             input_example=input_example, pip_requirements=[])
    return str(folder)


def score(env: dict[str, str], domain: str, model: str, source: Path, out: Path, *extra: str) -> Result:
    return suite("score", domain, "--model", model, "--input", str(source), "--output", str(out), *extra,
                 env={**env, **ENV})


def spark_tasks(result: Result) -> int:
    """The number of Spark tasks that scored, from the summary line."""
    found = re.search(r"Spark: (\d+) tasks on (\d+) Python workers, model loaded (\d+)x", result.stdout)
    assert found, result.stdout + result.stderr
    tasks, workers, loads = map(int, found.groups())
    assert loads == workers, "the model is loaded once per Python worker, not per task or part"
    return tasks


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("spark")
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "SUITE_SPARK_LOG": str(root / "spark.log")}


def test_medical_spark_equals_local(env, tmp_path):
    from broken_inputs import write_luna16

    from apps.medical.model import MedicalModelConfig, build_medical_model
    from apps.medical.patches import PatchConfig
    from apps.medical.scorer import MedicalScorer
    from pipelines.medical import MLFLOW_ENTRY

    torch.manual_seed(0)
    data = write_luna16(tmp_path / "luna")  # two tiny scans: one task each
    cfg = MedicalModelConfig()
    bundle = MedicalScorer(build_medical_model(cfg), cfg, PatchConfig(), 0.5).save(tmp_path / "bundle")
    model = save_model(tmp_path / "model", MLFLOW_ENTRY, bundle)
    local = score(env, "medical", model, data, tmp_path / "local.csv")
    spark = score(env, "medical", model, data, tmp_path / "spark.csv", "--engine", "spark", "--partitions", "2")
    assert local.code == 0 and spark.code == 0, (local.stderr[-2000:], spark.stderr[-2000:])
    assert spark_tasks(spark) == 2
    assert (tmp_path / "spark.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


@pytest.mark.slow  # a second JVM for a path `--engine spark` already covers; `make test-slow` runs it
def test_medical_under_spark_submit_equals_local(env, tmp_path):
    """`spark-submit pipelines/__main__.py score ...`: spark-submit starts the JVM and its master rules;
    the suite joins that session (and leaves it to spark-submit to stop) and writes the same bytes."""
    import os
    import subprocess
    import sys

    from broken_inputs import write_luna16

    from apps.medical.model import MedicalModelConfig, build_medical_model
    from apps.medical.patches import PatchConfig
    from apps.medical.scorer import MedicalScorer
    from pipelines.medical import MLFLOW_ENTRY

    torch.manual_seed(0)
    data = write_luna16(tmp_path / "luna")
    cfg = MedicalModelConfig()
    bundle = MedicalScorer(build_medical_model(cfg), cfg, PatchConfig(), 0.5).save(tmp_path / "bundle")
    model = save_model(tmp_path / "model", MLFLOW_ENTRY, bundle)
    local = score(env, "medical", model, data, tmp_path / "local.csv")
    assert local.code == 0, local.stderr[-2000:]
    submit = Path(sys.executable).parent / "spark-submit"
    entry = Path(__file__).resolve().parents[1] / "pipelines" / "__main__.py"
    job = subprocess.run(
        [str(submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false", str(entry), "score", "medical",
         "--model", model, "--input", str(data), "--output", str(tmp_path / "submitted.csv"), "--engine", "spark",
         "--partitions", "2"],
        env={**os.environ, **env, **ENV, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
             "PYTHONPATH": str(entry.parents[1])},
        capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stderr[-3000:]
    assert spark_tasks(Result(job.returncode, job.stdout, job.stderr)) == 2
    assert (tmp_path / "submitted.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


def test_driving_spark_equals_local(env, tmp_path):
    from apps.driving.camera import CameraDetector
    from apps.driving.model import PointPillarsNet
    from apps.driving.scorer import DrivingScorer
    from apps.driving.synthetic import write_synthetic_kitti
    from common.config import load_config
    from pipelines.driving import MLFLOW_ENTRY, DrivingConfig
    from pipelines.runner import CONFIG_DIR

    torch.manual_seed(0)
    cfg = load_config(DrivingConfig, CONFIG_DIR / "driving.yaml", [])
    data = write_synthetic_kitti(tmp_path / "kitti", seed=3, n_frames=DRIVING_FRAMES)
    net = PointPillarsNet(cfg.model, cfg.grid)
    torch.nn.init.constant_(net.heatmap.bias, 0.0)  # an untrained head that fires: many boxes to compare
    scorer = DrivingScorer(net, CameraDetector(cfg.camera), cfg.model, cfg.grid, cfg.head)
    model = save_model(tmp_path / "model", MLFLOW_ENTRY, scorer.save(tmp_path / "bundle"))
    local = score(env, "driving", model, data, tmp_path / "local")
    spark = score(env, "driving", model, data, tmp_path / "spark", "--engine", "spark", "--spark-master", "local[2]",
                  "--partitions", "2")
    assert local.code == 0 and spark.code == 0, (local.stderr[-2000:], spark.stderr[-2000:])
    assert spark_tasks(spark) == 2
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len(names) == DRIVING_FRAMES and names == sorted(p.name for p in (tmp_path / "spark").iterdir())
    assert sum((tmp_path / "local" / n).stat().st_size for n in names) > 0, "the random detector found boxes"
    for name in names:
        assert (tmp_path / "spark" / name).read_text() == (tmp_path / "local" / name).read_text(), name


@pytest.fixture(scope="module")
def fraud(env, tmp_path_factory):
    from random_fraud_model import TINY, random_scorer

    from apps.fraud.synthetic import generate_paysim
    from pipelines.fraud import MLFLOW_ENTRY, model_input_example

    root = tmp_path_factory.mktemp("fraud_spark")
    raw = generate_paysim(TINY, seed=5)
    raw.to_csv(root / "all.csv", index=False)
    raw[raw["step"] <= 60].to_csv(root / "past.csv", index=False)
    raw[raw["step"] > 60].drop(columns=["isFraud", "isFlaggedFraud"]).to_csv(root / "new.csv", index=False)
    bundle = random_scorer(raw).save(root / "bundle")
    model = save_model(root / "model", MLFLOW_ENTRY, bundle, model_input_example(raw))
    return root, model


@pytest.mark.parametrize("with_context", [pytest.param(False, marks=pytest.mark.slow), True],
                         ids=["whole file", "new day with --context"])
def test_fraud_spark_equals_local(env, fraud, with_context):
    root, model = fraud
    source, extra = (root / "all.csv", [])
    if with_context:
        source, extra = root / "new.csv", ["--context", str(root / "past.csv")]
    tag = "ctx" if with_context else "all"
    local = score(env, "fraud", model, source, root / f"local_{tag}.csv", *extra)
    spark = score(env, "fraud", model, source, root / f"spark_{tag}.csv", *extra, "--engine", "spark",
                  "--partitions", "3")
    assert local.code == 0 and spark.code == 0, (local.stderr[-2000:], spark.stderr[-2000:])
    assert spark_tasks(spark) == 3
    got, expected = pd.read_csv(root / f"spark_{tag}.csv"), pd.read_csv(root / f"local_{tag}.csv")
    pd.testing.assert_frame_equal(got.drop(columns="fraud_probability"), expected.drop(columns="fraud_probability"))
    assert np.abs(got["fraud_probability"] - expected["fraud_probability"]).max() <= 1e-6
    # The summary's history count is the same whichever engine scored.
    history = re.compile(r"(\d[\d,]*) of (\d[\d,]*) sending accounts")
    assert history.search(spark.stdout).groups() == history.search(local.stdout).groups()


def test_bad_input_under_spark_is_one_line(env, tmp_path):
    """A scan whose voxels are NaN passes the header checks and is met inside a Spark task; the user
    still sees one line naming it, no Java or Python stack trace, and no output."""
    from broken_inputs import mhd_of, raw_of, write_luna16

    from apps.medical.model import MedicalModelConfig, build_medical_model
    from apps.medical.patches import PatchConfig
    from apps.medical.scorer import MedicalScorer
    from pipelines.medical import MLFLOW_ENTRY

    data = write_luna16(tmp_path / "luna")
    mhd_of(data).write_text(mhd_of(data).read_text().replace("MET_SHORT", "MET_FLOAT"))
    raw_of(data).write_bytes(np.full(512, np.nan, np.float32).tobytes())
    cfg = MedicalModelConfig()
    model = save_model(tmp_path / "model", MLFLOW_ENTRY,
                       MedicalScorer(build_medical_model(cfg), cfg, PatchConfig(), 0.5).save(tmp_path / "bundle"))
    out = tmp_path / "out.csv"
    result = score(env, "medical", model, data, out, "--engine", "spark", "--partitions", "2")
    assert_clear_error(result, mhd_of(data).name, "NaN or infinite")
    assert "java" not in result.stderr.lower()
    assert not out.exists()


def test_spark_flags_need_the_spark_engine(env, fraud, tmp_path):
    root, model = fraud
    assert_clear_error(score(env, "fraud", model, root / "all.csv", tmp_path / "o.csv", "--partitions", "2"),
                       "--engine spark")
    assert_clear_error(score(env, "fraud", model, root / "all.csv", tmp_path / "o.csv", "--engine", "flink"),
                       "--engine must be local or spark")
    assert_clear_error(score(env, "fraud", model, root / "all.csv", tmp_path / "o.csv", "--engine", "spark",
                             "--partitions", "0"), "--partitions")
