"""KITTI 3D object metrics (AP R40 for 2D, BEV and 3D boxes, AOS) as the devkit's Python port computes them.

The reference is `kitti_object_eval_python/eval.py` as OpenPCDet and MMDetection3D ship it
(`get_official_eval_result`, the R40 numbers). Every rule below is that port's; results agree with it
to float rounding (checked on random scenes against the reference, see the tests).

Per difficulty level (easy / moderate / hard), per frame:
- ground truth of the class: *counted* when occlusion ≤ 0 / 1 / 2, truncation ≤ 0.15 / 0.3 / 0.5 and
  2D box height > 40 / 25 / 25 px (strictly: a 40 px box is not easy), otherwise *ignored*; the
  neighbouring class (Van for Car, Person_sitting for Pedestrian) is always ignored; every other
  class and DontCare is not a ground truth at all. Class names compare case-insensitively.
- detection: *ignored* when its 2D height |y2 - y1| < 40 / 25 / 25 px, whatever its class (a small
  detection of another class can so absorb a ground truth); otherwise counted when of the class and
  left out when not.
- a match needs IoU strictly above the threshold (`>`, so IoU exactly 0.7 misses at 0.7). Ground truths
  are visited in file order. A ground truth matched by an ignored detection, or an ignored ground truth
  matched by any detection, is neither TP nor FN and uses the detection up.
- DontCare regions count only for the 2D metric: an unmatched counted detection whose 2D box lies
  inside one by more than the threshold (intersection over the *detection's* area) is not a FP.
  BEV and 3D ignore DontCare.

Over all frames, two passes (`compute_statistics_jit`):
1. score thresholds: each ground truth, in order, takes the unused detection of highest score above the
   IoU threshold (ties: the first in the file); the scores of the TPs, best first, are sampled at
   41 recall positions 0, 1/40, …, 1 by `get_thresholds`: it keeps the score whose recall
   (i + 1) / n_gt is closest to the next position (on a tie, the earlier score), then moves on by 1/40.
2. per threshold t, detections scored ≥ t: each ground truth takes the unused *counted* detection of
   highest IoU above the threshold (ties: the first), or failing that the first ignored one above it;
   precision = TP / (TP + FP), AOS = Σ_TP (1 + cos(α_gt − α_dt)) / 2 / (TP + FP), α from the files.
Both curves are made non-increasing from the right (max over the later thresholds), and AP R40 / AOS R40
is the sum of positions 1 … 40 (position 0, the first threshold, is skipped) over 40. Positions beyond
the thresholds found count 0, so a level without any counted ground truth (or without any TP) scores 0,
as in the reference. With n ≤ 40 counted ground truths every TP score is a threshold, so even a perfect
detector scores (n − 1) / 40: a level needs more than 40 ground truths to reach 1. AOS needs angles:
as in the reference, it is NaN (not computed) when the first detection of the first frame that has
any carries the KITTI "unset" alpha −10.

Where we deliberately differ: rotated BEV/3D IoUs are the exact float64 polygon clipping of
`apps.driving.boxes` instead of the port's float32 `rotate_iou` CUDA kernel, which mis-measures boxes
that share their centre and heading (IoU 0 for a detection bit-identical to its label, negative values
when only the length differs); elsewhere the two IoUs agree to ~1e-4, so APs differ only when an IoU
lies that close to a threshold. 3D IoU is the reference's: BEV overlap times the overlap of the
camera-frame height ranges [y − h, y] (y points down, y is the bottom) over the union volume.
The `_50` keys use IoU 0.5 for every metric, 2D included (the port's official second row keeps 0.7
for the Car 2D box, so its "bbox AP" there is our `ap_2d`). Results are fractions in [0, 1] (the
port prints percentages).

`recall` (pipeline metric, not the port's): share of the *moderate* counted ground truths that the second
pass assigns a counted detection at BEV IoU > 0.5 with every detection kept (no score threshold); a
ground truth taken only by a too-small detection counts as missed. NaN without moderate ground truth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from apps.driving.boxes import BEV_COLUMNS, bev_intersection_area, boxes3d_camera_to_upright
from apps.driving.kitti import DONTCARE, KittiObject, camera_box_array, read_label
from common.errors import InputError

Metric = Literal["2d", "bev", "3d"]
Level = Literal["easy", "moderate", "hard"]
METRICS: tuple[Metric, ...] = ("2d", "bev", "3d")
LEVELS: tuple[Level, ...] = ("easy", "moderate", "hard")
# clean_data's difficulty limits, per level.
MIN_HEIGHT: dict[str, float] = {"easy": 40.0, "moderate": 25.0, "hard": 25.0}  # px, 2D box height
MAX_OCCLUSION: dict[str, int] = {"easy": 0, "moderate": 1, "hard": 2}
MAX_TRUNCATION: dict[str, float] = {"easy": 0.15, "moderate": 0.3, "hard": 0.5}
CAR_IOU = 0.7  # the KITTI threshold for Car
LOOSE_IOU = 0.5  # the second threshold reported, and the recall threshold of the contract
SAMPLE_POINTS = 41  # recall positions 0, 1/40, …, 1; R40 averages the last 40
# The port's "no detection yet" score: a detection scored at or below it never matches in the first pass.
NO_DETECTION_SCORE = -10_000_000.0
ALPHA_UNSET = -10.0  # KITTI's alpha for "not given"; the port skips AOS when detections carry it
# Classes whose ground truths are ignored (neither counted nor background) when evaluating the key.
NEIGHBOUR_CLASSES: dict[str, str] = {"car": "van", "pedestrian": "person_sitting"}
# Status codes, as the port's ignored_gt / ignored_det arrays hold them.
COUNTED, IGNORED, LEFT_OUT = 0, 1, -1
# Upper bound on (frames × thresholds × detections) booleans per padded block in the second pass.
_BLOCK_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------------------------------
# Frames → the boxes the matcher looks at
# --------------------------------------------------------------------------------------------------
@dataclass
class _Frame:
    """One frame's ground truths of the class or its neighbour and the detections that can match them.

    Everything else (other classes, DontCare as ground truth, large detections of other classes) can
    never be matched or counted, so it is dropped here; file order is kept because the matching visits
    ground truths in order and breaks ties by detection order.
    """

    gt_is_class: np.ndarray  # (G,) bool; False: the neighbouring class
    gt_height: np.ndarray  # (G,) y2 - y1, px
    gt_occluded: np.ndarray  # (G,)
    gt_truncated: np.ndarray  # (G,)
    gt_alpha: np.ndarray  # (G,)
    dt_is_class: np.ndarray  # (K,) bool
    dt_height: np.ndarray  # (K,) |y2 - y1|, px
    dt_score: np.ndarray  # (K,)
    dt_alpha: np.ndarray  # (K,)
    overlaps: dict[str, np.ndarray]  # metric → (K, G) IoU
    dontcare_cover: np.ndarray  # (K,) largest share of the detection's 2D box inside one DontCare box


def _bbox_array(objects: list[KittiObject]) -> np.ndarray:
    """(N, 4) 2D boxes x1, y1, x2, y2."""
    return np.array([obj.bbox for obj in objects], dtype=np.float64).reshape(-1, 4)


def _box_overlap_2d(dt: np.ndarray, gt: np.ndarray, over_detection: bool = False) -> np.ndarray:
    """(K, G) IoU of image boxes, or intersection over the detection's area (the DontCare test).

    Written as the port's `image_box_overlap` (no +1 pixel, zero unless both extents are positive),
    with the same operation order so that IoUs landing exactly on a threshold compare the same.
    """
    iw = np.minimum(dt[:, None, 2], gt[None, :, 2]) - np.maximum(dt[:, None, 0], gt[None, :, 0])
    ih = np.minimum(dt[:, None, 3], gt[None, :, 3]) - np.maximum(dt[:, None, 1], gt[None, :, 1])
    inter = iw * ih
    dt_area = ((dt[:, 2] - dt[:, 0]) * (dt[:, 3] - dt[:, 1]))[:, None]
    gt_area = ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))[None, :]
    denominator = dt_area if over_detection else dt_area + gt_area - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((iw > 0) & (ih > 0), inter / denominator, 0.0)


def _rotated_overlaps(dt_cam: np.ndarray, gt_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, G) BEV IoU and 3D IoU of camera boxes [x, y, z, h, w, l, ry], from one polygon clipping.

    3D: BEV overlap × height overlap over the union volume, the heights measured as the reference does
    in the camera frame: y points down and is the bottom of the box, so a box spans [y - h, y].
    """
    area = bev_intersection_area(
        boxes3d_camera_to_upright(dt_cam)[:, BEV_COLUMNS], boxes3d_camera_to_upright(gt_cam)[:, BEV_COLUMNS]
    )
    footprint_dt, footprint_gt = dt_cam[:, 4] * dt_cam[:, 5], gt_cam[:, 4] * gt_cam[:, 5]
    bev_union = footprint_dt[:, None] + footprint_gt[None, :] - area
    y_dt, h_dt, y_gt, h_gt = dt_cam[:, None, 1], dt_cam[:, None, 3], gt_cam[None, :, 1], gt_cam[None, :, 3]
    height = np.minimum(y_dt, y_gt) - np.maximum(y_dt - h_dt, y_gt - h_gt)
    volume = np.where((height > 0) & (area > 0), height * area, 0.0)
    union = (footprint_dt * dt_cam[:, 3])[:, None] + (footprint_gt * gt_cam[:, 3])[None, :] - volume
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bev_union > 0, area / bev_union, 0.0), np.where(volume > 0, volume / union, 0.0)


