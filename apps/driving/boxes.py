"""3D box maths for KITTI: camera ↔ LiDAR boxes, corners, points in boxes, rotated BEV / 3D IoU and NMS.

Box layouts (every array is float64 in metres and radians):
- camera box (N, 7) `[x, y, z, h, w, l, ry]`: KITTI labels as they are written — rect camera frame
  (x right, y down, z forward), (x, y, z) the *bottom* centre, `ry` the yaw about camera y.
- LiDAR box (N, 7) `[x, y, z, l, w, h, yaw]`: LiDAR frame (x forward, y left, z up), (x, y, z) the
  *geometric* centre (LiDAR z = bottom + h/2, as in OpenPCDet; MMDetection3D's LiDAR boxes keep the
  bottom centre instead), `l` along the heading, `yaw` counter-clockwise from +x about +z.
  yaw = -ry - π/2, the MMDetection3D ≥ 1.0 / OpenPCDet convention (ry = 0 heads along camera +x, which
  is LiDAR -y, i.e. yaw = -π/2). Angles come back wrapped to [-π, π). The conversion ignores the few
  milliradians of tilt between the LiDAR and camera axes, as both toolkits do.
- BEV box (N, 5) `[x, y, l, w, yaw]`: a LiDAR box seen from above (columns 0, 1, 3, 4, 6).
Rotated rectangle intersection is Sutherland–Hodgman polygon clipping, vectorised over box pairs.
"""
from __future__ import annotations

import math

import numpy as np

from apps.driving.kitti import KittiCalib, KittiObject, camera_box_array

# Sign tolerance (m²) when testing which side of a clip edge a vertex lies on; keeps touching boxes stable.
_SIDE_EPS = 1e-9
# Points per chunk in points_in_boxes_lidar, to bound the (points × boxes) temporaries.
_POINT_CHUNK = 65_536
# Columns of a LiDAR box that make its bird's-eye-view box.
BEV_COLUMNS = [0, 1, 3, 4, 6]
# Rectangle corners in box units (± l/2, ± w/2), counter-clockwise seen from above.
_UNIT_RECT = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])


def limit_period(angle: np.ndarray | float, offset: float = 0.5, period: float = 2 * math.pi) -> np.ndarray:
    """Wrap angles to [-offset·period, (1-offset)·period) so equal headings compare equal."""
    angle = np.asarray(angle, dtype=np.float64)
    return angle - np.floor(angle / period + offset) * period


def wrap_kitti_angle(angle: np.ndarray | float) -> np.ndarray:
    """Angles wrapped to (-π, π], the range KITTI writes rotation_y and alpha in."""
    angle = np.asarray(angle, dtype=np.float64)
    return angle - 2 * math.pi * np.ceil((angle - math.pi) / (2 * math.pi))


def observation_angle(rotation_y: np.ndarray | float, x: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
    """KITTI's alpha: rotation_y less the viewing angle atan2(x, z) of the box centre (rect camera), in (-π, π].

    A car seen from straight ahead of the camera has alpha = rotation_y; the same heading seen at the image's
    side differs by the ray's angle. The bottom and geometric centres share x and z, so either gives it.
    """
    return wrap_kitti_angle(np.asarray(rotation_y, np.float64) - np.arctan2(x, z))


def _boxes(boxes: np.ndarray, width: int, name: str) -> np.ndarray:
    """Check and return an (N, width) float64 box array; a single box may be given as (width,)."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == width:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{name} must have shape (N, {width}), got {arr.shape}")
    return arr


def _camera_boxes(boxes: list[KittiObject] | np.ndarray) -> np.ndarray:
    """Camera boxes from KittiObjects or an (N, 7) array."""
    if isinstance(boxes, list) and (not boxes or isinstance(boxes[0], KittiObject)):
        return camera_box_array(boxes)
    return _boxes(boxes, 7, "camera boxes")


# --------------------------------------------------------------------------------------------------
# Frame conversions
# --------------------------------------------------------------------------------------------------
def boxes3d_camera_to_lidar(boxes: list[KittiObject] | np.ndarray, calib: KittiCalib) -> np.ndarray:
    """Camera boxes [x, y, z, h, w, l, ry] → LiDAR boxes [x, y, z, l, w, h, yaw] (centre; yaw = -ry - π/2)."""
    cam = _camera_boxes(boxes)
    h, w, length, ry = cam[:, 3], cam[:, 4], cam[:, 5], cam[:, 6]
    centre = calib.rect_to_velo(cam[:, :3])
    centre[:, 2] += h / 2
    return np.column_stack([centre, length, w, h, limit_period(-ry - math.pi / 2)])


def boxes3d_lidar_to_camera(boxes: np.ndarray, calib: KittiCalib) -> np.ndarray:
    """LiDAR boxes [x, y, z, l, w, h, yaw] → camera boxes [x, y, z, h, w, l, ry]: inverse of the above."""
    lidar = _boxes(boxes, 7, "LiDAR boxes")
    length, w, h, yaw = lidar[:, 3], lidar[:, 4], lidar[:, 5], lidar[:, 6]
    bottom = lidar[:, :3].copy()
    bottom[:, 2] -= h / 2
    return np.column_stack([calib.velo_to_rect(bottom), h, w, length, limit_period(-yaw - math.pi / 2)])


def boxes3d_camera_to_upright(boxes: list[KittiObject] | np.ndarray) -> np.ndarray:
    """Camera boxes in LiDAR box layout without a calibration, for IoU between two sets of camera boxes.

    The frame is the rect camera rotated to z up (x = cam z, y = -cam x, z = -cam y): a rigid motion,
    so IoUs are exactly those of the camera boxes.
    """
    cam = _camera_boxes(boxes)
    x, y, z, h, w, length, ry = cam.T
    return np.column_stack([z, -x, -y + h / 2, length, w, h, limit_period(-ry - math.pi / 2)])


# --------------------------------------------------------------------------------------------------
# Corners and points
# --------------------------------------------------------------------------------------------------
def bev_corners(boxes_bev: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners of BEV boxes [x, y, l, w, yaw], counter-clockwise seen from above."""
    bev = _boxes(boxes_bev, 5, "BEV boxes")
    local = _UNIT_RECT[None] * np.abs(bev[:, None, 2:4])  # (N, 4, 2): (± l/2, ± w/2); |·| keeps them CCW
    cos, sin = np.cos(bev[:, 4])[:, None], np.sin(bev[:, 4])[:, None]
    x = local[..., 0] * cos - local[..., 1] * sin + bev[:, 0:1]
    y = local[..., 0] * sin + local[..., 1] * cos + bev[:, 1:2]
    return np.stack([x, y], axis=-1)


def box_corners_lidar(boxes: np.ndarray) -> np.ndarray:
    """(N, 8, 3) corners of LiDAR boxes: the 4 bottom corners counter-clockwise from front-left, then the 4 top."""
    lidar = _boxes(boxes, 7, "LiDAR boxes")
    xy = bev_corners(lidar[:, BEV_COLUMNS])  # (N, 4, 2)
    z_bottom = (lidar[:, 2] - lidar[:, 5] / 2)[:, None, None]
    z_top = (lidar[:, 2] + lidar[:, 5] / 2)[:, None, None]
    bottom = np.concatenate([xy, np.broadcast_to(z_bottom, (*xy.shape[:2], 1))], axis=-1)
    top = np.concatenate([xy, np.broadcast_to(z_top, (*xy.shape[:2], 1))], axis=-1)
    return np.concatenate([bottom, top], axis=1)


def points_in_boxes_lidar(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M, N) bool: whether each LiDAR point lies in each LiDAR box (faces included), for targets and stats."""
    lidar = _boxes(boxes, 7, "LiDAR boxes")
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    cos, sin = np.cos(lidar[:, 6]), np.sin(lidar[:, 6])
    inside = np.zeros((len(pts), len(lidar)), dtype=bool)
    for start in range(0, len(pts), _POINT_CHUNK):
        d = pts[start : start + _POINT_CHUNK, None, :] - lidar[None, :, :3]  # (m, N, 3)
        along = d[..., 0] * cos + d[..., 1] * sin  # coordinate along the heading
        across = -d[..., 0] * sin + d[..., 1] * cos
        inside[start : start + _POINT_CHUNK] = (
            (np.abs(along) <= lidar[:, 3] / 2)
            & (np.abs(across) <= lidar[:, 4] / 2)
            & (np.abs(d[..., 2]) <= lidar[:, 5] / 2)
        )
    return inside


# --------------------------------------------------------------------------------------------------
# Rotated IoU
# --------------------------------------------------------------------------------------------------
def _compact(points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move valid vertices first (order kept), trim, and pad each polygon with its last vertex."""
    order = np.argsort(~valid, axis=1, kind="stable")
    points = np.take_along_axis(points, order[..., None], axis=1)
    count = valid.sum(axis=1)
    width = max(int(count.max(initial=0)), 1)
    slot = np.minimum(np.arange(width)[None], np.maximum(count - 1, 0)[:, None])
    return np.take_along_axis(points[:, :width], slot[..., None], axis=1), count


def _clip_polygons(subject: np.ndarray, count: np.ndarray, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sutherland–Hodgman: clip each convex polygon (B, K, 2) by the matching CCW quadrilateral (B, 4, 2).

    Polygons are stored compact with padding slots repeating the last vertex, so `roll` gives every
    vertex its true predecessor (the first vertex's is the last real one).
    """
    for edge in range(clip.shape[1]):
        start, end = clip[:, edge], clip[:, (edge + 1) % clip.shape[1]]
        direction = (end - start)[:, None, :]
        rel = subject - start[:, None, :]
        side = direction[..., 0] * rel[..., 1] - direction[..., 1] * rel[..., 0]  # > 0: left of edge = inside
        prev, side_prev = np.roll(subject, 1, axis=1), np.roll(side, 1, axis=1)
        real = np.arange(subject.shape[1])[None] < count[:, None]
        inside, inside_prev = side > -_SIDE_EPS, side_prev > -_SIDE_EPS
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip(side_prev / (side_prev - side), 0.0, 1.0)
        crossing = prev + np.nan_to_num(t)[..., None] * (subject - prev)
        points = np.stack([crossing, subject], axis=2).reshape(len(subject), -1, 2)
        valid = np.stack([real & (inside != inside_prev), real & inside], axis=2).reshape(len(subject), -1)
        subject, count = _compact(points, valid)
    return subject, count


def _polygon_area(poly: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Shoelace area of compact padded polygons; fewer than 3 vertices is area 0."""
    nxt = np.roll(poly, -1, axis=1)
    twice = np.sum(poly[..., 0] * nxt[..., 1] - nxt[..., 0] * poly[..., 1], axis=1)
    return np.where(count >= 3, np.abs(twice) / 2, 0.0)


def bev_intersection_area(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(N, M) overlap area (m²) of rotated BEV boxes [x, y, l, w, yaw]; only pairs whose circles meet are clipped."""
    a, b = _boxes(boxes_a, 5, "BEV boxes"), _boxes(boxes_b, 5, "BEV boxes")
    area = np.zeros((len(a), len(b)))
    if not len(a) or not len(b):
        return area
    radius_a, radius_b = np.hypot(a[:, 2], a[:, 3]) / 2, np.hypot(b[:, 2], b[:, 3]) / 2
    distance = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    ia, ib = np.nonzero(distance <= radius_a[:, None] + radius_b[None, :])
    if not len(ia):
        return area
    corners_a, corners_b = bev_corners(a), bev_corners(b)
    poly, count = _clip_polygons(corners_a[ia], np.full(len(ia), 4), corners_b[ib])
    area[ia, ib] = _polygon_area(poly, count)
    return area


def _iou(intersection: np.ndarray, size_a: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """Intersection over union with an empty union (degenerate boxes) giving 0."""
    union = size_a[:, None] + size_b[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


def bev_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(N, M) rotated bird's-eye-view IoU of BEV boxes [x, y, l, w, yaw] (KITTI's BEV metric)."""
    a, b = _boxes(boxes_a, 5, "BEV boxes"), _boxes(boxes_b, 5, "BEV boxes")
    return _iou(bev_intersection_area(a, b), a[:, 2] * a[:, 3], b[:, 2] * b[:, 3])


def iou3d(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(N, M) 3D IoU of LiDAR boxes: BEV overlap area × vertical overlap over the union volume."""
    a, b = _boxes(boxes_a, 7, "LiDAR boxes"), _boxes(boxes_b, 7, "LiDAR boxes")
    top = np.minimum(a[:, None, 2] + a[:, None, 5] / 2, b[None, :, 2] + b[None, :, 5] / 2)
    bottom = np.maximum(a[:, None, 2] - a[:, None, 5] / 2, b[None, :, 2] - b[None, :, 5] / 2)
    inter = bev_intersection_area(a[:, BEV_COLUMNS], b[:, BEV_COLUMNS]) * np.clip(top - bottom, 0.0, None)
    return _iou(inter, np.prod(a[:, 3:6], axis=1), np.prod(b[:, 3:6], axis=1))


def rotated_nms_bev(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS on rotated BEV IoU: indices kept, best score first. Boxes are BEV (N, 5) or LiDAR (N, 7).

    Builds the full (N, N) IoU matrix (1,000 boxes ≈ 0.2 s): keep the top-k by score before calling it.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    bev = arr[:, BEV_COLUMNS] if arr.ndim == 2 and arr.shape[1] == 7 else _boxes(arr, 5, "boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(bev):
        raise ValueError(f"{len(bev)} boxes but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    overlap = bev_iou(bev[order], bev[order])
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        keep.append(int(order[rank]))
        suppressed |= overlap[rank] > iou_threshold
    return np.array(keep, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Detections back to KITTI objects
# --------------------------------------------------------------------------------------------------
# Box edges as corner pairs (box_corners_lidar order): bottom ring, top ring, verticals.
_BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])
NEAR_PLANE = 0.1  # metres in front of the camera: a box is cut here before projecting


def image_boxes_lidar(boxes: np.ndarray, calib: KittiCalib, image_shape: tuple[int, int]) -> np.ndarray:
    """(N, 4) 2D boxes [x1, y1, x2, y2] of LiDAR boxes in image_2: the projected 3D box clipped to the image.

    A box reaching behind the camera is first cut at `NEAR_PLANE` (its corners in front plus the points where
    its edges cross the plane), since a corner behind the camera projects to the wrong side of the image.
    A box wholly behind the plane gets a degenerate [0, 0, 0, 0].
    """
    lidar = _boxes(boxes, 7, "LiDAR boxes")
    height, width = image_shape[:2]
    out = np.zeros((len(lidar), 4))
    for i, corners in enumerate(box_corners_lidar(lidar)):
        _, depth = calib.velo_to_image(corners)
        front = depth > NEAR_PLANE
        if not front.any():
            continue
        kept = [corners[front]]
        a, b = corners[_BOX_EDGES[:, 0]], corners[_BOX_EDGES[:, 1]]
        da, db = depth[_BOX_EDGES[:, 0]], depth[_BOX_EDGES[:, 1]]
        crossing = (da > NEAR_PLANE) != (db > NEAR_PLANE)
        if crossing.any():  # depth is affine in the point, so the crossing interpolates linearly
            t = (NEAR_PLANE - da[crossing]) / (db[crossing] - da[crossing])
            kept.append(a[crossing] + t[:, None] * (b[crossing] - a[crossing]))
        uv, _ = calib.velo_to_image(np.concatenate(kept))
        out[i, :2] = np.clip(uv.min(axis=0), 0, [width - 1, height - 1])
        out[i, 2:] = np.clip(uv.max(axis=0), 0, [width - 1, height - 1])
    return out

def lidar_boxes_to_kitti_objects(
    boxes: np.ndarray,
    scores: np.ndarray,
    calib: KittiCalib,
    image_shape: tuple[int, int],
    cls: str = "Car",
) -> list[KittiObject]:
    """LiDAR detections → KITTI result objects: camera box, full-heading rotation_y, its alpha, and the 2D box.

    rotation_y and alpha = rotation_y - atan2(x, z) are in (-π, π] (the evaluator's AOS reads alpha); the 2D
    box is the projected 3D box clipped to the image (H, W) (`image_boxes_lidar`), which AP_2D and the
    difficulty levels' height limit use. Truncation and occlusion are unknown and written as 0.
    """
    lidar = _boxes(boxes, 7, "LiDAR boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    cam = boxes3d_lidar_to_camera(lidar, calib)
    cam[:, 6] = wrap_kitti_angle(cam[:, 6])
    alphas = observation_angle(cam[:, 6], cam[:, 0], cam[:, 2])
    objects = []
    for box, (x1, y1, x2, y2), alpha, score in zip(cam, image_boxes_lidar(lidar, calib, image_shape), alphas, scores,
                                                    strict=True):
        x, y, z, h, w, length, ry = box
        objects.append(
            KittiObject(
                type=cls, truncated=0.0, occluded=0,
                alpha=float(alpha),
                bbox=(float(x1), float(y1), float(x2), float(y2)),
                dimensions=(float(h), float(w), float(length)),
                location=(float(x), float(y), float(z)),
                rotation_y=float(ry), score=float(score),
            )
        )
    return objects


def matched_heading_errors(gt: dict[str, list[KittiObject]], dt: dict[str, list[KittiObject]], cls: str = "Car",
                           min_bev_iou: float = 0.5) -> np.ndarray:
    """Absolute full-angle heading errors (radians, in [0, π]) of detections matched to labelled cars.

    Per frame, detections best score first each take the unmatched label of highest BEV IoU ≥ `min_bev_iou`;
    IoU is blind to a half turn, so this is what says whether headings point the right way (π: backwards).
    """
    errors: list[float] = []
    for frame_id, labels in gt.items():
        truth = [o for o in labels if o.type == cls]
        found = sorted((o for o in dt.get(frame_id, []) if o.type == cls), key=lambda o: -(o.score or 0.0))
        if not truth or not found:
            continue
        overlap = bev_iou(boxes3d_camera_to_upright(found)[:, BEV_COLUMNS],
                          boxes3d_camera_to_upright(truth)[:, BEV_COLUMNS])
        free = np.ones(len(truth), dtype=bool)
        for i, detection in enumerate(found):
            candidates = np.where(free, overlap[i], -1.0)
            j = int(np.argmax(candidates))
            if candidates[j] >= min_bev_iou:
                free[j] = False
                errors.append(abs(float(wrap_kitti_angle(detection.rotation_y - truth[j].rotation_y))))
    return np.array(errors, dtype=np.float64)
