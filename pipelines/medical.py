"""Medical pipeline: LUNA16 folder → cached candidate patches → 3D CNN → MLflow model `medical-nodule-3dcnn`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler

import apps.medical as medical_app
from apps.medical import synthetic
from apps.medical.dataset import (
    COORDS,
    Luna16Dataset,
    PatchCache,
    PatchDataset,
    WeightedShardSampler,
    dequantize,
    drop_candidates_without_volume,
    load_candidate_patches,
    read_luna16_folder,
)
from apps.medical.figures import patch_grid_figure
from apps.medical.froc import FROC_FP_RATES, compute_froc, froc_curve_table, plot_froc
from apps.medical.model import MedicalModelConfig, build_medical_model
from apps.medical.patches import AugmentConfig, PatchConfig, train_augmentations
from apps.medical.reader import read_luna16_excluded_in
from apps.medical.scorer import MedicalPyfuncModel, MedicalScorer, predict_patches
from apps.medical.split import MedicalDataConfig, split_scans, subsample_negatives
from common import distributed, tracking
from common.augment_seeding import worker_init_fn
from common.bundled_model import BUNDLE_ARTIFACT
from common.losses import build_classification_loss, loss_on_probabilities
from common.metrics import best_f1_threshold, binary_metric_names, binary_metrics, roc_pr_curves
from common.plotting import learning_curves_figure, pr_figure, roc_figure
from common.trainer import TrainConfig, Trainer, seed_everything
from pipelines.domain import TrainedModel

MLFLOW_ENTRY = str(Path(medical_app.__file__).parent / "mlflow_entry.py")


DENSENET_MIN_VOXELS = 32  # DenseNet121 halves the patch five times; smaller patches fail deep inside MONAI


@dataclass
class MedicalConfig:
    """The medical pipeline's settings; these defaults are `configs/medical.yaml`'s (a test keeps them equal)."""

    data: MedicalDataConfig = field(default_factory=MedicalDataConfig)
    patch: PatchConfig = field(default_factory=lambda: PatchConfig(size_mm=24.0))  # 24³ voxels: CI-sized
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(affine_p=0.1))
    model: MedicalModelConfig = field(default_factory=lambda: MedicalModelConfig(pool_size=3))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, batch_size=32, lr=1e-3, patience=10))

    def validate(self) -> None:
        if self.model.name == "densenet121" and self.patch.size_vox < DENSENET_MIN_VOXELS:
            raise ValueError(f"densenet121 needs patches of at least {DENSENET_MIN_VOXELS} voxels a side, got "
                             f"{self.patch.size_vox}; add --set patch.size_mm=32")


def froc_of(candidates: pd.DataFrame, probs: np.ndarray, annotations: pd.DataFrame, uids: list[str],
            excluded: pd.DataFrame | None = None):
    """LUNA16 FROC of one split's candidate probabilities; marks on excluded findings are ignored."""
    predictions = candidates[["seriesuid", *COORDS]].assign(probability=probs)
    return compute_froc(predictions, annotations, uids, excluded)


