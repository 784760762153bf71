"""On a CUDA machine: the shared Trainer's AMP path (autocast + GradScaler) and PointPillars ms/frame on the GPU.

Needs only torch, numpy and tqdm (no mmcv): pillars are drawn at random in the shape mmcv's voxeliser gives,
so the numbers are those of the network, not of voxelisation. Run: `python -m benchmarks.gpu_amp_check`.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from apps.driving.center_head import CenterHeadConfig, CenterTargets, center_head_loss
from apps.driving.model import DrivingModelConfig, PointPillarsNet
from apps.driving.pillars import PillarGrid
from common.trainer import TrainConfig, Trainer

PILLARS_PER_SCAN = 9000  # a KITTI reduced scan fills about this many 0.32 m pillars
CARS_PER_SCAN = 6


def random_scan(grid: PillarGrid, cfg: DrivingModelConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    ny, nx = grid.shape
    cells = rng.choice(ny * nx, PILLARS_PER_SCAN, replace=False)
    coords = np.column_stack([np.zeros(PILLARS_PER_SCAN), cells // nx, cells % nx]).astype(np.int64)
    counts = rng.integers(1, grid.max_points_per_pillar + 1, PILLARS_PER_SCAN)
    pillars = rng.normal(size=(PILLARS_PER_SCAN, grid.max_points_per_pillar, cfg.point_features)).astype(np.float32)
    return {"pillars": torch.from_numpy(pillars), "counts": torch.from_numpy(counts),
            "coords": torch.from_numpy(coords), "batch_size": 1}


def random_boxes(rng: np.random.Generator) -> np.ndarray:
    xy = np.column_stack([rng.uniform(5, 60, CARS_PER_SCAN), rng.uniform(-20, 20, CARS_PER_SCAN)])
    return np.column_stack([xy, np.full(CARS_PER_SCAN, -0.9), np.tile([3.9, 1.6, 1.5], (CARS_PER_SCAN, 1)),
                            rng.uniform(-np.pi, np.pi, CARS_PER_SCAN)])


def time_forward(net: torch.nn.Module, batch: dict, amp: bool, repeats: int = 50) -> float:
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        for _ in range(5):
            net(batch)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            net(batch)
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    assert torch.cuda.is_available(), "this check needs a CUDA GPU"
    rng = np.random.default_rng(0)
    grid, head, model_cfg = PillarGrid(), CenterHeadConfig(), DrivingModelConfig(fusion="painting")
    targets = CenterTargets(grid, head)
    batches = []
    for _ in range(16):
        scan = random_scan(grid, model_cfg, rng)
        drawn = targets(random_boxes(rng))
        scan.update({k: torch.from_numpy(v)[None] for k, v in drawn.items()})
        batches.append(scan)

    losses = []
    trainer = Trainer(PointPillarsNet(model_cfg, grid), TrainConfig(epochs=3, lr=2e-3, amp=True, monitor_mode="max"),
                      lambda out, b: center_head_loss(out, b, head.regression_weight),
                      lambda m: {"val_loss": 0.0, "val_auc": 0.0},
                      on_epoch_end=lambda e, m: losses.append(m["train_loss"]))
    assert trainer.use_amp, "AMP should be on with a CUDA device"
    trainer.fit(batches)
    print(f"AMP training on {torch.cuda.get_device_name(0)}: train_loss per epoch {[round(x, 3) for x in losses]}, "
          f"GradScaler scale {trainer.scaler.get_scale():g}")
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]

    net = trainer.model.eval()
    batch = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in batches[0].items()}
    fp32, fp16 = time_forward(net, batch, amp=False), time_forward(net, batch, amp=True)
    print(f"PointPillars network ({PILLARS_PER_SCAN} pillars, {grid.shape[1]}x{grid.shape[0]} grid), batch 1: "
          f"fp32 {fp32:.2f} ms/frame, AMP fp16 {fp16:.2f} ms/frame")


if __name__ == "__main__":
    main()
