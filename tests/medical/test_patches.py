"""Patch extraction puts the candidate's world point at the patch centre; windowing and padding behave."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from apps.medical.patches import PatchConfig, extract_patch, extract_patches, train_augmentations
from apps.medical.reader import CTVolume, read_ct_volume

ORIGIN = (-171.3, -205.8, -340.25)  # (x, y, z) mm
SPACING = (0.7, 0.7, 2.5)
SHAPE_ZYX = (40, 120, 110)
CFG = PatchConfig()  # 32 mm at 1 mm: S = 32, centre index 16
C = CFG.size_vox // 2


def write_volume(path, array):
    """Write a LUNA16-style .mhd with the test geometry and read it back through the real reader."""
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetOrigin(ORIGIN)
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(path))
    return read_ct_volume(path)


def blob_volume(tmp_path, world_xyz, sigma_mm=1.5):
    """Air-ish noise with a bright Gaussian blob centred on a world point (not on a voxel centre)."""
    rng = np.random.default_rng(0)
    array = rng.normal(-900, 10, size=SHAPE_ZYX)
    z, y, x = np.meshgrid(*[np.arange(n) for n in SHAPE_ZYX], indexing="ij")
    world = [ORIGIN[0] + x * SPACING[0], ORIGIN[1] + y * SPACING[1], ORIGIN[2] + z * SPACING[2]]
    d2 = sum((w - c) ** 2 for w, c in zip(world, world_xyz, strict=True))
    array += 1200 * np.exp(-d2 / (2 * sigma_mm**2))
    return write_volume(tmp_path / "blob.mhd", array)


def argmax_zyx(patch):
    return np.unravel_index(np.argmax(patch[0]), patch.shape[1:])


def test_bright_voxel_at_a_world_point_lands_at_the_patch_centre(tmp_path):
    array = np.full(SHAPE_ZYX, -1000.0)
    k, j, i = 17, 63, 41  # voxel (z, y, x)
    array[k, j, i] = 300
    volume = write_volume(tmp_path / "dot.mhd", array)
    world = np.array(ORIGIN) + np.array([i, j, k]) * np.array(SPACING)  # (x, y, z) mm
    patch = extract_patch(volume, world, CFG)
    assert patch.shape == (1, 32, 32, 32) and patch.dtype == np.float32
    assert argmax_zyx(patch) == (C, C, C)
    assert patch[0, C, C, C] == pytest.approx(1300 / 1400)


def test_blob_between_voxels_is_centred_and_axes_are_z_y_x(tmp_path):
    blob = np.array([-140.13, -162.47, -297.9])  # world (x, y, z), between voxel centres
    volume = blob_volume(tmp_path, blob)
    shift = np.array([5.0, -3.0, 4.0])  # look 5 mm right, 3 mm anterior, 4 mm up of the blob
    patches = extract_patches(volume, np.stack([blob, blob + shift]), CFG)
    assert patches.shape == (2, 1, 32, 32, 32)
    assert np.abs(np.array(argmax_zyx(patches[0])) - C).max() <= 1
    # Seen from blob + shift the blob sits at centre - shift, on axes (z, y, x) = (-4, +3, -5) voxels.
    assert np.abs(np.array(argmax_zyx(patches[1])) - (C - 4, C + 3, C - 5)).max() <= 1


@pytest.mark.parametrize(("hu", "expected"), [(-1100, 0.0), (-1000, 0.0), (-300, 0.5), (400, 1.0), (2000, 1.0)])
def test_hu_window(hu, expected):
    volume = CTVolume("u", np.full((10, 20, 20), hu, np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    patch = extract_patch(volume, (10.0, 10.0, 5.0), PatchConfig(size_mm=4))
    np.testing.assert_allclose(patch, expected, atol=1e-6)


def test_outside_the_scan_reads_as_air():
    volume = CTVolume("u", np.full((10, 20, 20), 0.0, np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    far, corner = extract_patches(volume, np.array([[500.0, 500.0, 500.0], [0.0, 0.0, 0.0]]), CFG)
    assert far.max() == 0.0
    soft_tissue = 1000 / 1400
    assert corner[0, C:C + 5, C:C + 5, C:C + 5] == pytest.approx(soft_tissue)  # inside the scan
    assert corner[0, :C - 1].max() == 0.0 and corner[0, :, :C - 1].max() == 0.0  # before voxel 0: air


def test_patch_size_follows_config():
    volume = CTVolume("u", np.zeros((10, 20, 20), np.float32), (0.8, 0.8, 2.0), (0.0, 0.0, 0.0))
    cfg = PatchConfig(size_mm=20, voxel_mm=0.5)
    assert extract_patches(volume, np.zeros((3, 3)), cfg).shape == (3, 1, 40, 40, 40)
    assert extract_patches(volume, np.zeros((0, 3)), cfg).shape == (0, 1, 40, 40, 40)


def test_many_candidates_match_one_by_one(tmp_path):
    volume = blob_volume(tmp_path, (-140.0, -160.0, -300.0))
    rng = np.random.default_rng(1)
    centers = np.array([-140.0, -160.0, -300.0]) + rng.uniform(-30, 30, size=(7, 3))
    batched = extract_patches(volume, centers, PatchConfig(batch=3))
    singles = np.stack([extract_patch(volume, c) for c in centers])
    np.testing.assert_allclose(batched, singles, atol=1e-6)


def test_augmentations_keep_shape_and_are_reproducible():
    patch = np.random.default_rng(0).random((1, 32, 32, 32), dtype=np.float32)
    first = [train_augmentations(seed=3)(patch) for _ in range(2)]
    assert isinstance(first[0], torch.Tensor) and first[0].shape == (1, 32, 32, 32)
    torch.testing.assert_close(first[0], first[1])
    aug = train_augmentations(seed=3)
    outputs = [aug(patch) for _ in range(6)]
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])  # random draws differ call to call
