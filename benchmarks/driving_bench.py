"""Driving: fusion (PointPainting) vs LiDAR-only AP on one synthetic set, ms/frame eager vs ONNX Runtime, FLOPs."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from apps.driving.camera import images_to_tensor, prepare_image
from apps.driving.dataset import read_driving_frames
from apps.driving.export import OnnxPointPillars, export_onnx
from apps.driving.kitti import find_frames, kitti_split_dir
from apps.driving.scorer import DrivingScorer, paint_frames
from apps.driving.synthetic import write_synthetic_kitti
from benchmarks.common import OUT, markdown_table, peak_rss_mb, timer
from pipelines.driving import DOMAIN
from pipelines.runner import load_domain_config

TIMED_FRAMES = 20
VARIANTS = {"fusion (PointPainting)": "painting", "LiDAR only": "none"}


def _mean_ms(fn, inputs: list, repeats: int = 1) -> float:
    fn(inputs[0])  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        for item in inputs:
            fn(item)
    return 1000 * (time.perf_counter() - start) / (repeats * len(inputs))


def _flops(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def run(scale: str, epochs: int, camera_epochs: int) -> str:
    data = OUT / f"driving_{scale}"
    if not (data / "training").is_dir():
        write_synthetic_kitti(data, scale, seed=1)
    n_frames = len(find_frames(data))
    rows, scorers = [], {}
    for label, fusion in VARIANTS.items():
        cfg = load_domain_config(DOMAIN, None, [f"model.fusion={fusion}", f"train.epochs={epochs}",
                                                f"camera_train.epochs={camera_epochs}"])
        with tempfile.TemporaryDirectory() as work, timer() as t:
            trained = DOMAIN.fit(cfg, data, Path(work), False, lambda e, m: None)
            scorers[fusion] = DrivingScorer.load(trained.artifacts["bundle"])
        m = trained.test_metrics
        rows.append({"detector": label, "test AP BEV@0.7": m["ap_bev"], "test AP 3D@0.7": m["ap_3d"],
                     "test AP BEV@0.5": m["ap_bev_50"], "test AP 3D@0.5": m["ap_3d_50"],
                     "test AOS": m["aos"], "AP 2D@0.7": m["ap_2d"],
                     "median heading error °": m["heading_error_deg"], "reversed headings": m["heading_reversed"],
                     "test recall@0.5": m["recall"], "train s": t["seconds"]})
        print(markdown_table(rows[-1:]), flush=True)

    fusion = scorers["painting"]
    split = kitti_split_dir(data)
    frames = read_driving_frames(split, find_frames(data)[:TIMED_FRAMES], "timing frames")
    painted = paint_frames(fusion.camera, frames, batch_size=1)
    batches = [fusion.pillarizer.batch([f.points]) for f in painted]
    net = fusion.net.eval()
    with torch.no_grad():
        eager_ms = _mean_ms(net, batches)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(net, batches[0], Path(tmp) / "pointpillars.onnx")
        session = OnnxPointPillars(onnx_path)
        onnx_ms = _mean_ms(session, batches)
        with torch.no_grad():
            max_diff = float(max((session(b)["heatmap"] - net(b)["heatmap"]).abs().max() for b in batches[:3]))
    voxel_ms = _mean_ms(lambda f: fusion.pillarizer(f.points), painted)
    images = [prepare_image(f.image, fusion.camera.cfg.image_scale) for f in frames]
    camera_ms = _mean_ms(lambda img: fusion.camera.detect([img]), images)
    end_to_end_ms = _mean_ms(lambda f: fusion.detect([f], batch_size=1), frames)
    lidar_flops = float(np.mean([_flops(lambda b=b: net(b)) for b in batches[:5]]))
    camera_flops = _flops(lambda: fusion.camera.detector._forward(images_to_tensor(images[:1])))
    timing = [
        {"stage": "camera YOLOX (mmdet), eager", "ms/frame": camera_ms, "GFLOP/frame": camera_flops / 1e9},
        {"stage": "voxelisation (mmcv)", "ms/frame": voxel_ms, "GFLOP/frame": float("nan")},
        {"stage": "PointPillars network, PyTorch eager", "ms/frame": eager_ms, "GFLOP/frame": lidar_flops / 1e9},
        {"stage": "PointPillars network, ONNX Runtime", "ms/frame": onnx_ms, "GFLOP/frame": lidar_flops / 1e9},
        {"stage": "whole frame (read excluded, painting + decode + NMS)", "ms/frame": end_to_end_ms,
         "GFLOP/frame": (camera_flops + lidar_flops) / 1e9},
    ]
    for row in timing:  # NaN where nothing was counted (the voxeliser is a compiled op)
        row["achieved GFLOP/s"] = row["GFLOP/frame"] / row["ms/frame"] * 1000
    return "\n".join([
        f"### Driving ({scale} synthetic KITTI: {n_frames} frames; LiDAR {epochs} epochs, camera {camera_epochs})",
        "", markdown_table(rows), "",
        f"Inference on one CPU frame (mean of {len(frames)} frames, batch 1):", "", markdown_table(timing), "",
        f"- ONNX Runtime vs eager: max |Δ heatmap logit| = {max_diff:.2e} on 3 frames",
        f"- peak resident memory of the benchmark process: {peak_rss_mb():,.0f} MB",
    ])
