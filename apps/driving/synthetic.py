"""Synthetic driving scenes in the real KITTI 3D-object layout, so the fusion pipeline trains and is tested offline.

`write_synthetic_kitti(out, scale, seed)` writes `out/training/{velodyne,image_2,calib,label_2}/NNNNNN.*` and
`out/ImageSets/{train,val,test}.txt` (a 60/20/20 split of the frame ids), exactly as the benchmark ships them.

Each frame (LiDAR frame: x forward, y left, z up, sensor at the origin, ground plane z = -1.73 m):
- calibration: the real KITTI one (frame 000008), so projections match the real data;
- 2–8 cars (lower body + narrower cabin + axles, so they have a car profile) and 1–4 car-sized distractors
  (half of them decoys with a car's body and cabin that only the camera tells apart, the rest one
  full-height block: container, hedge or kiosk), placed non-overlapping in the camera's view,
  5–55 m ahead; 0–4 thin poles and sometimes a wall along one side;
- cars have a front and a back, so a detector can learn their full heading (label `rotation_y` is the
  direction the car's front points): a low bonnet over the front 30 % of the length (≈ 0.7 m high), a
  higher rear deck (≈ 0.9 m) and the cabin set back behind the middle, in the LiDAR and the image alike;
  in the image the front also shows headlights and a lighter windscreen, the back red tail lights and a
  dark rear window. Decoys share the profile (the LiDAR still cannot tell them from cars);
- LiDAR: a 64-beam HDL-64E-like sensor (elevations +2.0° … -24.8°, azimuth step 0.18°) ray-cast against the ground and
  every block, nearest hit per ray, range noise, reflectance per surface; only points that project into
  the image with positive depth are kept, like KITTI's reduced scans (~15–25k points);
- labels: `Car` per car, `Misc` per distractor (2D box, truncation, occlusion from ray visibility), `DontCare`
  for objects no LiDAR ray reaches; poles and walls are unlabelled;
- camera: sky and asphalt, then the objects' visible faces far to near (painter's algorithm): cars in saturated
  paint with dark windows, wheels and lights, distractors in dull textured colours, so fusion has a cue.
Deterministic for a seed: frame i draws from `numpy.random.default_rng([seed, 1, i])`.
"""
from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from apps.driving.boxes import bev_iou, box_corners_lidar, boxes3d_lidar_to_camera, limit_period, observation_angle
from apps.driving.kitti import DONTCARE, KittiCalib, KittiObject, format_kitti_line, frame_file
from common.errors import InputError
from common.io import atomic_dir, atomic_path

SCALES: dict[str, int] = {"small": 80, "medium": 400, "large": 2000}  # frames
SPLIT_SHARES: dict[str, float] = {"train": 0.6, "val": 0.2, "test": 0.2}
SUBSET = "training"
# Random streams: frame i uses [seed, FRAME_STREAM, i], the split [seed, SPLIT_STREAM].
FRAME_STREAM, SPLIT_STREAM = 1, 2

# The real KITTI calibration of training frame 000008, row-major, as in its calib file.
KITTI_CALIB_VALUES: dict[str, tuple[float, ...]] = {
    "P0": (7.215377e02, 0.0, 6.095593e02, 0.0, 0.0, 7.215377e02, 1.728540e02, 0.0, 0.0, 0.0, 1.0, 0.0),
    "P1": (7.215377e02, 0.0, 6.095593e02, -3.875744e02, 0.0, 7.215377e02, 1.728540e02, 0.0, 0.0, 0.0, 1.0, 0.0),
    "P2": (7.215377e02, 0.0, 6.095593e02, 4.485728e01, 0.0, 7.215377e02, 1.728540e02, 2.163791e-01,
           0.0, 0.0, 1.0, 2.745884e-03),
    "P3": (7.215377e02, 0.0, 6.095593e02, -3.395242e02, 0.0, 7.215377e02, 1.728540e02, 2.199936e00,
           0.0, 0.0, 1.0, 2.729905e-03),
    "R0_rect": (9.999239e-01, 9.837760e-03, -7.445048e-03, -9.869795e-03, 9.999421e-01, -4.278459e-03,
                7.402527e-03, 4.351614e-03, 9.999631e-01),
    "Tr_velo_to_cam": (7.533745e-03, -9.999714e-01, -6.166020e-04, -4.069766e-03, 1.480249e-02, 7.280733e-04,
                       -9.998902e-01, -7.631618e-02, 9.998621e-01, 7.523790e-03, 1.480755e-02, -2.717806e-01),
    "Tr_imu_to_velo": (9.999976e-01, 7.553071e-04, -2.035826e-03, -8.086759e-01, -7.854027e-04, 9.998898e-01,
                       -1.482298e-02, 3.195559e-01, 2.024406e-03, 1.482454e-02, 9.998881e-01, -7.997231e-01),
}
IMAGE_WIDTH, IMAGE_HEIGHT = 1242, 375

