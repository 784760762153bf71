"""`suite score fraud --context PAST`: earlier transactions feed histories and the graph, are not written out.

The model is randomly initialised (equality does not need a trained one) with both branches on: the LSTM
over account histories and the GAT over the past money graph, so the context reaches both.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from random_fraud_model import TINY, random_scorer
from suite_cli import Result, assert_clear_error, suite
from typer.testing import CliRunner

import mlflow
from apps.fraud.model import FraudModelConfig
from apps.fraud.scorer import CONTEXT_ROWS_PARAM, SCORE_COLUMN
from apps.fraud.synthetic import generate_paysim
from common.errors import InputError
from pipelines.cli import app
from pipelines.fraud import MLFLOW_ENTRY, model_input_example

CUT = 60  # PAST: steps up to 60 (the first half of step 60), NEW: the rest (ties at step 60 are allowed)
LABELS = ["isFraud", "isFlaggedFraud"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """PAST and NEW files, PAST + NEW as one file, a random model saved as an MLflow model folder."""
    root = tmp_path_factory.mktemp("fraud_context")
    raw = generate_paysim(TINY, seed=5)
    at_cut = np.flatnonzero(raw["step"].to_numpy() == CUT)
    past_mask = raw["step"].to_numpy() < CUT
    past_mask[at_cut[: len(at_cut) // 2]] = True
    past = raw[past_mask].reset_index(drop=True)
    # NEW as a user might have it: no labels, an extra column, rows not in time order.
    new = raw[~past_mask].drop(columns=LABELS).sample(frac=1.0, random_state=0).reset_index(drop=True)
    new.insert(2, "branch", [f"B{i % 7}" for i in range(len(new))])
    past.to_csv(root / "past.csv", index=False)
    new.to_csv(root / "new.csv", index=False)
    pd.concat([past.drop(columns=LABELS), new], ignore_index=True).to_csv(root / "past_new.csv", index=False)
    # PAST again as a folder of two files, read in name order: a CSV with labels, a Parquet without.
    folder = root / "past_folder"
    folder.mkdir()
    half = len(past) // 2
    past.iloc[:half].to_csv(folder / "day_a.csv", index=False)
    past.iloc[half:].drop(columns=LABELS).assign(note="x").to_parquet(folder / "day_b.parquet", index=False)
    (folder / ".day_c.csv").write_text("not,a,paysim,file\n")
    (folder / "_SUCCESS").write_text("")

    bundle = random_scorer(raw).save(root / "bundle")
    model_dir = root / "model"
    mlflow.pyfunc.save_model(str(model_dir), python_model=MLFLOW_ENTRY, artifacts={"bundle": str(bundle)},
                             input_example=model_input_example(raw), pip_requirements=[])
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    return {"root": root, "raw": raw, "past": past, "new": new, "model": str(model_dir), "env": env}


def cli_score(world, input_name, output_name, context=None):
    args = ["score", "fraud", "--model", world["model"], "--input", str(world["root"] / input_name),
            "--output", str(world["root"] / output_name)]
    return suite(*args, *([] if context is None else ["--context", str(world["root"] / context)]), env=world["env"])


@pytest.fixture(scope="module")
def scored(world):
    """The CLI runs, as users start them (side by side, to keep the suite fast)."""
    root = world["root"]
    world["raw"][world["raw"]["step"] > CUT + 10].to_csv(root / "future.csv", index=False)
    jobs = {
        "whole": ("past_new.csv", "whole.csv", None), "file": ("new.csv", "with_file.csv", "past.csv"),
        "folder": ("new.csv", "with_folder.parquet", "past_folder"), "future": ("new.csv", "refused.csv", "future.csv"),
    }
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        running = {k: pool.submit(cli_score, world, *job) for k, job in jobs.items()}
        results = {k: f.result() for k, f in running.items()}
    frames = {}
    for kind, (_, output, _) in jobs.items():
        if kind == "future":
            continue
        assert results[kind].code == 0, (kind, results[kind].stderr[-2000:])
        frames[kind] = pd.read_parquet(root / output) if output.endswith(".parquet") else pd.read_csv(root / output)
    # Without context, in process (the same score_file the CLI calls; the CLI runs above cost seconds each).
    python_model = mlflow.pyfunc.load_model(world["model"]).unwrap_python_model()
    line = python_model.score_file(root / "new.csv", root / "alone.csv", 4096)
    results["alone"] = Result(0, line + "\n", "")
    frames["alone"] = pd.read_csv(root / "alone.csv")
    return {**frames, "results": results}


@pytest.fixture(scope="module")
def python_model(world):
    return mlflow.pyfunc.load_model(world["model"]).unwrap_python_model()


def test_new_with_context_equals_past_plus_new_in_one_file(world, scored):
    expected = scored["whole"][SCORE_COLUMN].to_numpy()[len(world["past"]):]
    for kind in ("file", "folder"):
        got = scored[kind][SCORE_COLUMN].to_numpy()
        assert np.abs(got - expected).max() <= 1e-6, kind


def test_output_is_exactly_the_input_rows_and_columns_plus_the_probability(world, scored):
    new = pd.read_csv(world["root"] / "new.csv")
    for kind in ("file", "folder", "alone"):
        out = scored[kind]
        assert list(out.columns) == [*new.columns, SCORE_COLUMN]
        pd.testing.assert_frame_equal(out.drop(columns=SCORE_COLUMN), new, check_dtype=kind != "folder")
        assert out[SCORE_COLUMN].between(0, 1).all()
    assert f"scored {len(new):,} transactions" in scored["results"]["folder"].stdout
    assert f"with {len(world['past']):,} context rows" in scored["results"]["folder"].stdout


def test_scores_with_context_differ_from_scores_without(world, scored):
    """The context is really used: the same rows score differently without their history."""
    diff = np.abs(scored["file"][SCORE_COLUMN] - scored["alone"][SCORE_COLUMN]).to_numpy()
    assert diff.max() > 1e-3 and (diff > 1e-6).mean() > 0.3
    assert "sending accounts (nameOrig) have no earlier transaction in the input" in scored["results"]["alone"].stdout


@pytest.mark.parametrize("branch", ["sequence", "graph"])
def test_each_branch_alone_sees_the_context(world, branch):
    """Neither the history LSTM nor the past-graph GAT is left out: each alone changes with context
    and each alone keeps the equality with PAST + NEW in one file."""
    cfg = FraudModelConfig(hidden=16, gat_heads=2, sequence=branch == "sequence", graph=branch == "graph")
    scorer = random_scorer(world["raw"], cfg)
    past, new = world["past"], world["new"]
    whole = scorer.predict_proba(pd.concat([past.drop(columns=LABELS), new], ignore_index=True))[len(past):]
    with_context = scorer.predict_proba(new, context=past)
    assert np.abs(with_context - whole).max() <= 1e-6
    assert np.abs(with_context - scorer.predict_proba(new)).max() > 1e-4


def test_pyfunc_with_context_rows_param_equals_the_cli(world, scored):
    model = mlflow.pyfunc.load_model(world["model"])
    assert [p.name for p in model.metadata.get_params_schema().params] == [CONTEXT_ROWS_PARAM]
    past, new = world["past"].drop(columns=LABELS), world["new"].drop(columns="branch")
    frame = pd.concat([past, new], ignore_index=True)
    got = model.predict(frame, params={CONTEXT_ROWS_PARAM: len(past)})
    assert list(got.columns) == [SCORE_COLUMN] and len(got) == len(new)
    np.testing.assert_allclose(got[SCORE_COLUMN].to_numpy(), scored["file"][SCORE_COLUMN].to_numpy(), atol=1e-6)
    # Without the param every row is scored, as one file (PAST + NEW), as before.
    plain = model.predict(frame)
    np.testing.assert_allclose(plain[SCORE_COLUMN].to_numpy(), scored["whole"][SCORE_COLUMN].to_numpy(), atol=1e-6)
    with pytest.raises(Exception, match="later than the input's first step"):
        model.predict(pd.concat([new, past], ignore_index=True), params={CONTEXT_ROWS_PARAM: len(new)})
    with pytest.raises(Exception, match=CONTEXT_ROWS_PARAM):
        model.predict(frame, params={CONTEXT_ROWS_PARAM: len(frame)})


def test_context_later_than_the_input_is_refused_naming_the_file(world, scored, python_model):
    assert_clear_error(scored["results"]["future"], "future.csv", "later than the input's first step")
    assert not (world["root"] / "refused.csv").exists()
    folder = world["root"] / "mixed_folder"
    folder.mkdir()
    world["past"].to_csv(folder / "a_past.csv", index=False)
    (world["root"] / "future.csv").rename(folder / "b_future.csv")
    with pytest.raises(InputError, match="later than the input's first step") as refused:
        python_model.score_file(world["root"] / "new.csv", world["root"] / "refused.csv", 4096, context_path=folder)
    assert refused.value.path == str(folder / "b_future.csv")
    assert not (world["root"] / "refused.csv").exists()


def test_context_is_fraud_only_and_a_folder_without_paysim_files_is_refused(world, python_model, tmp_path):
    # In process: the CLI refuses before it loads any model or touches the tracking store.
    ran = CliRunner().invoke(app, ["score", "medical", "--model", world["model"], "--input", str(tmp_path),
                                   "--output", str(tmp_path / "out.csv"), "--context", str(world["root"] / "past.csv")])
    assert_clear_error(Result(ran.exit_code, ran.stdout, ran.stderr), "--context", "fraud only")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.csv").write_text(HEADER)
    with pytest.raises(InputError, match="no PaySim file"):
        python_model.score_file(world["root"] / "new.csv", tmp_path / "out.csv", 4096, context_path=tmp_path / "empty")


HEADER = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest\n"


def test_summary_counts_senders_without_earlier_transactions(python_model, tmp_path):
    """Hand-made: C1 sent and C2 received in the context; in the input C3 is new, C4 received before it sends."""
    (tmp_path / "context.csv").write_text(HEADER + "1,PAYMENT,10,C1,100,90,M1,0,0\n"
                                                   "1,TRANSFER,50,C5,60,10,C2,0,50\n")
    (tmp_path / "input.csv").write_text(HEADER + "2,PAYMENT,10,C1,90,80,M2,0,0\n"
                                                 "2,PAYMENT,5,C3,50,45,M1,0,0\n"
                                                 "3,PAYMENT,5,C3,45,40,M2,0,0\n"
                                                 "3,TRANSFER,20,C2,50,30,C4,0,20\n"
                                                 "4,PAYMENT,5,C4,20,15,M1,0,0\n")
    alone = python_model.score_file(tmp_path / "input.csv", tmp_path / "a.csv", 4096)
    assert "3 of 4 sending accounts (nameOrig) have no earlier transaction in the input" in alone
    assert "--context" in alone
    with_context = python_model.score_file(tmp_path / "input.csv", tmp_path / "b.csv", 4096,
                                            context_path=tmp_path / "context.csv")
    assert "with 2 context rows" in with_context
    assert "1 of 4 sending accounts (nameOrig) have no earlier transaction" in with_context
    assert len(pd.read_csv(tmp_path / "b.csv")) == 5
