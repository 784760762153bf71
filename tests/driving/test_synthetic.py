"""The synthetic KITTI set: the real layout and calibration, LiDAR and labels that agree, a camera cue, determinism."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from real_kitti import REAL, needs_real

from apps.driving.boxes import boxes3d_camera_to_lidar, lidar_boxes_to_kitti_objects, points_in_boxes_lidar
from apps.driving.kitti import (
    DONTCARE,
    KittiFrame,
    find_frames,
    frame_file,
    read_calib,
    read_frame,
    read_label,
)
from apps.driving.synthetic import IMAGE_HEIGHT, IMAGE_WIDTH, SCALES, _dontcare_line, write_synthetic_kitti

N_FRAMES = 5
POINTS_RANGE = (10_000, 30_000)  # per frame
BOX_GROW = 0.2  # metres added to each label box dimension: range noise puts surface points a little outside
MIN_POINTS_IN_VISIBLE_CAR = 10
LIFT = 3.5  # metres: a label box raised this much floats above every object (poles and walls are ≤ 3 m)
MAX_POINTS_IN_EMPTY = 2
MIN_SATURATION_GAP = 0.1  # HSV saturation, 0–1


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A few synthetic frames, written once for this module."""
    return write_synthetic_kitti(tmp_path_factory.mktemp("kitti") / "data", seed=0, n_frames=N_FRAMES)


@pytest.fixture(scope="module")
def frames(dataset) -> list[KittiFrame]:
    """Every frame as the pipeline reads it."""
    return [read_frame(dataset / "training", frame_id) for frame_id in find_frames(dataset)]


def labelled(frame: KittiFrame, kind: str, occluded: int | None = None) -> list:
    """The frame's objects of one class (optionally of one occlusion level)."""
    return [obj for obj in frame.objects if obj.type == kind and (occluded is None or obj.occluded == occluded)]


def test_layout_reads_back(dataset, frames):
    assert find_frames(dataset) == [f"{i:06d}" for i in range(N_FRAMES)]
    for frame in frames:
        assert frame.image.shape == (IMAGE_HEIGHT, IMAGE_WIDTH, 3)
        assert frame.points.dtype == np.float32 and frame.points.shape[1] == 4
        assert frame.objects is not None
    assert not list(dataset.rglob("*.tmp")), "temporary files left behind"


@needs_real
def test_calibration_is_the_real_one(frames):
    real = read_calib(REAL / "calib" / "000008.txt")
    for frame in frames:
        for key in ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo"):
            assert np.allclose(getattr(frame.calib, key), getattr(real, key)), key


def test_points_lie_in_the_camera_view(frames):
    for frame in frames:
        uv, depth = frame.calib.velo_to_image(frame.points[:, :3])
        assert np.all(depth > 0)
        assert np.all((uv[:, 0] >= 0) & (uv[:, 0] < IMAGE_WIDTH) & (uv[:, 1] >= 0) & (uv[:, 1] < IMAGE_HEIGHT))
        assert POINTS_RANGE[0] <= len(frame.points) <= POINTS_RANGE[1]
        reflectance = frame.points[:, 3]
        assert reflectance.min() >= 0 and reflectance.max() <= 1


def test_labels_agree_with_points_and_2d_boxes(frames):
    n_cars = 0
    for frame in frames:
        cars = labelled(frame, "Car")
        n_cars += len(cars)
        objects = cars + labelled(frame, "Misc")
        if not objects:
            continue
        boxes = boxes3d_camera_to_lidar(objects, frame.calib)
        grown = boxes.copy()
        grown[:, 3:6] += BOX_GROW
        counts = points_in_boxes_lidar(frame.points, grown).sum(axis=0)
        assert np.all(counts >= 1), "every labelled object is hit by the LiDAR (else it is DontCare)"
        for obj, count in zip(objects, counts, strict=True):
            if obj.type == "Car" and obj.occluded == 0:
                assert count >= MIN_POINTS_IN_VISIBLE_CAR, obj
        lifted = grown.copy()
        lifted[:, 2] += LIFT
        assert points_in_boxes_lidar(frame.points, lifted).sum(axis=0).max() <= MAX_POINTS_IN_EMPTY
        # The 2D box is the projection of the 3D box, clipped to the image.
        reprojected = lidar_boxes_to_kitti_objects(boxes, np.ones(len(boxes)), frame.calib, frame.image.shape)
        for obj, again in zip(objects, reprojected, strict=True):
            assert np.allclose(obj.bbox, again.bbox, atol=1.0)
            assert np.isclose(obj.alpha, again.alpha, atol=1e-3)
            assert 0 <= obj.truncated <= 1 and obj.occluded in (0, 1, 2)
            assert obj.location[2] > 2
    assert n_cars >= 2 * N_FRAMES