# Scene geometry (metres, radians).
GROUND_Z = -1.73  # ground plane in the LiDAR frame (the sensor is 1.73 m up)
PLACE_X = (5.0, 55.0)  # distance ahead of the sensor of placed objects
PLACE_Y_SLOPE = 0.7  # |y| ≤ slope · x keeps an object's centre inside the camera's view
PLACE_Y_MAX = 20.0
PLACE_TRIES = 60  # rejection-sampling attempts per object before it is skipped
BEV_MARGIN = 0.5  # minimum gap between placed objects seen from above
CARS_PER_FRAME = (2, 8)  # inclusive
MISC_PER_FRAME = (1, 4)
POLES_PER_FRAME = (0, 4)
ALONG_ROAD_SHARE = 0.7  # objects heading along the road (±ALONG_ROAD_JITTER); the rest face anywhere
ALONG_ROAD_JITTER = 0.1
CAR_LENGTH, CAR_WIDTH, CAR_HEIGHT = (3.9, 0.3), (1.6, 0.08), (1.5, 0.08)  # (mean, sd)
SIZE_CLIP_SD = 2.5  # normal sizes are clipped to mean ± this many sd
MISC_LENGTH, MISC_WIDTH, MISC_HEIGHT = (3.0, 4.8), (1.5, 2.1), (1.3, 2.0)  # uniform ranges
CAR_CLEARANCE = 0.2  # body bottom above the ground
CAR_BODY_TOP = 0.6  # rear deck (boot and the body under the cabin) top, share of the car height (≈ 0.9 m)
CAR_BONNET_TOP = 0.47  # bonnet top, share of the car height (≈ 0.7 m): lower than the rear deck, as on real cars
CAR_BONNET_LENGTH = 0.3  # share of l from the front: where the rear deck starts
CAR_CABIN_LENGTH, CAR_CABIN_WIDTH, CAR_CABIN_SHIFT = 0.5, 0.88, -0.12  # shares of l, w, and of l backwards
CAR_AXLE = 0.32  # axle position, share of l from the centre
AXLE_LENGTH, AXLE_TOP, AXLE_INSET = 0.6, 0.25, 0.05
WHEEL_RADIUS = 0.33
POLE_SIZE, POLE_HEIGHT = 0.2, 3.0
WALL_PROBABILITY = 0.5
WALL_INNER_Y = (12.0, 20.0)
WALL_THICKNESS = (0.3, 0.6)
WALL_HEIGHT = (1.5, 3.0)
WALL_X = (4.0, 80.0)
LANE_Y = (-1.8, 1.8)  # dashed lane markings
LANE_DASH, LANE_GAP, LANE_WIDTH, LANE_X = 3.0, 6.0, 0.15, (6.0, 80.0)

# LiDAR: HDL-64E-like, two blocks of 32 lasers (the upper block denser), +2.0° … -24.8°.
BEAM_BLOCKS_DEG = ((2.0, -8.33, 32), (-8.83, -24.8, 32))  # (first, last elevation, lasers)
AZIMUTH_STEP_DEG = 0.18
AZIMUTH_HALF_FOV_DEG = 42.0  # a little wider than the camera's; the projection filter is exact
MAX_RANGE = 80.0
RANGE_NOISE = 0.02
REFLECTANCE_NOISE = 0.03
GROUND_REFLECTANCE, LANE_REFLECTANCE = 0.2, 0.6
CAR_BODY_REFLECTANCE = (0.4, 0.75)
CAR_GLASS_REFLECTANCE, CAR_TYRE_REFLECTANCE = 0.3, 0.3
MISC_REFLECTANCE = (0.2, 0.5)
POLE_REFLECTANCE, WALL_REFLECTANCE = 0.4, 0.25

# Labels.
MIN_LABEL_DEPTH = 2.0
OCCLUSION_VISIBLE = (0.8, 0.4)  # visible share ≥ first → occluded 0, ≥ second → 1, else 2

# Camera rendering (RGB 0–255).
SKY_TOP, SKY_HORIZON = (105.0, 145.0, 200.0), (185.0, 200.0, 215.0)
ASPHALT_FAR, ASPHALT_NEAR = (105.0, 105.0, 108.0), (72.0, 72.0, 75.0)
ASPHALT_NOISE = 7.0
PIXEL_NOISE = 2.5
SKYLINE_BLOCKS = (6, 14)
SKYLINE_HEIGHT_PX, SKYLINE_WIDTH_PX = (5, 35), (30, 140)
SKYLINE_GREY, SKYLINE_TINT = (110.0, 170.0), 8.0  # buildings on the horizon: grey, slightly warm or cool
LANE_COLOUR = (215, 215, 205)
SHADOW_COLOUR = (30, 30, 32)
SHADOW_GROW = 0.15
CAR_PALETTE: tuple[tuple[int, int, int], ...] = (
    (190, 25, 30), (25, 60, 175), (225, 185, 20), (20, 100, 45), (225, 105, 20), (130, 20, 140), (232, 232, 228),
)
CAR_PALETTE_WEIGHTS = (0.18, 0.18, 0.16, 0.14, 0.14, 0.1, 0.1)
WINDOW_COLOUR, TYRE_COLOUR = (32, 36, 46), (22, 22, 24)
WINDSCREEN_COLOUR = (88, 108, 132)  # the front glass reflects the sky: lighter than the side and rear windows
HEADLIGHT_COLOUR, TAILLIGHT_COLOUR = (235, 230, 195), (200, 20, 25)
WINDOW_INSET = (0.08, 0.15)  # horizontal share, vertical share of a cabin face left around the glass
TYRE_INSET, LAMP_INSET = (0.05, 0.3), (0.1, 0.35)  # metres in from the car's side, seen from front or back
LAMP_BAND = (0.55, 0.8)  # share of the lower body's height (clearance to bonnet top)
WHEEL_VERTICES = 16
MISC_STYLES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "container": ((120, 98, 84), (105, 104, 100), (112, 100, 80)),
    "hedge": ((72, 86, 60), (80, 88, 66)),
    "kiosk": ((140, 138, 130), (125, 118, 108)),
    "decoy": ((78, 92, 62), (92, 84, 66)),  # topiary or a covered trailer: car-shaped, hedge-textured
}
DECOY = "decoy"
DECOY_SHARE = 0.5  # of distractors; the rest are the plain blocks below
BLOCK_STYLES = ("container", "hedge", "kiosk")
CONTAINER_RIB, CONTAINER_RIB_SHADE = 0.35, 0.7  # spacing and darkening of the container's vertical ribs
KIOSK_SIGN, KIOSK_SIGN_SHADE = (0.7, 0.88), 1.25  # light sign band (share of the height), unlike a car's glass
HEDGE_NOISE, WALL_NOISE = 26.0, 7.0
POLE_COLOUR, WALL_COLOUR = (128, 128, 126), (150, 147, 140)
LIGHT_DIRECTION = np.array([0.35, 0.5, 0.8]) / np.linalg.norm([0.35, 0.5, 0.8])
SHADE_AMBIENT = 0.6
TEXTURE_NONE, TEXTURE_HEDGE, TEXTURE_WALL = 0, 1, 2
MIN_DRAW_DEPTH = 0.5  # faces with a vertex closer to the camera than this are not drawn
PNG_COMPRESS_LEVEL = 1  # noisy images barely compress; level 1 is ~3x faster than the default for +10 % size

