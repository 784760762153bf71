"""DataLoader workers draw their own augmentations, the same on every run with the same seed, new each epoch."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.augment_seeding import reseed_for_epoch, worker_init_fn


def _lidar_dataset():
    from apps.driving.dataset import LidarDetectionDataset, SceneAugmentConfig, scene_augmentations

    class Frame:  # the two things LidarDetectionDataset reads from a DrivingFrame
        def __init__(self):
            self.points = np.random.default_rng(0).uniform(0, 40, (500, 4)).astype(np.float32)

        def lidar_boxes(self):
            return np.array([[10.0, 2.0, -1.0, 4.0, 1.7, 1.5, 0.3]])

    frames = [Frame() for _ in range(8)]  # eight copies of one scene: any difference is the augmentation's
    augment = scene_augmentations(SceneAugmentConfig(paste_cars=0), seed=3)
    return LidarDetectionDataset(frames, augment), lambda item: item[1][0]  # the augmented box


def _patch_dataset():
    from apps.medical.dataset import PatchDataset
    from apps.medical.patches import train_augmentations

    patches = np.repeat(np.random.default_rng(0).random((1, 1, 12, 12, 12), np.float32), 8, axis=0)
    return PatchDataset(patches, np.zeros(8, np.int64), train_augmentations(seed=3)), lambda item: item["image"]


def _epochs(make, workers: int, epochs: int = 2) -> list[list[np.ndarray]]:
    torch.manual_seed(0)
    dataset, pick = make()
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, worker_init_fn=worker_init_fn)
    seen = []
    for epoch in range(epochs):
        reseed_for_epoch(loader, seed=3, epoch=epoch)
        seen.append([np.asarray(pick(item), np.float64).copy() for item in loader])
    return seen


def _check(make) -> None:
    first, again = _epochs(make, workers=2), _epochs(make, workers=2)
    for a, b in zip(first, again, strict=True):  # the same seed: the same augmentations, item for item
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    epoch0, epoch1 = first
    # DataLoader deals items 0, 2, 4.. to worker 0 and 1, 3, 5.. to worker 1: the two must not draw alike.
    assert not all(np.array_equal(epoch0[i], epoch0[i + 1]) for i in range(0, 8, 2))
    assert not all(np.array_equal(x, y) for x, y in zip(epoch0, epoch1, strict=True)), "a new epoch, new draws"
    in_process = _epochs(make, workers=0)
    assert all(np.array_equal(x, y) for x, y in zip(in_process[0], _epochs(make, workers=0)[0], strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(*in_process, strict=True))


def test_driving_scene_augmentations_with_two_workers():
    _check(_lidar_dataset)


def test_medical_patch_augmentations_with_two_workers():
    _check(_patch_dataset)


def test_fraud_batches_with_two_workers_equal_in_process():
    """Fraud has no random transform: its loader gives the same batches with workers as without."""
    from apps.fraud.dataset import WindowBatchSampler

    class Rows(torch.utils.data.Dataset):
        def __getitem__(self, rows):
            return torch.as_tensor(rows)

    windows = np.repeat(np.arange(5), 40)
    batches = {}
    for workers in (0, 2):
        sampler = WindowBatchSampler(np.arange(200), windows, 16, shuffle=True, seed=1)
        sampler.set_epoch(1)
        loader = DataLoader(Rows(), sampler=sampler, batch_size=None, num_workers=workers,
                            worker_init_fn=worker_init_fn)
        batches[workers] = [b.tolist() for b in loader]
    assert batches[0] == batches[2] and len(batches[0]) > 5