def local_points(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Points in a LiDAR box's own frame: x along its heading (front +), height above its bottom."""
    c, s = np.cos(box[6]), np.sin(box[6])
    d = points[:, :2] - box[:2]
    return np.column_stack([d @ [c, s], d @ [-s, c], points[:, 2] - (box[2] - box[5] / 2)])


def test_cars_have_a_front_lower_than_their_back(frames):
    """The LiDAR sees a bonnet in front and a higher rear deck behind, so the heading has a direction to learn."""
    gaps = []
    for frame in frames:
        cars = labelled(frame, "Car", occluded=0)
        if not cars:
            continue
        for box in boxes3d_camera_to_lidar(cars, frame.calib):
            grown = box.copy()
            grown[3:6] += BOX_GROW
            inside = local_points(frame.points[points_in_boxes_lidar(frame.points, grown[None])[:, 0]], box)
            front, rear = inside[inside[:, 0] > 0.3 * box[3]], inside[inside[:, 0] < -0.4 * box[3]]
            if len(front) >= 3 and len(rear) >= 3:
                gaps.append(rear[:, 2].max() - front[:, 2].max())
    assert len(gaps) >= N_FRAMES
    assert np.median(gaps) > 0.1  # metres: rear deck ≈ 0.9 m against a bonnet ≈ 0.7 m


def test_dontcare_lines_read_back(tmp_path):
    path = tmp_path / "000000.txt"
    path.write_text(_dontcare_line((1.0, 2.5, 30.25, 40.0)) + "\n", encoding="utf-8")
    (obj,) = read_label(path)
    assert obj.type == DONTCARE and obj.bbox == (1.0, 2.5, 30.25, 40.0) and obj.location == (-1000, -1000, -1000)


def test_same_seed_same_bytes(dataset, tmp_path):
    again = write_synthetic_kitti(tmp_path / "again", seed=0, n_frames=1)
    other = write_synthetic_kitti(tmp_path / "other", seed=1, n_frames=1)
    original = frame_file(dataset / "training", "velodyne", "000000").read_bytes()
    assert frame_file(again / "training", "velodyne", "000000").read_bytes() == original
    assert frame_file(other / "training", "velodyne", "000000").read_bytes() != original
    for part in ("label_2", "image_2"):
        assert (frame_file(again / "training", part, "000000").read_bytes()
                == frame_file(dataset / "training", part, "000000").read_bytes())


def test_cars_look_more_saturated_than_distractors(dataset, frames):
    """The camera cue fusion relies on: cars are painted in saturated colours, distractors are dull."""
    means: dict[str, list[float]] = {"Car": [], "Misc": []}
    for frame in frames:
        with Image.open(frame_file(dataset / "training", "image_2", frame.frame_id)) as image:
            saturation = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.float64)[..., 1] / 255
        for kind, values in means.items():
            for obj in labelled(frame, kind, occluded=0):
                x1, y1, x2, y2 = (int(round(v)) for v in obj.bbox)
                values.append(float(saturation[y1 : y2 + 1, x1 : x2 + 1].mean()))
    assert means["Car"] and means["Misc"]
    assert np.mean(means["Car"]) > np.mean(means["Misc"]) + MIN_SATURATION_GAP, means


def test_image_sets_partition_the_frames(dataset):
    ids = find_frames(dataset)
    splits = {name: find_frames(dataset, split=name) for name in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == ids
    assert [len(split) for split in splits.values()] == [3, 1, 1]


def test_unknown_scale_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="small.*medium.*large"):
        write_synthetic_kitti(tmp_path / "x", scale="huge")
    assert list(SCALES) == ["small", "medium", "large"]
    assert not (tmp_path / "x").exists()
