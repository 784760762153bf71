"""Cut isotropic, HU-windowed 3-D patches around LUNA16 candidates, and the training augmentations.

Axis order: a patch is (1, S, S, S) with axes (channel, z, y, x), like `CTVolume.array`; S =
round(size_mm / voxel_mm). Patch voxel (k, j, i) samples the world point
    centre + ((i, j, k) - S // 2) * voxel_mm          (x, y, z) mm,
so the candidate itself sits exactly at index S // 2 on every axis (for even S one voxel past the
middle). Only a small box of source voxels around each candidate is cropped and resampled (trilinear,
torch `grid_sample`, as MONAI's resamplers do): a whole CT is never resampled to 1 mm. Points outside
the scan read as air (`fill_hu`), which the window maps to 0. The HU window is MONAI
`ScaleIntensityRange` (hu_min..hu_max -> 0..1, clipped).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import (
    Compose,
    EnsureType,
    RandAffine,
    RandFlip,
    RandRotate90,
    RandScaleIntensity,
    RandShiftIntensity,
    ScaleIntensityRange,
)

from apps.medical.reader import CTVolume, world_to_voxel
from common.config import Constraints, Interval


@dataclass
class PatchConfig:
    """Patch geometry and HU window; the same values must be used for training and scoring."""

    CONSTRAINTS: ClassVar[Constraints] = {
        "size_mm": Interval(0, None, "neither"), "voxel_mm": Interval(0, None, "neither"), "batch": Interval(1),
        # CT numbers a scanner can store (12-bit, from air at -1024 with the -3024 outside-the-bore pad)
        "hu_min": Interval(-3024, 3071), "hu_max": Interval(-3024, 3071), "fill_hu": Interval(-3024, 3071),
    }

    size_mm: float = 32.0
    voxel_mm: float = 1.0
    hu_min: float = -1000.0
    hu_max: float = 400.0
    fill_hu: float = -1000.0  # air, for points outside the scanned volume
    batch: int = 128  # candidates resampled per grid_sample call: bounds memory (~60 MB at 32³)

    @property
    def size_vox(self) -> int:
        """Patch edge S in voxels."""
        return round(self.size_mm / self.voxel_mm)

    def validate(self) -> None:
        """Reject geometry that cannot make a patch (called by the config loader)."""
        if self.size_vox < 1:
            raise ValueError(f"size_mm ({self.size_mm}) and voxel_mm ({self.voxel_mm}) must give ≥ 1 voxel")
        if self.hu_max <= self.hu_min:
            raise ValueError(f"hu_max ({self.hu_max}) must be above hu_min ({self.hu_min})")


@dataclass
class AugmentConfig:
    """Strength of the training augmentations (probabilities and ranges)."""

    CONSTRAINTS: ClassVar[Constraints] = {
        "flip_p": Interval(0, 1), "rot90_p": Interval(0, 1), "affine_p": Interval(0, 1), "rotate_rad": Interval(0),
        "scale": Interval(0, 1, "left"), "translate_vox": Interval(0), "intensity_p": Interval(0, 1),
        "intensity_scale": Interval(0, 1, "left"), "intensity_shift": Interval(0),
    }

    flip_p: float = 0.5
    rot90_p: float = 0.5
    affine_p: float = 0.3
    rotate_rad: float = 0.26  # ±15° about each axis
    scale: float = 0.1  # ±10 % zoom
    translate_vox: float = 2.0
    intensity_p: float = 0.3
    intensity_scale: float = 0.1
    intensity_shift: float = 0.05


def _window(cfg: PatchConfig) -> ScaleIntensityRange:
    """The HU window as a MONAI transform."""
    return ScaleIntensityRange(a_min=cfg.hu_min, a_max=cfg.hu_max, b_min=0.0, b_max=1.0, clip=True)


def extract_patches(volume: CTVolume, centers_world: np.ndarray, cfg: PatchConfig | None = None) -> np.ndarray:
    """Patches (N, 1, S, S, S) float32 in [0, 1] around world (x, y, z) mm centres; see module docstring."""
    cfg = cfg or PatchConfig()
    centers = np.asarray(centers_world, dtype=np.float64).reshape(-1, 3)
    size = cfg.size_vox
    out = np.empty((len(centers), 1, size, size, size), dtype=np.float32)
    if len(centers) == 0:
        return out
    spacing = np.asarray(volume.spacing, dtype=np.float64)  # (x, y, z)
    shape_xyz = np.array(volume.array.shape[::-1])
    # Patch sample offsets in source-voxel units, per axis (x, y, z).
    offsets = (np.arange(size) - size // 2) * cfg.voxel_mm
    steps = offsets[None, :] / spacing[:, None]  # (3, S)
    low_off = np.floor(steps[:, 0]).astype(int) - 1
    crop = np.ceil(steps[:, -1]).astype(int) + 2 - low_off  # crop edge per axis, same for every centre
    window = _window(cfg)
    source = volume.array
    for start in range(0, len(centers), cfg.batch):
        chunk = world_to_voxel(centers[start:start + cfg.batch], volume.origin, spacing)  # (n, 3) x, y, z
        base = np.floor(chunk).astype(int) + low_off  # crop corner in source voxels
        crops = np.full((len(chunk), 1, crop[2], crop[1], crop[0]), cfg.fill_hu, dtype=np.float32)
        for n, corner in enumerate(base):
            lo = np.maximum(corner, 0)
            hi = np.minimum(corner + crop, shape_xyz)
            if np.any(hi <= lo):
                continue  # entirely outside the scan: all air
            d_lo, d_hi = lo - corner, hi - corner
            crops[n, 0, d_lo[2]:d_hi[2], d_lo[1]:d_hi[1], d_lo[0]:d_hi[0]] = \
                source[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        # Sample positions inside each crop, normalised to [-1, 1] (align_corners=True).
        local = chunk - base  # (n, 3) centre inside crop, x, y, z
        norm = [torch.from_numpy((2 * (local[:, a, None] + steps[a][None, :]) / (crop[a] - 1) - 1)
                                 .astype(np.float32)) for a in range(3)]  # (n, S) per axis x, y, z
        full = (len(chunk), size, size, size)
        grid = torch.stack([norm[0][:, None, None, :].expand(full), norm[1][:, None, :, None].expand(full),
                            norm[2][:, :, None, None].expand(full)], dim=-1)  # (n, z, y, x, [x, y, z])
        with torch.no_grad():
            patch = F.grid_sample(torch.from_numpy(crops), grid, mode="bilinear", padding_mode="border",
                                  align_corners=True)
        out[start:start + len(chunk)] = np.asarray(window(patch.numpy()), dtype=np.float32)
    return out


def extract_patch(volume: CTVolume, center_world_xyz, cfg: PatchConfig | None = None) -> np.ndarray:
    """One patch (1, S, S, S) around a world (x, y, z) mm point."""
    return extract_patches(volume, np.asarray(center_world_xyz, dtype=np.float64)[None], cfg)[0]


def train_augmentations(seed: int | None = None, cfg: AugmentConfig | None = None) -> Compose:
    """Random flips (3 axes), axial 90° turns, a small affine and intensity jitter on (1, S, S, S) patches.

    Nodules have no preferred orientation, so flips and rotations are label-preserving; the axial-only
    90° turns keep the thicker z sampling on its own axis. Returns plain torch tensors.
    """
    cfg = cfg or AugmentConfig()
    transforms = Compose([
        EnsureType(data_type="tensor", track_meta=False),
        RandFlip(prob=cfg.flip_p, spatial_axis=0),
        RandFlip(prob=cfg.flip_p, spatial_axis=1),
        RandFlip(prob=cfg.flip_p, spatial_axis=2),
        RandRotate90(prob=cfg.rot90_p, max_k=3, spatial_axes=(1, 2)),  # (y, x): the axial plane
        RandAffine(prob=cfg.affine_p, rotate_range=(cfg.rotate_rad,) * 3, scale_range=(cfg.scale,) * 3,
                   translate_range=(cfg.translate_vox,) * 3, padding_mode="zeros", mode="bilinear"),
        RandScaleIntensity(factors=cfg.intensity_scale, prob=cfg.intensity_p),
        RandShiftIntensity(offsets=cfg.intensity_shift, prob=cfg.intensity_p),
        EnsureType(data_type="tensor", track_meta=False),
    ])
    if seed is not None:
        transforms.set_random_state(seed=seed)
    return transforms
