"""Driving pipeline: KITTI folder → camera YOLOX (mmdet) → PointPainting → PointPillars → MLflow model
`driving-fusion-detector`. `--set model.fusion=none` is the LiDAR-only ablation.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from mmdet.evaluation.functional import eval_map
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import apps.driving as driving_app
from apps.driving import synthetic
from apps.driving.boxes import matched_heading_errors
from apps.driving.camera import CameraConfig, CameraDataset, CameraDetector, collate_camera
from apps.driving.center_head import CenterHeadConfig, CenterTargets, center_head_loss
from apps.driving.dataset import (
    TARGET_CLASS,
    DrivingFrame,
    LidarDetectionDataset,
    PillarCollate,
    SceneAugmentConfig,
    read_driving_frames,
    scene_augmentations,
)
from apps.driving.figures import bev_detections_figure, camera_detections_figure
from apps.driving.kitti import DONTCARE, KittiObject, find_frames, kitti_split_dir
from apps.driving.kitti_eval import evaluate_kitti, kitti_metric_names, precision_recall_table
from apps.driving.model import DrivingModelConfig, PointPillarsNet
from apps.driving.pillars import PillarGrid, Pillarizer
from apps.driving.scorer import DrivingPyfuncModel, DrivingScorer, detect_frames, paint_frames
from apps.driving.split import DrivingDataConfig, split_frames
from common import distributed
from common.augment_seeding import worker_init_fn
from common.bundled_model import BUNDLE_ARTIFACT
from common.config import Constraints, Interval
from common.errors import InputError
from common.plotting import learning_curves_figure
from common.trainer import TrainConfig, Trainer, move_to_device, seed_everything
from pipelines.domain import TrainedModel

MLFLOW_ENTRY = str(Path(driving_app.__file__).parent / "mlflow_entry.py")
FIGURE_FRAMES = 3  # test frames drawn in the BEV and camera plots
REVERSED_HEADING_DEG = 90.0  # a matched car whose heading is off by more than this points the wrong way


@dataclass
class CameraAugmentConfig:
    CONSTRAINTS: ClassVar[Constraints] = {"flip_p": Interval(0, 1)}

    flip_p: float = 0.5  # horizontal flip of image and 2D boxes together


@dataclass
class DrivingConfig:
    """The driving pipeline's settings; these defaults are `configs/driving.yaml`'s (a test keeps them equal)."""

    data: DrivingDataConfig = field(default_factory=DrivingDataConfig)
    grid: PillarGrid = field(default_factory=PillarGrid)
    model: DrivingModelConfig = field(default_factory=DrivingModelConfig)
    head: CenterHeadConfig = field(default_factory=CenterHeadConfig)
    augment: SceneAugmentConfig = field(default_factory=SceneAugmentConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(  # the LiDAR / fusion detector
        epochs=30, batch_size=4, lr=2e-3, weight_decay=0.01, grad_clip=10.0, patience=8, monitor="val_ap_bev_50"))
    camera: CameraConfig = field(default_factory=CameraConfig)
    camera_augment: CameraAugmentConfig = field(default_factory=CameraAugmentConfig)
    camera_train: TrainConfig = field(default_factory=lambda: TrainConfig(  # YOLOX, trained first
        epochs=30, batch_size=8, lr=3e-3, weight_decay=0.05, pct_start=0.2, grad_clip=10.0, patience=30,
        monitor="val_ap_2d"))

    def validate(self) -> None:
        cells = 2 ** len(self.model.backbone_channels)  # every backbone stage halves the grid
        ny, nx = self.grid.shape
        if ny % cells or nx % cells:
            raise ValueError(f"the pillar grid ({nx} x {ny} from grid.point_cloud_range / grid.pillar_size) must "
                             f"divide by {cells} for {len(self.model.backbone_channels)} backbone stages")


def heading_metrics(truth: dict[str, list[KittiObject]], detections: dict[str, list[KittiObject]]
                    ) -> dict[str, float]:
    """Median full-angle heading error (degrees) of cars matched at BEV IoU ≥ 0.5, and the share of them
    heading the wrong way (error over 90°): what AP cannot see, as IoU is blind to a half turn."""
    errors = np.degrees(matched_heading_errors(truth, detections, TARGET_CLASS))
    if not len(errors):
        return {"heading_error_deg": float("nan"), "heading_reversed": float("nan")}
    return {"heading_error_deg": float(np.median(errors)),
            "heading_reversed": float(np.mean(errors > REVERSED_HEADING_DEG))}


# --------------------------------------------------------------------------------------------------
# Camera branch training
# --------------------------------------------------------------------------------------------------
def _loader(dataset: Dataset, cfg: TrainConfig, collate, shuffle: bool) -> DataLoader:
    """A training loader (`shuffle`) is sharded under torchrun, 1/N of every epoch per rank (the Trainer
    calls `set_epoch`); an evaluation loader always covers the whole set (rank 0 validates alone)."""
    sampler = None
    if shuffle and distributed.is_distributed():
        sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.seed)
    per_rank = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      collate_fn=collate, num_workers=cfg.num_workers, worker_init_fn=worker_init_fn,
                      drop_last=shuffle and per_rank > cfg.batch_size)


def _mean_loss(model: torch.nn.Module, loader: DataLoader, loss_of: Callable[[torch.nn.Module, dict], torch.Tensor]
               ) -> float:
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            total += float(loss_of(model, move_to_device(batch, device)))
            count += 1
    return total / max(count, 1)


def train_camera(cfg: DrivingConfig, train: list[DrivingFrame], val: list[DrivingFrame], workdir: Path,
                 resume: bool, on_epoch_end: Callable[[int, dict[str, float]], None]) -> CameraDetector:
    """Fit the YOLOX camera detector on the 2D car boxes; its metrics are logged with a `camera_` prefix."""
    camera = CameraDetector(cfg.camera)
    flip_seed = cfg.camera_train.seed + distributed.rank()  # each torchrun rank flips with its own stream
    loader = _loader(CameraDataset(train, cfg.camera, cfg.camera_augment.flip_p, flip_seed),
                     cfg.camera_train, collate_camera, shuffle=True)
    val_set = CameraDataset(val, cfg.camera, 0.0, 0)
    val_loader = _loader(val_set, cfg.camera_train, collate_camera, shuffle=False)
    ignore = [np.array([o.bbox for o in f.objects if o.type == DONTCARE]).reshape(-1, 4) * cfg.camera.image_scale
              for f in val]

    def validate(model: CameraDetector) -> dict[str, float]:
        found = [d for start in range(0, len(val_set), cfg.camera_train.batch_size)
                 for d in model.detect(val_set.images[start:start + cfg.camera_train.batch_size])]
        truth = [{"bboxes": b, "labels": np.zeros(len(b), np.int64), "bboxes_ignore": i,
                  "labels_ignore": np.zeros(len(i), np.int64)} for b, i in zip(val_set.boxes, ignore, strict=True)]
        ap_2d, _ = eval_map([[np.column_stack([boxes, scores])] for boxes, scores in found], truth,
                            iou_thr=0.5, logger="silent", nproc=1)
        return {"val_loss": _mean_loss(model, val_loader, lambda m, b: m(b)), "val_ap_2d": float(ap_2d)}

    trainer = Trainer(camera, cfg.camera_train, lambda loss, batch: loss, validate, workdir / "camera",
                      lambda epoch, m: on_epoch_end(epoch, {f"camera_{k}": v for k, v in m.items()}))
    trainer.fit(loader, resume=resume)
    return trainer.model.cpu()


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------
class DrivingPipeline:
    name = "driving"
    model_name = "driving-fusion-detector"
    key_metric = "test_ap_bev"
    config_cls = DrivingConfig
    # what each stage's validation reports (the names `train.monitor` and `camera_train.monitor` may take)
    # and which way each is better
    validation_metrics = {
        "train": {"val_loss": "min", **{f"val_{name}": "max" for name in kitti_metric_names()},
                  **{f"val_{name}": "min" for name in heading_metrics({}, {})}},
        "camera_train": {"val_loss": "min", "val_ap_2d": "max"},
    }

    def synthesize(self, out: Path, scale: str, seed: int) -> Path:
        return synthetic.write_synthetic_kitti(out, scale, seed)

    def fit(self, cfg: DrivingConfig, data: Path, workdir: Path, resume: bool,
            on_epoch_end: Callable[[int, dict[str, float]], None]) -> TrainedModel:
        seed_everything(cfg.train.seed)
        split_dir = kitti_split_dir(data)
        frame_ids = find_frames(data, labels=True)
        train_ids, val_ids, test_ids = split_frames(Path(data), frame_ids, cfg.data)
        train = read_driving_frames(split_dir, train_ids, "reading train frames")
        val = read_driving_frames(split_dir, val_ids, "reading val frames")
        test = read_driving_frames(split_dir, test_ids, "reading test frames")
        if not any(f.target_objects for f in train):
            raise InputError(split_dir / "label_2", "no Car labels in the training frames")

        camera = None
        if cfg.model.fusion == "painting":
            camera = train_camera(cfg, train, val, workdir, resume, on_epoch_end)
            # Every rank paints the whole training set (its shard changes every epoch); rank 0 alone validates.
            train = paint_frames(camera, train)
            val = paint_frames(camera, val) if distributed.is_main_process() else val

        grid, head = cfg.grid, cfg.head
        pillarizer = Pillarizer(grid)
        collate = PillarCollate(pillarizer, CenterTargets(grid, head))
        augment = scene_augmentations(cfg.augment, cfg.train.seed + distributed.rank(), train)  # a stream per rank
        loader = _loader(LidarDetectionDataset(train, augment), cfg.train, collate, shuffle=True)
        val_loader = _loader(LidarDetectionDataset(val), cfg.train, collate, shuffle=False)
        network = PointPillarsNet(cfg.model, grid)

        def loss_fn(outputs: dict[str, torch.Tensor], batch: dict) -> torch.Tensor:
            return center_head_loss(outputs, batch, head.regression_weight, head.direction_weight)

        def validate(model: PointPillarsNet) -> dict[str, float]:
            truth, found = {f.frame_id: f.objects for f in val}, detect_frames(model, pillarizer, head, val)
            metrics = {**evaluate_kitti(truth, found), **heading_metrics(truth, found)}
            val_loss = _mean_loss(model, val_loader, lambda m, b: loss_fn(m(b), b))
            return {"val_loss": val_loss, **{f"val_{k}": v for k, v in metrics.items()}}

        trainer = Trainer(network, cfg.train, loss_fn, validate, workdir / "lidar", on_epoch_end)
        result = trainer.fit(loader, resume=resume)
        if not distributed.is_main_process():  # torchrun: rank 0 alone evaluates, saves and logs the model
            return None
        network = trainer.model.cpu()

        scorer = DrivingScorer(network, camera, cfg.model, grid, head)
        detections = scorer.detect(test)
        truth = {f.frame_id: f.objects for f in test}
        metrics = {**evaluate_kitti(truth, detections), **heading_metrics(truth, detections)}
        shown = [f for f in test if f.target_objects][:FIGURE_FRAMES] or test[:FIGURE_FRAMES]
        bundle = scorer.save(workdir / "bundle")
        example = pd.DataFrame({"split_dir": [str(split_dir)], "frame_id": [test_ids[0]]})
        return TrainedModel(
            test_metrics=metrics, python_model=MLFLOW_ENTRY, artifacts={BUNDLE_ARTIFACT: str(bundle)},
            input_example=example,
            figures={"bev_detections_test.png": bev_detections_figure(shown, detections, grid.point_cloud_range),
                     "camera_detections_test.png": camera_detections_figure(shown, detections),
                     "learning_curves.png": learning_curves_figure(result.history, cfg.train.monitor)},
            history=result.history,
            curves={"pr_bev_test": precision_recall_table(truth, detections)},  # moderate, BEV IoU 0.7
            summary_params={"frames_train": len(train), "frames_val": len(val), "frames_test": len(test),
                            "cars_test": sum(len(f.target_objects) for f in test), "best_epoch": result.best_epoch + 1},
        )

    def score(self, python_model: DrivingPyfuncModel, input_path: Path, output_path: Path, batch_size: int,
              context: Path | None = None, engine=None) -> str:
        return DrivingPyfuncModel.expect(python_model).score_file(input_path, output_path, batch_size, engine)


DOMAIN = DrivingPipeline()
