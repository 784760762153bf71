"""Batch scoring of LUNA16 candidates with a trained 3D CNN, and its MLflow pyfunc wrapper."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from apps.medical.dataset import COORDS, read_luna16_folder
from apps.medical.model import MedicalModelConfig, build_medical_model
from apps.medical.patches import PatchConfig, extract_patches
from apps.medical.reader import read_ct_volume
from common.bundled_model import BundledModel, scorer_of
from common.errors import InputError
from common.io import atomic_path
from common.model_bundle import load_bundle, save_bundle

KIND = "medical-nodule-3dcnn"  # the bundle spec's kind
OUTPUT_COLUMNS = ["seriesuid", *COORDS, "probability"]


@torch.no_grad()
def predict_patches(network: nn.Module, patches: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Nodule probability for float patches (N, 1, S, S, S) in [0, 1]."""
    network.eval()
    device = next(network.parameters()).device
    out = np.empty(len(patches), np.float64)
    for start in range(0, len(patches), batch_size):
        batch = torch.as_tensor(np.asarray(patches[start:start + batch_size], np.float32), device=device)
        out[start:start + len(batch)] = torch.softmax(network(batch).float(), 1)[:, 1].cpu().numpy()
    return out


class MedicalScorer:
    """A trained nodule classifier with the patch geometry and threshold it was validated with."""

    def __init__(self, network: nn.Module, model_cfg: MedicalModelConfig, patch_cfg: PatchConfig, threshold: float):
        self.network, self.model_cfg, self.patch_cfg, self.threshold = network.eval(), model_cfg, patch_cfg, threshold

    def save(self, folder: str | Path) -> Path:
        spec = {"kind": KIND, "model": asdict(self.model_cfg), "patch": asdict(self.patch_cfg),
                "threshold": float(self.threshold)}
        return save_bundle(folder, self.network.state_dict(), spec)

    @classmethod
    def load(cls, folder: str | Path) -> MedicalScorer:
        state, spec = load_bundle(folder, KIND, "medical")
        model_cfg, patch_cfg = MedicalModelConfig(**spec["model"]), PatchConfig(**spec["patch"])
        network = build_medical_model(model_cfg)
        network.load_state_dict(state)
        return cls(network, model_cfg, patch_cfg, spec["threshold"])

    def score_folder(self, root: Path, batch_size: int = 256, engine=None) -> pd.DataFrame:
        """One probability per candidate of a LUNA16 folder, in candidates.csv order; one scan in memory.

        `engine` (common.scoring_engines): where the scans are scored; default: here, one after another.
        """
        from common.scoring_engines import LocalEngine

        candidates, scans = plan_scans(root, batch_size)
        engine = engine or LocalEngine(self)
        probs = np.empty(len(candidates), np.float64)
        for scan, scan_probs in zip(scans, engine.map(scans, score_scan, "scoring scans"), strict=True):
            probs[scan.rows] = scan_probs
        out = candidates[["seriesuid", *COORDS]].copy()
        out["probability"] = probs
        return out

    def score_scan(self, scan: ScanPart) -> np.ndarray:
        """The probabilities of one scan's candidates, reading its volume where it lies."""
        volume = read_ct_volume(scan.volume)
        return predict_patches(self.network, extract_patches(volume, scan.coords, self.patch_cfg), scan.batch_size)


@dataclass(frozen=True)
class ScanPart:
    """One scan's share of a scoring job: its volume's path and its candidates (small enough to ship)."""

    seriesuid: str
    volume: Path
    rows: np.ndarray  # the candidates' positions in candidates.csv
    coords: np.ndarray  # (n, 3) world coordinates, mm
    batch_size: int


def plan_scans(root: Path, batch_size: int) -> tuple[pd.DataFrame, list[ScanPart]]:
    """The candidates of a LUNA16 folder and one part per scan, in first-appearance order."""
    data = read_luna16_folder(Path(root), require_labels=False)
    absent = sorted(set(data.candidates["seriesuid"]) - set(data.volumes))
    if absent:
        raise InputError(root, f"candidates.csv names {len(absent)} seriesuid(s) with no volume, e.g. {absent[0]}")
    coords = data.candidates[COORDS].to_numpy(np.float64)
    groups = data.candidates.groupby("seriesuid", sort=False).indices
    return data.candidates, [ScanPart(uid, Path(data.volumes[uid]), rows, coords[rows], batch_size)
                             for uid, rows in groups.items()]


def score_scan(model: MedicalPyfuncModel | MedicalScorer, scan: ScanPart) -> np.ndarray:
    """What a scoring engine runs per part (a Spark task: with the model its worker loaded)."""
    return scorer_of(model).score_scan(scan)


class MedicalPyfuncModel(BundledModel):
    """MLflow face of MedicalScorer: patches (N, 1, S, S, S) in [0, 1] in, nodule probability out."""

    scorer_class = MedicalScorer
    domain = "medical"

    def part_layout(self) -> str:
        return "one scan"

    def predict(self, context, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        size = self.scorer.patch_cfg.size_vox
        patches = np.asarray(model_input, np.float32)
        if patches.ndim != 5 or patches.shape[1:] != (1, size, size, size):
            raise InputError(None, f"expected patches of shape (N, 1, {size}, {size}, {size}), got {patches.shape}")
        return predict_patches(self.scorer.network, patches)

    def score_file(self, input_path: Path, output_path: Path, batch_size: int, engine=None,
                   context_path: Path | None = None) -> str:
        """The LUNA16 submission CSV (seriesuid,coordX,coordY,coordZ,probability), written atomically."""
        started = time.perf_counter()
        scores = self.scorer.score_folder(Path(input_path), batch_size, engine)
        with atomic_path(output_path) as tmp:
            scores.to_csv(tmp, index=False)
        seconds = time.perf_counter() - started
        n_scans = scores["seriesuid"].nunique()
        return (f"scored {len(scores):,} candidates in {n_scans} scans in {seconds:.1f} s "
                f"({seconds / max(n_scans, 1):.2f} s/scan); wrote {output_path}{engine.describe() if engine else ''}")
