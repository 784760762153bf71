"""Box conversions on the real frame, and rotated IoU / NMS on cases small enough to check by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
from real_kitti import REAL, needs_real

from apps.driving.boxes import (
    bev_corners,
    bev_intersection_area,
    bev_iou,
    box_corners_lidar,
    boxes3d_camera_to_lidar,
    boxes3d_camera_to_upright,
    boxes3d_lidar_to_camera,
    image_boxes_lidar,
    iou3d,
    lidar_boxes_to_kitti_objects,
    limit_period,
    matched_heading_errors,
    observation_angle,
    points_in_boxes_lidar,
    rotated_nms_bev,
    wrap_kitti_angle,
)
from apps.driving.kitti import KittiObject, camera_box_array, read_frame

UNIT = np.array([[0.0, 0.0, 1.0, 1.0, 0.0]])  # BEV [x, y, l, w, yaw]


@pytest.fixture(scope="module")
def real_frame():
    """Frame 000008 with its six cars."""
    frame = read_frame(REAL, "000008", image=False)
    frame.objects = [obj for obj in frame.objects if obj.type == "Car"]
    return frame


# --------------------------------------------------------------------------------------------------
# Conversions on the real frame
# --------------------------------------------------------------------------------------------------
@needs_real
def test_points_in_second_car(real_frame):
    lidar = boxes3d_camera_to_lidar(real_frame.objects, real_frame.calib)
    inside = points_in_boxes_lidar(real_frame.points[:, :3], lidar)
    assert inside.shape == (17_238, 6)
    assert 1_700 <= inside[:, 1].sum() <= 2_100  # the car at z = 7.86 m: 1,900 points
    assert inside.sum(axis=1).max() == 1  # the cars do not overlap


@needs_real
def test_camera_lidar_conventions(real_frame):
    lidar = boxes3d_camera_to_lidar(real_frame.objects, real_frame.calib)
    second = lidar[1]
    # camera (x=-1.17 right, y=1.65 down, z=7.86 forward) ≈ LiDAR (x=z+0.27, y=-x, z=-y+h/2 + mount height)
    assert second[0] == pytest.approx(8.15, abs=0.01) and second[1] == pytest.approx(1.19, abs=0.01)
    assert second[2] == pytest.approx(-0.84, abs=0.01)  # centre: bottom + h/2
    np.testing.assert_allclose(second[3:6], [3.68, 1.50, 1.57])  # l, w, h
    assert second[6] == pytest.approx(limit_period(-1.90 - math.pi / 2))


@needs_real
def test_camera_lidar_round_trip(real_frame):
    camera = camera_box_array(real_frame.objects)
    back = boxes3d_lidar_to_camera(boxes3d_camera_to_lidar(camera, real_frame.calib), real_frame.calib)
    np.testing.assert_allclose(back[:, :6], camera[:, :6], atol=1e-9)
    np.testing.assert_allclose(limit_period(back[:, 6] - camera[:, 6]), 0, atol=1e-9)


@needs_real
def test_detections_back_to_kitti_objects(real_frame):
    lidar = boxes3d_camera_to_lidar(real_frame.objects, real_frame.calib)
    objects = lidar_boxes_to_kitti_objects(lidar, np.linspace(0.9, 0.4, 6), real_frame.calib, (375, 1242))
    for made, label in zip(objects, real_frame.objects, strict=True):
        np.testing.assert_allclose(made.bbox, label.bbox, atol=1.5)  # projected corners ≈ labelled 2D box
        assert made.alpha == pytest.approx(label.alpha, abs=0.05)  # ry - atan2(x, z); labels are rounded
        assert made.location == pytest.approx(label.location)
    assert objects[0].score == pytest.approx(0.9)


@needs_real
def test_full_headings_survive_the_round_trip_to_result_files(real_frame):
    lidar = boxes3d_camera_to_lidar(real_frame.objects, real_frame.calib)
    turned = lidar.copy()
    turned[:, 6] += math.pi  # every car the other way round: same boxes for IoU, opposite headings
    for boxes in (lidar, turned):
        objects = lidar_boxes_to_kitti_objects(boxes, np.ones(len(boxes)), real_frame.calib, (375, 1242))
        ry = np.array([o.rotation_y for o in objects])
        assert np.all(ry > -math.pi) and np.all(ry <= math.pi)
        alpha = np.array([o.alpha for o in objects])
        x, z = np.array([o.location[0] for o in objects]), np.array([o.location[2] for o in objects])
        np.testing.assert_allclose(wrap_kitti_angle(alpha + np.arctan2(x, z) - ry), 0.0, atol=1e-9)
    back = lidar_boxes_to_kitti_objects(turned, np.ones(len(turned)), real_frame.calib, (375, 1242))
    labels = np.array([o.rotation_y for o in real_frame.objects])
    np.testing.assert_allclose(np.abs(wrap_kitti_angle(np.array([o.rotation_y for o in back]) - labels)), math.pi,
                               atol=1e-6)


def test_alpha_is_the_heading_less_the_viewing_angle():
    # Straight ahead (x = 0), alpha equals rotation_y; 45° to the right, it is rotation_y - π/4.
    assert observation_angle(0.3, 0.0, 10.0) == pytest.approx(0.3)
    assert observation_angle(0.3, 10.0, 10.0) == pytest.approx(0.3 - math.pi / 4)
    # Results stay in (-π, π]: KITTI's range.
    assert observation_angle(3.0, -10.0, 10.0) == pytest.approx(3.0 + math.pi / 4 - 2 * math.pi)
    assert wrap_kitti_angle(-math.pi) == pytest.approx(math.pi) and wrap_kitti_angle(math.pi) == pytest.approx(math.pi)


@needs_real
def test_a_box_reaching_behind_the_camera_is_cut_at_the_near_plane(real_frame):
    # A car beside the sensor, half behind the camera: its far corners must not fold onto the wrong side.
    # Its corners behind the camera would project to u ≈ 660–1318 px, its front corners lie at u ≈ 46–569.
    beside = np.array([[0.5, 1.0, -1.0, 4.0, 1.6, 1.5, 0.0], [-10.0, 0.0, -1.0, 4.0, 1.6, 1.5, 0.0]])
    (x1, _, x2, _), behind = image_boxes_lidar(beside, real_frame.calib, (375, 1242))
    assert x1 == 0.0  # its side runs out of the image's left edge towards the camera
    assert x2 == pytest.approx(569.2, abs=1.0)  # the nearest front corner, not a folded rear one
    np.testing.assert_array_equal(behind, 0.0)  # wholly behind: degenerate


def car(x: float, ry: float, frame: str = "f", score: float | None = None):
    """A KITTI car at depth 10 m, x metres to the right."""
    return KittiObject(type="Car", truncated=0.0, occluded=0, alpha=0.0, bbox=(0, 0, 10, 50),
                       dimensions=(1.5, 1.6, 3.9), location=(x, 1.6, 10.0), rotation_y=ry, score=score)


def test_heading_errors_of_matched_cars_see_a_half_turn():
    truth = {"a": [car(0.0, 0.2), car(6.0, -1.0)], "b": [car(0.0, 3.0)]}
    found = {"a": [car(0.05, 0.2 + math.pi, score=0.9), car(6.0, -0.9, score=0.8), car(-8.0, 0.0, score=0.7)],
             "b": [car(0.0, -3.0, score=0.5)]}
    errors = np.sort(matched_heading_errors(truth, found))
    # The unmatched detection adds nothing; -3.0 vs 3.0 is 2π - 6 apart, not 6.
    np.testing.assert_allclose(errors, np.sort([math.pi, 0.1, 2 * math.pi - 6.0]), atol=1e-9)


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------
def test_corners_of_an_axis_aligned_box():
    corners = box_corners_lidar(np.array([[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 0.0]]))[0]
    np.testing.assert_allclose(corners[:4, :2], [[3, 3], [-1, 3], [-1, 1], [3, 1]])  # CCW from front-left
    np.testing.assert_allclose(corners[:4, 2], 2.5)
    np.testing.assert_allclose(corners[4:, 2], 3.5)


def test_points_in_a_rotated_box():
    box = np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, math.pi / 2]])  # length now along y
    points = np.array([[0.0, 1.9, 0.0], [1.9, 0.0, 0.0], [0.0, 0.0, 1.1], [0.9, -1.9, -0.9]])
    assert points_in_boxes_lidar(points, box)[:, 0].tolist() == [True, False, False, True]


def test_upright_frame_keeps_camera_geometry():
    camera = np.array([[2.0, 1.5, 10.0, 1.5, 1.6, 4.0, 0.3]])
    upright = boxes3d_camera_to_upright(camera)
    np.testing.assert_allclose(upright[0, :6], [10.0, -2.0, -0.75, 4.0, 1.6, 1.5])


# --------------------------------------------------------------------------------------------------
# IoU hand cases
# --------------------------------------------------------------------------------------------------
def test_identical_boxes():
    assert bev_iou(UNIT, UNIT)[0, 0] == pytest.approx(1.0)


def test_disjoint_boxes():
    assert bev_iou(UNIT, UNIT + [5, 0, 0, 0, 0])[0, 0] == 0.0


def test_unit_squares_offset_by_half():
    assert bev_iou(UNIT, UNIT + [0.5, 0, 0, 0, 0])[0, 0] == pytest.approx(1 / 3)  # 0.5 / (2 - 0.5)


def test_rotated_square_against_itself_and_upright():
    diamond = UNIT + [0, 0, 0, 0, math.pi / 4]
    assert bev_iou(diamond, diamond)[0, 0] == pytest.approx(1.0)
    octagon = 2 * (math.sqrt(2) - 1)  # unit square ∩ the same square turned 45°
    assert bev_intersection_area(UNIT, diamond)[0, 0] == pytest.approx(octagon)
    assert bev_iou(UNIT, diamond)[0, 0] == pytest.approx(octagon / (2 - octagon))


def test_heading_flip_is_the_same_rectangle():
    box = np.array([[3.0, -1.0, 4.0, 1.8, 0.4]])
    assert bev_iou(box, box + [0, 0, 0, 0, math.pi])[0, 0] == pytest.approx(1.0)


def test_iou3d_with_half_vertical_overlap():
    a = np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, 0.0]])  # 16 m³, z from -1 to 1
    b = a + [0, 0, 1.0, 0, 0, 0, 0]  # z from 0 to 2: half the height overlaps
    assert iou3d(a, b)[0, 0] == pytest.approx(8 / (16 + 16 - 8))
    c = a + [2.0, 0, 1.0, 0, 0, 0, 0]  # and half the length: 2 × 2 m² × 1 m
    assert iou3d(a, c)[0, 0] == pytest.approx(4 / (16 + 16 - 4))
    assert iou3d(a, a + [0, 0, 2.5, 0, 0, 0, 0])[0, 0] == 0.0


def test_intersection_matches_sampling_on_random_boxes():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.uniform(-1, 1, (12, 2)), rng.uniform(0.5, 3, (12, 2)), rng.uniform(-4, 4, 12)])
    b = np.column_stack([rng.uniform(-1, 1, (12, 2)), rng.uniform(0.5, 3, (12, 2)), rng.uniform(-4, 4, 12)])
    grid = np.linspace(-3, 3, 301)
    xx, yy = np.meshgrid(grid, grid)
    samples = np.column_stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)])

    def inside(bev):
        return points_in_boxes_lidar(samples, np.column_stack([bev[:, :2], np.zeros(len(bev)), bev[:, 2:4],
                                                               np.ones(len(bev)), bev[:, 4]]))

    sampled = (inside(a) & inside(b)).sum(axis=0) * (grid[1] - grid[0]) ** 2
    np.testing.assert_allclose(np.diag(bev_intersection_area(a, b)), sampled, atol=0.03)
    matrix = bev_iou(a, b)
    np.testing.assert_allclose(matrix, bev_iou(b, a).T, atol=1e-12)
    assert matrix.shape == (12, 12) and np.all((matrix >= 0) & (matrix <= 1))


def test_corners_are_counter_clockwise():
    corners = bev_corners(np.array([[0.0, 0.0, 4.0, 2.0, 1.0]]))[0]
    twice_area = np.sum(corners[:, 0] * np.roll(corners[:, 1], -1) - np.roll(corners[:, 0], -1) * corners[:, 1])
    assert twice_area == pytest.approx(2 * 8.0)


def test_empty_inputs():
    assert bev_iou(np.zeros((0, 5)), UNIT).shape == (0, 1)
    assert iou3d(np.zeros((2, 7)), np.zeros((0, 7))).shape == (2, 0)
    assert rotated_nms_bev(np.zeros((0, 5)), np.zeros(0), 0.5).tolist() == []


# --------------------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------------------
def test_rotated_nms_keeps_best_of_each_cluster():
    boxes = np.array([
        [0.0, 0.0, 4.0, 2.0, 0.0],
        [0.2, 0.0, 4.0, 2.0, 0.05],  # IoU ≈ 0.9 with box 0
        [10.0, 0.0, 4.0, 2.0, 0.0],
        [1.0, 0.0, 4.0, 2.0, 0.0],  # IoU 0.6 with box 0
    ])
    scores = np.array([0.8, 0.9, 0.7, 0.3])
    assert rotated_nms_bev(boxes, scores, 0.7).tolist() == [1, 2, 3]
    assert rotated_nms_bev(boxes, scores, 0.5).tolist() == [1, 2]
    lidar = np.insert(np.insert(boxes, 2, 0.0, axis=1), 5, 1.5, axis=1)  # the same as LiDAR (N, 7) boxes
    assert rotated_nms_bev(lidar, scores, 0.5).tolist() == [1, 2]
