"""A training job killed with SIGKILL and resumed ends exactly where an uninterrupted one does, in the same run.

One test per domain (driving is killed twice: in its camera stage and in its LiDAR stage).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from suite_cli import Started, assert_clear_error, suite

import mlflow

# domain: (synth scale, settings, the checkpoint files to kill after, in order)
JOBS = {
    "fraud": ("small", ["--set", "train.epochs=3", "--set", "train.patience=5"], ["last.pt"]),
    "medical": ("small", ["--set", "train.epochs=3", "--set", "train.patience=5"], ["last.pt"]),
    "driving": ("small", ["--set", "train.epochs=2", "--set", "camera_train.epochs=2", "--set", "train.patience=5",
                          "--set", "camera_train.patience=5"], ["camera/last.pt", "lidar/last.pt"]),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    # One intra-op thread: multi-threaded CPU scatter sums in the GAT round differently from run to run
    # (~1e-5 in AUC); with one thread the kernels are deterministic and the resume must be exact.
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "SUITE_CHECKPOINT_DIR": str(root / "ckpt"),
           "OMP_NUM_THREADS": "1"}
    return root, env


def _data(root: Path, env: dict[str, str], domain: str) -> Path:
    out = root / f"data-{domain}"
    if not out.exists() and domain == "driving":  # 24 frames keep two stages, two kills and a resume short
        from apps.driving.synthetic import write_synthetic_kitti

        write_synthetic_kitti(out, seed=5, n_frames=24)
    elif not out.exists():
        made = suite("synth", domain, "--out", str(out), "--scale", JOBS[domain][0], "--seed", "5", env=env)
        assert made.code == 0, made.stderr
    return out / "transactions.csv" if domain == "fraud" else out


def _test_metrics(env: dict[str, str], run_id: str) -> dict[str, float]:
    """Full-precision test metrics from the store (the CLI prints 4 decimals)."""
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    return {k: v for k, v in client.get_run(run_id).data.metrics.items() if k.startswith("test_")}


def _kill_after(command: list[str], env: dict[str, str], checkpoint: str, folder: Path, seed: int) -> None:
    """Start the job, wait for `checkpoint` in its run folder, let it run on a random while, SIGKILL it."""
    job = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list(folder.glob(f"*/{checkpoint}")) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    assert job.poll() is None, "the job ended before it could be killed"
    time.sleep(random.Random(seed).uniform(0, 2))  # inside a later epoch, or its checkpoint write
    job.send_signal(signal.SIGKILL)
    job.wait()


@pytest.mark.parametrize("domain", sorted(JOBS))
def test_sigkill_then_resume_gives_the_same_metrics_and_run(store, domain):
    root, env = store
    data = _data(root, env, domain)
    settings, checkpoints = JOBS[domain][1], JOBS[domain][2]
    base = ["run", domain, "--data", str(data), *settings]
    # The uninterrupted run goes on beside the killed one: each has one thread, and the machine two cores.
    killed = root / "ckpt" / f"{domain}-killed"
    command = [sys.executable, "-m", "pipelines", *base, "--experiment", f"{domain}-killed"]
    with Started(*base, "--experiment", f"{domain}-straight", env=env) as running:
        for i, checkpoint in enumerate(checkpoints):  # each stage killed once; the later kills resume first
            _kill_after(command + (["--resume"] if i else []), env, checkpoint, killed, seed=i)
        straight = running.result()
    (run_dir,) = [d for d in killed.iterdir() if d.is_dir()]
    assert straight.code == 0, straight.stderr[-2000:]
    assert not (root / "ckpt" / f"{domain}-straight" / straight.value("run_id")).exists()  # finished: none left

    if domain == "fraud":
        changed = suite(*base, "--experiment", f"{domain}-killed", "--resume", "--set", "train.lr=0.01", env=env)
        assert_clear_error(changed, "train.lr")
    resumed = suite(*base, "--experiment", f"{domain}-killed", "--resume", env=env)
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert resumed.value("run_id") == run_dir.name
    expected = _test_metrics(env, straight.value("run_id"))
    got = _test_metrics(env, resumed.value("run_id"))
    assert expected.keys() == got.keys() and len(got) > 3
    for key in expected:
        assert abs(expected[key] - got[key]) <= 1e-6, (key, expected[key], got[key])
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    assert client.get_run(run_dir.name).info.status == "FINISHED"
    assert not run_dir.exists()


def test_resume_of_an_unknown_run_is_one_line(store):
    root, env = store
    result = suite("run", "fraud", "--data", str(_data(root, env, "fraud")), "--resume-run", "0123abcd", env=env)
    assert_clear_error(result, "no checkpoint of run 0123abcd")


# The CLI exactly as `python -m pipelines` runs it, but the 2nd write of `last.pt` (epoch 2's) stops with its
# bytes in the temp file, written and fsync'ed, before the rename: it marks $PAUSE_MARKER and sleeps to be killed.
_PAUSE_IN_CHECKPOINT_WRITE = """
import os, runpy, time
from pathlib import Path
import common.io
fsync_path, writes = common.io.fsync_path, []
def paused(path):
    fsync_path(path)
    name = Path(path).name
    if name.startswith(".last.pt.") and name.endswith(".tmp"):
        writes.append(path)
        if len(writes) == 2:
            Path(os.environ["PAUSE_MARKER"] + ".part").write_text(str(path))
            os.replace(os.environ["PAUSE_MARKER"] + ".part", os.environ["PAUSE_MARKER"])
            time.sleep(600)
