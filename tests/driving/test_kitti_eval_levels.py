"""KITTI difficulty levels, ignored classes, DontCare and small detections, one rule per test; and a random
scene pinned to the numbers OpenPCDet's `kitti_object_eval_python` gives for it.

Each rule test uses two base ground truths found perfectly plus the case under test, detected with the
top score: with n counted ground truths and no false positive AP = (n − 1) / 40, so the AP shows both
whether the extra ground truth counts and whether its detection became a false positive.
"""
from __future__ import annotations

import math
import random

import pytest

from apps.driving.kitti import KittiObject
from apps.driving.kitti_eval import contract_metrics, evaluate_kitti, kitti_ap

LEVELS = ("easy", "moderate", "hard")


def obj(x: float, score: float | None = None, *, kind: str = "Car", height: float = 60.0, occluded: int = 0,
        truncated: float = 0.0, top: float = 150.0, dims: tuple[float, float, float] = (1.5, 1.6, 4.0)) -> KittiObject:
    """A box at camera (x, 1.7, 20), its 2D box 60 px wide at u = 600 + 10·x and `height` px tall."""
    bbox = (570.0 + 10 * x, top, 630.0 + 10 * x, top + height)
    return KittiObject(kind, truncated, occluded, 0.0, bbox, dims, (x, 1.7, 20.0), 0.0, score)


def copy_of(o: KittiObject, score: float, **changes) -> KittiObject:
    """A detection equal to the label, with a score."""
    return KittiObject(**{**vars(o), "score": score, "truncated": 0.0, "occluded": 0, **changes})


BASE = [obj(-20), obj(-10)]  # two easy cars


def scene(extra_gt: list[KittiObject], extra_dt: list[KittiObject]) -> tuple[dict, dict]:
    """The base cars found at scores 0.5 and 0.4, plus the case under test."""
    return {"f": BASE + extra_gt}, {"f": [copy_of(BASE[0], 0.5), copy_of(BASE[1], 0.4), *extra_dt]}


def ap_per_level(gt: dict, dt: dict, metric: str = "bev", iou: float = 0.7, cls: str = "Car") -> list[float]:
    return [kitti_ap(gt, dt, iou, metric, cls=cls, level=level) for level in LEVELS]


@pytest.mark.parametrize(
    ("case", "counted"),
    [
        ({}, (1, 1, 1)),
        ({"occluded": 1}, (0, 1, 1)),
        ({"occluded": 2}, (0, 0, 1)),
        ({"occluded": 3}, (0, 0, 0)),
        ({"truncated": 0.15}, (1, 1, 1)),  # limits are inclusive: truncation must *exceed* them
        ({"truncated": 0.16}, (0, 1, 1)),
        ({"truncated": 0.3}, (0, 1, 1)),
        ({"truncated": 0.31}, (0, 0, 1)),
        ({"truncated": 0.5}, (0, 0, 1)),
        ({"truncated": 0.51}, (0, 0, 0)),
        ({"height": 40.0}, (0, 1, 1)),  # height must be strictly above the minimum
        ({"height": 40.5}, (1, 1, 1)),
        ({"height": 25.0}, (0, 0, 0)),
        ({"height": 26.0}, (0, 1, 1)),
    ],
)
def test_difficulty_filters(case, counted):
    car = obj(0, **case)
    # the detection has the same 2D box: where it is too small, the ground truth is outside the level too
    gt, dt = scene([car], [copy_of(car, 0.9)])
    # counted: n = 3, no FP → 2/40; not counted: n = 2 and its detection is matched to an ignored
    # ground truth (no FP) → 1/40
    expected = [(2 if c else 1) / 40 for c in counted]
    for metric in ("2d", "bev", "3d"):
        assert ap_per_level(gt, dt, metric) == pytest.approx(expected), metric


