"""Augmentations that are random, reproducible and resumable, with or without DataLoader workers.

Each random transform owns its generator and exposes `set_random_state(seed)` (MONAI's `Randomizable`
contract). MONAI's `set_rnd` finds every such transform inside a dataset and gives each its own seed:
- with workers, `worker_init_fn` (MONAI's) does it in each worker from `worker_info.seed`, which torch
  derives from the main process's generator per epoch and per worker: workers draw different
  augmentations, the same on every run with the same seed, and a resumed run (its torch generator
  restored) draws what the uninterrupted run drew. Loaders must not keep persistent workers, or
  later epochs would continue the first epoch's streams;
- without workers, `reseed_for_epoch` does it in the main process from (seed, epoch, rank), so a resume
  needs no generator state of the transforms.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["epoch_seed", "reseed_for_epoch", "worker_init_fn"]


def worker_init_fn(worker_id: int) -> None:
    """MONAI's `worker_init_fn`, imported on first use: MONAI takes ~2.7 s to import, which every `suite`
    command would pay (scoring and bad-input refusals included) if it were imported with the trainer."""
    from monai.data.utils import worker_init_fn as monai_worker_init_fn

    monai_worker_init_fn(worker_id)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """An independent 31-bit seed for (seed, epoch, rank)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0] >> 1)


def reseed_for_epoch(loader: Any, seed: int, epoch: int, rank: int = 0) -> None:
    """Give the random transforms of an in-process loader (num_workers == 0) this epoch's streams."""
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and getattr(loader, "num_workers", 0) == 0:
        from monai.data.utils import set_rnd

        set_rnd(dataset, epoch_seed(seed, epoch, rank))