def _overlaps(dt: list[KittiObject], gt: list[KittiObject]) -> dict[str, np.ndarray]:
    """(K, G) IoU of detections against ground truths under each metric."""
    if not dt or not gt:
        empty = np.zeros((len(dt), len(gt)))
        return {"2d": empty, "bev": empty, "3d": empty}
    bev, box3d = _rotated_overlaps(camera_box_array(dt), camera_box_array(gt))
    return {"2d": _box_overlap_2d(_bbox_array(dt), _bbox_array(gt)), "bev": bev, "3d": box3d}


def _check_finite(frame_id: str, objects: list[KittiObject], what: str) -> None:
    """Non-finite fields would silently poison the IoUs and scores: refuse them with one line."""
    for obj in objects:
        values = [obj.truncated, obj.alpha, *obj.bbox, *obj.dimensions, *obj.location, obj.rotation_y]
        if obj.score is not None:
            values.append(obj.score)
        if not all(math.isfinite(float(v)) for v in values):
            raise InputError(None, f"frame {frame_id}: a {what} {obj.type} has a non-finite value")


def _frame(frame_id: str, labels: list[KittiObject], detections: list[KittiObject], cls: str) -> _Frame:
    """The arrays one frame contributes to the matcher."""
    key = cls.lower()
    neighbour = NEIGHBOUR_CLASSES.get(key)
    gts = [obj for obj in labels if obj.type.lower() in (key, neighbour)]
    # A detection can take part when of the class or small enough to be an ignored one at some level.
    largest_min_height = max(MIN_HEIGHT.values())
    dts = [obj for obj in detections
           if obj.type.lower() == key or abs(obj.bbox[3] - obj.bbox[1]) < largest_min_height]
    _check_finite(frame_id, gts, "ground truth")
    _check_finite(frame_id, dts, "detection")
    gt_bbox, dt_bbox = _bbox_array(gts), _bbox_array(dts)
    dontcare = _bbox_array([obj for obj in labels if obj.type == DONTCARE])
    cover = _box_overlap_2d(dt_bbox, dontcare, over_detection=True)
    return _Frame(
        gt_is_class=np.array([obj.type.lower() == key for obj in gts], dtype=bool),
        gt_height=gt_bbox[:, 3] - gt_bbox[:, 1],
        gt_occluded=np.array([obj.occluded for obj in gts], dtype=np.float64),
        gt_truncated=np.array([obj.truncated for obj in gts], dtype=np.float64),
        gt_alpha=np.array([obj.alpha for obj in gts], dtype=np.float64),
        dt_is_class=np.array([obj.type.lower() == key for obj in dts], dtype=bool),
        dt_height=np.abs(dt_bbox[:, 3] - dt_bbox[:, 1]),
        dt_score=np.array([obj.score for obj in dts], dtype=np.float64),
        dt_alpha=np.array([obj.alpha for obj in dts], dtype=np.float64),
        overlaps=_overlaps(dts, gts),
        dontcare_cover=cover.max(axis=1, initial=0.0),
    )


