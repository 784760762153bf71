"""A scoring job killed with SIGKILL keeps its finished parts; the same command then completes it, byte-identical."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from suite_cli import assert_clear_error, suite

import mlflow
from common.errors import InputError
from common.partial_results import PartialResults


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """8 synthetic scans, a random medical model, and the output of an uninterrupted job."""
    import dataclasses

    from apps.medical import synthetic
    from apps.medical.model import MedicalModelConfig, build_medical_model
    from apps.medical.patches import PatchConfig
    from apps.medical.scorer import MedicalScorer
    from pipelines.medical import MLFLOW_ENTRY

    root = tmp_path_factory.mktemp("score_resume")
    torch.manual_seed(0)
    data = synthetic.write_synthetic_luna16(root / "luna", dataclasses.replace(synthetic.SCALES["small"], n_scans=8),
                                            seed=3)
    cfg = MedicalModelConfig()
    bundle = MedicalScorer(build_medical_model(cfg), cfg, PatchConfig(), 0.5).save(root / "bundle")
    mlflow.pyfunc.save_model(str(root / "model"), python_model=MLFLOW_ENTRY, artifacts={"bundle": str(bundle)},
                             pip_requirements=[])
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "OMP_NUM_THREADS": "1",
           "SUITE_SPARK_LOG": str(root / "spark.log")}
    args = ["score", "medical", "--model", str(root / "model"), "--input", str(data)]
    straight = suite(*args, "--output", str(root / "straight.csv"), env=env)
    assert straight.code == 0, straight.stderr[-2000:]
    return root, args, env


def _kill_after_parts(command: list[str], env: dict[str, str], out: Path, parts: int = 2) -> int:
    """Start a scoring job, SIGKILL it (and, for Spark, its JVM and workers) once `parts` parts are kept
    beside `out`; return how many parts the kill left in `<out>.partial/`."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    partial = out.with_name(out.name + ".partial")
    deadline = time.monotonic() + 300
    while len(list(partial.glob("part-*.pkl"))) < parts and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(list(partial.glob("part-*.pkl")))


def _with_small_parts(module: str, size_name: str, size: int, part_function: str, pause_s: float) -> str:
    """`python -c` code that runs the CLI with `module.size_name = size` and each call of `part_function`
    held back `pause_s` and logged as a line of $PARTS_SCORED, so a test can kill it mid-job and see
    what a resumed job redid."""
    return (f"import os, time, runpy, {module} as s; s.{size_name} = {size}; f = s.{part_function}; "
            "log = lambda: open(os.environ['PARTS_SCORED'], 'a').write('part\\n'); "
            f"s.{part_function} = lambda *a, **k: (time.sleep({pause_s}), log(), f(*a, **k))[2]; "
            "runpy.run_module('pipelines', run_name='__main__')")


@pytest.mark.parametrize("engine", ["local", pytest.param("spark", marks=pytest.mark.slow)])
def test_killed_scoring_resumes_to_the_same_bytes(job, engine):
    root, args, env = job
    out = root / f"killed_{engine}.csv"
    extra = ["--engine", "spark", "--partitions", "2"] if engine == "spark" else []
    command = [sys.executable, "-m", "pipelines", *args, "--output", str(out), *extra]
    kept = _kill_after_parts(command, {**os.environ, **env}, out)
    partial = out.with_name(out.name + ".partial")
    assert kept >= 2 and not out.exists(), "killed before the end: parts kept, no output yet"

    other = suite(*args, "--output", str(out), *extra, "--batch-size", "7", env=env)
    assert_clear_error(other, str(partial), "batch_size", "delete the folder")

    resumed = suite(*args, "--output", str(out), *extra, env=env)
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert out.read_bytes() == (root / "straight.csv").read_bytes()
    assert not partial.exists()


def test_a_failed_job_leaves_no_empty_partial_folder(job, tmp_path):
    root, args, env = job
    out = tmp_path / "out.csv"
    result = suite("score", "medical", "--model", str(root / "model"), "--input", str(tmp_path / "absent"),
                   "--output", str(out), env=env)
    assert result.code == 2 and not out.with_name("out.csv.partial").exists()


class _Planted:
    def __reduce__(self):
        return (os.system, ("echo planted > /dev/null",))


def test_a_planted_part_file_cannot_run_code(tmp_path):
    partial = PartialResults(tmp_path / "out.csv", {"model": "m"})
    partial.open()
    partial.save(0, {"probabilities": np.arange(3.0)})
    assert np.array_equal(partial.load(0)["probabilities"], np.arange(3.0))
    (partial.folder / "part-000001.pkl").write_bytes(pickle.dumps(_Planted()))
    with pytest.raises(InputError, match="unreadable partial result .*refusing posix.system"):
        partial.load(1)


def test_another_job_refuses_to_mix(tmp_path):
    PartialResults(tmp_path / "out.csv", {"model": "a", "input": "x"}).open()
    with pytest.raises(InputError, match=r"another scoring job \(differs in: model\)"):
        PartialResults(tmp_path / "out.csv", {"model": "b", "input": "x"}).open()
    PartialResults(tmp_path / "out.csv", {"model": "a", "input": "x"}).open()  # the same job: fine
    assert Path(tmp_path / "out.csv.partial" / "manifest.json").is_file()


