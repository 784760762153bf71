"""LUNA16 FROC/CPM on toy cases small enough to check by hand, one test per rule of the official script."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from apps.medical.froc import (
    FROC_FP_RATES,
    MAX_MARKS_PER_SCAN,
    METRIC_KEYS,
    bootstrap_froc,
    compute_froc,
    evaluate_files,
    evaluate_submission,
    interpolated_froc,
    plot_froc,
    read_series_list,
)
from common.errors import InputError

FINDING = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
MARK = ["seriesuid", "coordX", "coordY", "coordZ", "probability"]

# Scan A: nodules A1 (r 5 mm) and A2 (r 3 mm); scan B: nodule B1 (r 4 mm); scan C: no nodule.
ANNOTATIONS = pd.DataFrame([("A", 0, 0, 0, 10.0), ("A", 50, 0, 0, 6.0), ("B", 0, 0, 0, 8.0)], columns=FINDING)
PREDICTIONS = pd.DataFrame(
    [
        ("A", 1, 0, 0, 0.9),  # hits A1
        ("A", 0, 2, 0, 0.6),  # hits A1 again: neither TP nor FP
        ("A", 50, 4, 0, 0.8),  # 4 mm from A2 (radius 3): FP
        ("A", 50, 1, 0, 0.3),  # hits A2
        ("A", 100, 0, 0, 0.7),  # FP
        ("B", 0, 0, 3.9, 0.5),  # hits B1 (3.9² < 4²)
        ("B", 20, 20, 20, 0.95),  # FP
        ("C", 0, 0, 0, 0.4),  # FP in a scan without nodules
        ("C", 1, 1, 1, 0.2),  # FP
    ],
    columns=MARK,
)


def marks(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=MARK)


def findings(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=FINDING)


def test_hand_computed_froc():
    # Nodule scores: A1 0.9, A2 0.3, B1 0.5. FP scores: 0.95, 0.8, 0.7, 0.4, 0.2. Three scans.
    # threshold: 0.95  0.9   0.8   0.7   0.5   0.4   0.3   0.2
    # FP/scan:   1/3   1/3   2/3   1     1     4/3   4/3   5/3
    # sens:      0     1/3   1/3   1/3   2/3   2/3   1     1
    # At 1 FP/scan the curve steps from 1/3 to 2/3; np.interp reads the top of the step.
    result = compute_froc(PREDICTIONS, ANNOTATIONS, ["A", "B", "C"])
    assert (result.n_nodules, result.n_scans, result.n_detected) == (3, 3, 3)
    np.testing.assert_allclose(result.sensitivities, [0, 0, 1 / 3, 2 / 3, 1, 1, 1])
    assert result.cpm == pytest.approx(4 / 7)
    np.testing.assert_allclose(result.fps_per_scan, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 4 / 3, 4 / 3, 5 / 3])
    np.testing.assert_allclose(result.sensitivity_curve, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    # Were the duplicate hit (0.6) a FP, FP/scan at threshold 0.5 would be 4/3 and sens@1 only 1/3.


def test_sensitivity_is_read_by_linear_interpolation():
    # Two scans, nodules N1 (scan A) and N2 (scan B). Ties make diagonal segments:
    # 0.9: N1 and one FP -> (1/2, 1/2); 0.5: N2 and two FPs -> (3/2, 1); 0.1: two FPs -> (5/2, 1).
    truth = findings(("A", 0, 0, 0, 10.0), ("B", 0, 0, 0, 10.0))
    sub = marks(("A", 0, 0, 0, 0.9), ("B", 90, 0, 0, 0.9), ("B", 0, 0, 0, 0.5), ("A", 90, 0, 0, 0.5),
                ("B", 80, 0, 0, 0.5), ("A", 80, 0, 0, 0.1), ("B", 70, 0, 0, 0.1))
    result = compute_froc(sub, truth, ["A", "B"])
    np.testing.assert_allclose(result.fps_per_scan, [0, 0.5, 1.5, 2.5])
    np.testing.assert_allclose(result.sensitivity_curve, [0, 0.5, 1, 1])
    # 1/8 and 1/4 on the first diagonal, 1 halfway up the second, flat after 3/2.
    np.testing.assert_allclose(result.sensitivities, [0.125, 0.25, 0.5, 0.75, 1, 1, 1])
    assert result.cpm == pytest.approx(4.625 / 7)  # a step readout would give (0 + 0 + .5 + .5 + 3) / 7


def test_hit_is_strictly_inside_the_radius():
    truth = findings(("A", 0, 0, 0, 10.0))
    on_sphere = compute_froc(marks(("A", 3, 4, 0, 0.9)), truth, ["A"])  # 3² + 4² = 25 = 5²: a miss
    assert on_sphere.n_detected == 0 and on_sphere.fps_per_scan[-1] == 1.0
    inside = compute_froc(marks(("A", 3, 3.999999, 0, 0.9)), truth, ["A"])
    assert inside.n_detected == 1 and inside.cpm == 1.0


def test_marks_on_excluded_findings_are_ignored():
    truth = findings(("A", 0, 0, 0, 10.0))
    excluded = findings(("A", 40, 0, 0, -1.0),  # no size: read as 10 mm
                        ("A", 80, 0, 0, 2.0),  # a nodule < 3 mm
                        ("A", 3, 0, 0, -1.0))  # overlaps the nodule
    sub = marks(("A", 44.9, 0, 0, 0.9),  # 4.9 mm from the unsized finding: ignored
                ("A", 43, 4, 0, 0.85),  # 3-4-5 on its 5 mm radius: not inside, a FP
                ("A", 80.5, 0, 0, 0.8),  # inside the 1 mm radius: ignored
                ("A", 81.0, 0, 0, 0.75),  # on it: a FP
                ("A", 4, 0, 0, 0.7))  # inside the nodule and the overlapping finding: detects the nodule
    result = compute_froc(sub, truth, ["A"], excluded)
    assert (result.n_marks_ignored, result.n_detected) == (2, 1)
    np.testing.assert_allclose(result.fps_per_scan, [0, 1, 2, 2])  # FPs 0.85 and 0.75 only
    without = compute_froc(sub, truth, ["A"])
    assert without.n_marks_ignored == 0 and without.fps_per_scan[-1] == 4


def test_at_most_100_marks_per_scan_ties_at_the_cut_dropped():
    truth = findings(("A", 0, 0, 0, 10.0))
    noise = [("A", 100 + i, 0, 0, 0.5 + i / 1000) for i in range(MAX_MARKS_PER_SCAN)]
    # 101 marks: the nodule's mark is the least suspicious, so it is cut and the nodule missed.
    capped = compute_froc(marks(*noise, ("A", 0, 0, 0, 0.4)), truth, ["A"])
    assert (capped.n_marks_over_cap, capped.n_detected) == (1, 0)
    assert capped.fps_per_scan[-1] == 100
    exactly_100 = compute_froc(marks(*noise[1:], ("A", 0, 0, 0, 0.4)), truth, ["A"])
    assert (exactly_100.n_marks_over_cap, exactly_100.n_detected) == (0, 1)
    # Marks tied with the 101st highest are all dropped: 99 distinct + 3 tied at the cut keep 99.
    tied = [("A", 100 + i, 0, 0, 0.3) for i in range(3)]
    ties = compute_froc(marks(*noise[:98], ("A", 0, 0, 0, 0.99), *tied), truth, ["A"])
    assert (ties.n_marks_over_cap, ties.n_detected) == (3, 1) and ties.fps_per_scan[-1] == 98
    # The cap is per scan: 60 + 60 marks in two scans are all kept.
    two_scans = marks(*noise[:60], *[("B", *row[1:]) for row in noise[:60]])
    assert compute_froc(two_scans, truth, ["A", "B"]).n_marks_over_cap == 0


def test_scans_without_nodules_or_marks_still_count():
    only_ab = compute_froc(PREDICTIONS, ANNOTATIONS, ["A", "B"])  # C's predictions are ignored
    assert only_ab.n_scans == 2 and only_ab.n_nodules == 3
    with_empty = compute_froc(PREDICTIONS, ANNOTATIONS, ["A", "B", "C", "D"])  # D: no nodule, no mark
    assert with_empty.n_scans == 4 and with_empty.fps_per_scan[-1] == pytest.approx(5 / 4)
    # E has a nodule and no mark: missed, yet in the denominator.
    truth = pd.concat([ANNOTATIONS, findings(("E", 0, 0, 0, 10.0))])
    with_missed = compute_froc(PREDICTIONS, truth, ["A", "B", "C", "E"])
    assert (with_missed.n_nodules, with_missed.n_detected) == (4, 3)
    assert with_missed.sensitivity_curve.max() == 0.75


def test_perfect_predictor_scores_cpm_one():
    hits = ANNOTATIONS.drop(columns="diameter_mm").assign(probability=0.99)
    noise = pd.DataFrame([("A", 200, 0, 0, 0.1)] * 40, columns=MARK)
    result = compute_froc(pd.concat([hits, noise]), ANNOTATIONS, ["A", "B", "C"])
    assert result.cpm == 1.0 and result.sensitivities == (1.0,) * len(FROC_FP_RATES)
    no_fp = compute_froc(hits, ANNOTATIONS, ["A", "B", "C"])  # the script's "no false positives" case
    assert no_fp.cpm == 1.0 and (no_fp.fps_per_scan == 0).all()


def test_all_misses_score_cpm_zero():
    misses = PREDICTIONS.assign(coordX=PREDICTIONS["coordX"] + 1000)
    result = compute_froc(misses, ANNOTATIONS, ["A", "B", "C"])
    assert result.cpm == 0.0  # the script's sklearn call gives NaN here (0/0); 0 is the sensitivity
    assert result.fps_per_scan[-1] == pytest.approx(len(PREDICTIONS) / 3)


def test_one_candidate_inside_two_nodules_detects_both():
    touching = findings(("A", 0, 0, 0, 10.0), ("A", 6, 0, 0, 10.0))
    between = marks(("A", 3, 0, 0, 0.8))
    assert compute_froc(between, touching, ["A"]).cpm == 1.0


def test_no_nodules_gives_nan_and_bad_tables_raise():
    assert np.isnan(compute_froc(PREDICTIONS, ANNOTATIONS, ["C"]).cpm)
    with pytest.raises(InputError, match="predictions: missing column probability"):
        compute_froc(PREDICTIONS.drop(columns="probability"), ANNOTATIONS, ["A"])
    with pytest.raises(InputError, match="annotations: missing column diameter_mm"):
        compute_froc(PREDICTIONS, ANNOTATIONS.drop(columns="diameter_mm"), ["A"])
    with pytest.raises(InputError, match="non-finite"):
        compute_froc(PREDICTIONS.assign(probability=np.nan), ANNOTATIONS, ["A"])


# --- bootstrap ---------------------------------------------------------------------------------------
def _many_scans(n: int = 12, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    uids = [f"S{i}" for i in range(n)]
    truth = findings(*[(u, 10.0 * k, 0, 0, 6.0) for u in uids for k in range(int(rng.integers(0, 3)))])
    rows = [(u, x + rng.uniform(-2, 2), 0, 0, float(rng.uniform(0.3, 1))) for u, x, *_ in truth.itertuples(False)
            if rng.random() < 0.8]
    rows += [(u, 500 + float(rng.uniform(0, 50)), 0, 0, float(rng.uniform(0, 0.8))) for u in uids
             for _ in range(int(rng.integers(0, 6)))]
    return truth, marks(*rows), uids


def test_bootstrap_resamples_scans_as_the_script_does():
    truth, sub, uids = _many_scans()
    resamples, seed = 40, 5
    got = bootstrap_froc(sub, truth, uids, resamples=resamples, seed=seed)
    # Independently: draw the scans with the legacy generator, rebuild each resample as new scans
    # (a scan drawn twice appears twice) and evaluate it from scratch; then sort and index as the script.
    rng = np.random.RandomState(seed)
    expected = []
    for _ in range(resamples):
        drawn = rng.randint(len(uids), size=len(uids))
        names = [f"{uids[d]}#{k}" for k, d in enumerate(drawn)]
        copy = {name: uids[d] for name, d in zip(names, drawn, strict=True)}
        re_truth = pd.concat([truth[truth["seriesuid"] == src].assign(seriesuid=name) for name, src in copy.items()])
        re_sub = pd.concat([sub[sub["seriesuid"] == src].assign(seriesuid=name) for name, src in copy.items()])
        expected.append(compute_froc(re_sub, re_truth, names).cpm)
    np.testing.assert_allclose(got.cpm_samples, expected, atol=1e-12)
    ranked = np.sort(expected)
    assert got.cpm_low == pytest.approx(ranked[math.floor(0.025 * resamples)])
    assert got.cpm_high == pytest.approx(ranked[math.floor(0.975 * resamples)])


def test_bootstrap_is_deterministic_for_a_seed():
    truth, sub, uids = _many_scans()
    first = evaluate_submission(truth, sub, None, uids, bootstrap=200, seed=0)
    assert first == evaluate_submission(truth, sub, None, uids, bootstrap=200, seed=0)
    assert evaluate_submission(truth, sub, None, uids, bootstrap=200, seed=1)["cpm"] == first["cpm"]
    samples = bootstrap_froc(sub, truth, uids, resamples=200, seed=0).cpm_samples
    np.testing.assert_array_equal(samples, bootstrap_froc(sub, truth, uids, resamples=200, seed=0).cpm_samples)
    assert not np.array_equal(samples, bootstrap_froc(sub, truth, uids, resamples=200, seed=1).cpm_samples)
    assert first["cpm_ci_low"] <= first["cpm"] <= first["cpm_ci_high"]


def test_evaluate_submission_returns_the_contract_keys():
    metrics = evaluate_submission(ANNOTATIONS, PREDICTIONS, None, ["A", "B", "C"], bootstrap=50)
    assert tuple(metrics) == METRIC_KEYS == (
        "cpm", "cpm_ci_low", "cpm_ci_high", "sensitivity_at_0.125", "sensitivity_at_0.25", "sensitivity_at_0.5",
        "sensitivity_at_1", "sensitivity_at_2", "sensitivity_at_4", "sensitivity_at_8")
    assert metrics["cpm"] == pytest.approx(4 / 7) and metrics["sensitivity_at_1"] == pytest.approx(2 / 3)
    no_interval = evaluate_submission(ANNOTATIONS, PREDICTIONS, None, None, bootstrap=0)
    assert math.isnan(no_interval["cpm_ci_low"]) and no_interval["cpm"] == pytest.approx(4 / 7)  # scans: A, B, C


def test_evaluate_submission_refuses_marks_of_unlisted_scans():
    with pytest.raises(InputError, match="seriesuid C is not in the series list"):
        evaluate_submission(ANNOTATIONS, PREDICTIONS, None, ["A", "B"], bootstrap=0)
    with pytest.raises(InputError, match="appears twice"):
        evaluate_submission(ANNOTATIONS, PREDICTIONS, None, ["A", "B", "C", "A"], bootstrap=0)
    with pytest.raises(InputError, match="no nodule in the 1 evaluated scans"):
        evaluate_submission(ANNOTATIONS, PREDICTIONS[PREDICTIONS["seriesuid"] == "C"], None, None, bootstrap=0)


# --- files -------------------------------------------------------------------------------------------
@pytest.fixture()
def files(tmp_path):
    ANNOTATIONS.to_csv(tmp_path / "annotations.csv", index=False)
    PREDICTIONS.to_csv(tmp_path / "submission.csv", index=False)
    findings(("A", 100, 0, 0, -1)).to_csv(tmp_path / "excluded.csv", index=False)  # covers the FP at 0.7
    (tmp_path / "series.txt").write_text("seriesuid\nA\nB\n\nC\nD\n")  # a header line and a blank are skipped
    return tmp_path


def test_evaluate_files(files):
    metrics = evaluate_files(files / "annotations.csv", files / "submission.csv", files / "excluded.csv",
                             files / "series.txt", bootstrap=100, seed=0)
    assert tuple(metrics) == METRIC_KEYS
    # Without the 0.7 FP, four scans: FPs/scan 1/4 (0.95), 2/4 (0.8), ... sens 1/3 at 0.9, 2/3 at 0.5, 1 at 0.3
    expected = evaluate_submission(ANNOTATIONS, PREDICTIONS[PREDICTIONS["probability"] != 0.7], None,
                                   ["A", "B", "C", "D"], bootstrap=100)
    assert metrics == pytest.approx(expected)
    assert read_series_list(files / "series.txt") == ["A", "B", "C", "D"]


def _bad(path, text: str | bytes) -> None:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


@pytest.mark.parametrize("target, content, fragment", [
    ("submission.csv", "seriesuid,coordX,coordY,coordZ\nA,1,2,3\n", "missing column probability"),
    ("submission.csv", "seriesuid,coordX,coordY,coordZ,probability\nA,1,2,3,0.5\nA,x1,2,3,0.5\n",
     "line 3: column coordX is not a number: 'x1'"),
    ("submission.csv", "seriesuid,coordX,coordY,coordZ,probability\nA,1,2,3,inf\n",
     "line 2: column probability must be finite"),
    ("submission.csv", "seriesuid,coordX,coordY,coordZ,probability\nA,1,2,3,0.5\nA,1,2,3,0.5,7,8\n",
     "not a valid UTF-8 CSV"),
    ("submission.csv", b"seriesuid,coordX,coordY,coordZ,probability\n\xff\xfe,1,2,3,0.5\n", "not a valid UTF-8 CSV"),
    ("submission.csv", "seriesuid,coordX,coordY,coordZ,probability\nZ,1,2,3,0.5\n",
     "line 2: seriesuid Z is not in the series list"),
    ("submission.csv", "", "file is empty"),
    ("annotations.csv", "seriesuid,coordX,coordY,coordZ\nA,1,2,3\n", "missing column diameter_mm"),
    ("excluded.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm\nA,1,2,nan,-1\n", "line 2: column coordZ"),
    ("series.txt", "A\nB\nA\n", "line 3: seriesuid A listed twice"),
    ("series.txt", "\n\n", "no seriesuid listed"),
    ("series.txt", b"A\n\xff\n", "not UTF-8"),
])
def test_bad_files_are_one_line_naming_the_file(files, target, content, fragment):
    _bad(files / target, content)
    with pytest.raises(InputError) as exc:
        evaluate_files(files / "annotations.csv", files / "submission.csv", files / "excluded.csv",
                       files / "series.txt", bootstrap=10, seed=0)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(files / target)) and fragment in message, message


def test_missing_files(files):
    for missing in ("annotations.csv", "submission.csv", "excluded.csv", "series.txt"):
        args = {name: files / name for name in ("annotations.csv", "submission.csv", "excluded.csv", "series.txt")}
        args[missing] = files / "absent" / missing
        with pytest.raises(InputError, match="file not found") as exc:
            evaluate_files(*args.values(), bootstrap=0, seed=0)
        assert str(exc.value).startswith(str(files / "absent"))


def test_plot_froc_draws_the_interpolated_curve(tmp_path):
    result = compute_froc(PREDICTIONS, ANNOTATIONS, ["A", "B", "C"])
    figure = plot_froc(result)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and "CPM 0.571" in ax.get_title()
    line = ax.get_lines()[0]
    x, y = interpolated_froc(result)
    np.testing.assert_allclose(line.get_xdata(), x)
    np.testing.assert_allclose(line.get_ydata(), np.interp(x, result.fps_per_scan, result.sensitivity_curve))
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), result.sensitivities)  # the 7 points lie on it
    figure.savefig(tmp_path / "froc.png")
    assert (tmp_path / "froc.png").stat().st_size > 1000
