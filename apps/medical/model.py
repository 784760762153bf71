"""3-D classifiers for candidate patches: a small CNN that trains on CPU, and MONAI's reference nets."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from monai.networks.nets import DenseNet121, resnet10
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from common.config import Constraints, Each, Interval, check_section
from common.errors import ConfigError

MODEL_NAMES = ("cnn3d", "densenet121", "resnet10")
N_CLASSES = 2  # logits for (non-nodule, nodule)


class NoduleCNN3D(nn.Module):
    """Conv3d-BatchNorm-ReLU-MaxPool blocks, adaptive average pool, dropout, linear: fast enough for CPU.

    `pool_size` > 1 keeps a coarse spatial map before the linear layer. A candidate's label is about what
    sits at the patch centre; a global pool (size 1) cannot tell a blob at the centre from a vessel at
    the edge, and on our data it learned far more slowly.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64), dropout: float = 0.2, in_channels: int = 1,
                 num_classes: int = N_CLASSES, pool_size: int = 1):
        super().__init__()
        blocks: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            blocks += [
                nn.Conv3d(previous, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm3d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool3d(2),
            ]
            previous = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(pool_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(previous * pool_size**3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S, S) patches -> (N, 2) logits."""
        return self.head(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


@dataclass
class MedicalModelConfig:
    """Which classifier to build; `channels` applies to cnn3d, `dropout` to cnn3d and densenet121."""

    CONSTRAINTS: ClassVar[Constraints] = {"channels": Each(Interval(1)), "dropout": Interval(0, 1, "left"),
                                          "pool_size": Interval(1)}

    name: Literal["cnn3d", "densenet121", "resnet10"] = "cnn3d"
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    dropout: float = 0.2
    pool_size: int = 4  # cnn3d: spatial cells kept before the linear layer (1 = global average pool)



def build_medical_model(cfg: MedicalModelConfig | None = None) -> nn.Module:
    """The configured classifier with random weights (no downloads): input (N, 1, S, S, S), output (N, 2)."""
    cfg = cfg or MedicalModelConfig()
    try:
        check_section(cfg, "model.")
    except ValueError as exc:
        raise ConfigError(None, str(exc)) from None
    if cfg.name == "cnn3d":
        return NoduleCNN3D(channels=[int(c) for c in cfg.channels], dropout=cfg.dropout, pool_size=cfg.pool_size)
    if cfg.name == "densenet121":
        return DenseNet121(spatial_dims=3, in_channels=1, out_channels=N_CLASSES, dropout_prob=cfg.dropout)
    return resnet10(pretrained=False, spatial_dims=3, n_input_channels=1, num_classes=N_CLASSES)


def count_flops(model: nn.Module, patch_size: int | Sequence[int]) -> int:
    """FLOPs of one forward pass on one (1, S, S, S) patch (torch's counter: 2 per multiply-add)."""
    size = (patch_size,) * 3 if isinstance(patch_size, int) else tuple(patch_size)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros((1, 1, *size), device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
