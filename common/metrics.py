"""Binary classification metrics on top of scikit-learn, with the threshold chosen on validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

CURVE_POINTS = 200  # rows kept of a logged curve table


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(int).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(f"{len(y_true)} labels but {len(y_score)} scores")
    return y_true, y_score


def recall_at_fpr(y_true: np.ndarray, y_score: np.ndarray, max_fpr: float) -> float:
    """Highest recall reachable while the false-positive rate stays at or below `max_fpr`."""
    y_true, y_score = _check(y_true, y_score)
    if y_true.min() == y_true.max():
        return float("nan")
    fpr, tpr, _ = skm.roc_curve(y_true, y_score)
    ok = fpr <= max_fpr
    return float(tpr[ok].max()) if ok.any() else 0.0


def best_f1_threshold(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Score threshold that maximises F1, chosen on validation and then frozen for test and scoring."""
    y_true, y_score = _check(y_true, y_score)
    if y_true.max() == 0:
        return 0.5
    precision, recall, thresholds = skm.precision_recall_curve(y_true, y_score)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


def binary_metric_names(fprs: tuple[float, ...] = (0.01,)) -> tuple[str, ...]:
    """The keys `binary_metrics` returns for `fprs`, known before any data (configs name them)."""
    return ("auc", "pr_auc", "precision", "recall", "f1", *(_recall_at(fpr) for fpr in fprs))


def _recall_at(fpr: float) -> str:
    return f"recall_at_{fpr * 100:g}pct_fpr"


def binary_metrics(
    y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5, fprs: tuple[float, ...] = (0.01,)
) -> dict[str, float]:
    """AUC, PR-AUC, precision/recall/F1 at `threshold` and recall at each FPR in `fprs`."""
    y_true, y_score = _check(y_true, y_score)
    both = y_true.min() != y_true.max()
    pred = (y_score >= threshold).astype(int)
    out = {
        "auc": float(skm.roc_auc_score(y_true, y_score)) if both else float("nan"),
        "pr_auc": float(skm.average_precision_score(y_true, y_score)) if both else float("nan"),
        "precision": float(skm.precision_score(y_true, pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, pred, zero_division=0)),
    }
    for fpr in fprs:
        out[_recall_at(fpr)] = recall_at_fpr(y_true, y_score, fpr)
    return out


def thin_curve(table: pd.DataFrame, max_points: int = CURVE_POINTS) -> pd.DataFrame:
    """At most `max_points` rows, evenly spread and keeping both ends, so a curve artifact stays small."""
    if len(table) <= max_points:
        return table.reset_index(drop=True)
    keep = np.unique(np.linspace(0, len(table) - 1, max_points).round().astype(int))
    return table.iloc[keep].reset_index(drop=True)


def roc_pr_curves(y_true: np.ndarray, y_score: np.ndarray, suffix: str = "test") -> dict[str, pd.DataFrame]:
    """ROC (fpr, tpr) and precision-recall (recall, precision) tables for `suite compare --plot`."""
    y_true, y_score = _check(y_true, y_score)
    if y_true.min() == y_true.max():
        return {}
    fpr, tpr, _ = skm.roc_curve(y_true, y_score)
    precision, recall, _ = skm.precision_recall_curve(y_true, y_score)
    return {f"roc_{suffix}": thin_curve(pd.DataFrame({"fpr": fpr, "tpr": tpr})),
            f"pr_{suffix}": thin_curve(pd.DataFrame({"recall": recall[::-1], "precision": precision[::-1]}))}
