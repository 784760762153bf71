"""KITTI frames into train / validation / test: the dataset's ImageSets lists when present, else a seeded shuffle."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from apps.driving.kitti import find_frames
from common.config import HELD_OUT_FRACTIONS, Constraints, Interval
from common.errors import InputError


@dataclass
class DrivingDataConfig:
    """Frames into train/val/test: ImageSets/{train,val,test}.txt when all three exist, else a seeded shuffle."""

    CONSTRAINTS: ClassVar[Constraints] = {**HELD_OUT_FRACTIONS, "split_seed": Interval(0)}

    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    use_image_sets: bool = True


def _seeded_split(ids: list[str], fractions: tuple[float, ...], seed: int) -> list[list[str]]:
    """Shuffle `ids` and cut off one part per fraction (each at least one frame); the rest comes first."""
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    sizes = [max(1, int(round(len(ids) * f))) for f in fractions]
    parts, start = [], 0
    for size in sizes:
        parts.append(sorted(order[start:start + size]))
        start += size
    return [sorted(order[start:]), *parts]


def split_frames(root: Path, frame_ids: list[str], cfg: DrivingDataConfig) -> tuple[list[str], list[str], list[str]]:
    """Train/val/test frame ids of the labelled frames; a frame is never in two splits.

    With ImageSets/train.txt and val.txt, those are used; test.txt too when it lists labelled frames of
    this folder (the common KITTI ImageSets list `testing/` frames, which have no labels), else the val
    list is halved into val and test. Without ImageSets: a seeded shuffle.
    """
    if len(frame_ids) < 3:
        raise InputError(root, f"need at least 3 labelled frames to split train/val/test, found {len(frame_ids)}")
    root = Path(root)
    sets = root / "ImageSets"
    if (root / "velodyne").is_dir() and not sets.is_dir():  # `--data` is training/ itself: look beside it
        sets = root.parent / "ImageSets"
    if not (cfg.use_image_sets and all((sets / f"{name}.txt").is_file() for name in ("train", "val"))):
        train, val, test = _seeded_split(frame_ids, (cfg.val_fraction, cfg.test_fraction), cfg.split_seed)
        return train, val, test
    labelled = set(frame_ids)
    train, val = (find_frames(root, split=name) for name in ("train", "val"))
    test = []
    if (sets / "test.txt").is_file():
        listed = (sets / "test.txt").read_text().split()
        if listed and set(listed) <= labelled:
            test = sorted(dict.fromkeys(listed))
    if not test:
        if len(val) < 2:
            raise InputError(sets / "val.txt", "lists fewer than 2 frames: cannot carve a test split from it")
        val, test = _seeded_split(val, (0.5,), cfg.split_seed)
        print(f"ImageSets/test.txt absent or not labelled frames of {root}: half of val.txt is the test split")
    overlap = (set(train) & (set(val) | set(test))) | (set(val) & set(test))
    if overlap:
        raise InputError(sets, f"{len(overlap)} frame(s) are in two ImageSets lists, e.g. {sorted(overlap)[0]}")
    unlabelled = sorted((set(train) | set(val)) - labelled)
    if unlabelled:
        raise InputError(sets, f"{len(unlabelled)} listed frame(s) have no label_2 file, e.g. {unlabelled[0]}")
    return train, val, test
