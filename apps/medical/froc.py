"""LUNA16 FROC analysis and CPM, the benchmark's ranking metric for nodule detection.

Protocol (as in the LUNA16 evaluation script): a candidate hits a nodule when its Euclidean distance to
the nodule centre is ≤ diameter / 2. A nodule counts once, with the highest probability among the
candidates that hit it; hits on an already-hit nodule are neither true nor false positives; a
candidate hitting several nodules counts for each; every candidate hitting no nodule is a false
positive. Thresholds sweep every distinct probability.

Sensitivity at a FP rate r: the sensitivity at the lowest threshold whose FPs per scan are ≤ r (a step
function, conservative). The official script instead interpolates linearly between operating points,
so its CPM can be slightly higher for sparse curves. CPM = mean over `FROC_FP_RATES`.
Only scans in `seriesuids` are evaluated: predictions and annotations of other scans are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.errors import InputError

FROC_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1, 2, 4, 8)
_COORDS = ["coordX", "coordY", "coordZ"]


@dataclass
class FROCResult:
    """FROC curve, sensitivities at the LUNA16 FP rates and their mean (CPM)."""

    cpm: float
    sensitivities: tuple[float, ...]  # at FROC_FP_RATES
    fps_per_scan: np.ndarray  # operating points, thresholds descending, starting at (0, 0)
    sensitivity_curve: np.ndarray
    n_nodules: int
    n_scans: int
    thresholds: np.ndarray  # probability threshold of each operating point (+inf for the first)


def _need(table: pd.DataFrame, name: str, columns: list[str]) -> None:
    """Fail with one line when a table lacks a column."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(None, f"{name}: missing column {missing[0]}")


def compute_froc(predictions: pd.DataFrame, annotations: pd.DataFrame, seriesuids: list[str]) -> FROCResult:
    """FROC and CPM of `predictions` (seriesuid, coordX/Y/Z, probability) against LUNA16 annotations."""
    _need(predictions, "predictions", ["seriesuid", *_COORDS, "probability"])
    _need(annotations, "annotations", ["seriesuid", *_COORDS, "diameter_mm"])
    scans = list(dict.fromkeys(str(s) for s in seriesuids))
    if not scans:
        raise InputError(None, "FROC needs at least one scan")
    wanted = set(scans)
    preds = predictions[predictions["seriesuid"].astype(str).isin(wanted)]
    if not np.isfinite(preds["probability"].to_numpy(dtype=float)).all():
        raise InputError(None, "predictions: column probability has missing or non-finite values")
    truth = annotations[annotations["seriesuid"].astype(str).isin(wanted)]
    preds_by_scan = dict(tuple(preds.groupby(preds["seriesuid"].astype(str), sort=False)))
    truth_by_scan = dict(tuple(truth.groupby(truth["seriesuid"].astype(str), sort=False)))

    nodule_scores: list[np.ndarray] = []  # best hit probability per nodule, -inf when missed
    fp_scores: list[np.ndarray] = []
    for uid in scans:
        cand = preds_by_scan.get(uid)
        nod = truth_by_scan.get(uid)
        probs = np.empty(0) if cand is None else cand["probability"].to_numpy(dtype=float)
        n_nod = 0 if nod is None else len(nod)
        if n_nod == 0:
            fp_scores.append(probs)
            continue
        if cand is None or len(cand) == 0:
            nodule_scores.append(np.full(n_nod, -np.inf))
            continue
        dist = np.linalg.norm(
            cand[_COORDS].to_numpy(float)[:, None, :] - nod[_COORDS].to_numpy(float)[None, :, :], axis=-1
        )
        hits = dist <= nod["diameter_mm"].to_numpy(float)[None, :] / 2  # (candidates, nodules)
        nodule_scores.append(np.where(hits, probs[:, None], -np.inf).max(axis=0))
        fp_scores.append(probs[~hits.any(axis=1)])

    n_scans = len(scans)
    tp = np.concatenate(nodule_scores) if nodule_scores else np.empty(0)
    fp = np.concatenate(fp_scores) if fp_scores else np.empty(0)
    n_nodules = len(tp)
    thresholds = np.unique(np.concatenate([tp[np.isfinite(tp)], fp]))[::-1]
    tp_sorted, fp_sorted = np.sort(tp[np.isfinite(tp)]), np.sort(fp)
    # Count scores ≥ each threshold with binary search on the ascending arrays.
    n_tp = len(tp_sorted) - np.searchsorted(tp_sorted, thresholds, side="left")
    n_fp = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    fps = np.concatenate([[0.0], n_fp / n_scans])
    sens = np.concatenate([[0.0], n_tp / n_nodules]) if n_nodules else np.full(len(thresholds) + 1, np.nan)
    thresholds = np.concatenate([[np.inf], thresholds])
    sensitivities = tuple(float(sens[fps <= rate].max()) if n_nodules else float("nan") for rate in FROC_FP_RATES)
    cpm = float(np.mean(sensitivities)) if n_nodules else float("nan")
    return FROCResult(cpm=cpm, sensitivities=sensitivities, fps_per_scan=fps, sensitivity_curve=sens,
                      n_nodules=n_nodules, n_scans=n_scans, thresholds=thresholds)


def plot_froc(result: FROCResult) -> Figure:
    """FROC curve on a log FP/scan axis, the seven LUNA16 points marked, CPM in the title (Agg canvas, no pyplot)."""
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    fps, sens = result.fps_per_scan, result.sensitivity_curve
    lo, hi = FROC_FP_RATES[0] / 2, FROC_FP_RATES[-1] * 2
    shown = fps > 0
    if shown.any():
        x = np.concatenate([[lo], fps[shown], [hi]])
        y = np.concatenate([[sens[~shown].max() if (~shown).any() else 0.0], sens[shown], [sens[shown][-1]]])
        ax.step(x, y, where="post", label="FROC")
    ax.plot(FROC_FP_RATES, result.sensitivities, "o", color="C3", label="LUNA16 FP rates")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(FROC_FP_RATES, [f"{r:g}" for r in FROC_FP_RATES])
    ax.set_xlabel("average false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"FROC: CPM {result.cpm:.3f} ({result.n_nodules} nodules, {result.n_scans} scans)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
