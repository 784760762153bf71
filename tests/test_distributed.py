"""`suite run DOMAIN --nproc 2`: torchrun with two CPU ranks (gloo) trains, logs one run and ends with equal weights."""
from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from suite_cli import Result, assert_clear_error, suite

import mlflow

# One intra-op thread per rank: the machine has 2 cores, and with one thread the CPU kernels are deterministic.
BASE_ENV = {"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
FRAUD_RESUME_SETTINGS = ["--set", "train.epochs=3", "--set", "train.patience=5"]


def _store(root: Path) -> dict[str, str]:
    return {**BASE_ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "SUITE_CHECKPOINT_DIR": str(root / "ckpt")}


def _client(env: dict[str, str]) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


def _runs(env: dict[str, str], experiment: str) -> list:
    client = _client(env)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs([found.experiment_id])


def _stdout_metrics(result: Result) -> dict[str, float]:
    """The `test_*: value` lines the CLI prints (4 decimals)."""
    metrics = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("test_"):
            metrics[key] = float(value)
    return metrics


def _digests(folder: Path) -> dict[int, dict[str, str]]:
    """rank -> {stage: sha256} from the trainer's SUITE_WEIGHTS_DIGEST_DIR files."""
    out = {}
    for path in sorted(folder.glob("rank*.txt")):
        stages = {}
        for line in path.read_text().splitlines():
            stage, digest = line.split()
            assert stage not in stages, f"stage {stage} reported twice in {path}"
            stages[stage] = digest
        out[int(path.stem.removeprefix("rank"))] = stages
    return out


def _assert_equal_weights(folder: Path, stages: int) -> dict[str, str]:
    digests = _digests(folder)
    assert sorted(digests) == [0, 1], digests
    assert len(digests[0]) == stages, digests
    assert digests[0] == digests[1], digests
    return digests[0]


def _assert_one_finished_run(env: dict[str, str], experiment: str, result: Result, key_metric: str):
    assert result.code == 0, (result.stdout[-2000:], result.stderr[-3000:])
    runs = _runs(env, experiment)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    assert run.info.run_id == result.value("run_id")
    assert run.info.status == "FINISHED"
    assert run.data.tags.get("suite.world_size") == "2", run.data.tags
    printed = _stdout_metrics(result)
    logged = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    assert key_metric in printed and key_metric in logged, (result.stdout, logged)
    # a nan (nothing to measure, e.g. driving's heading error with no detections) is printed, not logged
    finite = {k: v for k, v in printed.items() if math.isfinite(v)}
    assert finite.keys() == logged.keys(), (printed, logged)
    for key, value in finite.items():
        assert abs(logged[key] - value) <= 5e-5, (key, logged[key], value)
    assert result.value("registered").startswith("models:/"), result.stdout
    return run


# --------------------------------------------------------------------------------------------------
# 1. fraud and medical: one run, world_size tag, registered model, equal weights, 2 epochs logged
# --------------------------------------------------------------------------------------------------
SMALL = {
    # domain: (synth args, data path inside the synth folder ("" = the folder), key test metric)
    "fraud": (["--scale", "small", "--seed", "5"], "transactions.csv", "test_auc"),
    "medical": (["--seed", "11"], "", "test_cpm"),
}


@pytest.mark.parametrize("domain", sorted(SMALL))
def test_two_ranks_train_one_run_with_equal_weights(domain, tmp_path):
    synth_args, data_name, key_metric = SMALL[domain]
    env = _store(tmp_path)
    made = suite("synth", domain, "--out", str(tmp_path / "data"), *synth_args, env=env)
    assert made.code == 0, made.stderr[-2000:]
    data = tmp_path / "data" / data_name if data_name else tmp_path / "data"
    digests = tmp_path / "digests"
    result = suite("run", domain, "--data", str(data), "--nproc", "2", "--set", "train.epochs=2",
                   env={**env, "SUITE_WEIGHTS_DIGEST_DIR": str(digests)})
    run = _assert_one_finished_run(env, domain, result, key_metric)
    _assert_equal_weights(digests, stages=1)
    history = _client(env).get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1], [(m.step, m.value) for m in history]


# --------------------------------------------------------------------------------------------------
# 2. a --nproc 2 fraud run killed with SIGKILL (launcher and ranks) and resumed ends where a straight one does
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fraud_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed-resume")
    env = _store(root)
    made = suite("synth", "fraud", "--out", str(root / "data"), "--scale", "small", "--seed", "5", env=env)
    assert made.code == 0, made.stderr
    return root, env, root / "data" / "transactions.csv"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (via /proc children lists), taken while it still runs."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _test_metrics(env: dict[str, str], run_id: str) -> dict[str, float]:
    """Full-precision test metrics from the store (the CLI prints 4 decimals)."""
    return {k: v for k, v in _client(env).get_run(run_id).data.metrics.items() if k.startswith("test_")}


