"""Fraud: LSTM+GAT vs gradient boosting vs per-row logistic regression, the ablations, and throughput."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from apps.fraud.features import row_features, time_order
from apps.fraud.reader import read_paysim
from apps.fraud.scorer import FraudScorer
from apps.fraud.synthetic import write_synthetic_paysim
from benchmarks.common import OUT, markdown_table, peak_rss_mb, timer
from common.config import load_config
from common.metrics import binary_metrics
from pipelines.fraud import DOMAIN, FraudConfig, temporal_split
from pipelines.runner import CONFIG_DIR

VARIANTS = {"LSTM+GAT": [], "LSTM only (model.graph=false)": ["model.graph=false"],
            "GAT only (model.sequence=false)": ["model.sequence=false"]}


def account_aggregates(df: pd.DataFrame) -> np.ndarray:
    """Causal per-account aggregates for the tree baseline: counts and mean amounts before each row."""
    cols = []
    for key in ("nameOrig", "nameDest"):
        group = df.groupby(key, sort=False)["amount"]
        count = group.cumcount().to_numpy()
        total = (group.cumsum() - df["amount"]).to_numpy()
        cols += [count, total / np.maximum(count, 1)]
    pair = df.groupby(["nameOrig", "nameDest"], sort=False).cumcount().to_numpy()
    return np.c_[np.stack(cols, 1), pair]


def run(scale: str, epochs: int) -> str:
    data_dir = OUT / f"fraud_{scale}"
    path = data_dir / "transactions.csv"
    if not path.exists():
        write_synthetic_paysim(data_dir, scale, seed=1)
    with timer() as t_read:
        raw = read_paysim(path)
    df = raw.iloc[time_order(raw)].reset_index(drop=True)
    y = df["isFraud"].to_numpy()
    train, _, test = temporal_split(df["step"].to_numpy(), 0.15, 0.15)
    rows = []

    per_row = row_features(df)
    for name, model, x in (
        ("logistic regression, per-row features",
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), per_row),
        ("HistGradientBoosting, per-row + account aggregates", HistGradientBoostingClassifier(random_state=0),
         np.c_[per_row, account_aggregates(df)]),
    ):
        with timer() as t:
            model.fit(x[train], y[train])
        m = binary_metrics(y[test], model.predict_proba(x[test])[:, 1])
        rows.append({"model": name, "test AUC": m["auc"], "recall@1%FPR": m["recall_at_1pct_fpr"],
                     "PR-AUC": m["pr_auc"], "train s": t["seconds"]})

    scorer = None
    for name, overrides in VARIANTS.items():
        cfg = load_config(FraudConfig, CONFIG_DIR / "fraud.yaml", [f"train.epochs={epochs}", *overrides])
        with tempfile.TemporaryDirectory() as work, timer() as t:
            trained = DOMAIN.fit(cfg, path, Path(work), False, lambda e, m: None)
            if scorer is None:
                scorer = FraudScorer.load(trained.artifacts["bundle"])
        m = trained.test_metrics
        rows.append({"model": name, "test AUC": m["auc"], "recall@1%FPR": m["recall_at_1pct_fpr"],
                     "PR-AUC": m["pr_auc"], "train s": t["seconds"]})

    scoring_input = raw.drop(columns=["isFraud", "isFlaggedFraud"])
    with timer() as t_score:
        scorer.predict_proba(scoring_input, batch_size=4096)
    return "\n".join([
        f"### Fraud ({scale} synthetic PaySim: {len(df):,} rows, {y.mean():.2%} fraud; "
        f"train {len(train):,} / test {len(test):,} rows by step; {epochs} epochs)",
        "", markdown_table(rows), "",
        f"- read + validate the CSV: {t_read['seconds']:.1f} s ({len(df) / t_read['seconds']:,.0f} rows/s)",
        f"- scoring with LSTM+GAT (features, history, graph and network, batch 4096): {t_score['seconds']:.1f} s "
        f"= **{len(df) / t_score['seconds']:,.0f} rows/s**",
        f"- peak resident memory of the benchmark process: {peak_rss_mb():,.0f} MB",
    ])
