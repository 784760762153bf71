"""The camera branch: an MMDetection YOLOX detector trained on KITTI's 2D car boxes, and the per-pixel car
evidence it gives the LiDAR branch (PointPainting).

The detector is built from an mmdet config dict with random weights (no downloads). Its contribution to
fusion is a score map: every pixel holds the highest score of the detected car boxes covering it, and each
LiDAR point is painted with the value at the pixel it projects to.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import mmcv
import numpy as np
import torch
from mmdet.models.dense_heads import yolox_head
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData
from torch import nn
from torch.utils.data import Dataset

from apps.driving.dataset import DrivingFrame, OwnGenerator
from apps.driving.kitti import KittiCalib
from common.config import Constraints, Interval

# mmdet 3.3 still calls torch.cuda.amp.autocast and meshgrid without indexing: noise for our users, not news.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"mmdet\.")
warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)

_LOGGER = "domain_suite"
PAD_DIVISOR = 32  # YOLOX's coarsest stride
_NORM = dict(type="BN", momentum=0.1, eps=0.001)  # 0.03 (YOLOX) lags in short CPU trainings
_ACT = dict(type="Swish")


@dataclass
class CameraConfig:
    """Size and input resolution of the 2D detector, and how its detections become a score map."""

    CONSTRAINTS: ClassVar[Constraints] = {
        "image_scale": Interval(0.1, 1), "deepen_factor": Interval(0, None, "neither"),
        "widen_factor": Interval(0, None, "neither"), "score_threshold": Interval(0, 1, "left"),
        "nms_iou": Interval(0, 1, "right"), "max_detections": Interval(1),
    }

    image_scale: float = 0.5  # images are resized by this before the detector (KITTI 1242x375 → 621x188)
    deepen_factor: float = 0.33  # YOLOX-tiny depth
    widen_factor: float = 0.25  # YOLOX-tiny is 0.375; narrower trains in CI time on a CPU
    score_threshold: float = 0.05  # detections below this do not paint
    nms_iou: float = 0.5
    max_detections: int = 50



def yolox_config(cfg: CameraConfig, num_classes: int = 1) -> dict:
    """The mmdet model config of a YOLOX detector (mmdet's yolox_tiny with our width), untrained."""
    width = [int(c * cfg.widen_factor) for c in (256, 512, 1024)]
    neck_out = width[0]
    return dict(
        type="YOLOX",
        backbone=dict(type="CSPDarknet", deepen_factor=cfg.deepen_factor, widen_factor=cfg.widen_factor,
                      out_indices=(2, 3, 4), use_depthwise=False, spp_kernal_sizes=(5, 9, 13),
                      norm_cfg=_NORM, act_cfg=_ACT),
        neck=dict(type="YOLOXPAFPN", in_channels=width, out_channels=neck_out,
                  num_csp_blocks=max(1, round(3 * cfg.deepen_factor)), use_depthwise=False,
                  upsample_cfg=dict(scale_factor=2, mode="nearest"), norm_cfg=_NORM, act_cfg=_ACT),
        bbox_head=dict(type="YOLOXHead", num_classes=num_classes, in_channels=neck_out, feat_channels=neck_out,
                       stacked_convs=2, strides=(8, 16, 32), use_depthwise=False, norm_cfg=_NORM, act_cfg=_ACT,
                       loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, reduction="sum", loss_weight=1.0),
                       loss_bbox=dict(type="IoULoss", mode="square", eps=1e-16, reduction="sum", loss_weight=5.0),
                       loss_obj=dict(type="CrossEntropyLoss", use_sigmoid=True, reduction="sum", loss_weight=1.0),
                       loss_l1=dict(type="L1Loss", reduction="sum", loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type="SimOTAAssigner", center_radius=2.5)),
        test_cfg=dict(score_thr=cfg.score_threshold, nms=dict(type="nms", iou_threshold=cfg.nms_iou),
                      max_per_img=cfg.max_detections),
    )


