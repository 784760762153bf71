"""write_synthetic_paysim: real PaySim format, consistent balances, fraud that needs history and graph."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from apps.fraud.reader import PAYSIM_COLUMNS, read_paysim
from apps.fraud.synthetic import SCALES, write_synthetic_paysim
from common.errors import InputError

RAW_NUMERIC = ["step", "amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest"]
OUTGOING = ["TRANSFER", "CASH_OUT", "PAYMENT", "DEBIT"]
CENT = 0.011  # two-decimal rounding


@pytest.fixture(scope="module")
def small_path(tmp_path_factory):
    return write_synthetic_paysim(tmp_path_factory.mktemp("small"), "small", seed=0)


@pytest.fixture(scope="module")
def frame(small_path):
    return read_paysim(small_path)


def test_small_scale_is_paysim_csv_that_the_reader_accepts(small_path, frame):
    lines = small_path.read_text().splitlines()
    assert small_path.name == "transactions.csv"
    assert lines[0] == ",".join(PAYSIM_COLUMNS)
    assert re.fullmatch(r"\d+,[A-Z_]+,\d+\.\d\d,C\d{9,10},\d+\.\d\d,\d+\.\d\d,[CM]\d{9,10},"
                        r"\d+\.\d\d,\d+\.\d\d,[01],[01]", lines[1])
    assert 40_000 <= len(frame) <= 60_000
    assert frame["step"].min() == 1 and frame["step"].max() <= SCALES["small"].n_steps
    assert frame["step"].is_monotonic_increasing


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, small_path):
    again = write_synthetic_paysim(tmp_path / "again", "small", seed=0)
    other = write_synthetic_paysim(tmp_path / "other", "small", seed=1)

    assert again.read_bytes() == small_path.read_bytes()
    assert other.read_bytes() != small_path.read_bytes()


def test_unknown_scale_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="unknown scale"):
        write_synthetic_paysim(tmp_path, "huge")


def test_fraud_rate_and_types(frame):
    assert 0.005 <= frame["isFraud"].mean() <= 0.02
    assert set(frame.loc[frame["isFraud"] == 1, "type"]) == {"TRANSFER", "CASH_OUT"}


def test_flagged_fraud_follows_paysims_rule(frame):
    rule = (frame["type"] == "TRANSFER") & (frame["amount"] > 200_000)
    assert (frame["isFlaggedFraud"] == rule.astype("int8")).all()


def test_merchants_only_receive_payments_with_zero_balances(frame):
    to_merchant = frame["nameDest"].str.startswith("M")
    assert (frame.loc[to_merchant, "type"] == "PAYMENT").all()
    assert (frame.loc[to_merchant, ["oldbalanceDest", "newbalanceDest"]] == 0).all().all()
    assert frame["nameOrig"].str.startswith("C").all()


def test_origin_balances_are_consistent_except_documented_overdrafts(frame):
    out = frame[frame["type"].isin(OUTGOING)]
    broken = (out["oldbalanceOrg"] - out["amount"] - out["newbalanceOrig"]).abs() > CENT

    # The documented noise: a legit payment larger than the balance, recorded with a new balance of 0.
    assert broken.mean() < 0.10
    noisy = out[broken]
    assert (noisy["isFraud"] == 0).all()
    assert (noisy["newbalanceOrig"] == 0).all() and (noisy["amount"] > noisy["oldbalanceOrg"]).all()

    cash_in = frame[frame["type"] == "CASH_IN"]
    assert ((cash_in["oldbalanceOrg"] + cash_in["amount"] - cash_in["newbalanceOrig"]).abs() <= CENT).all()


def test_customer_balances_carry_over_between_their_transactions(frame):
    """Each customer's old balance is its previous new balance, as origin or as destination."""
    rows = np.arange(len(frame))
    hidden = (frame["oldbalanceDest"] == 0) & (frame["newbalanceDest"] == 0)  # PaySim-style 0/0 noise
    as_orig = pd.DataFrame({"row": rows, "account": frame["nameOrig"], "old": frame["oldbalanceOrg"],
                            "new": frame["newbalanceOrig"], "hidden": False})
    as_dest = pd.DataFrame({"row": rows, "account": frame["nameDest"], "old": frame["oldbalanceDest"],
                            "new": frame["newbalanceDest"], "hidden": hidden})
    customers = set(frame["nameOrig"])  # cash agents and merchants never send
    history = pd.concat([as_orig, as_dest[as_dest["account"].isin(customers)]])
    history = history.sort_values("row", kind="stable")
    previous = history.groupby("account")[["new", "hidden"]].shift()
    comparable = previous["new"].notna() & ~history["hidden"] & ~previous["hidden"].astype(bool)

    assert comparable.sum() > 0.5 * len(frame)
    assert ((history["old"] - previous["new"]).abs()[comparable] <= CENT).all()


