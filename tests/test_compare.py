"""`suite compare` / `suite models` on a local store: experiments found by domain tag, differing params only."""
import json

import numpy as np
import pandas as pd
from suite_cli import assert_clear_error, suite

import mlflow
from common import tracking
from common.metrics import roc_pr_curves
from pipelines.compare import compare_runs, list_models


def _fake_run(experiment: str, auc: float, params: dict, curves: bool = True) -> str:
    experiment_id = tracking.ensure_experiment(experiment)
    mlflow.MlflowClient().set_experiment_tag(experiment_id, tracking.TAG_DOMAIN, "fraud")
    rng = np.random.default_rng(int(auc * 100))
    y = rng.random(400) < 0.2
    scores = y * auc + rng.random(400)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"train.seed": 0, **params})
        mlflow.set_tags({tracking.TAG_DOMAIN: "fraud", tracking.TAG_DATA_FINGERPRINT: "f" * 16})
        tracking.log_metrics({"test_auc": auc, "test_recall": auc / 2, "val_auc": 0.5})
        if curves:
            tracking.log_curves(roc_pr_curves(y, scores))
    return run.info.run_id


def test_runs_of_two_experiments_best_first_with_only_differing_params(tracking_store, tmp_path):
    low = _fake_run("fraud-a", 0.81, {"model.graph": "True", "train.epochs": 4})
    high = _fake_run("fraud-b", 0.93, {"model.graph": "False", "train.epochs": 4})
    legacy = _fake_run("fraud-b", 0.85, {"model.graph": "False", "train.epochs": 4}, curves=False)
    plot = tmp_path / "cmp.png"
    rows = json.loads(compare_runs("fraud", [], None, 10, plot, "json"))
    assert [r["run_id"] for r in rows] == [high, legacy, low]
    assert all(set(r["params"]) == {"model.graph"} for r in rows)
    assert set(rows[0]["metrics"]) == {"test_auc", "test_recall"} and rows[0]["data_fingerprint"] == "f" * 16
    assert plot.stat().st_size > 10_000
    assert set(tracking.load_curves(high)) == {"roc_test", "pr_test"} and tracking.load_curves(legacy) == {}
    only_a = json.loads(compare_runs(None, ["fraud-a"], None, 10, None, "json", ["train.epochs"]))
    assert [r["run_id"] for r in only_a] == [low] and set(only_a[0]["params"]) == {"train.epochs"}
    text = compare_runs("fraud", [], "test_recall", 2, None, "markdown")
    assert text.count(high[:8]) == 1 and low[:8] not in text
    assert "model.graph" not in text  # the two runs shown share it
    table = pd.read_csv(__import__("io").StringIO(compare_runs("fraud", [], None, 10, None, "csv")))
    assert list(table["run_id"]) == [high, legacy, low]


def test_models_lists_versions_with_aliases_and_fingerprints(tracking_store):
    assert json.loads(list_models("fraud", "json")) == []


def test_compare_rejects_unknown_experiment_format_and_metric(tracking_store):
    _fake_run("fraud-a", 0.8, {})  # the store exists, so the subprocesses print nothing about creating it
    assert_clear_error(suite("compare", "--experiment", "nope"), "no experiment named 'nope'")
    assert_clear_error(suite("compare", "--format", "xml"), "unknown format 'xml'")
    assert_clear_error(suite("compare", "fraud", "--metric", "test_nope"), "test_nope")
