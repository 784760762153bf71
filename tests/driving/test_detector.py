"""PointPillars pieces: pillarisation, targets ↔ decoding, augmentations keeping points in their boxes."""
import math

import numpy as np
import pytest
import torch

from apps.driving.boxes import BEV_COLUMNS, bev_iou, points_in_boxes_lidar, rotated_nms_bev
from apps.driving.center_head import (
    BOX_CHANNELS,
    HEAD_MAP_CHANNELS,
    OUTPUT_STRIDE,
    CenterHeadConfig,
    CenterTargets,
    center_head_loss,
    center_head_losses,
    decode_boxes,
    direction_bin,
    full_heading,
    rotated_nms,
)
from apps.driving.dataset import (
    PasteSampledCars,
    RandomFlipY,
    RandomRotateZ,
    RandomScale,
    SceneAugmentConfig,
    scene_augmentations,
)
from apps.driving.model import DrivingModelConfig, PointPillarsNet
from apps.driving.pillars import PillarGrid, Pillarizer

BOXES = np.array([[20.0, 5.0, -0.98, 3.9, 1.6, 1.5, 0.3], [35.5, -8.2, -0.9, 4.2, 1.7, 1.6, -2.0]])


def box_points(boxes: np.ndarray, per_box: int = 200, seed: int = 0) -> np.ndarray:
    """Points scattered inside each box (with reflectance), as a toy scan."""
    rng = np.random.default_rng(seed)
    out = []
    for x, y, z, length, w, h, yaw in boxes:
        local = rng.uniform(-0.5, 0.5, (per_box, 3)) * [length, w, h]
        c, s = math.cos(yaw), math.sin(yaw)
        xy = local[:, :2] @ np.array([[c, s], [-s, c]]) + [x, y]
        out.append(np.column_stack([xy, local[:, 2] + z, rng.uniform(0, 1, per_box)]))
    return np.concatenate(out).astype(np.float32)


def perfect_outputs(grid: PillarGrid, head: CenterHeadConfig, boxes: np.ndarray) -> dict[str, torch.Tensor]:
    """Head maps a perfect network would output: the targets as logits (direction: 10 for the true bin)."""
    drawn = CenterTargets(grid, head)(boxes)
    heat = np.where(drawn["heatmap"] >= 1.0, 10.0, -10.0).astype(np.float32)
    reg = np.zeros((HEAD_MAP_CHANNELS, *drawn["heatmap"].shape[1:]), np.float32)
    for i, m, r, d in zip(drawn["index"], drawn["mask"], drawn["regression"], drawn["direction"], strict=True):
        if m:
            reg.reshape(HEAD_MAP_CHANNELS, -1)[:BOX_CHANNELS, i] = r
            reg.reshape(HEAD_MAP_CHANNELS, -1)[BOX_CHANNELS + d, i] = 10.0
    return {"heatmap": torch.from_numpy(heat)[None], "regression": torch.from_numpy(reg)[None]}


def test_pillarizer_keeps_points_in_range_and_grid_coordinates():
    grid = PillarGrid()
    pillars, counts, coords = Pillarizer(grid)(box_points(BOXES))
    assert pillars.shape[1:] == (grid.max_points_per_pillar, 4)
    assert int(counts.sum()) == 400  # every point lies inside the range and no pillar overflows
    ny, nx = grid.shape
    assert (coords[:, 0] < ny).all() and (coords[:, 1] < nx).all()


def test_targets_decode_back_to_the_boxes():
    grid, head = PillarGrid(), CenterHeadConfig()
    (boxes, scores), = decode_boxes(perfect_outputs(grid, head, BOXES), grid, head)
    order = np.argsort(boxes[:, 0])
    np.testing.assert_allclose(boxes[order, :6], BOXES[:, :6], atol=1e-4)
    np.testing.assert_allclose(boxes[order, 6], BOXES[:, 6], atol=1e-4)  # the full heading, not up to π
    assert np.all(scores > 0.99)