# Faces of a box from box_corners_lidar (bottom 0–3: front-left, rear-left, rear-right, front-right; top 4–7),
# with their outward normals in the box's own frame. The bottom face is never seen from the camera.
_FACES: tuple[tuple[tuple[int, int, int, int], tuple[float, float, float]], ...] = (
    ((0, 3, 7, 4), (1.0, 0.0, 0.0)),
    ((1, 2, 6, 5), (-1.0, 0.0, 0.0)),
    ((0, 1, 5, 4), (0.0, 1.0, 0.0)),
    ((2, 3, 7, 6), (0.0, -1.0, 0.0)),
    ((4, 5, 6, 7), (0.0, 0.0, 1.0)),
)


class UnknownScaleError(InputError, ValueError):
    """An unknown `scale` name: a ValueError for callers, an InputError (one line, exit 2) for the CLI."""


def kitti_calib() -> KittiCalib:
    """The real KITTI calibration the synthetic frames use, as the reader would return it."""
    shapes = {"R0_rect": (3, 3)}
    return KittiCalib(**{key: np.array(values).reshape(shapes.get(key, (3, 4)))
                         for key, values in KITTI_CALIB_VALUES.items()})


def _calib_text() -> str:
    """The calib file, in KITTI's own `KEY: v v v …` format."""
    return "".join(f"{key}: {' '.join(f'{v:.6e}' for v in values)}\n" for key, values in KITTI_CALIB_VALUES.items())


# --------------------------------------------------------------------------------------------------
# Scene
# --------------------------------------------------------------------------------------------------
@dataclass
class _Block:
    """One solid of the scene: an oriented box [x, y, z, l, w, h, yaw] in the LiDAR frame (centre)."""

    box: np.ndarray
    reflectance: float


@dataclass
class _Thing:
    """One object: its label box, the blocks the LiDAR sees and how the camera paints it."""

    kind: str  # car, misc, pole, wall
    box: np.ndarray  # full box [x, y, z, l, w, h, yaw], bottom on the ground
    blocks: list[_Block]
    colour: tuple[int, int, int]
    style: str = ""  # misc: container, hedge or kiosk


@dataclass
class _Scene:
    """Everything in one frame, and where the wall (if any) stops further placements."""

    things: list[_Thing] = field(default_factory=list)
    wall_side: int = 0  # +1 left, -1 right, 0 no wall
    wall_inner: float = math.inf


