"""Losses for imbalanced classification: class-weighted cross-entropy and focal loss."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def class_weights(labels: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """w_c = N / (C * n_c) from the training labels, so every class carries the same total weight."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        missing = [c for c in range(num_classes) if counts[c] == 0]
        raise ValueError(f"class(es) {missing} have no training examples; cannot weight the loss")
    return torch.tensor(len(labels) / (num_classes * counts), dtype=torch.float32)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): down-weights easy examples by (1 - p_t)^gamma; optional class weights."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)
        log_pt = log_p.gather(1, target.view(-1, 1)).squeeze(1)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()


def build_classification_loss(
    kind: Literal["weighted_ce", "ce", "focal"],
    train_labels: np.ndarray | torch.Tensor,
    num_classes: int = 2,
    focal_gamma: float = 2.0,
) -> nn.Module:
    """The loss a config names, with class weights computed on the training split."""
    if kind == "ce":
        return nn.CrossEntropyLoss()
    weight = class_weights(train_labels, num_classes)
    if kind == "weighted_ce":
        return nn.CrossEntropyLoss(weight=weight)
    if kind == "focal":
        return FocalLoss(gamma=focal_gamma, weight=weight)
    raise ValueError(f"unknown loss {kind!r}; expected weighted_ce, ce or focal")


def loss_on_probabilities(criterion: nn.Module, probs: np.ndarray, labels: np.ndarray) -> float:
    """The training loss evaluated on predicted positive-class probabilities (for `val_loss`)."""
    p = torch.from_numpy(np.asarray(probs, np.float64))
    log_probs = torch.log(torch.stack([1 - p, p], 1).clamp_min(1e-12)).float()
    # Log-probabilities are logits up to a constant, so softmax-based losses see the same distribution.
    return float(criterion.cpu()(log_probs, torch.from_numpy(np.asarray(labels, np.int64))))