def test_sigkilled_two_rank_run_resumes_to_the_same_metrics_and_run(fraud_store):
    root, env, data = fraud_store
    straight = suite("run", "fraud", "--data", str(data), "--experiment", "straight", "--nproc", "2",
                     *FRAUD_RESUME_SETTINGS, env={**env, "SUITE_WEIGHTS_DIGEST_DIR": str(root / "dig-straight")})
    assert straight.code == 0, straight.stderr[-3000:]
    assert not (root / "ckpt" / "straight" / straight.value("run_id")).exists()  # finished: nothing left behind

    job = subprocess.Popen([sys.executable, "-m", "pipelines", "run", "fraud", "--data", str(data), "--experiment",
                            "killed", "--nproc", "2", *FRAUD_RESUME_SETTINGS], env={**os.environ, **env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoints = root / "ckpt" / "killed"
    deadline = time.monotonic() + 300
    try:
        while not list(checkpoints.glob("*/last.pt")) and job.poll() is None:
            assert time.monotonic() < deadline, "no last.pt within 300 s"
            time.sleep(0.2)
        assert job.poll() is None, f"the job ended (status {job.returncode}) before it could be killed"
        time.sleep(random.Random(0).uniform(0, 2))  # somewhere inside a later epoch (or its checkpoint write)
        ranks = _descendants(job.pid)
    finally:
        if job.poll() is None:
            os.killpg(os.getpgid(job.pid), signal.SIGKILL)
        job.wait()
    # torchrun puts its ranks in sessions of their own: they must die with the launcher (PR_SET_PDEATHSIG)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [pid for pid in ranks if _alive(pid)]
    for pid in survivors:  # don't leave them behind, but fail
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"rank processes outlived the killed launcher: {survivors}"
    assert ranks, "no rank processes were seen under the launcher"
    (run_dir,) = [d for d in checkpoints.iterdir() if d.is_dir()]

    resumed = suite("run", "fraud", "--data", str(data), "--experiment", "killed", "--resume", "--nproc", "2",
                    *FRAUD_RESUME_SETTINGS, env={**env, "SUITE_WEIGHTS_DIGEST_DIR": str(root / "dig-resumed")})
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert resumed.value("run_id") == run_dir.name
    run = _client(env).get_run(run_dir.name)
    assert run.info.status == "FINISHED"
    assert run.data.tags.get("suite.world_size") == "2"
    assert len(_runs(env, "killed")) == 1
    history = _client(env).get_metric_history(run_dir.name, "train_loss")
    assert sorted({m.step for m in history}) == [0, 1, 2], [(m.step, m.value) for m in history]
    assert not run_dir.exists()

    expected = _test_metrics(env, straight.value("run_id"))
    got = _test_metrics(env, run_dir.name)
    assert expected.keys() == got.keys() and "test_auc" in got
    for key in expected:
        assert abs(expected[key] - got[key]) <= 1e-6, (key, expected[key], got[key])
    # and the same final weights on every rank, equal to the straight run's (fraud names its one stage by run id)
    resumed_weights = _assert_equal_weights(root / "dig-resumed", 1)
    straight_weights = _assert_equal_weights(root / "dig-straight", 1)
    assert list(resumed_weights.values()) == list(straight_weights.values()), (resumed_weights, straight_weights)


# --------------------------------------------------------------------------------------------------
# 3. driving: two stages (camera, lidar), both equal on both ranks
# --------------------------------------------------------------------------------------------------
def test_driving_two_ranks_train_both_stages_with_equal_weights(tmp_path):
    env = _store(tmp_path)
    from apps.driving.synthetic import write_synthetic_kitti

    write_synthetic_kitti(tmp_path / "data", seed=5, n_frames=24)  # small: the point is the two ranks
    digests = tmp_path / "digests"
    result = suite("run", "driving", "--data", str(tmp_path / "data"), "--nproc", "2", "--set", "train.epochs=1",
                   "--set", "camera_train.epochs=1", env={**env, "SUITE_WEIGHTS_DIGEST_DIR": str(digests)},
                   timeout=600)
    _assert_one_finished_run(env, "driving", result, "test_ap_bev")
    _assert_equal_weights(digests, stages=2)


# --------------------------------------------------------------------------------------------------
# 4. bad launcher flags: exit 2, one line, before torchrun starts anything
# --------------------------------------------------------------------------------------------------
def test_nproc_zero_is_one_line(tmp_path):
    assert_clear_error(suite("run", "fraud", "--nproc", "0", env=_store(tmp_path)), "--nproc")


def test_nnodes_without_rdzv_endpoint_is_one_line(tmp_path):
    assert_clear_error(suite("run", "fraud", "--nnodes", "2", env=_store(tmp_path)), "--rdzv-endpoint")
