"""Candidate patches cut once per scan and cached on disk, so later epochs never re-read CT volumes.

Why not MONAI's PersistentDataset: it caches one file per item (550k files for LUNA16) and still opens
the volume once per candidate; here each scan is read once and all of its patches land in one uint8
`.npy` (the [0, 1] HU window quantised to 1/255 ≈ 5.5 HU, far below CT noise), memory-mapped afterwards.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm

from apps.medical.patches import PatchConfig, extract_patches
from apps.medical.reader import (
    find_luna16_volumes,
    read_ct_volume,
    read_luna16_annotations,
    read_luna16_candidates,
)
from common.errors import InputError, warn_input
from common.io import atomic_path

QUANT_LEVELS = 255
COORDS = ["coordX", "coordY", "coordZ"]


@dataclass
class Luna16Dataset:
    """A LUNA16-layout folder: where each volume is, its candidates and (when present) annotations."""

    root: Path
    volumes: dict[str, Path]
    candidates: pd.DataFrame
    annotations: pd.DataFrame | None


def find_csv(root: Path, name: str) -> Path | None:
    """LUNA16 keeps its CSVs at the top or in CSVFILES/; accept either, or any one deeper down."""
    for candidate in (root / name, root / "CSVFILES" / name):
        if candidate.is_file():
            return candidate
    found = sorted(root.rglob(name))
    return found[0] if found else None


def read_luna16_folder(root: str | Path, require_labels: bool = True) -> Luna16Dataset:
    """Volumes, candidates and annotations of a LUNA16 folder, checked against each other."""
    root = Path(root)
    volumes = find_luna16_volumes(root)
    cand_path = find_csv(root, "candidates.csv") or find_csv(root, "candidates_V2.csv")
    if cand_path is None:
        raise InputError(root, "no candidates.csv found (expected at the top or in CSVFILES/)")
    candidates = read_luna16_candidates(cand_path, require_class=require_labels)
    annotations = None
    ann_path = find_csv(root, "annotations.csv")
    if ann_path is not None:
        annotations = read_luna16_annotations(ann_path)
    elif require_labels:
        raise InputError(root, "no annotations.csv found: training needs it for FROC/CPM")
    if candidates.empty:
        raise InputError(cand_path, "no candidates")
    return Luna16Dataset(root, volumes, candidates, annotations)


def drop_candidates_without_volume(data: Luna16Dataset) -> Luna16Dataset:
    """Training tolerates candidates of scans that are absent, with a warning naming them."""
    known = data.candidates["seriesuid"].isin(data.volumes)
    if not known.all():
        missing = sorted(set(data.candidates.loc[~known, "seriesuid"]))
        warn_input("candidates.csv", f"{len(missing)} seriesuid(s) have no volume and are skipped: "
                                     f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
        data.candidates = data.candidates[known].reset_index(drop=True)
    return data


def quantize(patches: np.ndarray) -> np.ndarray:
    return np.round(np.clip(patches, 0, 1) * QUANT_LEVELS).astype(np.uint8)


def dequantize(patches: np.ndarray) -> np.ndarray:
    return patches.astype(np.float32) / QUANT_LEVELS


class PatchCache:
    """`patches(uid, centres)` reads a scan at most once per patch geometry, then serves it from disk."""

    def __init__(self, folder: Path, volumes: dict[str, Path], cfg: PatchConfig):
        geometry = {k: v for k, v in asdict(cfg).items() if k != "batch"}  # batch only bounds memory
        key = json.dumps(geometry, sort_keys=True)
        self.folder = Path(folder) / hashlib.sha1(key.encode()).hexdigest()[:12]
        self.volumes, self.cfg = volumes, cfg

    def _file(self, uid: str, centres: np.ndarray) -> Path:
        mhd = self.volumes[uid]
        stamp = f"{mhd.resolve()}|{mhd.stat().st_mtime_ns}|{np.ascontiguousarray(centres).tobytes().hex()}"
        return self.folder / f"{uid}-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}.npy"

    def patches(self, uid: str, centres: np.ndarray) -> np.ndarray:
        """uint8 patches (N, 1, S, S, S) of scan `uid` at world centres (N, 3)."""
        path = self._file(uid, centres)
        if not path.is_file():
            volume = read_ct_volume(self.volumes[uid])
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, quantize(extract_patches(volume, centres, self.cfg)))
        return np.load(path, mmap_mode="r")


def load_candidate_patches(cache: PatchCache, candidates: pd.DataFrame, desc: str = "patches") -> np.ndarray:
    """uint8 patches for every row of `candidates`, in row order, one volume read per scan at most."""
    out = np.empty((len(candidates), 1, *(cache.cfg.size_vox,) * 3), np.uint8)
    groups = candidates.groupby("seriesuid", sort=False).indices
    for uid, rows in tqdm(groups.items(), desc=desc, unit="scan", leave=False, disable=None):
        out[rows] = cache.patches(uid, candidates[COORDS].to_numpy(np.float64)[rows])
    return out


class PatchDataset(Dataset):
    """(patch, label) pairs for the trainer; `transform` (MONAI) augments training patches."""

    def __init__(self, patches: np.ndarray, labels: np.ndarray, transform=None):
        self.patches, self.labels, self.transform = patches, np.asarray(labels, np.int64), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = torch.from_numpy(dequantize(self.patches[i]))
        if self.transform is not None:
            image = torch.as_tensor(self.transform(image)).float()
        return {"image": image, "label": torch.tensor(self.labels[i])}


class WeightedShardSampler(Sampler[int]):
    """Balanced sampling (a weighted draw with replacement) that also shards under torchrun.

    Each epoch draws `num_samples` indices (rounded up to a multiple of `world_size`) from a generator
    seeded by (seed, epoch), the same draw on every rank; rank r keeps every world_size-th, so the ranks
    share one weighted draw between them, 1/N each. The draw depends only on (seed, epoch), so a resumed
    run sees the same epochs; call `set_epoch` (the Trainer does) for a new draw every epoch.
    """

    def __init__(self, weights: np.ndarray | torch.Tensor, num_samples: int | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.weights = torch.as_tensor(np.asarray(weights, np.float64))
        if self.weights.ndim != 1 or len(self.weights) == 0 or not bool((self.weights >= 0).all()) \
                or float(self.weights.sum()) <= 0:
            raise ValueError("weights must be a non-empty 1-D array of non-negative numbers, not all zero")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0 .. {world_size - 1}")
        total = len(self.weights) if num_samples is None else num_samples
        self.per_rank = -(-total // world_size)  # ceil: every rank takes as many steps as the others
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)[0] >> 1)
        generator = torch.Generator().manual_seed(seed)
        draw = torch.multinomial(self.weights, self.per_rank * self.world_size, replacement=True, generator=generator)
        return iter(draw[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank
