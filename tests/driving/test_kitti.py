"""The KITTI reader on a real frame (000008) and on broken copies of it: every bad input is one InputError line."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from real_kitti import REAL, REAL_ROOT, needs_real

from apps.driving.kitti import (
    KittiObject,
    find_frames,
    frame_file,
    kitti_split_dir,
    read_calib,
    read_frame,
    read_image,
    read_label,
    read_label_dir,
    read_velodyne,
    write_kitti_result,
)
from common.errors import InputError

FRAME = "000008"
IMAGE_W, IMAGE_H = 1242, 375


def one_line(exc: pytest.ExceptionInfo) -> str:
    """The message the CLI would print, asserted to be a single line."""
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.fixture
def kitti_copy(tmp_path) -> Path:
    """A writable copy of the real KITTI root (training/ with one frame) to break in tests."""
    if not REAL.is_dir():
        pytest.skip(f"real KITTI frame not found at {REAL}")
    shutil.copytree(REAL_ROOT, tmp_path / "kitti")
    return tmp_path / "kitti"


# --------------------------------------------------------------------------------------------------
# The real frame
# --------------------------------------------------------------------------------------------------
@needs_real
def test_real_calibration_parses_all_matrices():
    calib = read_calib(frame_file(REAL, "calib", FRAME))
    assert calib.P2.shape == (3, 4) and calib.R0_rect.shape == (3, 3) and calib.Tr_velo_to_cam.shape == (3, 4)
    assert calib.P0 is not None and calib.P3 is not None and calib.Tr_imu_to_velo is not None
    assert calib.P2[0, 0] == pytest.approx(721.5377)  # focal length in pixels
    assert calib.R0_rect[0, 0] == pytest.approx(0.9999239)


@needs_real
def test_real_scan_projects_inside_the_image():
    points = read_velodyne(frame_file(REAL, "velodyne", FRAME))
    calib = read_calib(frame_file(REAL, "calib", FRAME))
    assert points.shape == (17_238, 4) and points.dtype == np.float32
    uv, depth = calib.velo_to_image(points[:, :3])  # P2 · R0_rect · Tr_velo_to_cam
    assert np.all(depth > 0)
    assert np.all((uv[:, 0] >= 0) & (uv[:, 0] < IMAGE_W))
    assert np.all((uv[:, 1] >= 0) & (uv[:, 1] < IMAGE_H))


@needs_real
def test_velo_rect_round_trip_is_identity():
    calib = read_calib(frame_file(REAL, "calib", FRAME))
    points = read_velodyne(frame_file(REAL, "velodyne", FRAME))[:100, :3]
    np.testing.assert_allclose(calib.rect_to_velo(calib.velo_to_rect(points)), points, atol=1e-9)
    # LiDAR x (forward) is roughly camera z: the frame's points are in front of the car
    assert np.all(calib.velo_to_rect(points)[:, 2] > 0)


@needs_real
def test_real_labels_six_cars_four_dontcare():
    objects = read_label(frame_file(REAL, "label_2", FRAME))
    assert [o.type for o in objects].count("Car") == 6
    assert [o.type for o in objects].count("DontCare") == 4
    second = objects[1]
    assert second.location == (-1.17, 1.65, 7.86)
    assert second.dimensions == (1.57, 1.50, 3.68)  # h, w, l
    assert second.rotation_y == pytest.approx(1.90) and second.occluded == 1 and second.score is None


@needs_real
def test_real_image_and_frame():
    image = read_image(frame_file(REAL, "image_2", FRAME))
    assert image.shape == (IMAGE_H, IMAGE_W, 3) and image.dtype == np.uint8
    frame = read_frame(kitti_split_dir(REAL_ROOT), FRAME)
    assert frame.points.shape[0] == 17_238 and len(frame.objects) == 10


@needs_real
def test_find_frames_accepts_root_or_split_folder():
    assert find_frames(REAL_ROOT) == [FRAME]
    assert find_frames(REAL) == [FRAME]
    assert kitti_split_dir(REAL_ROOT) == REAL


def test_find_frames_honours_image_sets(kitti_copy):
    (kitti_copy / "ImageSets").mkdir()
    (kitti_copy / "ImageSets" / "val.txt").write_text(f"{FRAME}\n")
    (kitti_copy / "ImageSets" / "train.txt").write_text("000009\n")
    assert find_frames(kitti_copy, split="val") == [FRAME]
    with pytest.raises(InputError) as exc:
        find_frames(kitti_copy, split="train")  # lists a frame that is not there
    assert "000009.bin" in one_line(exc)
    with pytest.raises(InputError) as exc:
        find_frames(kitti_copy, split="test")
    assert "ImageSets/test.txt not found" in one_line(exc)


def test_testing_folder_without_labels(kitti_copy):
    shutil.rmtree(kitti_copy / "training" / "label_2")
    assert find_frames(kitti_copy) == [FRAME]
    with pytest.raises(InputError):
        find_frames(kitti_copy, labels=True)


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------
def test_result_round_trip_and_empty_file(tmp_path):
    car = KittiObject("Car", 0.0, 0, -1.5, (100.0, 150.0, 300.0, 250.0), (1.5, 1.6, 3.9), (1.0, 1.7, 20.0), -1.45, 0.87)
    path = tmp_path / "out" / f"{FRAME}.txt"
    write_kitti_result(path, [car])
    assert path.read_text().split() == (
        "Car 0.00 0 -1.5000 100.00 150.00 300.00 250.00 1.5000 1.6000 3.9000 1.0000 1.7000 20.0000 -1.4500 0.870000"
    ).split()
    assert read_label(path) == [car]
    write_kitti_result(path, [])
    assert path.read_text() == ""
    assert read_label_dir(path.parent, [FRAME]) == {FRAME: []}
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(InputError) as exc:
        find_frames(tmp_path / "nope")
    assert one_line(exc) == f"{tmp_path / 'nope'}: KITTI folder not found"


def test_folder_without_velodyne(tmp_path):
    with pytest.raises(InputError) as exc:
        find_frames(tmp_path)
    assert "velodyne" in one_line(exc)


def test_frame_missing_its_calib(kitti_copy):
    missing = kitti_copy / "training" / "calib" / f"{FRAME}.txt"
    missing.unlink()
    with pytest.raises(InputError) as exc:
        find_frames(kitti_copy)
    assert one_line(exc) == f"{missing}: frame {FRAME} has no calib file"


def test_label_without_scan_is_named(kitti_copy):
    labels = kitti_copy / "training" / "label_2"
    shutil.copy(labels / f"{FRAME}.txt", labels / "000009.txt")
    with pytest.raises(InputError) as exc:
        find_frames(kitti_copy)
    assert "velodyne/000009.bin" in one_line(exc)


def test_truncated_velodyne(tmp_path):
    path = tmp_path / f"{FRAME}.bin"
    path.write_bytes(np.zeros(9, dtype=np.float32).tobytes()[:-2])  # 34 bytes
    with pytest.raises(InputError) as exc:
        read_velodyne(path)
    assert one_line(exc).startswith(f"{path}: size 34 bytes is not a multiple of 16")
    with pytest.raises(InputError):
        read_velodyne(tmp_path / "missing.bin")


def test_label_line_with_ten_fields(tmp_path):
    path = tmp_path / f"{FRAME}.txt"
    good = "Car 0.00 0 -1.5 100 150 300 250 1.5 1.6 3.9 1.0 1.7 20.0 -1.45"
    path.write_text(f"{good}\n{' '.join(good.split()[:10])}\n")
    with pytest.raises(InputError) as exc:
        read_label(path)
    assert one_line(exc) == f"{path}: line 2: expected 15 fields (or 16 with a score), got 10"


def test_label_with_text_in_a_number(tmp_path):
    path = tmp_path / f"{FRAME}.txt"
    path.write_text("Car 0.00 0 -1.5 100 150 300 250 1.5 1.6 3.9 1.0 1.7 far -1.45\n")
    with pytest.raises(InputError) as exc:
        read_label(path)
    assert "line 1" in one_line(exc)


def test_bad_calibrations(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("P2: 1 2 3\n")
    with pytest.raises(InputError) as exc:
        read_calib(path)
    assert one_line(exc) == f"{path}: line 1: P2 needs 12 values, got 3"
    path.write_text("P0: " + " ".join(["0"] * 12) + "\n")
    with pytest.raises(InputError) as exc:
        read_calib(path)
    assert one_line(exc) == f"{path}: calibration lacks P2, R0_rect, Tr_velo_to_cam"


def test_unreadable_image(tmp_path):
    path = tmp_path / f"{FRAME}.png"
    path.write_bytes(b"not a png")
    with pytest.raises(InputError) as exc:
        read_image(path)
    assert one_line(exc).startswith(f"{path}: not a readable image")
