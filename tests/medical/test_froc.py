"""LUNA16 FROC/CPM on toy cases small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from apps.medical.froc import FROC_FP_RATES, compute_froc, plot_froc
from common.errors import InputError

# Scan A: nodules A1 (r 5 mm) and A2 (r 3 mm); scan B: nodule B1 (r 4 mm); scan C: no nodule.
ANNOTATIONS = pd.DataFrame(
    [("A", 0, 0, 0, 10.0), ("A", 50, 0, 0, 6.0), ("B", 0, 0, 0, 8.0)],
    columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"],
)
PREDICTIONS = pd.DataFrame(
    [
        ("A", 1, 0, 0, 0.9),  # hits A1
        ("A", 0, 2, 0, 0.6),  # hits A1 again: neither TP nor FP
        ("A", 50, 4, 0, 0.8),  # 4 mm from A2 (radius 3): FP
        ("A", 50, 1, 0, 0.3),  # hits A2
        ("A", 100, 0, 0, 0.7),  # FP
        ("B", 0, 0, 3.9, 0.5),  # hits B1 (3.9 ≤ 4)
        ("B", 20, 20, 20, 0.95),  # FP
        ("C", 0, 0, 0, 0.4),  # FP in a scan without nodules
        ("C", 1, 1, 1, 0.2),  # FP
    ],
    columns=["seriesuid", "coordX", "coordY", "coordZ", "probability"],
)


def test_hand_computed_froc():
    # Nodule scores: A1 0.9, A2 0.3, B1 0.5. FP scores: 0.95, 0.8, 0.7, 0.4, 0.2. Three scans.
    # threshold: 0.95  0.9   0.8   0.7   0.5   0.4   0.3   0.2
    # FP/scan:   1/3   1/3   2/3   1     1     4/3   4/3   5/3
    # sens:      0     1/3   1/3   1/3   2/3   2/3   1     1
    result = compute_froc(PREDICTIONS, ANNOTATIONS, ["A", "B", "C"])
    assert (result.n_nodules, result.n_scans) == (3, 3)
    np.testing.assert_allclose(result.sensitivities, [0, 0, 1 / 3, 2 / 3, 1, 1, 1])
    assert result.cpm == pytest.approx(4 / 7)
    np.testing.assert_allclose(result.fps_per_scan, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 4 / 3, 4 / 3, 5 / 3])
    np.testing.assert_allclose(result.sensitivity_curve, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    # Were the duplicate hit (0.6) a FP, FP/scan at threshold 0.5 would be 4/3 and sens@1 only 1/3.


def test_scans_without_nodules_still_count_for_fp_per_scan():
    only_ab = compute_froc(PREDICTIONS, ANNOTATIONS, ["A", "B"])  # C's predictions are ignored
    assert only_ab.n_scans == 2 and only_ab.n_nodules == 3
    # FPs 0.95, 0.8, 0.7 over 2 scans: sens@0.5 = 1/3 (only 0.95 and 0.9 pass), sens@1 = 1/3, sens@2 = 1.
    np.testing.assert_allclose(only_ab.sensitivities, [0, 0, 1 / 3, 1 / 3, 1, 1, 1])
    with_empty = compute_froc(PREDICTIONS, ANNOTATIONS, ["A", "B", "C", "D"])  # D: no nodule, no prediction
    assert with_empty.n_scans == 4
    assert with_empty.fps_per_scan[-1] == pytest.approx(5 / 4)


def test_perfect_predictor_scores_cpm_one():
    hits = ANNOTATIONS.drop(columns="diameter_mm").assign(probability=0.99)
    noise = pd.DataFrame([("A", 200, 0, 0, 0.1)] * 40, columns=PREDICTIONS.columns)
    result = compute_froc(pd.concat([hits, noise]), ANNOTATIONS, ["A", "B", "C"])
    assert result.cpm == 1.0 and result.sensitivities == (1.0,) * len(FROC_FP_RATES)


def test_all_misses_score_cpm_zero():
    misses = PREDICTIONS.assign(coordX=PREDICTIONS["coordX"] + 1000)
    result = compute_froc(misses, ANNOTATIONS, ["A", "B", "C"])
    assert result.cpm == 0.0
    assert result.fps_per_scan[-1] == pytest.approx(len(PREDICTIONS) / 3)


def test_one_candidate_inside_two_nodules_detects_both():
    touching = pd.DataFrame([("A", 0, 0, 0, 10.0), ("A", 6, 0, 0, 10.0)], columns=ANNOTATIONS.columns)
    between = pd.DataFrame([("A", 3, 0, 0, 0.8)], columns=PREDICTIONS.columns)
    assert compute_froc(between, touching, ["A"]).cpm == 1.0


def test_no_nodules_gives_nan_and_bad_tables_raise():
    assert np.isnan(compute_froc(PREDICTIONS, ANNOTATIONS, ["C"]).cpm)
    with pytest.raises(InputError, match="predictions: missing column probability"):
        compute_froc(PREDICTIONS.drop(columns="probability"), ANNOTATIONS, ["A"])
    with pytest.raises(InputError, match="annotations: missing column diameter_mm"):
        compute_froc(PREDICTIONS, ANNOTATIONS.drop(columns="diameter_mm"), ["A"])
    with pytest.raises(InputError, match="non-finite"):
        compute_froc(PREDICTIONS.assign(probability=np.nan), ANNOTATIONS, ["A"])


def test_plot_froc(tmp_path):
    figure = plot_froc(compute_froc(PREDICTIONS, ANNOTATIONS, ["A", "B", "C"]))
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and "CPM 0.571" in ax.get_title()
    figure.savefig(tmp_path / "froc.png")
    assert (tmp_path / "froc.png").stat().st_size > 1000