def test_neighbour_class_is_ignored_other_classes_are_background():
    van = obj(0, kind="Van", dims=(2.0, 1.8, 4.8))
    # a Car detection on a Van: no FP, and the Van is no ground truth to find
    assert ap_per_level(*scene([van], [copy_of(van, 0.9, type="Car")])) == pytest.approx([1 / 40] * 3)
    # on a Truck (or Misc, Cyclist …) it is a FP ranked first: precision 1/2, 2/3 → 2/3 at position 1
    truck = obj(0, kind="Truck")
    assert ap_per_level(*scene([truck], [copy_of(truck, 0.9, type="Car")])) == pytest.approx([(2 / 3) / 40] * 3)
    # class names compare case-insensitively; a large Van *detection* is left out, not a FP
    assert ap_per_level(*scene([obj(0, kind="CAR")], [copy_of(obj(0), 0.9)])) == pytest.approx([2 / 40] * 3)
    assert ap_per_level(*scene([], [copy_of(obj(0), 0.9, type="Van")])) == pytest.approx([1 / 40] * 3)
    # Person_sitting is Pedestrian's neighbour
    sitting = obj(0, kind="Person_sitting", dims=(1.2, 0.6, 0.8))
    gt, dt = {"f": [obj(-20, kind="Pedestrian"), obj(-10, kind="Pedestrian"), sitting]}, {
        "f": [copy_of(obj(-20, kind="Pedestrian"), 0.5), copy_of(obj(-10, kind="Pedestrian"), 0.4),
              copy_of(sitting, 0.9, type="Pedestrian")]}
    assert ap_per_level(gt, dt, cls="Pedestrian") == pytest.approx([1 / 40] * 3)


def test_dontcare_absorbs_false_positives_in_2d_only():
    region = (870.0, 150.0, 930.0, 210.0)
    dontcare = KittiObject("DontCare", -1, -1, -10, region, (-1, -1, -1), (-1000, -1000, -1000), -10)
    fp = copy_of(obj(30), 0.9)  # 2D box exactly on the region, 3D box where nothing is
    gt, dt = scene([dontcare], [fp])
    metrics = contract_metrics(gt, dt)
    assert [metrics[f"ap_2d_{level}"] for level in LEVELS] == pytest.approx([1 / 40] * 3)
    for metric in ("bev", "3d"):  # BEV and 3D ignore DontCare: a FP ranked first
        assert [metrics[f"ap_{metric}_{level}"] for level in LEVELS] == pytest.approx([(2 / 3) / 40] * 3)
    # the share of the detection's own 2D box inside the region must exceed the IoU threshold
    partly = copy_of(obj(30), 0.9, bbox=(894.0, 150.0, 954.0, 210.0))  # 36 / 60 = 0.6 inside
    metrics = contract_metrics(*scene([dontcare], [partly]))
    assert metrics["ap_2d_moderate"] == pytest.approx((2 / 3) / 40)  # 0.6 is not > 0.7: a FP
    assert metrics["ap_2d_50_moderate"] == pytest.approx(1 / 40)  # but > 0.5: absorbed


