"""Scans into train / validation / test (a patient is never in two splits), and negatives kept for training."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from common.config import HELD_OUT_FRACTIONS, Constraints, Interval
from common.errors import InputError


@dataclass
class MedicalDataConfig:
    """Split by scan (never a patient in two splits) and how many negatives training keeps."""

    CONSTRAINTS: ClassVar[Constraints] = {**HELD_OUT_FRACTIONS, "train_negatives_per_positive": Interval(0),
                                          "split_seed": Interval(0)}

    val_fraction: float = 0.2
    test_fraction: float = 0.2
    train_negatives_per_positive: int = 5  # 0 keeps all; validation and test always keep every candidate
    balanced_sampling: bool = False
    split_seed: int = 0


def split_scans(candidates: pd.DataFrame, cfg: MedicalDataConfig) -> tuple[list[str], list[str], list[str]]:
    """Scans into train/val/test, stratified so every split has scans with nodules."""
    has_nodule = candidates.groupby("seriesuid", sort=True)["class"].max()
    rng = np.random.default_rng(cfg.split_seed)
    splits: tuple[list[str], list[str], list[str]] = ([], [], [])
    for flag in (1, 0):
        uids = rng.permutation(has_nodule.index[has_nodule == flag].to_numpy())
        n_val = int(round(len(uids) * cfg.val_fraction))
        n_test = int(round(len(uids) * cfg.test_fraction))
        if flag == 1:
            if len(uids) < 3:
                raise InputError(None, "need at least 3 scans with a nodule candidate to split by scan, "
                                       f"found {len(uids)}")
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        splits[1].extend(uids[:n_val])
        splits[2].extend(uids[n_val:n_val + n_test])
        splits[0].extend(uids[n_val + n_test:])
    return splits


def subsample_negatives(candidates: pd.DataFrame, per_positive: int, seed: int) -> pd.DataFrame:
    """All positives and at most `per_positive` negatives for each (0 keeps everything)."""
    if per_positive == 0:
        return candidates
    positives = candidates[candidates["class"] == 1]
    negatives = candidates[candidates["class"] == 0]
    keep = min(len(negatives), per_positive * max(len(positives), 1))
    return pd.concat([positives, negatives.sample(n=keep, random_state=seed)]).sort_index()