def prepare_image(image: np.ndarray, scale: float) -> np.ndarray:
    """RGB uint8 (H, W, 3) → resized uint8 (h, w, 3) as the detector sees it."""
    return mmcv.imrescale(image, scale, interpolation="area") if scale != 1.0 else image


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """Resized RGB images → (B, 3, H', W') float in [0, 1], zero-padded bottom/right to a multiple of 32."""
    h = max(img.shape[0] for img in images)
    w = max(img.shape[1] for img in images)
    hp, wp = -(-h // PAD_DIVISOR) * PAD_DIVISOR, -(-w // PAD_DIVISOR) * PAD_DIVISOR
    batch = torch.zeros((len(images), 3, hp, wp))
    for i, img in enumerate(images):
        batch[i, :, : img.shape[0], : img.shape[1]] = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
    return batch


def data_samples(images: list[np.ndarray], boxes: list[np.ndarray] | None, padded: tuple[int, int]
                 ) -> list[DetDataSample]:
    """mmdet's per-image records: shapes, and the ground-truth car boxes (x1, y1, x2, y2 in resized pixels)."""
    samples = []
    for i, img in enumerate(images):
        sample = DetDataSample(metainfo=dict(img_shape=img.shape[:2], ori_shape=img.shape[:2], pad_shape=padded,
                                             batch_input_shape=padded, scale_factor=(1.0, 1.0)))
        if boxes is not None:
            gt = InstanceData()
            gt.bboxes = torch.as_tensor(np.asarray(boxes[i], np.float32).reshape(-1, 4))
            gt.labels = torch.zeros(len(gt.bboxes), dtype=torch.long)
            sample.gt_instances = gt
        samples.append(sample)
    return samples


@contextlib.contextmanager
def _loss_on_this_rank_only() -> Iterator[None]:
    """mmdet's YOLOX loss averages its positive count over the process group (`reduce_mean`, an
    all_reduce); when rank 0 validates alone, the other ranks never join it, so it must stay local."""
    shared = yolox_head.reduce_mean
    yolox_head.reduce_mean = lambda tensor: tensor
    try:
        yield
    finally:
        yolox_head.reduce_mean = shared


class CameraDetector(nn.Module):
    """YOLOX from mmdet; `forward(batch)` returns the training loss so the shared Trainer can drive it."""

    def __init__(self, cfg: CameraConfig):
        super().__init__()
        register_all_modules(init_default_scope=False)
        if not MMLogger.check_instance_created(_LOGGER):  # mmengine logs every weight init at INFO
            MMLogger.get_instance(_LOGGER, log_level="WARNING")
        self.cfg = cfg
        self.detector = MODELS.build(ConfigDict(yolox_config(cfg)))
        self.detector.init_weights()

    def forward(self, batch: dict) -> torch.Tensor:
        samples = data_samples(batch["images_np"], batch["boxes"], tuple(batch["images"].shape[-2:]))
        for sample in samples:
            sample.gt_instances = sample.gt_instances.to(batch["images"].device)
        # A loss without gradients is an evaluation loss, computed by one rank alone under torchrun.
        local = _loss_on_this_rank_only() if not torch.is_grad_enabled() else contextlib.nullcontext()
        with local:
            losses = self.detector.loss(batch["images"], samples)
        total, _ = self.detector.parse_losses(losses)
        return total

    @torch.no_grad()
    def detect(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Car boxes (x1, y1, x2, y2 in the resized images' pixels) and scores, per image."""
        self.eval()
        device = next(self.parameters()).device
        tensor = images_to_tensor(images).to(device)
        results = self.detector.predict(tensor, data_samples(images, None, tuple(tensor.shape[-2:])), rescale=False)
        return [(r.pred_instances.bboxes.cpu().numpy(), r.pred_instances.scores.cpu().numpy()) for r in results]


def score_map(boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) float32: the highest score of the boxes covering each pixel (0 where none)."""
    canvas = np.zeros(shape, np.float32)
    h, w = shape
    for (x1, y1, x2, y2), s in sorted(zip(boxes.tolist(), scores.tolist(), strict=True), key=lambda t: t[1]):
        c1, r1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        c2, r2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
        if c2 > c1 and r2 > r1:
            canvas[r1:r2, c1:c2] = s  # ascending order: the best box wins where boxes overlap
    return canvas


def paint_points(points: np.ndarray, calib: KittiCalib, evidence: np.ndarray, scale: float) -> np.ndarray:
    """(N, 4) scan → (N, 5): each point gets the camera evidence at its pixel (0 behind or outside the image)."""
    uv, depth = calib.velo_to_image(points[:, :3])
    h, w = evidence.shape
    cols = np.floor(uv[:, 0] * scale).astype(np.int64)
    rows = np.floor(uv[:, 1] * scale).astype(np.int64)
    seen = (depth > 0) & (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    paint = np.zeros(len(points), np.float32)
    paint[seen] = evidence[rows[seen], cols[seen]]
    return np.hstack([points[:, :4].astype(np.float32), paint[:, None]])


class CameraDataset(OwnGenerator, Dataset):
    """Resized images and their car boxes; a horizontal flip moves image and boxes together."""

    def __init__(self, frames: list[DrivingFrame], cfg: CameraConfig, flip_p: float, seed: int):
        self.images = [prepare_image(f.image, cfg.image_scale) for f in frames]
        self.boxes = [f.image_boxes() * cfg.image_scale for f in frames]
        self.flip_p, self.rng = flip_p, np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image, boxes = self.images[i], self.boxes[i]
        if self.rng.random() < self.flip_p:
            width = image.shape[1]
            image = np.ascontiguousarray(image[:, ::-1])
            boxes = np.column_stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]])
        return image, boxes


def collate_camera(items: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    images = [image for image, _ in items]
    return {"images": images_to_tensor(images), "images_np": images, "boxes": [boxes for _, boxes in items]}
