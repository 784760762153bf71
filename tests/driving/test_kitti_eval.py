"""KITTI AP R40 / AOS on toy scenes computed by hand: the recall sampling, matching, API and file reading.

Reading the numbers: with n counted ground truths, every TP score of the first pass becomes a score
threshold while n ≤ 40, position 0 (the first threshold) is skipped and positions past the last
threshold count 0, so AP = Σ_{t = 2 … T} max_{t' ≥ t} precision(t') / 40. A perfect detector therefore
needs more than 40 ground truths to reach 1.0 (40 give 39/40, 4 give 3/40), as in the reference.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from real_kitti import REAL, needs_real

from apps.driving.kitti import KittiObject, read_label
from apps.driving.kitti_eval import (
    contract_metrics,
    evaluate_folders,
    evaluate_kitti,
    kitti_aos,
    kitti_ap,
    kitti_recall,
    precision_recall_table,
)
from common.errors import InputError

EASY_BOX_HEIGHT = 60.0  # px: above every level's minimum height


def car(x: float, z: float, score: float | None = None, *, y: float = 1.7, kind: str = "Car",
        bbox: tuple[float, float, float, float] | None = None, alpha: float = 0.0,
        occluded: int = 0, truncated: float = 0.0) -> KittiObject:
    """A 4 m × 1.6 m × 1.5 m box at camera (x, y, z), length along x; its 2D box 60 px wide per 10 m of x."""
    if bbox is None:
        bbox = (570.0 + 10 * x, 150.0, 630.0 + 10 * x, 150.0 + EASY_BOX_HEIGHT)
    return KittiObject(kind, truncated, occluded, alpha, bbox, (1.5, 1.6, 4.0), (x, y, z), 0.0, score)


def dontcare(bbox: tuple[float, float, float, float]) -> KittiObject:
    """A DontCare region as KITTI writes it: a 2D box and -1000 for the 3D fields."""
    return KittiObject("DontCare", -1, -1, -10, bbox, (-1, -1, -1), (-1000, -1000, -1000), -10)


def detect(objects: list[KittiObject], score: float, **changes) -> list[KittiObject]:
    """Detections equal to `objects` (same boxes), all with one score."""
    return [KittiObject(**{**vars(o), "score": score, **changes}) for o in objects]


def one_car_frames(n: int) -> dict[str, list[KittiObject]]:
    """n frames, one easy car each."""
    return {f"{i:06d}": [car(0, 20)] for i in range(n)}


def detect_all(gt: dict[str, list[KittiObject]], **changes) -> dict[str, list[KittiObject]]:
    """Perfect detections with distinct scores."""
    return {frame: detect(objs, 0.99 - i / 1000, **changes) for i, (frame, objs) in enumerate(gt.items())}


# Four cars over two frames, 10 m (and 100 px) apart, so no detection can touch two of them.
GT = {"a": [car(0, 20), car(10, 20)], "b": [car(0, 30), car(10, 30)]}
CONTRACT_KEYS = {f"ap_{m}{iou}_{level}" for m in ("2d", "bev", "3d") for iou in ("", "_50")
                 for level in ("easy", "moderate", "hard")} | {f"aos_{level}" for level in ("easy", "moderate", "hard")}


def test_perfect_detector_needs_more_than_40_ground_truths_for_one():
    gt = one_car_frames(41)
    metrics = evaluate_kitti(gt, detect_all(gt))
    assert metrics == {key: 1.0 for key in metrics}
    assert set(metrics) == {"ap_bev", "ap_3d", "ap_2d", "aos", "recall"} | {
        f"{kind}{iou}{level}" for kind in ("ap_bev", "ap_3d", "ap_2d") for iou in ("", "_50")
        for level in ("", "_easy", "_hard")} | {"aos_easy", "aos_hard"}
    # 40 ground truths: 40 thresholds fill positions 0 … 39; position 0 is skipped and 40 stays empty
    gt = one_car_frames(40)
    assert kitti_ap(gt, detect_all(gt), 0.7, "bev") == pytest.approx(39 / 40)
    # 4 ground truths: positions 1 … 3 at precision 1
    assert kitti_ap(GT, detect_all(GT), 0.7, "3d") == pytest.approx(3 / 40)


def test_thresholds_sample_the_recall_positions():
    # 80 ground truths, the first 40 found at precision 1: recall climbs 1/80 a TP, the sample position
    # 1/40 a kept score, so every other TP score is kept: ranks 0, 1, 3, 5, …, 39 → 21 thresholds.
    gt = one_car_frames(80)
    dt = {frame: objs for i, (frame, objs) in enumerate(detect_all(gt).items()) if i < 40}
    assert kitti_ap(gt, dt, 0.7, "bev") == pytest.approx(20 / 40)
    # all 80 found: 41 thresholds, the last position reached
    assert kitti_ap(gt, detect_all(gt), 0.7, "bev") == 1.0


def test_false_positive_ranked_first():
    dt = {"a": [car(50, 50, 0.95), *detect(GT["a"][:1], 0.9), *detect(GT["a"][1:], 0.8)],
          "b": [*detect(GT["b"][:1], 0.7), *detect(GT["b"][1:], 0.6)]}
    # thresholds 0.9, 0.8, 0.7, 0.6 → precision 1/2, 2/3, 3/4, 4/5 → max from the right: 4/5 everywhere
    assert kitti_ap(GT, dt, 0.7, "bev") == pytest.approx(3 * 0.8 / 40)
    dt["a"][0].score = 0.1  # ranked last, below every threshold, it costs nothing
    assert kitti_ap(GT, dt, 0.7, "bev") == pytest.approx(3 / 40)


def test_duplicates_and_tied_scores():
    gt = {"a": GT["a"]}  # two ground truths: AP = precision at the second threshold / 40
    duplicate = {"a": detect(GT["a"][:1], 0.9) + detect(GT["a"][:1], 0.85) + detect(GT["a"][1:], 0.8)}
    assert kitti_ap(gt, duplicate, 0.7, "bev") == pytest.approx((2 / 3) / 40)
    # a false positive tied with a TP enters with it, wherever it sits in the file
    tie = [car(50, 50, 0.8), *detect(GT["a"][:1], 0.9), *detect(GT["a"][1:], 0.8)]
    assert kitti_ap(gt, {"a": tie}, 0.7, "bev") == kitti_ap(gt, {"a": tie[::-1]}, 0.7, "bev") == pytest.approx(
        (2 / 3) / 40)


def test_iou_must_exceed_the_threshold():
    gt = one_car_frames(41)
    # 2D box 70 % of the ground truth's, inside it: IoU exactly 0.7, which does not pass 0.7 (strict >)
    narrow = detect_all(gt, bbox=(570.0, 150.0, 612.0, 210.0))
    assert kitti_ap(gt, narrow, 0.7, "2d") == 0.0
    assert kitti_ap(gt, narrow, 0.5, "2d") == 1.0
    # 1 m along its length: BEV/3D IoU (3 × 1.6) / (2·6.4 − 4.8) = 0.6; half its height up: BEV 1, 3D 1/3
    shifted = detect_all(gt, location=(1.0, 1.7, 20.0))
    raised = detect_all(gt, location=(0.0, 1.7 - 0.75, 20.0))
    assert [kitti_ap(gt, shifted, iou, m) for m in ("bev", "3d") for iou in (0.7, 0.5)] == [0.0, 1.0, 0.0, 1.0]
    assert [kitti_ap(gt, raised, iou, m) for m in ("bev", "3d") for iou in (0.7, 0.5)] == [1.0, 1.0, 0.0, 0.0]


def test_3d_height_overlap_is_measured_upwards_from_the_bottom():
    gt = one_car_frames(41)  # camera y points down, y is the bottom: the ground truth spans y ∈ [0.2, 1.7]
    # a 0.5 m slab at y ∈ [0.2, 0.7], inside it: 3D IoU 0.5 / 1.5 = 1/3 (a box hanging down from y, or
    # centred on y, would not overlap it at all)
    slab = detect_all(gt, location=(0.0, 0.7, 20.0), dimensions=(0.5, 1.6, 4.0))
    assert kitti_ap(gt, slab, 0.3, "3d") == 1.0
    assert kitti_ap(gt, slab, 0.34, "3d") == 0.0
    assert kitti_ap(gt, slab, 0.7, "bev") == 1.0


def test_aos_is_orientation_similarity_on_the_2d_matching():
    gt = one_car_frames(41)
    assert kitti_aos(gt, detect_all(gt)) == 1.0
    assert kitti_aos(gt, detect_all(gt, alpha=math.pi)) == pytest.approx(0.0, abs=1e-12)  # (1 + cos π) / 2 = 0
    assert kitti_aos(gt, detect_all(gt, alpha=math.pi / 2)) == pytest.approx(0.5)
    assert kitti_ap(gt, detect_all(gt, alpha=math.pi), 0.7, "2d") == 1.0  # AP ignores the angle
    # the port computes AOS only when the first detection carries an angle (alpha -10 means "not given")
    unset = detect_all(gt)
    unset["000000"][0].alpha = -10.0
    assert math.isnan(kitti_aos(gt, unset))


def test_no_detections_and_levels_without_ground_truth():
    assert kitti_ap(GT, {}, 0.7, "bev") == 0.0
    assert kitti_ap(GT, {"a": [], "b": []}, 0.7, "3d") == 0.0
    assert kitti_recall(GT, {}) == 0.0
    # no counted ground truth at a level: the reference's curve stays empty, AP 0 (not NaN); recall NaN
    only_dontcare = {"a": [dontcare((0, 0, 10, 10))]}
    assert kitti_ap(only_dontcare, {"a": [car(0, 20, 0.9)]}, 0.7, "bev") == 0.0
    assert math.isnan(kitti_recall(only_dontcare, {}))


def test_recall_counts_matches_whatever_the_score():
    dt = {"a": [car(0, 20, 0.01), car(50, 50, 0.99)], "b": [car(10.5, 30, 0.02)]}
    assert kitti_recall(GT, dt) == pytest.approx(2 / 4)  # BEV IoU 3.5/4.5 > 0.5 for the shifted one
    assert kitti_recall(GT, dt, iou_threshold=0.9) == pytest.approx(1 / 4)
    assert evaluate_kitti(GT, dt)["recall"] == pytest.approx(2 / 4)


def test_recall_counts_a_match_at_exactly_the_threshold():
    """The contract's `test_recall` matches at BEV IoU >= 0.5, where the devkit's AP matches strictly above."""
    from apps.driving.kitti_eval import _overlaps

    gt, dt = {"a": [car(0, 20)]}, {"a": [car(1.3, 20, 0.9)]}
    iou = float(_overlaps(dt["a"], gt["a"])["bev"][0, 0])
    assert 0.5 < iou < 0.7
    assert kitti_recall(gt, dt, iou_threshold=iou) == 1.0
    assert kitti_recall(gt, dt, iou_threshold=float(np.nextafter(iou, 1.0))) == 0.0


def test_contract_metrics_keys():
    metrics = contract_metrics(GT, detect_all(GT))
    assert set(metrics) == CONTRACT_KEYS
    assert all(0.0 <= v <= 1.0 for v in metrics.values())


def test_bad_dict_inputs():
    with pytest.raises(InputError, match="without ground truth.*000008"):
        kitti_ap(GT, {"000008": detect(GT["a"], 0.9)}, 0.7, "bev")
    with pytest.raises(InputError, match="no score"):
        kitti_ap(GT, {"a": detect(GT["a"], 0.9) + [car(0, 20)]}, 0.7, "bev")
    with pytest.raises(InputError, match="non-finite"):
        kitti_ap(GT, {"a": [car(0, math.nan, 0.9)]}, 0.7, "bev")
    with pytest.raises(InputError, match="no frames"):
        evaluate_kitti({}, {})
    with pytest.raises(ValueError):
        kitti_ap(GT, {}, 0.7, "4d")


# --------------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------------
def kitti_line(obj: KittiObject) -> str:
    """A label (or, with a score, result) line."""
    fields = [obj.type, obj.truncated, obj.occluded, obj.alpha, *obj.bbox, *obj.dimensions, *obj.location,
              obj.rotation_y] + ([obj.score] if obj.score is not None else [])
    return " ".join(str(v) for v in fields)


def write_frames(folder: Path, frames: dict[str, list[KittiObject]]) -> Path:
    """One NNNNNN.txt per frame."""
    folder.mkdir(parents=True, exist_ok=True)
    for frame, objects in frames.items():
        (folder / f"{frame}.txt").write_text("".join(kitti_line(o) + "\n" for o in objects))
    return folder


def test_evaluate_folders_matches_the_dict_api(tmp_path):
    gt = {"000000": GT["a"] + [dontcare((0, 0, 20, 20))], "000001": GT["b"], "000002": []}
    dt = {"000000": detect(GT["a"], 0.9), "000002": [car(0, 20, 0.5)]}  # 000001: no result file
    labels, results = write_frames(tmp_path / "label_2", gt), write_frames(tmp_path / "results", dt)
    assert evaluate_folders(labels, results) == contract_metrics(gt, dt)
    # 4 counted, both TPs of 000000 tied at 0.9 (two thresholds at precision 1), the FP at 0.5 below them
    assert evaluate_folders(labels, results)["ap_bev_moderate"] == pytest.approx(1 / 40)


def test_evaluate_folders_bad_inputs(tmp_path):
    labels = write_frames(tmp_path / "label_2", {"000000": GT["a"]})
    results = write_frames(tmp_path / "results", {"000000": detect(GT["a"], 0.9)})
    with pytest.raises(InputError, match="labels folder not found"):
        evaluate_folders(tmp_path / "nope", results)
    with pytest.raises(InputError, match="results folder not found"):
        evaluate_folders(labels, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no label files"):
        evaluate_folders(tmp_path / "empty", results)
    orphan = write_frames(tmp_path / "orphan", {"000000": [], "000099": []})
    with pytest.raises(InputError, match="000099.txt: no label file for frame 000099"):
        evaluate_folders(labels, orphan)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "000000.txt").write_text(kitti_line(detect(GT["a"], 0.9)[0]) + "\n\nCar 0 0 0 1 2 3\n")
    with pytest.raises(InputError, match=r"000000.txt: line 3: expected 15 fields"):
        evaluate_folders(labels, bad)
    (bad / "000000.txt").write_text(kitti_line(detect(GT["a"], 0.9)[0]).replace("0.9", "nan") + "\n")
    with pytest.raises(InputError, match="line 1: non-finite"):
        evaluate_folders(labels, bad)
    (bad / "000000.txt").write_text(kitti_line(detect(GT["a"], 0.9)[0]) + "\n\n" + kitti_line(GT["a"][1]) + "\n")
    with pytest.raises(InputError, match="000000.txt: line 3: a result line needs a 16th field"):
        evaluate_folders(labels, bad)


@needs_real
def test_real_labels_as_detections():
    labels = read_label(REAL / "label_2" / "000008.txt")
    cars = [obj for obj in labels if obj.type == "Car"]
    dt = {"000008": [KittiObject(**{**vars(obj), "score": 1.0 - i / 10}) for i, obj in enumerate(cars)]}
    metrics = evaluate_kitti({"000008": labels}, dt)
    # counted cars: moderate and hard 4 (two are occluded 3), easy 1 (one car of 39.6 px is not > 40,
    # two are occluded 1). Copies of the labels are bit-identical boxes: every IoU is 1 here (the
    # reference's rotate_iou kernel gives 0 for them), so each level scores (counted − 1) / 40.
    assert metrics["ap_bev"] == metrics["ap_3d"] == metrics["ap_2d"] == metrics["aos"] == pytest.approx(3 / 40)
    assert metrics["ap_bev_hard"] == pytest.approx(3 / 40)
    assert metrics["ap_bev_easy"] == 0.0  # a single ground truth fills only position 0
    assert metrics["recall"] == 1.0


def test_precision_recall_table_holds_the_operating_points():
    gt = one_car_frames(10)
    detections = detect_all(gt)
    detections["000000"] += [car(30, 40, 0.999)]  # one false positive ranked first
    table = precision_recall_table(gt, detections)
    assert list(table.columns) == ["recall", "precision"]
    assert table["recall"].is_monotonic_increasing and table["recall"].iloc[-1] == pytest.approx(1.0)
    assert table["precision"].iloc[-1] == pytest.approx(10 / 11)