common.io.fsync_path = paused
runpy.run_module("pipelines", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("domain", ["fraud", pytest.param("medical", marks=pytest.mark.slow),
                                    pytest.param("driving", marks=pytest.mark.slow)])
def test_sigkill_during_the_checkpoint_write_then_resume_gives_the_same_metrics_and_run(store, domain):
    """`make test` kills fraud in its checkpoint write; `make test-slow` every domain (driving: in its camera
    stage, whose checkpoint is written first)."""
    root, env = store
    base = ["run", domain, "--data", str(_data(root, env, domain)), *JOBS[domain][1]]
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    done = client.get_experiment_by_name(f"{domain}-straight")  # the straight run of the test above, when it ran
    runs = client.search_runs([done.experiment_id], "attributes.status = 'FINISHED'") if done else []
    if runs:
        straight_id = runs[0].info.run_id
    else:
        straight = suite(*base, "--experiment", f"{domain}-straight-ckw", env=env)
        assert straight.code == 0, straight.stderr[-2000:]
        straight_id = straight.value("run_id")

    marker = root / f"{domain}-paused-in-checkpoint-write"
    command = [sys.executable, "-c", _PAUSE_IN_CHECKPOINT_WRITE, *base, "--experiment", f"{domain}-killed-ckw"]
    log = root / f"{domain}-killed-ckw.log"  # a file, not a pipe: progress bars must not fill it and block the job
    with open(log, "w") as err:
        job = subprocess.Popen(command, env={**os.environ, **env, "PAUSE_MARKER": str(marker)},
                               stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 600
        while not marker.exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.2)
        assert marker.exists() and job.poll() is None, ("no pause in the 2nd write", log.read_text()[-2000:])
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()

    tmp = Path(marker.read_text())
    (run_dir,) = (root / "ckpt" / f"{domain}-killed-ckw").iterdir()
    assert tmp.is_file() and tmp.stat().st_size > 0  # the killed write's bytes, never renamed
    assert torch.load(tmp.parent / "last.pt", map_location="cpu", weights_only=False)["epoch"] == 0  # the old one

    resumed = suite(*base, "--experiment", f"{domain}-killed-ckw", "--resume", env=env)
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert f"resuming run {run_dir.name}" in resumed.stdout
    assert resumed.value("run_id") == run_dir.name
    expected, got = _test_metrics(env, straight_id), _test_metrics(env, run_dir.name)
    assert expected.keys() == got.keys() and len(got) > 3
    for key in expected:
        assert abs(expected[key] - got[key]) <= 1e-6, (key, expected[key], got[key])
    assert client.get_run(run_dir.name).info.status == "FINISHED"
    assert not run_dir.exists()  # the leftover temp file went with the folder
