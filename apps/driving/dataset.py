"""KITTI frames in memory for training: LiDAR boxes of the target class, augmentations applied to points
and boxes together, and the collate step that pillarises scans and draws head targets.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from apps.driving.boxes import BEV_COLUMNS, bev_iou, boxes3d_camera_to_lidar, points_in_boxes_lidar
from apps.driving.center_head import CenterTargets
from apps.driving.kitti import KittiCalib, KittiObject, check_frame_id, read_frame
from apps.driving.pillars import Pillarizer
from common.config import Constraints, Interval
from common.errors import InputError, warn_input

TARGET_CLASS = "Car"


@dataclass
class DrivingFrame:
    """One frame as training and evaluation use it."""

    frame_id: str
    points: np.ndarray  # (N, 4) float32, or (N, 5) once painted
    calib: KittiCalib
    image: np.ndarray  # (H, W, 3) uint8, full resolution
    objects: list[KittiObject]  # every label line, DontCare included (the evaluator needs them)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.image.shape[:2]

    @property
    def target_objects(self) -> list[KittiObject]:
        return [obj for obj in self.objects if obj.type == TARGET_CLASS]

    def lidar_boxes(self) -> np.ndarray:
        """(G, 7) LiDAR boxes of the target class."""
        return boxes3d_camera_to_lidar(self.target_objects, self.calib).reshape(-1, 7)

    def image_boxes(self) -> np.ndarray:
        """(G, 4) 2D boxes of the target class, full-resolution pixels."""
        return np.array([obj.bbox for obj in self.objects if obj.type == TARGET_CLASS], np.float64).reshape(-1, 4)


def points_in_camera_view(points: np.ndarray, calib: KittiCalib, image_shape: tuple[int, int]) -> np.ndarray:
    """The points in front of the camera that project inside the image: KITTI's `velodyne_reduced` crop.

    Full 360° scans would otherwise show the detector unlabelled cars beside and behind the camera.
    """
    uv, depth = calib.velo_to_image(points[:, :3])
    h, w = image_shape
    with np.errstate(invalid="ignore"):
        seen = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    return points[seen]


def read_driving_frames(split_dir, frame_ids: Sequence[str], desc: str = "reading frames",
                        labels: bool = True, skip_unreadable: bool = False,
                        skipped: list[InputError] | None = None) -> list[DrivingFrame]:
    """Read frames (scan cropped to the camera's view, calibration, image, labels) with a progress bar.

    `labels=False` (scoring) leaves label files unread; unlabelled frames get no objects. Frame ids must
    be plain names, each listed once. A damaged frame (truncated scan, unreadable image, bad calibration
    or label) is refused, or with `skip_unreadable` skipped with a warning naming the file and the
    problem, and appended to `skipped` so the caller can count it; if every frame is damaged, the first
    problem is raised.
    """
    seen: set[str] = set()
    for frame_id in frame_ids:
        check_frame_id(frame_id, split_dir)
        if frame_id in seen:
            raise InputError(split_dir, f"frame {frame_id} requested twice")
        seen.add(frame_id)
    frames, problems = [], []
    for frame_id in tqdm(frame_ids, desc=desc, unit="frame", disable=None):
        try:
            raw = read_frame(split_dir, frame_id, image=True, labels=labels)
        except InputError as exc:
            if not skip_unreadable:
                raise
            problems.append(exc)
            warn_input(exc.path, f"{exc.problem}; skipping frame {frame_id}")
            continue
        points = points_in_camera_view(raw.points, raw.calib, raw.image.shape[:2])
        frames.append(DrivingFrame(frame_id, points, raw.calib, raw.image, raw.objects or []))
    if problems and not frames:
        raise problems[0]
    if skipped is not None:
        skipped.extend(problems)
    return frames


# --------------------------------------------------------------------------------------------------
# Augmentations: each takes and returns (points, boxes) in the LiDAR frame, so both move together.
# --------------------------------------------------------------------------------------------------
class OwnGenerator:
    """A random transform that owns its generator; `set_random_state` reseeds it alone (MONAI's contract,
    with a NumPy Generator), which is how DataLoader workers and epochs get their own streams."""

    rng: np.random.Generator

    def set_random_state(self, seed: int | None = None, state: np.random.Generator | None = None) -> OwnGenerator:
        self.rng = state if state is not None else np.random.default_rng(seed)
        return self


class RandomFlipY(OwnGenerator):
    """Mirror the scene left ↔ right (y → -y, yaw → -yaw) with probability p."""

    def __init__(self, p: float, rng: np.random.Generator):
        self.p, self.rng = p, rng

    def __call__(self, points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.rng.random() >= self.p:
            return points, boxes
        points, boxes = points.copy(), boxes.copy()
        points[:, 1] *= -1
        boxes[:, 1] *= -1
        boxes[:, 6] *= -1
        return points, boxes


class RandomRotateZ(OwnGenerator):
    """Rotate the whole scene about the sensor's vertical axis by U(-max_rad, max_rad)."""

    def __init__(self, max_rad: float, rng: np.random.Generator):
        self.max_rad, self.rng = max_rad, rng

    def __call__(self, points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        angle = self.rng.uniform(-self.max_rad, self.max_rad)
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        points, boxes = points.copy(), boxes.copy()
        points[:, :2] = points[:, :2] @ rot.T
        boxes[:, :2] = boxes[:, :2] @ rot.T
        boxes[:, 6] = (boxes[:, 6] + angle + math.pi) % (2 * math.pi) - math.pi
        return points, boxes


class RandomScale(OwnGenerator):
    """Scale the whole scene (points and box centres and sizes) by U(1 - delta, 1 + delta)."""

    def __init__(self, delta: float, rng: np.random.Generator):
        self.delta, self.rng = delta, rng

    def __call__(self, points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        factor = self.rng.uniform(1 - self.delta, 1 + self.delta)
        points, boxes = points.copy(), boxes.copy()
        points[:, :3] *= factor
        boxes[:, :6] *= factor
        return points, boxes


class PasteSampledCars(OwnGenerator):
    """Paste cars cut from other training frames (their points and boxes) into the scene until it holds
    `cars_per_scene`, skipping any that would overlap a car already there: mmdet3d's ObjectSample (GT-AUG),
    which gives a small training set many more cars to learn from.
    """

    def __init__(self, scans: Sequence[np.ndarray], boxes: Sequence[np.ndarray], cars_per_scene: int,
                 rng: np.random.Generator, min_points: int = 5):
        self.cars_per_scene, self.rng = cars_per_scene, rng
        self.car_points: list[np.ndarray] = []
        car_boxes = []
        for scan, frame_boxes in zip(scans, boxes, strict=True):
            if not len(frame_boxes):
                continue
            inside = points_in_boxes_lidar(scan, frame_boxes)
            for j, box in enumerate(frame_boxes):
                if inside[:, j].sum() >= min_points:
                    self.car_points.append(scan[inside[:, j]])
                    car_boxes.append(box)
        self.car_boxes = np.array(car_boxes, np.float64).reshape(-1, 7)

    def __call__(self, points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        wanted = self.cars_per_scene - len(boxes)
        if wanted <= 0 or not len(self.car_boxes):
            return points, boxes
        scene = np.asarray(boxes, np.float64).reshape(-1, 7)
        pasted: list[int] = []
        for i in self.rng.permutation(len(self.car_boxes))[:2 * wanted]:
            candidate = self.car_boxes[i:i + 1]
            if len(scene) and bev_iou(candidate[:, BEV_COLUMNS], scene[:, BEV_COLUMNS]).max() > 0:
                continue
            scene = np.vstack([scene, candidate])
            pasted.append(int(i))
            if len(pasted) == wanted:
                break
        if not pasted:
            return points, boxes
        covered = points_in_boxes_lidar(points, self.car_boxes[pasted]).any(axis=1)
        points = np.concatenate([points[~covered], *(self.car_points[i] for i in pasted)])
        return points, scene


class Compose:
    """Apply scene augmentations in order."""

    def __init__(self, transforms: Sequence[Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]):
        self.transforms = list(transforms)

    def __call__(self, points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for transform in self.transforms:
            points, boxes = transform(points, boxes)
        return points, boxes


@dataclass
class SceneAugmentConfig:
    """Global augmentations of KITTI PointPillars (flip, rotation, scale)."""

    CONSTRAINTS: ClassVar[Constraints] = {"paste_cars": Interval(0), "flip_p": Interval(0, 1),
                                          "rotate_rad": Interval(0), "scale_delta": Interval(0, 1, "left")}

    paste_cars: int = 12  # fill each training scene up to this many cars from other frames (0: off)
    flip_p: float = 0.5
    rotate_rad: float = 0.785  # ±π/4
    scale_delta: float = 0.05


def scene_augmentations(cfg: SceneAugmentConfig, seed: int, frames: Sequence[DrivingFrame] = ()) -> Compose:
    """Car pasting (from `frames`, the training set), then flip, rotation and scale of the whole scene."""
    def own(k: int) -> np.random.Generator:  # each transform its own stream
        return np.random.default_rng([seed, k])

    steps: list = []
    if cfg.paste_cars and frames:
        steps.append(PasteSampledCars([f.points for f in frames], [f.lidar_boxes() for f in frames], cfg.paste_cars,
                                      own(0)))
    return Compose([*steps, RandomFlipY(cfg.flip_p, own(1)), RandomRotateZ(cfg.rotate_rad, own(2)),
                    RandomScale(cfg.scale_delta, own(3))])


class LidarDetectionDataset(Dataset):
    """(points, LiDAR boxes) per frame, augmented when a transform is given."""

    def __init__(self, frames: list[DrivingFrame], transform: Compose | None = None):
        self.points = [f.points for f in frames]
        self.boxes = [f.lidar_boxes() for f in frames]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        points, boxes = self.points[i], self.boxes[i]
        if self.transform is not None:
            points, boxes = self.transform(points, boxes)
        return points, boxes


class PillarCollate:
    """Batch scans: pillars for the network plus heatmap/regression targets for the loss."""

    def __init__(self, pillarizer: Pillarizer, targets: CenterTargets):
        self.pillarizer, self.targets = pillarizer, targets

    def __call__(self, items: list[tuple[np.ndarray, np.ndarray]]) -> dict:
        batch = self.pillarizer.batch([points for points, _ in items])
        drawn = [self.targets(boxes) for _, boxes in items]
        for key in drawn[0]:
            batch[key] = torch.from_numpy(np.stack([d[key] for d in drawn]))
        return batch
