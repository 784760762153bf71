"""Rotated BEV boxes with height from a centre heatmap (CenterPoint-style): targets, loss and decoding.

Each output cell of `OUTPUT_STRIDE` pillars predicts a car-centre score and, where a centre falls, the
box: sub-cell offset (2), centre height z (1), log size l, w, h (3), the heading's axis as sin 2θ, cos 2θ
(2) and a direction bin (2 logits). The doubled angle makes a box and its 180° turn the same regression
target, as they are for IoU, so the regression never averages two opposite answers for a car whose front
it cannot tell from its back; which of the two opposite headings on that axis the car has is a separate
two-class decision, trained with cross-entropy at the centres: the direction classifier of SECOND and
PointPillars (OpenPCDet's `dir_cls`, MMDetection3D's `use_direction_classifier`), here on top of an
anchor-free head. The bins meet at `direction_offset` and its opposite (bin 0 holds headings in
[offset, offset + π), bin 1 the rest); those two headings are where an axis error can flip the decoded
direction, so the offset sits where few cars head: across the road (π/2), as cars mostly drive along it.
Anchor-free, so there is no anchor matching to tune; rotated NMS removes the few duplicates left.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from apps.driving.pillars import PillarGrid
from common.config import Constraints, Interval

OUTPUT_STRIDE = 2  # the head sees the first backbone stage's grid: 2 × 2 pillars a cell
BOX_CHANNELS = 8  # L1-regressed: dx, dy, z, log l, log w, log h, sin 2·yaw, cos 2·yaw
DIRECTION_BINS = 2  # which of the two opposite headings on the regressed axis
# The network's `regression` map: the box channels, then the direction logits (one map, so the exported
# network keeps its two outputs).
HEAD_MAP_CHANNELS = BOX_CHANNELS + DIRECTION_BINS
DIRECTION_PERIOD = 2 * math.pi / DIRECTION_BINS  # the heading span of one bin (π)


@dataclass
class CenterHeadConfig:
    """How targets are drawn and detections decoded."""

    CONSTRAINTS: ClassVar[Constraints] = {
        "min_radius": Interval(0), "max_objects": Interval(1), "top_k": Interval(1), "regression_weight": Interval(0),
        "score_threshold": Interval(0, 1, "left"), "nms_iou": Interval(0, 1, "right"),
        "direction_weight": Interval(0), "direction_offset": Interval(-math.pi, math.pi),
    }

    min_radius: int = 2  # heatmap gaussian radius floor, cells
    max_objects: int = 64  # per frame
    regression_weight: float = 2.0
    score_threshold: float = 0.05
    top_k: int = 100
    nms_iou: float = 0.1  # rotated BEV IoU above which the lower-scored box is dropped
    direction_weight: float = 0.5  # of the direction bin's cross-entropy in the loss
    direction_offset: float = math.pi / 2  # heading (LiDAR yaw) where the two direction bins meet



def _gaussian_radius(length_cells: float, width_cells: float, min_overlap: float = 0.1) -> float:
    """CornerNet's radius: how far a corner may move and keep IoU ≥ min_overlap (CenterPoint's rule)."""
    h, w = length_cells, width_cells
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def _draw_gaussian(heatmap: np.ndarray, centre: tuple[int, int], radius: int) -> None:
    """Max-blend a 2D gaussian of σ = (2r+1)/6 at (column, row)."""
    sigma = (2 * radius + 1) / 6
    ys, xs = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    blob = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    col, row = centre
    h, w = heatmap.shape
    left, right = min(col, radius), min(w - col, radius + 1)
    top, bottom = min(row, radius), min(h - row, radius + 1)
    region = heatmap[row - top:row + bottom, col - left:col + right]
    np.maximum(region, blob[radius - top:radius + bottom, radius - left:radius + right], out=region)


def direction_bin(yaw: np.ndarray | float, offset: float) -> np.ndarray:
    """The direction class of full headings: 0 for yaw in [offset, offset + π), 1 for the opposite half."""
    turned = np.mod(np.asarray(yaw, np.float64) - offset, 2 * math.pi)
    return np.clip(np.floor(turned / DIRECTION_PERIOD), 0, DIRECTION_BINS - 1).astype(np.int64)


def full_heading(axis: torch.Tensor, bins: torch.Tensor, offset: float) -> torch.Tensor:
    """Full headings in (-π, π] from an axis angle (known up to π) and its direction bin.

    The axis is moved into the bin's half turn [offset, offset + π) and then turned by π per bin, so the
    direction comes from the classifier and the exact angle from the regression (OpenPCDet's decode).
    """
    within = torch.remainder(axis - offset, DIRECTION_PERIOD)
    return wrap_angle(within + offset + DIRECTION_PERIOD * bins.to(axis.dtype))


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Angles wrapped to (-π, π], KITTI's range for rotation_y and alpha."""
    return angle - 2 * math.pi * torch.ceil((angle - math.pi) / (2 * math.pi))


class CenterTargets:
    """Turns LiDAR boxes [x, y, z, l, w, h, yaw] into heatmap and regression targets on the head's grid."""

    def __init__(self, grid: PillarGrid, cfg: CenterHeadConfig):
        self.cfg = cfg
        ny, nx = grid.shape
        self.shape = (ny // OUTPUT_STRIDE, nx // OUTPUT_STRIDE)
        self.origin = np.array(grid.point_cloud_range[:2])
        self.cell = np.array(grid.pillar_size) * OUTPUT_STRIDE

    def __call__(self, boxes: np.ndarray) -> dict[str, np.ndarray]:
        h, w = self.shape
        k = self.cfg.max_objects
        heatmap = np.zeros((1, h, w), np.float32)
        index = np.zeros(k, np.int64)
        mask = np.zeros(k, np.float32)
        regression = np.zeros((k, BOX_CHANNELS), np.float32)
        direction = np.zeros(k, np.int64)
        n = 0
        for box in np.asarray(boxes, np.float64).reshape(-1, 7):
            cx, cy = (box[:2] - self.origin) / self.cell
            col, row = int(cx), int(cy)
            if not (0 <= cx < w and 0 <= cy < h) or n >= k:
                continue
            radius = max(self.cfg.min_radius, int(_gaussian_radius(box[3] / self.cell[0], box[4] / self.cell[1])))
            _draw_gaussian(heatmap[0], (col, row), radius)
            index[n], mask[n] = row * w + col, 1.0
            regression[n] = [cx - col, cy - row, box[2], *np.log(box[3:6]), math.sin(2 * box[6]), math.cos(2 * box[6])]
            direction[n] = direction_bin(box[6], self.cfg.direction_offset)
            n += 1
        return {"heatmap": heatmap, "index": index, "mask": mask, "regression": regression, "direction": direction}


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CornerNet's penalty-reduced focal loss, normalised by the number of centres."""
    pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * positive
    neg_loss = torch.log(1 - pred) * pred**2 * (1 - target) ** 4 * (1 - positive)
    return -(pos_loss.sum() + neg_loss.sum()) / positive.sum().clamp(min=1.0)


def center_head_losses(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
                       ) -> dict[str, torch.Tensor]:
    """The unweighted terms: heatmap focal loss, L1 of the box channels and cross-entropy of the direction
    bin, both read at each true centre and averaged over the centres."""
    heat = focal_heatmap_loss(outputs["heatmap"], targets["heatmap"])
    maps = outputs["regression"].float().flatten(2)  # (B, HEAD_MAP_CHANNELS, H*W)
    index = targets["index"].unsqueeze(1).expand(-1, maps.shape[1], -1)  # (B, C, K)
    picked = maps.gather(2, index).transpose(1, 2)  # (B, K, C)
    mask = targets["mask"]
    centres = mask.sum().clamp(min=1.0)
    l1 = (F.l1_loss(picked[..., :BOX_CHANNELS], targets["regression"], reduction="none") * mask[..., None]).sum()
    logits = picked[..., BOX_CHANNELS:].reshape(-1, DIRECTION_BINS)
    ce = F.cross_entropy(logits, targets["direction"].reshape(-1), reduction="none") * mask.reshape(-1)
    return {"heatmap": heat, "regression": l1 / centres, "direction": ce.sum() / centres}


def center_head_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], regression_weight: float,
                     direction_weight: float = CenterHeadConfig.direction_weight) -> torch.Tensor:
    """Heatmap focal loss + weighted L1 on the box channels + weighted direction cross-entropy."""
    terms = center_head_losses(outputs, targets)
    return terms["heatmap"] + regression_weight * terms["regression"] + direction_weight * terms["direction"]