def test_a_car_seen_from_behind_and_from_the_front_decode_half_a_turn_apart():
    grid, head = PillarGrid(), CenterHeadConfig()
    away = np.array([[20.0, 0.0, -0.98, 3.9, 1.6, 1.5, 0.0]])  # driving away from the sensor: we see its back
    towards = away.copy()
    towards[0, 6] = math.pi  # the same box coming towards us: we see its front
    (away_box, _), = decode_boxes(perfect_outputs(grid, head, away), grid, head)
    (towards_box, _), = decode_boxes(perfect_outputs(grid, head, towards), grid, head)
    assert away_box[0, 6] == pytest.approx(0.0, abs=1e-4)
    assert abs(towards_box[0, 6]) == pytest.approx(math.pi, abs=1e-4)  # π and -π are one heading
    # The regressed axis is the same for both; only the direction bin tells them apart.
    assert CenterTargets(grid, head)(away)["regression"][0] == pytest.approx(
        CenterTargets(grid, head)(towards)["regression"][0], abs=1e-6)


@pytest.mark.parametrize("offset", [math.pi / 2, 0.0, -1.0])
def test_direction_bins_split_the_circle_at_the_offset(offset):
    assert direction_bin(offset, offset) == 0 and direction_bin(offset + math.pi - 1e-6, offset) == 0
    assert direction_bin(offset + math.pi, offset) == 1 and direction_bin(offset - 1e-6, offset) == 1
    yaws = np.linspace(-math.pi, math.pi, 721)
    # Exactly on a bin edge, a rounding error in the axis may land it in the other half turn: by design the
    # edge is where an axis error flips the direction (hence `direction_offset` across the road).
    yaws = yaws[np.abs(np.angle(np.exp(2j * (yaws - offset)))) > 1e-6]
    axis = torch.from_numpy(np.arctan2(np.sin(2 * yaws), np.cos(2 * yaws)) / 2)  # what the regression gives
    decoded = full_heading(axis, torch.from_numpy(direction_bin(yaws, offset)), offset).numpy()
    error = np.angle(np.exp(1j * (decoded - yaws)))
    np.testing.assert_allclose(error, 0.0, atol=1e-9)
    assert decoded.min() > -math.pi - 1e-12 and decoded.max() <= math.pi + 1e-12


def test_a_wrong_direction_bin_costs_loss_and_turns_the_box_round():
    grid, head = PillarGrid(), CenterHeadConfig()
    targets = {k: torch.from_numpy(v)[None] for k, v in CenterTargets(grid, head)(BOXES).items()}
    right = perfect_outputs(grid, head, BOXES)
    wrong = {k: v.clone() for k, v in right.items()}
    wrong["regression"][:, BOX_CHANNELS:] = right["regression"][:, BOX_CHANNELS:].flip(1)
    assert center_head_losses(right, targets)["direction"] < 1e-3
    assert center_head_losses(wrong, targets)["direction"] > 5.0
    assert center_head_losses(wrong, targets)["regression"] == center_head_losses(right, targets)["regression"]
    (boxes, _), = decode_boxes(wrong, grid, head)
    order = np.argsort(boxes[:, 0])
    turned = np.angle(np.exp(1j * (boxes[order, 6] - BOXES[:, 6])))
    np.testing.assert_allclose(np.abs(turned), math.pi, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mmcv_rotated_nms_keeps_what_exact_rotated_iou_keeps(seed):
    rng = np.random.default_rng(seed)
    boxes = np.column_stack([rng.uniform(0, 8, 40), rng.uniform(0, 8, 40), np.zeros(40), rng.uniform(2, 5, 40),
                             rng.uniform(1, 2, 40), np.ones(40), rng.uniform(-np.pi, np.pi, 40)])
    scores = rng.uniform(0, 1, 40)
    kept = rotated_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3).numpy()
    np.testing.assert_array_equal(kept, rotated_nms_bev(boxes, scores, 0.3))