class MedicalPipeline:
    name = "medical"
    model_name = "medical-nodule-3dcnn"
    key_metric = "test_cpm"
    config_cls = MedicalConfig
    # what validation reports (the names `train.monitor` may take) and which way each is better
    validation_metrics = {"train": {"val_loss": "min", "val_cpm": "max",
                                    **{f"val_{name}": "max" for name in binary_metric_names(())}}}

    def synthesize(self, out: Path, scale: str, seed: int) -> Path:
        return synthetic.write_synthetic_luna16(out, scale, seed)

    def fit(self, cfg: MedicalConfig, data: Path, workdir: Path, resume: bool,
            on_epoch_end: Callable[[int, dict[str, float]], None]) -> TrainedModel:
        seed_everything(cfg.train.seed)
        folder: Luna16Dataset = drop_candidates_without_volume(read_luna16_folder(data, require_labels=True))
        excluded = read_luna16_excluded_in(data)  # optional annotations_excluded.csv, None when absent
        train_uids, val_uids, test_uids = split_scans(folder.candidates, cfg.data)
        by_uid = folder.candidates["seriesuid"]
        train_c = subsample_negatives(folder.candidates[by_uid.isin(train_uids)], cfg.data.train_negatives_per_positive,
                                      cfg.data.split_seed)
        val_c, test_c = folder.candidates[by_uid.isin(val_uids)], folder.candidates[by_uid.isin(test_uids)]

        cache = PatchCache(tracking.repo_root() / "data" / "cache" / "medical", folder.volumes, cfg.patch)
        # Under torchrun rank 0 fills the patch cache first, the others then read it; validation and test
        # run on rank 0 alone, so only it needs those patches.
        main = distributed.is_main_process()
        train_p = distributed.main_first(lambda: load_candidate_patches(cache, train_c, "train patches"))
        empty = np.zeros((0, 1, *(cfg.patch.size_vox,) * 3), np.float32)
        val_p = dequantize(load_candidate_patches(cache, val_c, "val patches")) if main else empty
        test_p = dequantize(load_candidate_patches(cache, test_c, "test patches")) if main else empty
        y_train, y_val, y_test = (c["class"].to_numpy() for c in (train_c, val_c, test_c))

        # Each rank augments with its own random stream (rank 0 with the configured seed).
        dataset = PatchDataset(train_p, y_train, train_augmentations(cfg.train.seed + distributed.rank(), cfg.augment))
        sampler = None
        if cfg.data.balanced_sampling:  # one weighted draw per epoch, seeded by (seed, epoch), 1/N of it per rank
            weights = np.where(y_train == 1, 1.0 / max(y_train.sum(), 1), 1.0 / max((1 - y_train).sum(), 1))
            sampler = WeightedShardSampler(weights, len(y_train), seed=cfg.train.seed, rank=distributed.rank(),
                                           world_size=distributed.world_size())
        elif distributed.is_distributed():
            sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.train.seed)
        per_rank = len(sampler) if sampler is not None else len(dataset)
        loader = DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler,
                            num_workers=cfg.train.num_workers, drop_last=per_rank > cfg.train.batch_size,
                            worker_init_fn=worker_init_fn, pin_memory=torch.cuda.is_available())
        network = build_medical_model(cfg.model)
        criterion = build_classification_loss(cfg.train.loss, y_train, 2, cfg.train.focal_gamma)

        def loss_fn(logits: torch.Tensor, batch: dict) -> torch.Tensor:
            return criterion.to(logits.device)(logits.float(), batch["label"])

        def validate(model: torch.nn.Module) -> dict[str, float]:
            probs = predict_patches(model, val_p, cfg.train.batch_size)
            metrics = binary_metrics(y_val, probs, fprs=())
            cpm = froc_of(val_c, probs, folder.annotations, val_uids, excluded).cpm
            return {"val_loss": loss_on_probabilities(criterion, probs, y_val), "val_cpm": cpm,
                    **{f"val_{k}": v for k, v in metrics.items()}}

        trainer = Trainer(network, cfg.train, loss_fn, validate, workdir, on_epoch_end, inputs=lambda b: b["image"])
        result = trainer.fit(loader, resume=resume)
        if not main:  # torchrun: rank 0 alone evaluates, saves and logs the model
            return None
        network = trainer.model.cpu()

        threshold = best_f1_threshold(y_val, predict_patches(network, val_p, cfg.train.batch_size))
        test_probs = predict_patches(network, test_p, cfg.train.batch_size)
        froc = froc_of(test_c, test_probs, folder.annotations, test_uids, excluded)
        metrics = binary_metrics(y_test, test_probs, threshold, fprs=())
        metrics.update({"cpm": froc.cpm, "threshold": threshold})
        for rate, sensitivity in zip(FROC_FP_RATES, froc.sensitivities, strict=True):
            metrics[f"sensitivity_at_{rate:g}_fp_per_scan"] = sensitivity

        bundle = MedicalScorer(network, cfg.model, cfg.patch, threshold).save(workdir / "bundle")
        return TrainedModel(
            test_metrics=metrics, python_model=MLFLOW_ENTRY, artifacts={BUNDLE_ARTIFACT: str(bundle)},
            input_example=test_p[:2].copy(),
            figures={"roc_test.png": roc_figure(y_test, test_probs), "pr_test.png": pr_figure(y_test, test_probs),
                     "froc_test.png": plot_froc(froc),
                     "patches_test.png": patch_grid_figure(test_p, y_test, test_probs),
                     "learning_curves.png": learning_curves_figure(result.history, cfg.train.monitor)},
            history=result.history,
            curves={**roc_pr_curves(y_test, test_probs), "froc_test": froc_curve_table(froc)},
            summary_params={"scans_train": len(train_uids), "scans_val": len(val_uids), "scans_test": len(test_uids),
                            "candidates_train": len(train_c), "nodules_test": froc.n_nodules,
                            "best_epoch": result.best_epoch + 1},
        )

    def score(self, python_model: MedicalPyfuncModel, input_path: Path, output_path: Path, batch_size: int,
              context: Path | None = None, engine=None) -> str:
        return MedicalPyfuncModel.expect(python_model).score_file(input_path, output_path, batch_size, engine)


DOMAIN = MedicalPipeline()