# Fraud scores in one process in parts of rows (apps.fraud.scorer.ROWS_PER_PART, 262,144): the job runs
# with 500-row parts, each held back 0.2 s, so that a 5,000-row file has ten parts and time to be killed.
_SMALL_PARTS = _with_small_parts("apps.fraud.scorer", "ROWS_PER_PART", 500, "predict_rows", 0.2)


@pytest.fixture(scope="module")
def fraud_job(tmp_path_factory):
    from random_fraud_model import TINY, random_scorer

    from apps.fraud.synthetic import generate_paysim
    from pipelines.fraud import MLFLOW_ENTRY

    root = tmp_path_factory.mktemp("fraud_score_resume")
    raw = generate_paysim(TINY, seed=5)
    raw.to_csv(root / "day.csv", index=False)
    bundle = random_scorer(raw).save(root / "bundle")
    mlflow.pyfunc.save_model(str(root / "model"), python_model=MLFLOW_ENTRY, artifacts={"bundle": str(bundle)},
                             pip_requirements=[])
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "OMP_NUM_THREADS": "1",
           "PARTS_SCORED": str(root / "straight.parts")}
    args = ["score", "fraud", "--model", str(root / "model"), "--input", str(root / "day.csv")]
    straight = subprocess.run([sys.executable, "-c", _SMALL_PARTS, *args, "--output", str(root / "straight.csv")],
                              env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    return root, args, env


def test_killed_fraud_scoring_resumes_from_its_row_parts_to_the_same_bytes(fraud_job):
    root, args, env = fraud_job
    assert len((root / "straight.parts").read_text().split()) == 10  # 5,000 rows in 500-row parts
    out = root / "killed.csv"
    command = [sys.executable, "-c", _SMALL_PARTS, *args, "--output", str(out)]
    kept = _kill_after_parts(command, {**env, "PARTS_SCORED": str(root / "killed.parts")}, out)
    partial = out.with_name(out.name + ".partial")
    assert 2 <= kept < 10 and not out.exists(), f"killed mid-job: {kept} of 10 parts kept, no output yet"

    resumed = subprocess.run(command, env={**env, "PARTS_SCORED": str(root / "resumed.parts")}, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len((root / "resumed.parts").read_text().split()) == 10 - kept  # only what the kill left undone
    assert out.read_bytes() == (root / "straight.csv").read_bytes()
    assert not partial.exists()


# Driving scores chunks of frames (apps.driving.scorer.FRAMES_PER_READ, 64): the job runs with 2-frame
# chunks, each held back 0.3 s and logged to $PARTS_SCORED, so that 12 frames make six parts.
_SMALL_CHUNKS = _with_small_parts("apps.driving.scorer", "FRAMES_PER_READ", 2, "score_chunk", 0.3)


def test_killed_driving_scoring_resumes_from_its_chunks_to_the_same_files(tmp_path):
    from apps.driving.model import PointPillarsNet
    from apps.driving.scorer import DrivingScorer
    from apps.driving.synthetic import write_synthetic_kitti
    from common.config import load_config
    from pipelines.driving import MLFLOW_ENTRY, DrivingConfig
    from pipelines.runner import CONFIG_DIR

    torch.manual_seed(0)
    cfg = load_config(DrivingConfig, CONFIG_DIR / "driving.yaml", ["model.fusion=none"])
    data = write_synthetic_kitti(tmp_path / "kitti", seed=3, n_frames=12)
    net = PointPillarsNet(cfg.model, cfg.grid)
    torch.nn.init.constant_(net.heatmap.bias, 0.0)  # an untrained head that fires: boxes in every file
    bundle = DrivingScorer(net, None, cfg.model, cfg.grid, cfg.head).save(tmp_path / "bundle")
    mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=MLFLOW_ENTRY, artifacts={"bundle": str(bundle)},
                             pip_requirements=[])
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", _SMALL_CHUNKS, "score", "driving", "--model", str(tmp_path / "model"),
            "--input", str(data)]

    def run(output: str, log: str) -> subprocess.CompletedProcess:
        return subprocess.run([*args, "--output", str(tmp_path / output)], capture_output=True, text=True,
                              env={**env, "PARTS_SCORED": str(tmp_path / log)}, timeout=600)

    straight = run("straight", "straight.parts")
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert len((tmp_path / "straight.parts").read_text().split()) == 6

    out = tmp_path / "killed"
    kept = _kill_after_parts([*args, "--output", str(out)], {**env, "PARTS_SCORED": str(tmp_path / "k.parts")}, out)
    partial = out.with_name(out.name + ".partial")
    assert 2 <= kept < 6 and not out.exists(), f"killed mid-job: {kept} of 6 chunks kept, no output yet"

    resumed = run("killed", "resumed.parts")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len((tmp_path / "resumed.parts").read_text().split()) == 6 - kept  # only what the kill left undone
    names = sorted(p.name for p in (tmp_path / "straight").iterdir())
    assert len(names) == 12 and names == sorted(p.name for p in out.iterdir()) and not partial.exists()
    assert sum((tmp_path / "straight" / n).stat().st_size for n in names) > 0, "the random detector found boxes"
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
