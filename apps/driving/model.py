"""The LiDAR detector: pillar feature net → BEV pseudo-image → 2D CNN (PointPillars) → centre head.

With PointPainting each point arrives with the camera's car score appended, so the same network is the
fusion detector (`fusion: painting`) or the LiDAR-only ablation (`fusion: none`) depending on its input width.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from apps.driving.center_head import HEAD_MAP_CHANNELS
from apps.driving.pillars import PillarFeatureNet, PillarGrid, scatter_to_bev
from common.config import Constraints, Each, Interval

RAW_POINT_FEATURES = 4  # x, y, z, reflectance
PAINTED_FEATURES = 1  # the camera's car score at the point's pixel
_HEATMAP_PRIOR = 0.01  # initial centre probability, so the focal loss starts stable (RetinaNet's prior)


@dataclass
class DrivingModelConfig:
    """Widths of the LiDAR network and whether points are painted with camera scores."""

    CONSTRAINTS: ClassVar[Constraints] = {"pfn_channels": Interval(1), "head_channels": Interval(1),
                                          "layers_per_stage": Interval(1), "backbone_channels": Each(Interval(1))}

    fusion: Literal["painting", "none"] = "painting"
    pfn_channels: int = 32
    backbone_channels: list[int] = field(default_factory=lambda: [32, 64])  # per stage; stage i has stride 2^(i+1)
    layers_per_stage: int = 3
    head_channels: int = 64

    @property
    def point_features(self) -> int:
        return RAW_POINT_FEATURES + (PAINTED_FEATURES if self.fusion == "painting" else 0)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3),
                         nn.ReLU(inplace=True))


class BevBackbone(nn.Module):
    """PointPillars' 2D CNN: strided stages, each upsampled back to the first stage's stride and concatenated."""

    def __init__(self, in_channels: int, channels: list[int], layers_per_stage: int):
        super().__init__()
        self.stages, self.ups = nn.ModuleList(), nn.ModuleList()
        cin = in_channels
        for i, cout in enumerate(channels):
            layers = [_conv(cin, cout, stride=2)] + [_conv(cout, cout) for _ in range(layers_per_stage - 1)]
            self.stages.append(nn.Sequential(*layers))
            up = 2**i
            self.ups.append(
                nn.Sequential(nn.ConvTranspose2d(cout, channels[0], up, up, bias=False),
                              nn.BatchNorm2d(channels[0], eps=1e-3), nn.ReLU(inplace=True))
                if up > 1 else nn.Identity() if cout == channels[0] else _conv(cout, channels[0])
            )
            cin = cout
        self.out_channels = channels[0] * len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for stage, up in zip(self.stages, self.ups, strict=True):
            x = stage(x)
            outs.append(up(x))
        return torch.cat(outs, dim=1)


class PointPillarsNet(nn.Module):
    """Pillars in, centre-head maps out: `heatmap` (B, 1, H, W) logits and `regression` (B, 10, H, W): the 8 box
    values, then the 2 direction-bin logits (center_head.HEAD_MAP_CHANNELS)."""

    def __init__(self, cfg: DrivingModelConfig, grid: PillarGrid):
        super().__init__()
        self.grid_shape = grid.shape
        self.pfn = PillarFeatureNet(cfg.point_features, cfg.pfn_channels, grid)
        self.backbone = BevBackbone(cfg.pfn_channels, list(cfg.backbone_channels), cfg.layers_per_stage)
        self.shared = _conv(self.backbone.out_channels, cfg.head_channels)
        self.heatmap = nn.Conv2d(cfg.head_channels, 1, 1)
        self.regression = nn.Conv2d(cfg.head_channels, HEAD_MAP_CHANNELS, 1)
        nn.init.constant_(self.heatmap.bias, -torch.log(torch.tensor((1 - _HEATMAP_PRIOR) / _HEATMAP_PRIOR)).item())

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """`batch` holds `pillars`, `counts`, `coords` (scan, row, column) and `batch_size` (Pillarizer.batch)."""
        features = self.pfn(batch["pillars"], batch["counts"], batch["coords"])
        bev = scatter_to_bev(features, batch["coords"], int(batch["batch_size"]), self.grid_shape)
        x = self.shared(self.backbone(bev))
        return {"heatmap": self.heatmap(x), "regression": self.regression(x)}


class ExportablePointPillars(nn.Module):
    """One scan, tensors in and out, so the network exports to ONNX (the voxeliser stays outside)."""

    def __init__(self, net: PointPillarsNet):
        super().__init__()
        self.net = net

    def forward(self, pillars: torch.Tensor, counts: torch.Tensor, coords: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net({"pillars": pillars, "counts": counts, "coords": coords, "batch_size": 1})
        return out["heatmap"], out["regression"]