def _local_to_lidar(box: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Points given in a box's frame (x along its heading, z up from the ground) → LiDAR frame."""
    cos, sin = math.cos(box[6]), math.sin(box[6])
    local = np.asarray(local, dtype=np.float64).reshape(-1, 3)
    x = local[:, 0] * cos - local[:, 1] * sin + box[0]
    y = local[:, 0] * sin + local[:, 1] * cos + box[1]
    return np.column_stack([x, y, local[:, 2] + GROUND_Z])


def _sub_block(box: np.ndarray, centre_x: float, length: float, width: float, bottom: float, top: float,
               reflectance: float) -> _Block:
    """A block of an object, given along its heading and by height above the ground."""
    centre = _local_to_lidar(box, [centre_x, 0.0, (bottom + top) / 2])[0]
    return _Block(np.array([*centre, length, width, top - bottom, box[6]]), reflectance)


def _normal(rng: np.random.Generator, mean_sd: tuple[float, float]) -> float:
    """A clipped normal size so no object is absurd."""
    mean, sd = mean_sd
    return float(np.clip(rng.normal(mean, sd), mean - SIZE_CLIP_SD * sd, mean + SIZE_CLIP_SD * sd))


def _yaw(rng: np.random.Generator) -> float:
    """Most objects head along the road (either way), some face anywhere."""
    if rng.random() < ALONG_ROAD_SHARE:
        return float(limit_period(rng.choice([0.0, math.pi]) + rng.normal(0.0, ALONG_ROAD_JITTER)))
    return float(rng.uniform(-math.pi, math.pi))


def _place(rng: np.random.Generator, scene: _Scene, placed: list[np.ndarray], length: float, width: float,
           height: float, yaw_fn: Callable[[np.random.Generator], float]) -> np.ndarray | None:
    """A free spot for an l×w footprint in view, BEV_MARGIN from everything placed; None if none is found."""
    half_diagonal = math.hypot(length, width) / 2
    for _ in range(PLACE_TRIES):
        x = rng.uniform(*PLACE_X)
        y_max = min(PLACE_Y_SLOPE * x, PLACE_Y_MAX)
        y = rng.uniform(-y_max, y_max)
        if scene.wall_side and scene.wall_side * y + half_diagonal > scene.wall_inner - BEV_MARGIN:
            continue  # behind or in the wall
        yaw = yaw_fn(rng)
        bev = np.array([[x, y, length + BEV_MARGIN, width + BEV_MARGIN, yaw]])
        if placed and bev_iou(bev, np.stack(placed)).max() > 0:
            continue
        placed.append(bev[0])
        return np.array([x, y, GROUND_Z + height / 2, length, width, height, yaw])
    return None


CAR_PROFILE_BLOCKS = 3  # lower body, rear deck, cabin: the blocks a decoy copies


def _car_profile(box: np.ndarray, body_reflectance: float) -> list[_Block]:
    """A car's shape, front (+x of the box) unlike back: the lower body at bonnet height over the whole length,
    the rear deck on it behind the bonnet, and the cabin set back on the deck."""
    length, width, height = box[3:6]
    bonnet_top, deck_top = CAR_BONNET_TOP * height, CAR_BODY_TOP * height
    deck_length = (1 - CAR_BONNET_LENGTH) * length
    return [
        _sub_block(box, 0.0, length, width, CAR_CLEARANCE, bonnet_top, body_reflectance),
        _sub_block(box, (deck_length - length) / 2, deck_length, width, bonnet_top, deck_top, body_reflectance),
        _sub_block(box, CAR_CABIN_SHIFT * length, CAR_CABIN_LENGTH * length, CAR_CABIN_WIDTH * width, deck_top,
                   height, CAR_GLASS_REFLECTANCE),
    ]


def _car(rng: np.random.Generator, box: np.ndarray) -> _Thing:
    """A car: the front/back-asymmetric profile (`_car_profile`), two axles underneath; saturated paint."""
    length, width = box[3:5]
    blocks = _car_profile(box, float(rng.uniform(*CAR_BODY_REFLECTANCE)))
    for sign in (1.0, -1.0):
        blocks.append(_sub_block(box, sign * CAR_AXLE * length, AXLE_LENGTH, width - 2 * AXLE_INSET, 0.0, AXLE_TOP,
                                 CAR_TYRE_REFLECTANCE))
    colour = CAR_PALETTE[rng.choice(len(CAR_PALETTE), p=CAR_PALETTE_WEIGHTS)]
    return _Thing("car", box, blocks, colour)


def _misc(rng: np.random.Generator, box: np.ndarray, style: str) -> _Thing:
    """A car-sized distractor in a dull colour: one full-height block, or (decoy) a car's body and cabin."""
    palette = MISC_STYLES[style]
    colour = palette[rng.integers(len(palette))]
    reflectance = float(rng.uniform(*MISC_REFLECTANCE))
    if style == DECOY:
        blocks = _car(rng, box).blocks[:CAR_PROFILE_BLOCKS]  # no axles: only the camera tells it apart
        for block in blocks:
            block.reflectance = reflectance
        return _Thing("misc", box, blocks, colour, style)
    return _Thing("misc", box, [_Block(box.copy(), reflectance)], colour, style)


def _sample_scene(rng: np.random.Generator) -> _Scene:
    """Random objects, placed without overlap: a wall (sometimes), cars, distractors, poles."""
    scene = _Scene()
    placed: list[np.ndarray] = []
    if rng.random() < WALL_PROBABILITY:
        scene.wall_side = int(rng.choice([-1, 1]))
        scene.wall_inner = float(rng.uniform(*WALL_INNER_Y))
        thickness, height = rng.uniform(*WALL_THICKNESS), rng.uniform(*WALL_HEIGHT)
        y = scene.wall_side * (scene.wall_inner + thickness / 2)
        box = np.array([sum(WALL_X) / 2, y, GROUND_Z + height / 2, WALL_X[1] - WALL_X[0], thickness, height, 0.0])
        scene.things.append(_Thing("wall", box, [_Block(box.copy(), WALL_REFLECTANCE)], WALL_COLOUR))
    for _ in range(rng.integers(CARS_PER_FRAME[0], CARS_PER_FRAME[1] + 1)):
        size = _normal(rng, CAR_LENGTH), _normal(rng, CAR_WIDTH), _normal(rng, CAR_HEIGHT)
        box = _place(rng, scene, placed, *size, _yaw)
        if box is not None:
            scene.things.append(_car(rng, box))
    for _ in range(rng.integers(MISC_PER_FRAME[0], MISC_PER_FRAME[1] + 1)):
        style = DECOY if rng.random() < DECOY_SHARE else str(rng.choice(BLOCK_STYLES))
        if style == DECOY:
            size = _normal(rng, CAR_LENGTH), _normal(rng, CAR_WIDTH), _normal(rng, CAR_HEIGHT)
        else:
            size = rng.uniform(*MISC_LENGTH), rng.uniform(*MISC_WIDTH), rng.uniform(*MISC_HEIGHT)
        box = _place(rng, scene, placed, *size, _yaw)
        if box is not None:
            scene.things.append(_misc(rng, box, style))
    for _ in range(rng.integers(POLES_PER_FRAME[0], POLES_PER_FRAME[1] + 1)):
        box = _place(rng, scene, placed, POLE_SIZE, POLE_SIZE, POLE_HEIGHT, lambda _rng: 0.0)
        if box is not None:
            scene.things.append(_Thing("pole", box, [_Block(box.copy(), POLE_REFLECTANCE)], POLE_COLOUR))
    return scene


# --------------------------------------------------------------------------------------------------
# LiDAR
# --------------------------------------------------------------------------------------------------
def _ray_directions() -> np.ndarray:
    """(R, 3) unit directions of every beam × azimuth in the forward sector."""
    elevation = np.radians(np.concatenate([np.linspace(*block) for block in BEAM_BLOCKS_DEG]))
    half = AZIMUTH_HALF_FOV_DEG
    azimuth = np.radians(np.arange(-half, half + AZIMUTH_STEP_DEG / 2, AZIMUTH_STEP_DEG))
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    return np.column_stack([(np.cos(el) * np.cos(az)).ravel(), (np.cos(el) * np.sin(az)).ravel(),
                            np.sin(el).ravel()])


_RAYS = _ray_directions()
_UNIT_SQUARE = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
_WHEEL_ANGLES = np.linspace(0, 2 * math.pi, WHEEL_VERTICES, endpoint=False)
_TINY = 1e-12


def _ray_box_distances(rays: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(R, B) distance from the origin along each ray to each oriented box (slab method), inf on a miss."""
    if not len(boxes):
        return np.zeros((len(rays), 0))
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    half = boxes[:, 3:6] / 2
    # The ray origin (the sensor, 0) and directions in each box's own frame.
    origin = [-(boxes[:, 0] * cos + boxes[:, 1] * sin), -(-boxes[:, 0] * sin + boxes[:, 1] * cos), -boxes[:, 2]]
    direction = [rays[:, :1] * cos + rays[:, 1:2] * sin, -rays[:, :1] * sin + rays[:, 1:2] * cos, rays[:, 2:3]]
    near = np.full((len(rays), len(boxes)), -np.inf)
    far = np.full((len(rays), len(boxes)), np.inf)
    for axis in range(3):
        d = direction[axis]
        inverse = 1.0 / np.where(np.abs(d) < _TINY, _TINY, d)
        t1 = (-half[:, axis] - origin[axis]) * inverse
        t2 = (half[:, axis] - origin[axis]) * inverse
        near = np.maximum(near, np.minimum(t1, t2))
        far = np.minimum(far, np.maximum(t1, t2))
    return np.where((near <= far) & (near > 0), near, np.inf)


def _in_image(uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Points that land inside image_2 (pixel centres of the border included) in front of the camera."""
    return ((depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= IMAGE_WIDTH - 1)
            & (uv[:, 1] >= 0) & (uv[:, 1] <= IMAGE_HEIGHT - 1))


def _on_lane_marking(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ground points on a painted dash (brighter in both LiDAR and camera)."""
    on_line = np.zeros(len(x), dtype=bool)
    for line_y in LANE_Y:
        on_line |= np.abs(y - line_y) <= LANE_WIDTH / 2
    phase = x - LANE_X[0]
    return on_line & (x >= LANE_X[0]) & (x <= LANE_X[1]) & (np.mod(phase, LANE_DASH + LANE_GAP) <= LANE_DASH)


@dataclass
class _Scan:
    """One frame's kept points, which object each hit, and how visible each object was to the sensor."""

    points: np.ndarray  # (N, 4) float32
    owner_points: np.ndarray  # (N,) index of the thing each point hit, -1 ground
    visible_share: np.ndarray  # (T,) share of a thing's unoccluded in-image rays that reach it
    expected_rays: np.ndarray  # (T,) rays that would hit the thing (in the image) without occluders


def _cast_scan(rng: np.random.Generator, scene: _Scene, calib: KittiCalib) -> _Scan:
    """Ray-cast the 64-beam sensor: nearest hit per ray, noise, reflectance, then KITTI's image-view filter."""
    rays = _RAYS
    blocks = [block for thing in scene.things for block in thing.blocks]
    owner = np.array([i for i, thing in enumerate(scene.things) for _ in thing.blocks], dtype=np.int64)
    boxes = np.stack([block.box for block in blocks]) if blocks else np.zeros((0, 7))
    with np.errstate(divide="ignore"):
        ground = np.where(rays[:, 2] < 0, GROUND_Z / rays[:, 2], np.inf)
    ground[ground > MAX_RANGE] = np.inf
    to_blocks = _ray_box_distances(rays, boxes)
    to_blocks[to_blocks > MAX_RANGE] = np.inf
    distances = np.column_stack([ground, to_blocks])
    nearest = np.argmin(distances, axis=1)  # 0 ground, 1 + b block b
    distance = distances[np.arange(len(rays)), nearest]
    hit = np.isfinite(distance)

    # Occlusion: rays whose nearest hit, with the ground and this thing alone, would be the thing.
    n_things = len(scene.things)
    ray_owner = np.where(nearest > 0, owner[np.maximum(nearest - 1, 0)] if len(owner) else -1, -1)
    expected = np.zeros(n_things, dtype=np.int64)
    visible = np.zeros(n_things, dtype=np.int64)
    start = 0
    for index, thing in enumerate(scene.things):
        alone = to_blocks[:, start : start + len(thing.blocks)].min(axis=1)
        start += len(thing.blocks)
        rows = np.nonzero(alone < ground)[0]
        if not len(rows):
            continue
        uv, depth = calib.velo_to_image(rays[rows] * alone[rows, None])
        rows = rows[_in_image(uv, depth)]
        expected[index] = len(rows)
        visible[index] = int(np.count_nonzero(ray_owner[rows] == index))

    rays, nearest, distance, ray_owner = rays[hit], nearest[hit], distance[hit], ray_owner[hit]
    xyz = rays * (distance + rng.normal(0.0, RANGE_NOISE, len(distance)))[:, None]
    reflectance_table = np.array([GROUND_REFLECTANCE] + [block.reflectance for block in blocks])
    reflectance = reflectance_table[nearest]
    on_ground = nearest == 0
    reflectance[on_ground & _on_lane_marking(xyz[:, 0], xyz[:, 1])] = LANE_REFLECTANCE
    reflectance = np.clip(reflectance + rng.normal(0.0, REFLECTANCE_NOISE, len(reflectance)), 0.0, 1.0)
    points = np.column_stack([xyz, reflectance]).astype(np.float32)
    uv, depth = calib.velo_to_image(points[:, :3])  # filter on the float32 values that are written
    keep = _in_image(uv, depth)
    share = np.where(expected > 0, visible / np.maximum(expected, 1), 0.0)
    return _Scan(points[keep], ray_owner[keep], share, expected)


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------
def _occlusion_level(visible_share: float) -> int:
    """KITTI occlusion code from the share of the object's rays that reach it."""
    if visible_share >= OCCLUSION_VISIBLE[0]:
        return 0
    return 1 if visible_share >= OCCLUSION_VISIBLE[1] else 2


def _dontcare_line(bbox: tuple[float, float, float, float]) -> str:
    """A DontCare line exactly as KITTI writes them: only the 2D box is meaningful."""
    x1, y1, x2, y2 = bbox
    return f"{DONTCARE} -1 -1 -10 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} -1 -1 -1 -1000 -1000 -1000 -10"


def _box_2d(box: np.ndarray, calib: KittiCalib) -> tuple[tuple[float, float, float, float], float] | None:
    """(clipped 2D box, truncation) of a LiDAR box in image_2; None when it is behind or outside the image."""
    uv, depth = calib.velo_to_image(box_corners_lidar(box)[0])
    if np.any(depth <= 0):
        return None
    (u1, v1), (u2, v2) = uv.min(axis=0), uv.max(axis=0)
    x1, x2 = np.clip([u1, u2], 0, IMAGE_WIDTH - 1)
    y1, y2 = np.clip([v1, v2], 0, IMAGE_HEIGHT - 1)
    if x2 <= x1 or y2 <= y1:
        return None
    full = (u2 - u1) * (v2 - v1)
    truncated = float(np.clip(1.0 - (x2 - x1) * (y2 - y1) / full, 0.0, 1.0)) if full > 0 else 1.0
    return (float(x1), float(y1), float(x2), float(y2)), truncated


def _label_lines(scene: _Scene, scan: _Scan, calib: KittiCalib) -> list[str]:
    """KITTI label lines: Car / Misc objects near to far, then DontCare for the ones no ray reaches."""
    hits = np.bincount(scan.owner_points[scan.owner_points >= 0], minlength=len(scene.things))
    labelled = [i for i, thing in enumerate(scene.things) if thing.kind in ("car", "misc")]
    labelled.sort(key=lambda i: float(np.hypot(*scene.things[i].box[:2])))
    lines, dontcare = [], []
    for index in labelled:
        thing = scene.things[index]
        x, y, z, h, w, length, ry = boxes3d_lidar_to_camera(thing.box, calib)[0]
        projected = _box_2d(thing.box, calib)
        if z <= MIN_LABEL_DEPTH or projected is None:
            continue
        bbox, truncated = projected
        if hits[index] == 0:
            dontcare.append(_dontcare_line(bbox))
            continue
        obj = KittiObject(
            type="Car" if thing.kind == "car" else "Misc",
            truncated=truncated,
            occluded=_occlusion_level(float(scan.visible_share[index])),
            alpha=float(observation_angle(ry, x, z)),
            bbox=bbox,
            dimensions=(float(h), float(w), float(length)),
            location=(float(x), float(y), float(z)),
            rotation_y=float(ry),
        )
        lines.append(format_kitti_line(obj))
    return lines + dontcare


# --------------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------------
class _Painter:
    """Draws 3D polygons (LiDAR frame) into image_2, shaded by their normal, and marks textured areas."""

    def __init__(self, calib: KittiCalib, image: Image.Image):
        self.calib = calib
        self.draw = ImageDraw.Draw(image)
        self.texture = Image.new("L", image.size, TEXTURE_NONE)
        self.texture_draw = ImageDraw.Draw(self.texture)
        # The camera centre (P2 · [C, 1] = 0) in the LiDAR frame, to tell which faces it sees.
        p2 = calib.P2
        centre_rect = -np.linalg.solve(p2[:, :3], p2[:, 3])
        self.camera = calib.rect_to_velo(centre_rect[None])[0]

    def polygon(self, points: np.ndarray, colour, shade: float = 1.0, texture: int = TEXTURE_NONE) -> None:
        """Fill the projection of a 3D polygon (skipped if it reaches behind the camera)."""
        uv, depth = self.calib.velo_to_image(points)
        if np.any(depth < MIN_DRAW_DEPTH):
            return
        fill = tuple(int(np.clip(c * shade, 0, 255)) for c in colour)
        xy = [tuple(p) for p in uv.tolist()]
        self.draw.polygon(xy, fill=fill)
        self.texture_draw.polygon(xy, fill=texture)

    def visible_faces(self, box: np.ndarray) -> list[tuple[int, np.ndarray, float]]:
        """(face index, (4, 3) corners, shade) of each box face the camera sees."""
        corners = box_corners_lidar(box)[0]
        cos, sin = math.cos(box[6]), math.sin(box[6])
        faces = []
        for index, (order, (nx, ny, nz)) in enumerate(_FACES):
            quad = corners[list(order)]
            normal = np.array([nx * cos - ny * sin, nx * sin + ny * cos, nz])
            if np.dot(normal, self.camera - quad.mean(axis=0)) > 0:
                shade = SHADE_AMBIENT + (1 - SHADE_AMBIENT) * max(0.0, float(np.dot(normal, LIGHT_DIRECTION)))
                faces.append((index, quad, shade))
        return faces

    def block(self, box: np.ndarray, colour, texture: int = TEXTURE_NONE) -> list[tuple[int, np.ndarray, float]]:
        """Paint a block's visible faces; returns them so details can be drawn on top."""
        faces = self.visible_faces(box)
        for _, quad, shade in faces:
            self.polygon(quad, colour, shade, texture)
        return faces


def _face_rect(quad: np.ndarray, across: tuple[float, float], up: tuple[float, float]) -> np.ndarray:
    """A rectangle on a vertical face (bottom 2 corners, then top), given as shares across and up the face."""
    bottom_a, bottom_b, top_b = quad[0], quad[1], quad[2]
    along, rise = bottom_b - bottom_a, top_b - bottom_b
    return np.array([bottom_a + a * along + u * rise for a, u in
                     ((across[0], up[0]), (across[1], up[0]), (across[1], up[1]), (across[0], up[1]))])


def _face_patch(box: np.ndarray, x: float, across: tuple[float, float], up: tuple[float, float]) -> np.ndarray:
    """(2, 4, 3) rectangles on a car's front or back (local x), one per side: where tyres and lamps show."""
    half_width = box[4] / 2
    patches = [[(x, side * (half_width - a), z) for a, z in
                ((across[0], up[0]), (across[1], up[0]), (across[1], up[1]), (across[0], up[1]))]
               for side in (1.0, -1.0)]
    return _local_to_lidar(box, np.array(patches)).reshape(2, 4, 3)


def _paint_car(painter: _Painter, thing: _Thing) -> None:
    """Shadow, lower body with wheels, headlights in front and tail lights behind, rear deck, cabin with a
    light windscreen and dark side and rear windows: the front looks unlike the back."""
    box = thing.box
    length, width, height = box[3:6]
    grow = _UNIT_SQUARE * [length + 2 * SHADOW_GROW, width + 2 * SHADOW_GROW]
    painter.polygon(_local_to_lidar(box, np.column_stack([grow, np.zeros(4)])), SHADOW_COLOUR)
    lower, deck, cabin = (block.box for block in thing.blocks[:CAR_PROFILE_BLOCKS])
    lower_height = CAR_BONNET_TOP * height - CAR_CLEARANCE
    lamp_heights = (CAR_CLEARANCE + LAMP_BAND[0] * lower_height, CAR_CLEARANCE + LAMP_BAND[1] * lower_height)
    for index, _quad, _shade in painter.block(lower, thing.colour):
        if index in (2, 3):  # a side (+y, -y): two wheels
            side = 1.0 if index == 2 else -1.0
            for axle in (1.0, -1.0):
                disc = np.column_stack([axle * CAR_AXLE * length + WHEEL_RADIUS * np.cos(_WHEEL_ANGLES),
                                        np.full(len(_WHEEL_ANGLES), side * width / 2),
                                        WHEEL_RADIUS + WHEEL_RADIUS * np.sin(_WHEEL_ANGLES)])
                painter.polygon(_local_to_lidar(box, disc), TYRE_COLOUR)
        elif index in (0, 1):  # front or back: tyres below the bumper, head or tail lights
            x = length / 2 if index == 0 else -length / 2
            for tyre in _face_patch(box, x, TYRE_INSET, (0.0, AXLE_TOP)):
                painter.polygon(tyre, TYRE_COLOUR)
            for lamp in _face_patch(box, x, LAMP_INSET, lamp_heights):
                painter.polygon(lamp, HEADLIGHT_COLOUR if index == 0 else TAILLIGHT_COLOUR)
    painter.block(deck, thing.colour)
    for index, quad, shade in painter.block(cabin, thing.colour):
        if index < 4:  # vertical face: glass band, the windscreen (front face, index 0) lighter
            glass = _face_rect(quad, (WINDOW_INSET[0], 1 - WINDOW_INSET[0]), (WINDOW_INSET[1], 1 - WINDOW_INSET[1]))
            painter.polygon(glass, WINDSCREEN_COLOUR if index == 0 else WINDOW_COLOUR, shade)


def _paint_misc(painter: _Painter, thing: _Thing) -> None:
    """A dull block: ribbed container, noisy hedge or kiosk with a sign band; a decoy's blocks in hedge texture."""
    if thing.style == DECOY:
        for block in thing.blocks:
            painter.block(block.box, thing.colour, TEXTURE_HEDGE)
        return
    texture = TEXTURE_HEDGE if thing.style == "hedge" else TEXTURE_NONE
    faces = painter.block(thing.box, thing.colour, texture)
    rib = tuple(int(c * CONTAINER_RIB_SHADE) for c in thing.colour)
    sign = tuple(min(int(c * KIOSK_SIGN_SHADE), 255) for c in thing.colour)
    for index, quad, shade in faces:
        if index >= 4:
            continue
        if thing.style == "container":
            face_length = float(np.linalg.norm(quad[1] - quad[0]))
            ribs = max(int(face_length / CONTAINER_RIB), 1)
            for k in range(1, ribs, 2):
                painter.polygon(_face_rect(quad, (k / ribs, (k + 1) / ribs), (0.02, 0.98)), rib, shade)
        elif thing.style == "kiosk":
            painter.polygon(_face_rect(quad, (0.05, 0.95), KIOSK_SIGN), sign, shade)


def _paint_ground(painter: _Painter) -> None:
    """Dashed lane markings on the asphalt."""
    for line_y in LANE_Y:
        for start in np.arange(LANE_X[0], LANE_X[1], LANE_DASH + LANE_GAP):
            quad = np.array([[start, line_y - LANE_WIDTH / 2, GROUND_Z], [start + LANE_DASH, line_y - LANE_WIDTH / 2,
                             GROUND_Z], [start + LANE_DASH, line_y + LANE_WIDTH / 2, GROUND_Z],
                             [start, line_y + LANE_WIDTH / 2, GROUND_Z]])
            painter.polygon(quad, LANE_COLOUR)


def _background(rng: np.random.Generator, calib: KittiCalib) -> np.ndarray:
    """(H, W, 3) float32 sky gradient above the horizon, noisy asphalt below it, a grey skyline on it."""
    far = MAX_RANGE * 100
    ends = np.array([[far, far * math.tan(math.radians(a)), GROUND_Z] for a in (-45.0, 45.0)])
    uv, _ = calib.velo_to_image(ends)
    cols = np.arange(IMAGE_WIDTH)
    horizon = np.interp(cols, uv[:, 0][::-1], uv[:, 1][::-1]).astype(np.float32)  # v of the horizon per column
    rows = np.arange(IMAGE_HEIGHT, dtype=np.float32)[:, None]
    sky_t = np.clip(rows / np.maximum(horizon[None], 1.0), 0, 1)[..., None]
    sky = np.float32(SKY_TOP) + (np.float32(SKY_HORIZON) - np.float32(SKY_TOP)) * sky_t
    ground_t = np.clip((rows - horizon[None]) / np.maximum(IMAGE_HEIGHT - horizon[None], 1.0), 0, 1)[..., None]
    asphalt = np.float32(ASPHALT_FAR) + (np.float32(ASPHALT_NEAR) - np.float32(ASPHALT_FAR)) * ground_t
    asphalt += ASPHALT_NOISE * rng.standard_normal((IMAGE_HEIGHT, IMAGE_WIDTH, 1), dtype=np.float32)
    image = np.where((rows < horizon[None])[..., None], sky, asphalt)
    for _ in range(rng.integers(SKYLINE_BLOCKS[0], SKYLINE_BLOCKS[1] + 1)):
        u = int(rng.integers(0, IMAGE_WIDTH))
        width, height = int(rng.integers(*SKYLINE_WIDTH_PX)), int(rng.integers(*SKYLINE_HEIGHT_PX))
        base = int(horizon[u])
        grey, tint = rng.uniform(*SKYLINE_GREY), rng.uniform(-SKYLINE_TINT, SKYLINE_TINT)
        image[max(base - height, 0) : base, u : u + width] = (grey + tint, grey, grey - tint)
    return image


def _render(rng: np.random.Generator, scene: _Scene, calib: KittiCalib) -> Image.Image:
    """The camera image: background, lane markings, then every object far to near."""
    image = Image.fromarray(np.clip(_background(rng, calib), 0, 255).astype(np.uint8))
    painter = _Painter(calib, image)
    _paint_ground(painter)
    order = sorted(range(len(scene.things)), reverse=True,
                   key=lambda i: math.inf if scene.things[i].kind == "wall"
                   else float(np.linalg.norm(scene.things[i].box[:3] - painter.camera)))
    for index in order:
        thing = scene.things[index]
        if thing.kind == "car":
            _paint_car(painter, thing)
        elif thing.kind == "misc":
            _paint_misc(painter, thing)
        elif thing.kind == "wall":
            painter.block(thing.box, thing.colour, TEXTURE_WALL)
        else:
            painter.block(thing.box, thing.colour)
    pixels = np.asarray(image, dtype=np.float32)
    texture = np.asarray(painter.texture)
    noise = rng.standard_normal((IMAGE_HEIGHT, IMAGE_WIDTH, 1), dtype=np.float32)
    coarse = np.repeat(np.repeat(rng.standard_normal((IMAGE_HEIGHT // 2 + 1, IMAGE_WIDTH // 2 + 1, 1),
                                                     dtype=np.float32), 2, axis=0), 2, axis=1)
    coarse = coarse[:IMAGE_HEIGHT, :IMAGE_WIDTH]
    amplitude = np.where(texture == TEXTURE_HEDGE, HEDGE_NOISE, np.where(texture == TEXTURE_WALL, WALL_NOISE, 0.0))
    pixels += (amplitude[..., None] * coarse + PIXEL_NOISE * noise).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------
def _split_ids(frame_ids: list[str], seed: int) -> dict[str, list[str]]:
    """A deterministic 60/20/20 train/val/test partition (each sorted); fewer than 3 frames all go to train."""
    n = len(frame_ids)
    order = np.random.default_rng([seed, SPLIT_STREAM]).permutation(n)
    n_val = max(1, round(SPLIT_SHARES["val"] * n)) if n >= len(SPLIT_SHARES) else 0
    n_test = max(1, round(SPLIT_SHARES["test"] * n)) if n >= len(SPLIT_SHARES) else 0
    n_train = n - n_val - n_test
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {name: [frame_ids[i] for i in sorted(idx)] for name, idx in parts.items()}


def _write_frame(split_dir: Path, frame_id: str, rng: np.random.Generator, calib: KittiCalib,
                 calib_text: str) -> tuple[int, int]:
    """Make and write one frame's four files; returns (points, Car labels) for reporting."""
    scene = _sample_scene(rng)
    scan = _cast_scan(rng, scene, calib)
    lines = _label_lines(scene, scan, calib)
    image = _render(rng, scene, calib)
    with atomic_path(frame_file(split_dir, "velodyne", frame_id)) as tmp:
        scan.points.tofile(tmp)
    with atomic_path(frame_file(split_dir, "image_2", frame_id)) as tmp:
        image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    with atomic_path(frame_file(split_dir, "calib", frame_id)) as tmp:
        tmp.write_text(calib_text, encoding="utf-8")
    with atomic_path(frame_file(split_dir, "label_2", frame_id)) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return len(scan.points), sum(line.startswith("Car ") for line in lines)


def write_synthetic_kitti(out: str | Path, scale: str = "small", seed: int = 0, n_frames: int | None = None) -> Path:
    """Write a synthetic KITTI object dataset (training/ + ImageSets/) and return its root, `out`.

    `n_frames` overrides the scale's frame count (tests). training/ is built in a temporary folder and
    swapped in whole, so a half-written or stale set never shows; every file in it is written atomically too.
    """
    if scale not in SCALES:
        raise UnknownScaleError(None, f"unknown scale {scale!r} (choose from: {', '.join(SCALES)})")
    count = SCALES[scale] if n_frames is None else int(n_frames)
    if count < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError(root, "output path exists and is not a folder")
    calib, calib_text = kitti_calib(), _calib_text()
    frame_ids = [f"{index:06d}" for index in range(count)]
    # Old split lists go first: an interrupted re-write then leaves frames without lists, never lists of
    # frames that are gone (the pipeline falls back to a seeded split).
    shutil.rmtree(root / "ImageSets", ignore_errors=True)
    with atomic_dir(root / SUBSET) as split_dir:
        for index in tqdm(range(count), desc="synthetic KITTI", unit="frame", disable=None):
            rng = np.random.default_rng([seed, FRAME_STREAM, index])
            _write_frame(split_dir, frame_ids[index], rng, calib, calib_text)
    for name, ids in _split_ids(frame_ids, seed).items():
        with atomic_path(root / "ImageSets" / f"{name}.txt") as tmp:
            tmp.write_text("".join(f"{frame_id}\n" for frame_id in ids), encoding="utf-8")
    return root
