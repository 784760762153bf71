"""Medical: the 3D CNN vs a MONAI ResNet, patch throughput with and without the cache, scoring speed, FLOPs."""
from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from apps.medical.dataset import PatchCache, load_candidate_patches, read_luna16_folder
from apps.medical.model import build_medical_model, count_flops
from apps.medical.patches import extract_patches
from apps.medical.reader import read_ct_volume
from apps.medical.scorer import MedicalScorer, predict_patches
from apps.medical.synthetic import write_synthetic_luna16
from benchmarks.common import OUT, markdown_table, peak_rss_mb, timer
from common.config import load_config
from pipelines.medical import DENSENET_MIN_VOXELS, DOMAIN, MedicalConfig
from pipelines.runner import CONFIG_DIR, load_domain_config

NETWORKS = {"cnn3d (ours)": ["model.name=cnn3d"], "MONAI resnet10": ["model.name=resnet10"]}
STEP_BATCH = 32


def step_seconds(name: str, size: int, repeats: int = 3) -> float:
    """Mean wall time of one training step (forward, backward, AdamW) on a batch of 32 patches."""
    net = build_medical_model(replace(load_config(MedicalConfig, CONFIG_DIR / "medical.yaml").model, name=name))
    opt = torch.optim.AdamW(net.parameters())
    x, y = torch.rand(STEP_BATCH, 1, size, size, size), torch.randint(0, 2, (STEP_BATCH,))
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return float(np.mean(times))


def run(scale: str, epochs: int) -> str:
    data = OUT / f"medical_{scale}"
    if not (data / "candidates.csv").exists():
        write_synthetic_luna16(data, scale, seed=1)
    folder = read_luna16_folder(data)
    patch_cfg = load_config(MedicalConfig, CONFIG_DIR / "medical.yaml").patch  # the geometry training uses
    n = len(folder.candidates)

    with tempfile.TemporaryDirectory() as tmp:
        cache = PatchCache(Path(tmp), folder.volumes, patch_cfg)
        with timer() as cold:
            load_candidate_patches(cache, folder.candidates)
        with timer() as warm:
            load_candidate_patches(cache, folder.candidates)

    rows = []
    size = patch_cfg.size_vox
    for label, overrides in NETWORKS.items():
        cfg = load_domain_config(DOMAIN, None, [f"train.epochs={epochs}", *overrides])
        with tempfile.TemporaryDirectory() as work, timer() as t:
            trained = DOMAIN.fit(cfg, data, Path(work), False, lambda e, m: None)
            scorer = MedicalScorer.load(trained.artifacts["bundle"])
        m = trained.test_metrics
        flops = count_flops(scorer.network, size)
        step = step_seconds(cfg.model.name, size)
        rows.append({"network": label, "params (M)": sum(p.numel() for p in scorer.network.parameters()) / 1e6,
                     "test AUC": m["auc"], "test CPM": m["cpm"], "train s": t["seconds"],
                     "GFLOP/patch (fwd)": flops / 1e9, "train step s (32 patches)": step,
                     "achieved GFLOP/s (≈3× fwd per step)": 3 * flops * STEP_BATCH / step / 1e9})
        print(markdown_table(rows[-1:]), flush=True)  # partial results survive a later failure
        if label.startswith("cnn3d"):
            best = scorer
    densenet_size = max(size, DENSENET_MIN_VOXELS)  # its four poolings need at least 32³
    densenet_step = step_seconds("densenet121", densenet_size, repeats=1)

    uids = list(folder.volumes)[:5]
    with timer() as t_scan:
        for uid in uids:
            volume = read_ct_volume(folder.volumes[uid])
            centres = folder.candidates.loc[folder.candidates.seriesuid == uid, ["coordX", "coordY", "coordZ"]]
            predict_patches(best.network, extract_patches(volume, centres.to_numpy(float), patch_cfg))
    return "\n".join([
        f"### Medical ({scale} synthetic LUNA16: {len(folder.volumes)} scans, {n:,} candidates, "
        f"{int(folder.candidates['class'].sum())} positive; {size}³ patches of {patch_cfg.size_mm:g} mm; "
        f"{epochs} epochs)", "",
        markdown_table(rows), "",
        f"- MONAI DenseNet121 (11.2 M params): one training step on 32 patches of {densenet_size}³ takes "
        f"{densenet_step:.1f} s here, "
        "too slow to train to convergence on this CPU in the benchmark budget.",
        f"- patches/s: first read (volume read + resample + window + cache write) {n / cold['seconds']:,.0f}; "
        f"from the cache {n / warm['seconds']:,.0f} (×{cold['seconds'] / warm['seconds']:.0f})",
        f"- scoring: {t_scan['seconds'] / len(uids):.2f} s per scan (read, patches, network; cnn3d)",
        f"- peak resident memory of the benchmark process: {peak_rss_mb():,.0f} MB",
    ])