def test_customers_transact_many_times(frame):
    assert frame["nameOrig"].value_counts().median() >= 5


def test_mules_receive_from_many_victims_and_cash_out(frame):
    fraud = frame[frame["isFraud"] == 1]
    thefts = fraud[fraud["type"] == "TRANSFER"]
    cash_outs = fraud[fraud["type"] == "CASH_OUT"]

    assert thefts.groupby("nameDest")["nameOrig"].nunique().max() >= 3
    assert set(cash_outs["nameOrig"]) <= set(thefts["nameDest"])
    emptied = thefts[(thefts["newbalanceOrig"] == 0) & (thefts["amount"] > 0)]
    assert len(emptied) > 0.2 * len(thefts)


def test_accounts_are_emptied_legitimately_too(frame):
    legit_empties = frame[(frame["type"] == "TRANSFER") & (frame["isFraud"] == 0)
                          & (frame["newbalanceOrig"] == 0) & (frame["amount"] == frame["oldbalanceOrg"])]
    fraud_empties = frame[(frame["type"] == "TRANSFER") & (frame["isFraud"] == 1)
                          & (frame["newbalanceOrig"] == 0)]
    assert len(legit_empties) >= 0.5 * len(fraud_empties)


def time_split_auc(frame: pd.DataFrame, features: pd.DataFrame, model) -> float:
    """Train on the first 70 % of steps, report AUC on the rest (the contract's split by time)."""
    y = frame["isFraud"].to_numpy()
    train = (frame["step"] <= frame["step"].quantile(0.7)).to_numpy()
    model.fit(features[train], y[train])
    return roc_auc_score(y[~train], model.predict_proba(features[~train])[:, 1])


def logistic() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


def per_row_features(frame: pd.DataFrame) -> pd.DataFrame:
    features = pd.get_dummies(frame["type"]).astype(float).join(np.log1p(frame[RAW_NUMERIC[1:]]))
    features["emptied"] = (frame["newbalanceOrig"] == 0).astype(float)
    features["balance_error_orig"] = frame["oldbalanceOrg"] - frame["amount"] - frame["newbalanceOrig"]
    features["balance_error_dest"] = frame["oldbalanceDest"] + frame["amount"] - frame["newbalanceDest"]
    features["hour"] = (frame["step"] - 1) % 24
    return features


def history_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Past-only features of the two accounts: counterparty novelty and the receiving graph."""
    features = per_row_features(frame)
    pair_is_new = ~(frame["nameOrig"] + ">" + frame["nameDest"]).duplicated()
    features["new_counterparty"] = pair_is_new.astype(float)
    emptied_in = ((frame["type"] == "TRANSFER") & (frame["newbalanceOrig"] == 0)).astype(int)
    features["dest_emptied_senders_before"] = np.log1p(emptied_in.groupby(frame["nameDest"]).cumsum()
                                                       - emptied_in)
    # Distinct senders the origin account had received transfers from before this row (a mule
    # cashing out): count "new sender" events per account, placed just before each row.
    new_sender = (pair_is_new & (frame["type"] == "TRANSFER")).to_numpy()
    n = len(frame)
    events = pd.DataFrame({
        "account": np.concatenate([frame["nameDest"].to_numpy()[new_sender], frame["nameOrig"].to_numpy()]),
        "at": np.concatenate([np.flatnonzero(new_sender), np.arange(n) - 0.5]),
        "count": np.concatenate([np.ones(new_sender.sum()), np.zeros(n)]),
    }).sort_values("at", kind="stable")
    events["before"] = events.groupby("account")["count"].cumsum()
    features["orig_senders_before"] = np.log1p(events.loc[events["count"] == 0, "before"].to_numpy())
    return features


def test_fraud_is_not_separable_per_row_but_learnable_with_history(frame):
    raw_auc = time_split_auc(frame, frame[RAW_NUMERIC], logistic())
    per_row_auc = time_split_auc(frame, per_row_features(frame), logistic())
    history_auc = time_split_auc(frame, history_features(frame), logistic())

    assert 0.6 < raw_auc < 0.99  # the raw columns carry signal, but are far from enough
    assert per_row_auc < 0.97
    assert history_auc > 0.97 and history_auc > per_row_auc + 0.02
