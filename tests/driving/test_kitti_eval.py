"""KITTI AP R40 and recall on toy scenes whose values can be computed by hand."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from apps.driving.kitti import KittiObject, read_label
from apps.driving.kitti_eval import evaluate_kitti, kitti_ap, kitti_recall
from common.errors import InputError

REAL_LABEL = Path(
    os.environ.get("KITTI_REAL_DIR", Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "kitti_real")
) / "training" / "label_2" / "000008.txt"


def car(x: float, z: float, score: float | None = None, *, y: float = 1.7, kind: str = "Car",
        bbox: tuple[float, float, float, float] = (500.0, 170.0, 560.0, 210.0)) -> KittiObject:
    """A 4 m × 1.6 m × 1.5 m box at camera (x, y, z), length along camera x (rotation_y = 0)."""
    return KittiObject(kind, 0.0, 0, 0.0, bbox, (1.5, 1.6, 4.0), (x, y, z), 0.0, score)


def dontcare(bbox: tuple[float, float, float, float]) -> KittiObject:
    """A DontCare region as KITTI writes it: a 2D box and -1000 for the 3D fields."""
    return KittiObject("DontCare", -1, -1, -10, bbox, (-1, -1, -1), (-1000, -1000, -1000), -10)


# Four cars over two frames, 10 m apart so no detection can touch two of them.
GT = {"a": [car(0, 20), car(10, 20)], "b": [car(0, 30), car(10, 30)]}


def detect(objects: list[KittiObject], score: float) -> list[KittiObject]:
    """Perfect detections of `objects`, all with one score."""
    return [car(*o.location[::2], score, y=o.location[1]) for o in objects]


def test_perfect_predictions():
    dt = {frame: detect(objs, 0.9) for frame, objs in GT.items()}
    assert kitti_ap(GT, dt, 0.7, "bev") == 1.0
    assert kitti_ap(GT, dt, 0.7, "3d") == 1.0
    assert evaluate_kitti(GT, dt) == {"ap_bev": 1.0, "ap_3d": 1.0, "ap_bev_50": 1.0, "ap_3d_50": 1.0, "recall": 1.0}


def test_no_predictions():
    assert kitti_ap(GT, {}, 0.7, "bev") == 0.0
    assert kitti_ap(GT, {"a": [], "b": []}, 0.7, "3d") == 0.0
    assert kitti_recall(GT, {}) == 0.0


def test_half_detected():
    # recall reaches 2/4 at precision 1: positions 1/40 … 20/40 score 1, the other 20 score 0
    dt = {"a": detect(GT["a"], 0.9)}
    assert kitti_ap(GT, dt, 0.7, "bev") == pytest.approx(20 / 40)
    assert kitti_recall(GT, dt) == 0.5


def test_false_positive_with_the_highest_score():
    gt = {"a": GT["a"]}
    dt = {"a": [car(50, 50, 0.95), *detect(GT["a"][:1], 0.9), *detect(GT["a"][1:], 0.8)]}
    # operating points (recall, precision): (0, 0), (1/2, 1/2), (1, 2/3) → every position interpolates to 2/3
    assert kitti_ap(gt, dt, 0.7, "bev") == pytest.approx(2 / 3)
    dt["a"][0].score = 0.1  # the same false positive ranked last costs nothing
    assert kitti_ap(gt, dt, 0.7, "bev") == 1.0


def test_tied_scores_enter_together():
    gt = {"a": GT["a"][:1]}
    fp_first = {"a": [car(50, 50, 0.5), *detect(gt["a"], 0.5)]}
    tp_first = {"a": [*detect(gt["a"], 0.5), car(50, 50, 0.5)]}
    assert kitti_ap(gt, fp_first, 0.7, "bev") == kitti_ap(gt, tp_first, 0.7, "bev") == pytest.approx(0.5)


def test_duplicate_is_a_false_positive():
    gt = {"a": GT["a"]}
    dt = {"a": detect(GT["a"][:1], 0.9) + detect(GT["a"][:1], 0.85) + detect(GT["a"][1:], 0.8)}
    # (recall, precision): (1/2, 1), (1/2, 1/2), (1, 2/3) → 20 positions at 1, 20 at 2/3
    assert kitti_ap(gt, dt, 0.7, "bev") == pytest.approx((20 * 1 + 20 * 2 / 3) / 40)


def test_detection_on_dontcare_is_ignored():
    region = (800.0, 160.0, 830.0, 185.0)
    far = car(40, 60, 0.95, bbox=(805.0, 165.0, 828.0, 183.0))  # no 3D overlap with anything
    dt = {"a": [far, *detect(GT["a"][:1], 0.9)]}
    assert kitti_ap({"a": GT["a"][:1] + [dontcare(region)]}, dt, 0.7, "3d") == 1.0
    assert kitti_ap({"a": GT["a"][:1]}, dt, 0.7, "3d") == pytest.approx(0.5)  # without the region: a FP first


def test_detection_on_a_distractor_class_is_a_false_positive():
    misc = car(-10, 20, kind="Misc")
    dt = {"a": [car(-10, 20, 0.95), *detect(GT["a"][:1], 0.9)]}
    assert kitti_ap({"a": [GT["a"][0], misc]}, dt, 0.7, "bev") == pytest.approx(0.5)  # FP first, then the TP


def test_detection_on_the_neighbouring_class_is_ignored():
    van = car(-10, 20, kind="Van")
    dt = {"a": [car(-10, 20, 0.95), *detect(GT["a"][:1], 0.9)]}
    assert kitti_ap({"a": [GT["a"][0], van]}, dt, 0.7, "bev") == 1.0
    assert kitti_ap({"a": [GT["a"][0], van]}, dt, 0.7, "bev", cls="Van") == 0.0  # Car detections do not count


def test_iou_thresholds_and_metrics():
    gt = {"a": [car(0, 20)]}
    shifted = {"a": [car(1, 20, 0.9)]}  # 1 m along its length: IoU (3 × 1.6) / (2·6.4 − 4.8) = 0.6
    raised = {"a": [car(0, 20, 0.9, y=1.7 - 0.75)]}  # half its height up: BEV IoU 1, 3D IoU 1/3
    assert evaluate_kitti(gt, shifted) == {"ap_bev": 0.0, "ap_3d": 0.0, "ap_bev_50": 1.0, "ap_3d_50": 1.0,
                                           "recall": 1.0}
    assert evaluate_kitti(gt, raised) == {"ap_bev": 1.0, "ap_3d": 0.0, "ap_bev_50": 1.0, "ap_3d_50": 0.0,
                                          "recall": 1.0}


def test_recall_ignores_scores():
    dt = {"a": [car(0, 20, 0.01), car(50, 50, 0.99)], "b": [car(10.5, 30, 0.02)]}
    assert kitti_recall(GT, dt) == pytest.approx(2 / 4)
    assert kitti_recall(GT, dt, iou_threshold=0.9) == pytest.approx(1 / 4)


def test_no_ground_truth_is_nan():
    assert math.isnan(kitti_ap({"a": []}, {"a": [car(0, 20, 0.9)]}, 0.7, "bev"))
    assert math.isnan(kitti_recall({"a": [dontcare((0, 0, 10, 10))]}, {}))


def test_bad_inputs():
    with pytest.raises(InputError) as exc:
        kitti_ap(GT, {"000008": detect(GT["a"], 0.9)}, 0.7, "bev")
    assert "without ground truth" in str(exc.value) and "000008" in str(exc.value)
    with pytest.raises(InputError) as exc:
        kitti_ap(GT, {"a": detect(GT["a"], 0.9) + [car(0, 20)]}, 0.7, "bev")
    assert "no score" in str(exc.value)
    with pytest.raises(ValueError):
        kitti_ap(GT, {}, 0.7, "2d")


@pytest.mark.skipif(not REAL_LABEL.is_file(), reason=f"real KITTI label not found at {REAL_LABEL}")
def test_real_labels_as_detections():
    labels = read_label(REAL_LABEL)
    dt = [KittiObject(**{**vars(obj), "score": 1.0 - i / 10}) for i, obj in enumerate(labels) if obj.type == "Car"]
    assert evaluate_kitti({"000008": labels}, {"000008": dt}) == {
        "ap_bev": 1.0, "ap_3d": 1.0, "ap_bev_50": 1.0, "ap_3d_50": 1.0, "recall": 1.0}
    assert kitti_ap({"000008": labels}, {"000008": dt[:3]}, 0.7, "3d") == pytest.approx(20 / 40)