# --------------------------------------------------------------------------------------------------
# Padded blocks of frames, so both passes run as numpy over many frames at once
# --------------------------------------------------------------------------------------------------
@dataclass
class _Block:
    """Frames padded to common sizes: ground-truth slots (F, G), detection slots (F, K)."""

    gt_real: np.ndarray  # (F, G) bool
    gt_is_class: np.ndarray
    gt_height: np.ndarray
    gt_occluded: np.ndarray
    gt_truncated: np.ndarray
    gt_alpha: np.ndarray
    dt_real: np.ndarray  # (F, K) bool
    dt_is_class: np.ndarray
    dt_height: np.ndarray
    dt_score: np.ndarray  # padding -inf
    dt_alpha: np.ndarray
    dontcare_cover: np.ndarray
    overlaps: dict[str, np.ndarray]  # (F, K, G), padding -1 (never above a threshold)

    def gt_status(self, level: str) -> np.ndarray:
        """(F, G) COUNTED / IGNORED / LEFT_OUT per ground truth, as the port's clean_data."""
        outside = (
            (self.gt_occluded > MAX_OCCLUSION[level])
            | (self.gt_truncated > MAX_TRUNCATION[level])
            | (self.gt_height <= MIN_HEIGHT[level])
        )
        status = np.where(self.gt_is_class & ~outside, COUNTED, IGNORED)
        return np.where(self.gt_real, status, LEFT_OUT)

    def dt_status(self, level: str) -> np.ndarray:
        """(F, K) COUNTED / IGNORED / LEFT_OUT per detection: too small is ignored, another class left out."""
        status = np.where(self.dt_height < MIN_HEIGHT[level], IGNORED, np.where(self.dt_is_class, COUNTED, LEFT_OUT))
        return np.where(self.dt_real, status, LEFT_OUT)


