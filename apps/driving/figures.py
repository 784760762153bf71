"""Pictures a driving engineer checks first: detections over the scan from above, and over the camera image."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

from apps.driving.boxes import BEV_COLUMNS, bev_corners, boxes3d_camera_to_lidar
from apps.driving.dataset import TARGET_CLASS, DrivingFrame
from apps.driving.kitti import KittiObject
from common.plotting import plt

MAX_PLOTTED_POINTS = 20_000
TRUE_COLOUR, PRED_COLOUR = "tab:green", "tab:red"
MIN_PLOTTED_SCORE = 0.3  # the detector keeps scores ≥ 0.05 for AP; drawing them all hides the picture


def _lidar_bev(objects: list[KittiObject], frame: DrivingFrame) -> np.ndarray:
    boxes = boxes3d_camera_to_lidar(objects, frame.calib).reshape(-1, 7)
    return bev_corners(boxes[:, BEV_COLUMNS])


def bev_detections_figure(frames: list[DrivingFrame], detections: dict[str, list[KittiObject]],
                          point_range: list[float]) -> Figure:
    """Scan from above with true (green) and predicted (red, score shown) car boxes, one panel per frame."""
    fig, axes = plt.subplots(1, len(frames), figsize=(5 * len(frames), 5.5), squeeze=False)
    for ax, frame in zip(axes[0], frames, strict=True):
        pts = frame.points[:: max(1, len(frame.points) // MAX_PLOTTED_POINTS)]
        ax.scatter(pts[:, 1], pts[:, 0], s=0.2, c="0.4", rasterized=True)
        for corners in _lidar_bev(frame.target_objects, frame):
            ax.add_patch(Polygon(corners[:, ::-1], fill=False, edgecolor=TRUE_COLOUR, linewidth=1.5))
        found = [obj for obj in detections.get(frame.frame_id, []) if obj.score >= MIN_PLOTTED_SCORE]
        for corners, obj in zip(_lidar_bev(found, frame), found, strict=True):
            ax.add_patch(Polygon(corners[:, ::-1], fill=False, edgecolor=PRED_COLOUR, linewidth=1.0))
            ax.text(corners[0, 1], corners[0, 0], f"{obj.score:.2f}", color=PRED_COLOUR, fontsize=6)
        ax.set_xlim(point_range[4], point_range[1])  # y to the left, as seen from above looking forward
        ax.set_ylim(point_range[0], point_range[3])
        ax.set_aspect("equal")
        ax.set_title(f"frame {frame.frame_id}: {len(frame.target_objects)} true, {len(found)} found", fontsize=9)
        ax.set_xlabel("y (m, left)")
        ax.set_ylabel("x (m, forward)")
    fig.suptitle(f"BEV: true {TARGET_CLASS} (green), detections with score ≥ {MIN_PLOTTED_SCORE} (red)")
    fig.tight_layout()
    return fig


def camera_detections_figure(frames: list[DrivingFrame], detections: dict[str, list[KittiObject]]) -> Figure:
    """Camera images with the true (green) and predicted (red) 2D boxes of the 3D detections."""
    fig, axes = plt.subplots(len(frames), 1, figsize=(12, 3.8 * len(frames)), squeeze=False)
    for ax, frame in zip(axes[:, 0], frames, strict=True):
        ax.imshow(frame.image)
        for obj in frame.target_objects:
            x1, y1, x2, y2 = obj.bbox
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=TRUE_COLOUR, linewidth=1.5))
        for obj in [o for o in detections.get(frame.frame_id, []) if o.score >= MIN_PLOTTED_SCORE]:
            x1, y1, x2, y2 = obj.bbox
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=PRED_COLOUR, linewidth=1.0))
            ax.text(x1, y1 - 2, f"{obj.score:.2f}", color=PRED_COLOUR, fontsize=7)
        ax.set_axis_off()
        ax.set_title(f"frame {frame.frame_id}", fontsize=9)
    fig.tight_layout()
    return fig