def rotated_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices kept by mmcv's rotated NMS on the BEV footprints of LiDAR boxes (N, 7), best score first."""
    from mmcv.ops import nms_rotated  # compiled op; imported here so training code runs without mmcv

    # mmcv takes (x, y, w, h, angle); its default `clockwise=True` is meant for image axes (y down), which is
    # counter-clockwise in our y-up BEV: the test against exact polygon IoU (boxes.rotated_nms_bev) pins this.
    _, kept = nms_rotated(boxes[:, [0, 1, 3, 4, 6]].float().cpu(), scores.float().cpu(), iou_threshold,
                          clockwise=True)
    return kept


@torch.no_grad()
def decode_boxes(outputs: dict[str, torch.Tensor], grid: PillarGrid, cfg: CenterHeadConfig
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per scan: LiDAR boxes (N, 7) [x, y, z, l, w, h, yaw] and scores (N,), after rotated NMS; yaw is the full
    heading in (-π, π]."""
    heat = torch.sigmoid(outputs["heatmap"].float())
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    reg = outputs["regression"].float()
    batch, _, h, w = heat.shape
    origin = torch.tensor(grid.point_cloud_range[:2], device=heat.device)
    cell = torch.tensor(grid.pillar_size, device=heat.device) * OUTPUT_STRIDE
    results = []
    for b in range(batch):
        scores, flat = peaks[b, 0].flatten().topk(min(cfg.top_k, h * w))
        keep = scores > cfg.score_threshold
        scores, flat = scores[keep], flat[keep]
        r = reg[b].flatten(1)[:, flat].T  # (N, HEAD_MAP_CHANNELS)
        rows, cols = (flat // w).float(), (flat % w).float()
        xy = (torch.stack([cols, rows], 1) + r[:, :2]) * cell + origin
        size = r[:, 3:6].clamp(max=3.0).exp()  # clamp: an untrained head must not overflow
        axis = torch.atan2(r[:, 6], r[:, 7]) / 2  # in (-π/2, π/2]: the heading up to a half turn
        yaw = full_heading(axis, r[:, BOX_CHANNELS:].argmax(dim=1), cfg.direction_offset)
        boxes = torch.cat([xy, r[:, 2:3], size, yaw[:, None]], dim=1)
        if len(boxes):
            kept = rotated_nms(boxes, scores, cfg.nms_iou).to(boxes.device)
            boxes, scores = boxes[kept], scores[kept]
        results.append((boxes.cpu().double().numpy(), scores.cpu().double().numpy()))
    return results
