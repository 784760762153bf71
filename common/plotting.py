"""Standard figures logged with every run: ROC, precision-recall and learning curves."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn import metrics as skm  # noqa: E402


def roc_figure(y_true: np.ndarray, y_score: np.ndarray, title: str = "ROC (test)") -> Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = skm.roc_curve(y_true, y_score)
    ax.plot(fpr, tpr, label=f"AUC = {skm.auc(fpr, tpr):.4f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def pr_figure(y_true: np.ndarray, y_score: np.ndarray, title: str = "Precision-recall (test)") -> Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    precision, recall, _ = skm.precision_recall_curve(y_true, y_score)
    ap = skm.average_precision_score(y_true, y_score)
    ax.plot(recall, precision, label=f"AP = {ap:.4f}")
    ax.axhline(np.mean(y_true), color="k", ls="--", lw=0.8, label="prevalence")
    ax.set(xlabel="recall", ylabel="precision", title=title, ylim=(0, 1.02))
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def learning_curves_figure(history: list[dict[str, float]], monitor: str | None = None) -> Figure:
    """Train/val loss per epoch, and the monitored validation metric on a second axis."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history) + 1)
    for key in ("train_loss", "val_loss"):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    ax.set(xlabel="epoch", ylabel="loss", title="Learning curves")
    if monitor and monitor not in ("train_loss", "val_loss"):
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.get(monitor, np.nan) for h in history], color="tab:green", marker="s", label=monitor)
        ax2.set_ylabel(monitor)
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig
