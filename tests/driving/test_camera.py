"""Camera branch: the mmdet YOLOX detector trains and predicts, and its evidence paints the right points."""
import numpy as np
import torch
from real_kitti import REAL, needs_real

from apps.driving.boxes import boxes3d_camera_to_lidar, points_in_boxes_lidar
from apps.driving.camera import (
    CameraConfig,
    CameraDetector,
    images_to_tensor,
    paint_points,
    prepare_image,
    score_map,
)
from apps.driving.kitti import read_frame

FRAME = "000008"


def test_score_map_keeps_the_best_box_per_pixel():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32)
    evidence = score_map(boxes, np.array([0.9, 0.4]), (30, 30))
    assert evidence[2, 2] == np.float32(0.9) and evidence[7, 7] == np.float32(0.9)
    assert evidence[15, 15] == np.float32(0.4) and evidence[25, 25] == 0


@needs_real
def test_painting_the_real_frame_marks_points_inside_the_car_boxes():
    frame = read_frame(REAL, FRAME)
    cars = [o for o in frame.objects if o.type == "Car"]
    evidence = score_map(np.array([o.bbox for o in cars]), np.ones(len(cars)), frame.image.shape[:2])
    painted = paint_points(frame.points, frame.calib, evidence, scale=1.0)
    assert painted.shape == (len(frame.points), 5)
    in_cars = points_in_boxes_lidar(frame.points, boxes3d_camera_to_lidar(cars, frame.calib)).any(axis=1)
    assert painted[in_cars, 4].mean() > 0.95  # a car's points project inside its own 2D box
    assert painted[~in_cars, 4].mean() < 0.5


@needs_real
def test_yolox_trains_one_step_and_predicts():
    torch.manual_seed(0)
    cfg = CameraConfig(widen_factor=0.125)
    camera = CameraDetector(cfg)
    frame = read_frame(REAL, FRAME)
    image = prepare_image(frame.image, cfg.image_scale)
    boxes = np.array([o.bbox for o in frame.objects if o.type == "Car"]) * cfg.image_scale
    batch = {"images": images_to_tensor([image]), "images_np": [image], "boxes": [boxes]}
    loss = camera(batch)
    loss.backward()
    assert torch.isfinite(loss)
    (found, scores), = camera.detect([image])
    assert found.shape[1:] == (4,) and len(found) == len(scores) <= cfg.max_detections
