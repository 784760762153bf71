"""Train / validation / test by time: the latest steps are held out, as a bank meets tomorrow's data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from common.arrays import unique_counts
from common.config import HELD_OUT_FRACTIONS, Constraints
from common.errors import InputError


@dataclass
class FraudDataConfig:
    """Temporal split: the latest steps are held out for validation and test."""

    CONSTRAINTS: ClassVar[Constraints] = HELD_OUT_FRACTIONS

    val_fraction: float = 0.15
    test_fraction: float = 0.15


def temporal_split(step: np.ndarray, val_fraction: float, test_fraction: float) -> tuple[np.ndarray, ...]:
    """Row indices of train/val/test, cut at step boundaries so no step is in two splits."""
    steps, counts = unique_counts(step)
    if len(steps) < 3:
        raise InputError(None, f"need at least 3 distinct steps to split by time, found {len(steps)}")
    share = np.cumsum(counts) / counts.sum()
    train_end = steps[min(np.searchsorted(share, 1 - val_fraction - test_fraction), len(steps) - 3)]
    val_end = steps[max(min(np.searchsorted(share, 1 - test_fraction), len(steps) - 2),
                        np.searchsorted(steps, train_end) + 1)]
    rows = np.arange(len(step))
    return rows[step <= train_end], rows[(step > train_end) & (step <= val_end)], rows[step > val_end]