def _pad(rows: list[np.ndarray], width: int, fill: float | bool) -> np.ndarray:
    """Stack 1-D arrays of different lengths into (len(rows), width), filling the tail."""
    out = np.full((len(rows), width), fill, dtype=bool if isinstance(fill, bool) else np.float64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _block(frames: list[_Frame]) -> _Block:
    """Pad a list of frames into one block (at least one slot each way, so reductions never see size 0)."""
    g = max(1, *(len(f.gt_is_class) for f in frames))
    k = max(1, *(len(f.dt_is_class) for f in frames))
    overlaps = {}
    for metric in METRICS:
        stacked = np.full((len(frames), k, g), -1.0)
        for i, f in enumerate(frames):
            stacked[i, : f.overlaps[metric].shape[0], : f.overlaps[metric].shape[1]] = f.overlaps[metric]
        overlaps[metric] = stacked
    return _Block(
        gt_real=_pad([np.ones(len(f.gt_is_class), bool) for f in frames], g, False),
        gt_is_class=_pad([f.gt_is_class for f in frames], g, False),
        gt_height=_pad([f.gt_height for f in frames], g, 0.0),
        gt_occluded=_pad([f.gt_occluded for f in frames], g, 0.0),
        gt_truncated=_pad([f.gt_truncated for f in frames], g, 0.0),
        gt_alpha=_pad([f.gt_alpha for f in frames], g, 0.0),
        dt_real=_pad([np.ones(len(f.dt_is_class), bool) for f in frames], k, False),
        dt_is_class=_pad([f.dt_is_class for f in frames], k, False),
        dt_height=_pad([f.dt_height for f in frames], k, 0.0),
        dt_score=_pad([f.dt_score for f in frames], k, -np.inf),
        dt_alpha=_pad([f.dt_alpha for f in frames], k, 0.0),
        dontcare_cover=_pad([f.dontcare_cover for f in frames], k, 0.0),
        overlaps=overlaps,
    )


def _blocks(frames: list[_Frame]) -> list[_Block]:
    """Frames that hold something, sorted by size and cut into blocks that bound the padded arrays."""
    busy = sorted(
        (f for f in frames if len(f.gt_is_class) or len(f.dt_is_class)),
        key=lambda f: (len(f.dt_is_class), len(f.gt_is_class)),
    )
    blocks, start = [], 0
    while start < len(busy):
        stop = start + 1
        while stop < len(busy):
            k = max(len(busy[stop].dt_is_class), 1)
            if (stop + 1 - start) * SAMPLE_POINTS * k > _BLOCK_ELEMENTS:
                break
            stop += 1
        blocks.append(_block(busy[start:stop]))
        start = stop
    return blocks


# --------------------------------------------------------------------------------------------------
# The two passes
# --------------------------------------------------------------------------------------------------
def _first_pass_tp_scores(block: _Block, level: str, metric: Metric, min_overlap: float) -> np.ndarray:
    """Scores of the TPs when each ground truth takes the best-scored free detection above the IoU."""
    gt_status, dt_status = block.gt_status(level), block.dt_status(level)
    overlap = block.overlaps[metric]
    frames = np.arange(len(gt_status))
    usable = (dt_status != LEFT_OUT) & (block.dt_score > NO_DETECTION_SCORE)
    used = np.zeros_like(usable)
    scores = []
    for g in range(gt_status.shape[1]):
        candidates = usable & ~used & (overlap[:, :, g] > min_overlap)
        found = candidates.any(axis=1) & (gt_status[:, g] != LEFT_OUT)
        best = np.argmax(np.where(candidates, block.dt_score, -np.inf), axis=1)  # first of equal scores
        is_tp = found & (gt_status[:, g] == COUNTED) & (dt_status[frames, best] == COUNTED)
        scores.append(block.dt_score[frames[is_tp], best[is_tp]])
        used[frames[found], best[found]] = True
    return np.concatenate([np.zeros(0), *scores])


def _score_thresholds(tp_scores: np.ndarray, n_gt: int) -> np.ndarray:
    """At most 41 score thresholds from the TP scores, sampled as the port's `get_thresholds` does.

    Walking the scores best first, the score at rank i (recall (i + 1) / n_gt) is kept when that
    recall is at least as close to the current sample position as the next rank's recall would be (the
    last score always is); each kept score moves the position on by 1/40, accumulated in float64.
    """
    scores = np.sort(tp_scores)[::-1]
    if not len(scores):
        return scores
    rank = np.arange(len(scores))
    left = (rank + 1) / n_gt
    right = np.where(rank < len(scores) - 1, (rank + 2) / n_gt, left)
    kept, position, start = [], 0.0, 0
    while start < len(scores):
        take = ~((right[start:] - position) < (position - left[start:]))
        take[-1] = True
        chosen = start + int(np.argmax(take))
        kept.append(scores[chosen])
        position += 1 / (SAMPLE_POINTS - 1.0)
        start = chosen + 1
    return np.array(kept)


@dataclass
class _Counts:
    """Per threshold, summed over frames: TP, FP, FN and the TPs' orientation similarity."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    similarity: np.ndarray


def _second_pass(
    block: _Block, level: str, metric: Metric, min_overlap: float, thresholds: np.ndarray
) -> _Counts:
    """Match at every score threshold at once: each ground truth takes the best-IoU free detection."""
    gt_status, dt_status = block.gt_status(level), block.dt_status(level)
    overlap = block.overlaps[metric]
    n_frames, n_gt = gt_status.shape
    counted = (dt_status == COUNTED)[:, None, :]  # (F, 1, K)
    ignored = (dt_status == IGNORED)[:, None, :]
    # (F, T, K): taking part at threshold t
    active = (block.dt_score[:, None, :] >= thresholds[None, :, None]) & (counted | ignored)
    used = np.zeros(active.shape, dtype=bool)
    n_thresholds = len(thresholds)
    tp, fn, similarity = np.zeros(n_thresholds), np.zeros(n_thresholds), np.zeros(n_thresholds)
    frames = np.arange(n_frames)[:, None]
    for g in range(n_gt):
        status = gt_status[:, g][:, None]  # (F, 1)
        iou = overlap[:, :, g][:, None, :]  # (F, 1, K)
        free = active & ~used & (iou > min_overlap)
        free_counted = free & counted
        has_counted = free_counted.any(axis=2)
        best_counted = np.argmax(np.where(free_counted, iou, -np.inf), axis=2)  # first of equal IoUs
        first_ignored = np.argmax(free & ignored, axis=2)
        chosen = np.where(has_counted, best_counted, first_ignored)  # (F, T)
        found = free.any(axis=2) & (status != LEFT_OUT)
        is_tp = found & has_counted & (status == COUNTED)
        tp += is_tp.sum(axis=0)
        fn += (~found & (status == COUNTED)).sum(axis=0)
        delta = block.gt_alpha[:, g][:, None] - block.dt_alpha[frames, chosen]
        similarity += np.where(is_tp, (1.0 + np.cos(delta)) / 2.0, 0.0).sum(axis=0)
        f_idx, t_idx = np.nonzero(found)
        used[f_idx, t_idx, chosen[f_idx, t_idx]] = True
    unmatched = active & counted & ~used
    if metric == "2d":  # DontCare regions absorb unmatched detections, for the image-box metric only
        unmatched &= ~(block.dontcare_cover > min_overlap)[:, None, :]
    return _Counts(tp=tp, fp=unmatched.sum(axis=(0, 2)).astype(np.float64), fn=fn, similarity=similarity)


def _r40(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """Sum of positions 1 … 40 of the right-to-left running maximum of numerator / denominator, over 40.

    Positions past the thresholds are 0; 0 / 0 is NaN and, as in the port, spreads to earlier positions.
    """
    curve = np.zeros(SAMPLE_POINTS)
    with np.errstate(divide="ignore", invalid="ignore"):
        curve[: len(numerator)] = numerator / denominator
    curve = np.maximum.accumulate(curve[::-1])[::-1]
    return float(curve[1:].sum() / (SAMPLE_POINTS - 1))


@dataclass
class _Evaluation:
    """Blocks of one set of frames, and the counts of moderate ground truths per level."""

    blocks: list[_Block]
    n_gt: dict[str, int]
    with_alpha: bool

    def counts(self, level: str, metric: Metric, min_overlap: float, thresholds: np.ndarray | None = None) -> _Counts:
        """Second-pass counts over all frames, at the thresholds of the first pass unless given."""
        if thresholds is None:
            tp_scores = np.concatenate(
                [np.zeros(0), *(_first_pass_tp_scores(b, level, metric, min_overlap) for b in self.blocks)]
            )
            thresholds = _score_thresholds(tp_scores, self.n_gt[level])
        total = _Counts(*(np.zeros(len(thresholds)) for _ in range(4)))
        if not len(thresholds):
            return total
        for block in self.blocks:
            part = _second_pass(block, level, metric, min_overlap, thresholds)
            total = _Counts(total.tp + part.tp, total.fp + part.fp, total.fn + part.fn,
                            total.similarity + part.similarity)
        return total

    def average_precision(self, level: str, metric: Metric, min_overlap: float) -> tuple[float, float]:
        """(AP R40, AOS R40) of one level, metric and IoU threshold; AOS NaN unless 2D with angles."""
        counts = self.counts(level, metric, min_overlap)
        ap = _r40(counts.tp, counts.tp + counts.fp)
        aos = _r40(counts.similarity, counts.tp + counts.fp) if metric == "2d" and self.with_alpha else math.nan
        return ap, aos

    def recall(self, min_overlap: float = LOOSE_IOU) -> float:
        """Share of moderate ground truths given a counted detection at BEV IoU >= min_overlap, any score
        (the contract's rule; the devkit's matching is strict, and IoU > the next float below is IoU >=)."""
        if not self.n_gt["moderate"]:
            return math.nan
        at_least = float(np.nextafter(min_overlap, -np.inf))
        counts = self.counts("moderate", "bev", at_least, thresholds=np.array([-np.inf]))
        return float(counts.tp[0] / self.n_gt["moderate"])


def _evaluation(gt: dict[str, list[KittiObject]], dt: dict[str, list[KittiObject]], cls: str) -> _Evaluation:
    """Check the inputs and build the padded blocks; frames absent from `dt` have no detections."""
    unknown = sorted(set(dt) - set(gt))
    if unknown:
        raise InputError(None, f"detections for {len(unknown)} frame(s) without ground truth, e.g. {unknown[0]!r}")
    if not gt:
        raise InputError(None, "no frames to evaluate")
    frames = []
    first_alpha = None
    for frame_id, labels in gt.items():
        detections = dt.get(frame_id, [])
        if any(obj.score is None for obj in detections):
            raise InputError(None, f"frame {frame_id}: a detection has no score")
        if first_alpha is None and detections:
            first_alpha = detections[0].alpha
        frames.append(_frame(frame_id, labels, detections, cls))
    blocks = _blocks(frames)
    n_gt = {level: int(sum((b.gt_status(level) == COUNTED).sum() for b in blocks)) for level in LEVELS}
    # The port's test for usable angles: the first detection of the first frame that has any.
    return _Evaluation(blocks, n_gt, with_alpha=first_alpha is not None and first_alpha != ALPHA_UNSET)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def _name(kind: str, iou: float, level: str, moderate_plain: bool) -> str:
    """Metric key: kind, `_50` at IoU 0.5, and the level (left out for moderate when `moderate_plain`)."""
    name = kind + ("_50" if iou == LOOSE_IOU else "")
    return name if moderate_plain and level == "moderate" else f"{name}_{level}"


def _all_metrics(evaluation: _Evaluation, moderate_plain: bool) -> dict[str, float]:
    """AP 2D / BEV / 3D at IoU 0.7 and 0.5 per level, and AOS (2D matching at 0.7) per level."""
    result: dict[str, float] = {}
    for metric in METRICS:
        for iou in (CAR_IOU, LOOSE_IOU):
            for level in LEVELS:
                ap, aos = evaluation.average_precision(level, metric, iou)
                result[_name(f"ap_{metric}", iou, level, moderate_plain)] = ap
                if metric == "2d" and iou == CAR_IOU:
                    result[_name("aos", iou, level, moderate_plain)] = aos
    return result


def kitti_ap(
    gt: dict[str, list[KittiObject]],
    dt: dict[str, list[KittiObject]],
    iou_threshold: float,
    metric: Metric,
    cls: str = "Car",
    level: Level = "moderate",
) -> float:
    """AP R40 of one class, metric ("2d", "bev", "3d"), IoU threshold and level, as a fraction."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return _evaluation(gt, dt, cls).average_precision(level, metric, iou_threshold)[0]


def kitti_aos(
    gt: dict[str, list[KittiObject]],
    dt: dict[str, list[KittiObject]],
    iou_threshold: float = CAR_IOU,
    cls: str = "Car",
    level: Level = "moderate",
) -> float:
    """AOS R40 (orientation similarity on the 2D matching) of one level, as a fraction."""
    return _evaluation(gt, dt, cls).average_precision(level, "2d", iou_threshold)[1]


def kitti_recall(
    gt: dict[str, list[KittiObject]],
    dt: dict[str, list[KittiObject]],
    iou_threshold: float = LOOSE_IOU,
    cls: str = "Car",
) -> float:
    """Share of moderate ground truths matched by a counted detection (any score) at BEV IoU > threshold."""
    return _evaluation(gt, dt, cls).recall(iou_threshold)


def precision_recall_table(
    gt: dict[str, list[KittiObject]],
    dt: dict[str, list[KittiObject]],
    metric: Metric = "bev",
    iou_threshold: float = CAR_IOU,
    cls: str = "Car",
    level: Level = "moderate",
) -> pd.DataFrame:
    """The operating points behind the AP (recall, precision per sampled score threshold), for plots."""
    counts = _evaluation(gt, dt, cls).counts(level, metric, iou_threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.nan_to_num(counts.tp / (counts.tp + counts.fn))
        precision = np.nan_to_num(counts.tp / (counts.tp + counts.fp))
    return pd.DataFrame({"recall": recall, "precision": precision})


def kitti_metric_names() -> list[str]:
    """The keys `evaluate_kitti` returns, known before any data (configs name them)."""
    names = []
    for metric in METRICS:
        for iou in (CAR_IOU, LOOSE_IOU):
            for level in LEVELS:
                names.append(_name(f"ap_{metric}", iou, level, moderate_plain=True))
                if metric == "2d" and iou == CAR_IOU:
                    names.append(_name("aos", iou, level, moderate_plain=True))
    return [*names, "recall"]


def evaluate_kitti(
    gt: dict[str, list[KittiObject]], dt: dict[str, list[KittiObject]], cls: str = "Car"
) -> dict[str, float]:
    """The pipeline's driving metrics: `ap_bev`, `ap_3d`, `ap_2d`, `aos` (moderate, IoU 0.7), their
    `_easy` / `_hard` and `_50` variants, and `recall` (moderate, BEV IoU 0.5)."""
    evaluation = _evaluation(gt, dt, cls)
    return {**_all_metrics(evaluation, moderate_plain=True), "recall": evaluation.recall()}


def contract_metrics(
    gt: dict[str, list[KittiObject]], dt: dict[str, list[KittiObject]], cls: str = "Car"
) -> dict[str, float]:
    """The `suite evaluate driving --json` keys: `ap_{2d,bev,3d}[_50]_{easy,moderate,hard}`, `aos_{level}`."""
    return _all_metrics(_evaluation(gt, dt, cls), moderate_plain=False)


def _text_files(folder: Path) -> dict[str, Path]:
    """Frame id → `NNNNNN.txt` file of a folder (hidden files skipped)."""
    return {p.stem: p for p in sorted(folder.glob("*.txt")) if p.is_file() and not p.name.startswith(".")}


def _read_results(path: Path) -> list[KittiObject]:
    """A result file: label lines with a 16th field, the score; a line without one is an error."""
    objects = read_label(path)
    if any(obj.score is None for obj in objects):
        text_lines = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
        number = text_lines[next(i for i, obj in enumerate(objects) if obj.score is None)]
        raise InputError(path, f"line {number}: a result line needs a 16th field, the score")
    return objects


def evaluate_folders(labels_dir: str | Path, results_dir: str | Path, cls: str = "Car") -> dict[str, float]:
    """Contract metrics of a folder of KITTI result files against a folder of label_2 files.

    The frames are the label files; a frame without a result file has no detections; a result file
    for a frame without a label is an error (most likely the wrong folder).
    """
    labels_dir, results_dir = Path(labels_dir), Path(results_dir)
    for folder, what in ((labels_dir, "labels"), (results_dir, "results")):
        if not folder.exists():
            raise InputError(folder, f"{what} folder not found")
        if not folder.is_dir():
            raise InputError(folder, f"expected a {what} folder, got a file")
    labels, results = _text_files(labels_dir), _text_files(results_dir)
    if not labels:
        raise InputError(labels_dir, "no label files (NNNNNN.txt) in the labels folder")
    orphans = sorted(set(results) - set(labels))
    if orphans:
        more = f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""
        raise InputError(results[orphans[0]], f"no label file for frame {orphans[0]} in {labels_dir}{more}")
    gt = {frame_id: read_label(path) for frame_id, path in labels.items()}
    dt = {frame_id: _read_results(path) for frame_id, path in results.items()}
    return contract_metrics(gt, dt, cls)
