"""PointPillars' LiDAR encoder: points → pillars (mmcv `Voxelization`) → pillar features → BEV pseudo-image.

The grid follows the LiDAR frame: columns are x (forward), rows are y (left), as in MMDetection3D.
`PillarGrid` owns the geometry so the voxeliser, the target builder and the box decoder agree on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from common.config import Constraints, Each, Interval

# Per-point features PointPillars adds to the raw ones: offsets to the pillar's point mean (3) and centre (3).
_DECORATION_FEATURES = 6


@dataclass
class PillarGrid:
    """Where the detector looks and how finely: the KITTI PointPillars range, pillar size and point budget."""

    CONSTRAINTS: ClassVar[Constraints] = {
        "point_cloud_range": Each(Interval(), length=6),  # x_min, y_min, z_min, x_max, y_max, z_max
        "pillar_size": Each(Interval(0, None, "neither"), length=2),
        "max_points_per_pillar": Interval(1), "max_pillars": Interval(1),
    }

    point_cloud_range: list[float] = field(default_factory=lambda: [0.0, -39.68, -3.0, 69.12, 39.68, 1.0])
    pillar_size: list[float] = field(default_factory=lambda: [0.32, 0.32])  # x, y metres (z spans the range)
    max_points_per_pillar: int = 32
    max_pillars: int = 12000

    def validate(self) -> None:
        lo, hi = np.array(self.point_cloud_range[:3]), np.array(self.point_cloud_range[3:])
        if np.any(hi <= lo):
            raise ValueError(f"point_cloud_range maxima must exceed minima, got {self.point_cloud_range}")

    @property
    def voxel_size(self) -> list[float]:
        return [*self.pillar_size, self.point_cloud_range[5] - self.point_cloud_range[2]]

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the BEV pseudo-image."""
        r = self.point_cloud_range
        return (int(round((r[4] - r[1]) / self.pillar_size[1])), int(round((r[3] - r[0]) / self.pillar_size[0])))


class Pillarizer:
    """Groups a scan's points into pillars with mmcv's compiled voxeliser (hard voxelisation, deterministic)."""

    def __init__(self, grid: PillarGrid):
        from mmcv.ops import Voxelization  # compiled op; imported here so the network runs without mmcv

        self.grid = grid
        self._voxelize = Voxelization(grid.voxel_size, grid.point_cloud_range, grid.max_points_per_pillar,
                                      grid.max_pillars, deterministic=True)

    def __call__(self, points: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pillars (P, M, C), point counts (P,), coordinates (P, 2) as (row y, column x))."""
        pts = torch.as_tensor(np.ascontiguousarray(points, dtype=np.float32))
        voxels, coords, counts = self._voxelize(pts)
        return voxels, counts, coords[:, 1:].long()  # mmcv gives (z, y, x); z is always 0 for pillars

    def batch(self, scans: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Pillars of several scans (the network's input), the scan index prepended to each pillar's coordinates."""
        voxels, counts, coords = [], [], []
        for index, scan in enumerate(scans):
            v, n, c = self(scan)
            voxels.append(v)
            counts.append(n)
            coords.append(torch.cat([torch.full((len(c), 1), index, dtype=torch.long), c], dim=1))
        return {"pillars": torch.cat(voxels), "counts": torch.cat(counts), "coords": torch.cat(coords),
                "batch_size": len(scans)}


class PillarFeatureNet(nn.Module):
    """Per-point linear + BN + ReLU, then max over the pillar's points (the PointPillars PFN)."""

    def __init__(self, in_channels: int, out_channels: int, grid: PillarGrid):
        super().__init__()
        self.linear = nn.Linear(in_channels + _DECORATION_FEATURES, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels, eps=1e-3)
        r, (vx, vy) = grid.point_cloud_range, grid.pillar_size
        self.register_buffer("origin", torch.tensor([r[0] + vx / 2, r[1] + vy / 2, (r[2] + r[5]) / 2]))
        self.register_buffer("step", torch.tensor([vx, vy]))

    def forward(self, pillars: torch.Tensor, counts: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(pillars.shape[1], device=pillars.device)[None, :] < counts[:, None]).unsqueeze(-1)
        mask = mask.to(pillars.dtype)
        xyz = pillars[..., :3]
        mean = (xyz * mask).sum(1, keepdim=True) / counts.clamp(min=1).view(-1, 1, 1).to(pillars.dtype)
        centre_xy = coords[:, [2, 1]].to(pillars.dtype) * self.step + self.origin[:2]
        centre = torch.cat([centre_xy, self.origin[2:].expand(centre_xy.shape[0], 1)], dim=1)
        features = torch.cat([pillars, xyz - mean, xyz - centre[:, None, :]], dim=-1) * mask
        x = self.linear(features)
        x = torch.relu(self.norm(x.transpose(1, 2)).transpose(1, 2)) * mask
        return x.max(dim=1).values


def scatter_to_bev(features: torch.Tensor, coords: torch.Tensor, batch_size: int, shape: tuple[int, int]
                   ) -> torch.Tensor:
    """Pillar features (P, C) at (scan, row, column) → BEV pseudo-image (B, C, ny, nx), zeros where empty."""
    ny, nx = shape
    flat = coords[:, 0] * (ny * nx) + coords[:, 1] * nx + coords[:, 2]
    canvas = features.new_zeros(batch_size * ny * nx, features.shape[1])
    canvas = canvas.scatter(0, flat[:, None].expand(-1, features.shape[1]), features)  # ONNX ScatterElements
    return canvas.view(batch_size, ny, nx, -1).permute(0, 3, 1, 2).contiguous()