def test_target_cells_follow_the_head_stride():
    grid, head = PillarGrid(), CenterHeadConfig()
    targets = CenterTargets(grid, head)
    ny, nx = grid.shape
    assert targets.shape == (ny // OUTPUT_STRIDE, nx // OUTPUT_STRIDE)
    drawn = targets(np.array([[100.0, 0, 0, 4, 2, 1.5, 0]]))  # outside the range: no target
    assert drawn["mask"].sum() == 0 and drawn["heatmap"].max() == 0


def test_network_output_shape_and_loss_backward():
    grid, head = PillarGrid(), CenterHeadConfig()
    net = PointPillarsNet(DrivingModelConfig(fusion="none"), grid)
    pillarizer = Pillarizer(grid)
    batch = pillarizer.batch([box_points(BOXES), box_points(BOXES[:1], seed=1)])
    drawn = [CenterTargets(grid, head)(b) for b in (BOXES, BOXES[:1])]
    targets = {k: torch.from_numpy(np.stack([d[k] for d in drawn])) for k in drawn[0]}
    out = net(batch)
    assert out["heatmap"].shape[2:] == targets["heatmap"].shape[2:]
    loss = center_head_loss(out, targets, head.regression_weight)
    loss.backward()
    assert torch.isfinite(loss) and net.pfn.linear.weight.grad.abs().sum() > 0


def test_painted_network_takes_a_fifth_point_feature():
    grid = PillarGrid()
    net = PointPillarsNet(DrivingModelConfig(fusion="painting"), grid)
    points = box_points(BOXES)
    batch = Pillarizer(grid).batch([np.hstack([points, np.ones((len(points), 1), np.float32)])])
    assert net(batch)["heatmap"].shape[0] == 1


@pytest.mark.parametrize("transform", [RandomFlipY(1.0, np.random.default_rng(0)),
                                       RandomRotateZ(0.8, np.random.default_rng(0)),
                                       RandomScale(0.1, np.random.default_rng(0))])
def test_augmentations_move_points_and_boxes_together(transform):
    points = box_points(BOXES)
    before = points_in_boxes_lidar(points, BOXES * [1, 1, 1, 1.01, 1.01, 1.01, 1]).sum()
    moved_points, moved_boxes = transform(points, BOXES)
    after = points_in_boxes_lidar(moved_points, moved_boxes * [1, 1, 1, 1.01, 1.01, 1.01, 1]).sum()
    assert before == after == len(points)
    assert not np.allclose(moved_points[:, :3], points[:, :3])


def test_scene_augmentations_are_seeded():
    points = box_points(BOXES)
    a = scene_augmentations(SceneAugmentConfig(), seed=3)(points, BOXES)
    b = scene_augmentations(SceneAugmentConfig(), seed=3)(points, BOXES)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_grid_config_rejects_bad_geometry():
    from common.config import check_section

    with pytest.raises(ValueError, match="maxima"):
        check_section(PillarGrid(point_cloud_range=[0, 0, 0, -1, 1, 1]))
    with pytest.raises(ValueError, match=r"grid.pillar_size must be 2 numbers, each above 0, got \[0.32\]"):
        check_section(PillarGrid(pillar_size=[0.32]), "grid.")
    with pytest.raises(ValueError, match=r"fusion must be one of \['painting', 'none'\], got 'late'"):
        check_section(DrivingModelConfig(fusion="late"))


def test_pasted_cars_bring_their_points_and_never_overlap():
    donors = np.array([[12.0, -3.0, -0.9, 3.9, 1.6, 1.5, 1.0], [50.0, 10.0, -0.9, 4.0, 1.7, 1.5, 0.0],
                       [20.5, 5.5, -0.9, 3.9, 1.6, 1.5, 0.2]])  # the last one overlaps BOXES[0]
    paste = PasteSampledCars([box_points(donors, seed=2)], [donors], cars_per_scene=5, rng=np.random.default_rng(0))
    points, boxes = paste(box_points(BOXES), BOXES)
    assert len(boxes) == 4  # two donors fit; the overlapping one is refused
    iou = bev_iou(boxes[:, BEV_COLUMNS], boxes[:, BEV_COLUMNS])
    assert np.allclose(iou, np.eye(len(boxes)))
    counts = points_in_boxes_lidar(points, boxes * [1, 1, 1, 1.01, 1.01, 1.01, 1]).sum(axis=0)
    assert (counts == 200).all()


def test_scoring_chunks_fill_the_parts_asked_for_and_never_exceed_what_is_held_in_memory():
    from apps.driving.scorer import FRAMES_PER_READ, frames_per_chunk

    assert frames_per_chunk(9, None) == FRAMES_PER_READ  # the local engine: the memory bound alone
    assert frames_per_chunk(9, 2) == 5  # --partitions 2: two tasks, 5 and 4 frames
    assert frames_per_chunk(3, 8) == 1  # more parts asked than frames: one frame each
    assert frames_per_chunk(10 * FRAMES_PER_READ, 2) == FRAMES_PER_READ
