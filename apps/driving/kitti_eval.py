"""KITTI 3D object AP (40 recall positions, BEV and 3D) and recall, the driving benchmark's ranking metrics.

Protocol, per frame, for one class (default Car), detections taken best score first:
- a detection matches the unmatched ground truth of that class with the highest IoU ≥ the threshold: TP;
- otherwise it is *ignored* (neither TP nor FP) when it overlaps, at IoU ≥ the threshold, a ground truth
  of the neighbouring class (Van for Car, Person_sitting for Pedestrian, as in the devkit), or when at
  least `DONTCARE_COVER` of its 2D box lies inside a DontCare region (DontCare labels carry only a 2D
  box); otherwise it is a FP (duplicates included).
Over all frames, operating points are the distinct scores (ties enter together, as with the devkit's
score thresholds). AP R40 = mean over r = 1/40 … 40/40 of the interpolated precision max{p : recall ≥ r}.
IoUs are computed between camera boxes directly (no calibration needed): BEV on the ground plane, 3D
as BEV overlap × vertical overlap over the union volume.

Simplifications against the official devkit (cpp / `kitti_object_eval_python`):
- no difficulty levels: every ground truth of the class counts, whatever its height, truncation or
  occlusion (closest to the devkit's "hard" level), and no detection is dropped for a small 2D box;
- a neighbouring-class ground truth is an ignore region for overlapping detections (the devkit instead
  ignores it as a ground truth); every other class (Misc, Truck, Cyclist …) is background, so a Car
  detection on it is a false positive; DontCare is honoured for BEV/3D via the 2D box (the devkit
  applies DontCare only to its 2D metric);
- matching is greedy by score (COCO-style) rather than the devkit's two-pass threshold scan; for
  well-separated boxes both give the same result.
AP and recall are fractions in [0, 1] (the devkit prints percentages); NaN when there is no ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from apps.driving.boxes import BEV_COLUMNS, bev_iou, boxes3d_camera_to_upright, iou3d
from apps.driving.kitti import DONTCARE, KittiObject, camera_box_array
from common.errors import InputError

Metric = Literal["bev", "3d"]
R40_POSITIONS = 40
CAR_IOU = 0.7  # the KITTI threshold for Car
LOOSE_IOU = 0.5  # the second threshold reported, and the recall threshold of the contract
# Share of a detection's 2D box that must lie inside a DontCare region for the detection to be ignored.
DONTCARE_COVER = 0.5
_TP, _FP, _IGNORED = 1, 0, -1
# Classes whose ground truths neither count nor penalise a detection of the key class (the devkit's rule).
NEIGHBOUR_CLASSES: dict[str, tuple[str, ...]] = {"Car": ("Van",), "Pedestrian": ("Person_sitting",)}


@dataclass
class _Frame:
    """One frame's boxes for one class, in the calibration-free upright layout used for IoU."""

    gt: np.ndarray  # (G, 7) ground truths of the class
    others: np.ndarray  # (O, 7) ground truths of the neighbouring class (ignore regions)
    dontcare: np.ndarray  # (D, 4) DontCare 2D boxes
    dt: np.ndarray  # (K, 7) detections of the class, best score first
    dt_2d: np.ndarray  # (K, 4)
    scores: np.ndarray  # (K,) descending


def _bbox_array(objects: list[KittiObject]) -> np.ndarray:
    """(N, 4) 2D boxes x1, y1, x2, y2."""
    return np.array([obj.bbox for obj in objects], dtype=np.float64).reshape(-1, 4)


def _frames(
    gt: dict[str, list[KittiObject]], dt: dict[str, list[KittiObject]], cls: str
) -> list[_Frame]:
    """Split every frame's labels and detections into the arrays the matcher needs."""
    neighbours = NEIGHBOUR_CLASSES.get(cls, ())
    unknown = sorted(set(dt) - set(gt))
    if unknown:
        raise InputError(None, f"detections for {len(unknown)} frame(s) without ground truth, e.g. {unknown[0]!r}")
    frames = []
    for frame_id, labels in gt.items():
        dets = [obj for obj in dt.get(frame_id, []) if obj.type == cls]
        if any(obj.score is None for obj in dets):
            raise InputError(None, f"frame {frame_id}: a {cls} detection has no score")
        dets.sort(key=lambda obj: -float(obj.score))  # stable: equal scores keep file order
        frames.append(
            _Frame(
                gt=boxes3d_camera_to_upright(camera_box_array([o for o in labels if o.type == cls])),
                others=boxes3d_camera_to_upright(
                    camera_box_array([o for o in labels if o.type in neighbours])
                ),
                dontcare=_bbox_array([o for o in labels if o.type == DONTCARE]),
                dt=boxes3d_camera_to_upright(camera_box_array(dets)),
                dt_2d=_bbox_array(dets),
                scores=np.array([float(o.score) for o in dets], dtype=np.float64),
            )
        )
    return frames


def _overlap(a: np.ndarray, b: np.ndarray, metric: Metric) -> np.ndarray:
    """IoU matrix of upright boxes under the chosen KITTI metric."""
    if metric == "bev":
        return bev_iou(a[:, BEV_COLUMNS], b[:, BEV_COLUMNS])
    if metric == "3d":
        return iou3d(a, b)
    raise ValueError(f"metric must be 'bev' or '3d', got {metric!r}")


