"""The yardsticks the deep model is compared with: per-row logistic regression, gradient boosting on
per-row features plus causal account aggregates (the benchmark and the synthetic set's difficulty test)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from apps.fraud.features import row_features


def account_aggregates(df: pd.DataFrame) -> np.ndarray:
    """Causal per-account aggregates: each account's count and mean amount of earlier rows, and how often
    the pair met before. `df` must be in time order."""
    cols = []
    for key in ("nameOrig", "nameDest"):
        group = df.groupby(key, sort=False)["amount"]
        count = group.cumcount().to_numpy()
        total = (group.cumsum() - df["amount"]).to_numpy()
        cols += [count, total / np.maximum(count, 1)]
    pair = df.groupby(["nameOrig", "nameDest"], sort=False).cumcount().to_numpy()
    return np.c_[np.stack(cols, 1), pair]


def with_aggregates(df: pd.DataFrame) -> np.ndarray:
    """Per-row features and the causal account aggregates side by side."""
    return np.c_[row_features(df), account_aggregates(df)]


def baselines(seed: int = 0) -> dict[str, tuple[ClassifierMixin, Callable[[pd.DataFrame], np.ndarray]]]:
    """Name -> (unfitted model, features of a time-ordered frame) for each baseline."""
    return {
        "logistic regression, per-row features":
            (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), row_features),
        "HistGradientBoosting, per-row + account aggregates":
            (HistGradientBoostingClassifier(random_state=seed), with_aggregates),
    }