def test_small_detections_are_ignored():
    tiny = copy_of(obj(30), 0.9, bbox=(870.0, 150.0, 930.0, 170.0))  # 20 px: below every level's minimum
    assert ap_per_level(*scene([], [tiny])) == pytest.approx([1 / 40] * 3)
    mid = copy_of(obj(30), 0.9, bbox=(870.0, 150.0, 930.0, 180.0))  # 30 px: ignored for easy only
    assert ap_per_level(*scene([], [mid])) == pytest.approx([1 / 40, (2 / 3) / 40, (2 / 3) / 40])
    exactly = copy_of(obj(30), 0.9, bbox=(870.0, 150.0, 930.0, 190.0))  # 40 px is not under 40: counted
    assert ap_per_level(*scene([], [exactly])) == pytest.approx([(2 / 3) / 40] * 3)
    # a small detection of *any* class is ignored rather than left out, so it can use up a ground truth:
    # the car it overlaps is then neither found nor missed, and recall counts it as not found
    car = obj(0)
    small_pedestrian = copy_of(car, 0.9, type="Pedestrian", bbox=(570.0, 150.0, 630.0, 170.0))
    gt, dt = scene([car], [small_pedestrian])
    assert ap_per_level(gt, dt) == pytest.approx([1 / 40] * 3)
    assert evaluate_kitti(gt, dt)["recall"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------------------
# A random scene against the reference
# --------------------------------------------------------------------------------------------------
FOCAL, CENTRE_U, CENTRE_V = 721.5, 609.6, 172.9


def _image_box(x: float, y: float, z: float, h: float, length: float) -> tuple[float, float, float, float]:
    """A rough 2D box of a camera box (pinhole on its extents)."""
    half = FOCAL * length / 2 / z
    u = CENTRE_U + FOCAL * x / z
    return (u - half, CENTRE_V + FOCAL * (y - h) / z, u + half, CENTRE_V + FOCAL * y / z)


def random_scene(seed: int, n_frames: int = 40) -> tuple[dict[str, list[KittiObject]], dict[str, list[KittiObject]]]:
    """Cars of every level, Vans, Trucks, Pedestrians, DontCare; jittered detections, duplicates, false
    positives, tied scores, tiny 2D boxes and flipped headings; some frames without ground truth or results."""
    rnd = random.Random(seed)
    gt: dict[str, list[KittiObject]] = {}
    dt: dict[str, list[KittiObject]] = {}
    for f in range(n_frames):
        labels, detections = [], []
        for _ in range(rnd.randint(0, 8)):
            kind = rnd.choice(("Car", "Car", "Car", "Car", "Van", "Pedestrian", "Truck", "DontCare"))
            x, y, z = rnd.uniform(-15, 15), rnd.uniform(1.5, 1.9), rnd.uniform(5, 50)
            h, w, length = {"Van": (2.2, 1.9, 5.0), "Pedestrian": (1.75, 0.6, 0.8)}.get(kind, (1.5, 1.6, 3.9))
            h, w, length = (v * rnd.uniform(0.9, 1.1) for v in (h, w, length))
            bbox = _image_box(x, y, z, h, length)
            if kind == "DontCare":
                labels.append(KittiObject(kind, -1, -1, -10, bbox, (-1, -1, -1), (-1000, -1000, -1000), -10))
                continue
            ry = rnd.uniform(-math.pi, math.pi)
            alpha = ry - math.atan2(x, z)
            labels.append(KittiObject(kind, rnd.choice((0.0, 0.0, 0.1, 0.15, 0.3, 0.45, 0.7)),
                                      rnd.choice((0, 0, 1, 2, 3)), alpha, bbox, (h, w, length), (x, y, z), ry))
            if kind in ("Car", "Van") and rnd.random() < 0.85:
                for _ in range(1 + (rnd.random() < 0.15)):  # sometimes a duplicate
                    turn = rnd.uniform(-0.2, 0.2) + (math.pi if rnd.random() < 0.1 else 0.0)
                    box = [v + rnd.uniform(-4, 4) for v in bbox]
                    if rnd.random() < 0.05:
                        box[3] = box[1] + rnd.uniform(5, 24)
                    detections.append(KittiObject(
                        "Car", 0.0, 0, alpha + turn, tuple(box),
                        tuple(v * rnd.uniform(0.92, 1.08) for v in (h, w, length)),
                        (x + rnd.uniform(-0.4, 0.4), y + rnd.uniform(-0.1, 0.1), z + rnd.uniform(-0.6, 0.6)),
                        ry + turn, round(rnd.random(), 2)))
        for _ in range(rnd.randint(0, 2)):  # false positives
            x, z = rnd.uniform(-15, 15), rnd.uniform(5, 50)
            detections.append(KittiObject("Car", 0.0, 0, 0.3, _image_box(x, 1.7, z, 1.5, 3.9), (1.5, 1.6, 3.9),
                                          (x, 1.7, z), 0.3 + math.atan2(x, z), round(rnd.random() * 0.6, 2)))
        gt[f"{f:06d}"] = labels
        if rnd.random() < 0.9:
            dt[f"{f:06d}"] = detections
    return gt, dt


# OpenPCDet's do_eval (R40, fractions) on random_scene(11), its rotate_iou kernel run on the CPU.
REFERENCE_SCENE_11 = {
    "aos_easy": 0.04608906026163453,
    "aos_hard": 0.6175210603950387,
    "aos_moderate": 0.5289990343937123,
    "ap_2d_50_easy": 0.04971590909090909,
    "ap_2d_50_hard": 0.6215296618833988,
    "ap_2d_50_moderate": 0.5369373918742524,
    "ap_2d_easy": 0.04971590909090909,
    "ap_2d_hard": 0.6232473014314985,
    "ap_2d_moderate": 0.5352220140762882,
    "ap_3d_50_easy": 0.02583333333333333,
    "ap_3d_50_hard": 0.34550355666550103,
    "ap_3d_50_moderate": 0.26191874255180103,
    "ap_3d_easy": 0.0,
    "ap_3d_hard": 0.02986203457446808,
    "ap_3d_moderate": 0.02502329192546584,
    "ap_bev_50_easy": 0.05458333333333333,
    "ap_bev_50_hard": 0.4584808638132107,
    "ap_bev_50_moderate": 0.36165873509696067,
    "ap_bev_easy": 0.0018518518518518517,
    "ap_bev_hard": 0.059512860508465805,
    "ap_bev_moderate": 0.03644838222878151,
}


def test_random_scene_matches_the_reference():
    metrics = contract_metrics(*random_scene(11))
    assert metrics == pytest.approx(REFERENCE_SCENE_11, abs=1e-9)