def _dontcare_cover(dt_2d: np.ndarray, dontcare: np.ndarray) -> np.ndarray:
    """(K,) largest share of each detection's 2D box inside any DontCare box."""
    if not len(dontcare) or not len(dt_2d):
        return np.zeros(len(dt_2d))
    w = np.minimum(dt_2d[:, None, 2], dontcare[None, :, 2]) - np.maximum(dt_2d[:, None, 0], dontcare[None, :, 0])
    h = np.minimum(dt_2d[:, None, 3], dontcare[None, :, 3]) - np.maximum(dt_2d[:, None, 1], dontcare[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area = (dt_2d[:, 2] - dt_2d[:, 0]) * (dt_2d[:, 3] - dt_2d[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area > 0, inter.max(axis=1) / area, 0.0)


@dataclass
class _Evaluator:
    """Frames plus cached IoU matrices, so several thresholds reuse one IoU computation per metric."""

    frames: list[_Frame]
    _cache: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)

    def overlaps(self, metric: Metric) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame: (detections × class GTs, detections × other-class GTs) IoU."""
        if metric not in self._cache:
            self._cache[metric] = [
                (_overlap(f.dt, f.gt, metric), _overlap(f.dt, f.others, metric)) for f in self.frames
            ]
        return self._cache[metric]

    def match(self, metric: Metric, threshold: float) -> tuple[np.ndarray, np.ndarray, int]:
        """Scores and TP/FP/ignored status of every detection, and the number of ground truths."""
        scores, status = [], []
        for frame, (iou_gt, iou_other) in zip(self.frames, self.overlaps(metric), strict=True):
            free = np.ones(len(frame.gt), dtype=bool)
            ignorable = (iou_other >= threshold).any(axis=1) | (
                _dontcare_cover(frame.dt_2d, frame.dontcare) >= DONTCARE_COVER
            )
            frame_status = np.full(len(frame.dt), _FP)
            for k in range(len(frame.dt)):
                candidates = np.where(free & (iou_gt[k] >= threshold), iou_gt[k], -1.0)
                if len(candidates) and candidates.max() >= 0:
                    best = int(np.argmax(candidates))
                    free[best] = False
                    frame_status[k] = _TP
                elif ignorable[k]:
                    frame_status[k] = _IGNORED
            scores.append(frame.scores)
            status.append(frame_status)
        n_gt = sum(len(f.gt) for f in self.frames)
        return np.concatenate([np.zeros(0), *scores]), np.concatenate([np.zeros(0, int), *status]), n_gt


def _average_precision_r40(scores: np.ndarray, status: np.ndarray, n_gt: int) -> float:
    """AP over 40 recall positions from matched detections, operating points at distinct scores."""
    if n_gt == 0:
        return float("nan")
    counted = status != _IGNORED
    scores, is_tp = scores[counted], status[counted] == _TP
    if not len(scores):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    scores, is_tp = scores[order], is_tp[order]
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tp, fp = tp[last_of_tie], fp[last_of_tie]
    precision = tp / (tp + fp)
    positions = np.arange(1, R40_POSITIONS + 1)
    # recall ≥ k/40 ⇔ 40·tp ≥ k·n_gt, in integers so no position is lost to rounding
    reached = R40_POSITIONS * tp[None, :] >= positions[:, None] * n_gt
    interpolated = np.where(reached, precision[None, :], 0.0).max(axis=1)
    return float(interpolated.mean())


def kitti_ap(
    gt: dict[str, list[KittiObject]],
    dt: dict[str, list[KittiObject]],
    iou_threshold: float,
    metric: Metric,
    cls: str = "Car",
) -> float:
    """AP R40 of one class under BEV or 3D IoU, as a fraction; frames absent from `dt` have no detections."""
    scores, status, n_gt = _Evaluator(_frames(gt, dt, cls)).match(metric, iou_threshold)
    return _average_precision_r40(scores, status, n_gt)


def kitti_recall(
    gt: dict[str, list[KittiObject]],
    dt: dict[str, list[KittiObject]],
    iou_threshold: float = LOOSE_IOU,
    cls: str = "Car",
) -> float:
    """Share of ground-truth boxes matched by any detection (whatever its score) at BEV IoU ≥ the threshold."""
    _, status, n_gt = _Evaluator(_frames(gt, dt, cls)).match("bev", iou_threshold)
    return float(np.sum(status == _TP) / n_gt) if n_gt else float("nan")


def evaluate_kitti(
    gt: dict[str, list[KittiObject]], dt: dict[str, list[KittiObject]], cls: str = "Car"
) -> dict[str, float]:
    """The benchmark's driving metrics in one pass: AP BEV/3D at IoU 0.7 and 0.5, and recall at BEV IoU 0.5."""
    evaluator = _Evaluator(_frames(gt, dt, cls))
    result = {}
    for name, metric, threshold in (
        ("ap_bev", "bev", CAR_IOU),
        ("ap_3d", "3d", CAR_IOU),
        ("ap_bev_50", "bev", LOOSE_IOU),
        ("ap_3d_50", "3d", LOOSE_IOU),
    ):
        result[name] = _average_precision_r40(*evaluator.match(metric, threshold))
    _, status, n_gt = evaluator.match("bev", LOOSE_IOU)
    result["recall"] = float(np.sum(status == _TP) / n_gt) if n_gt else float("nan")
    return result
