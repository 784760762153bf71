"""Read and write the KITTI 3D object layout (velodyne, image_2, calib, label_2) exactly as the benchmark ships it.

Coordinate frames (KITTI's own):
- LiDAR (velodyne): x forward, y left, z up, metres; a scan is float32 (x, y, z, reflectance) records.
- rectified camera ("rect"): x right, y down, z forward, metres. Labels live here: `location` is the
  bottom centre of the box, `dimensions` are (h, w, l), `rotation_y` is the yaw about the camera y axis
  (0 = the car's length points along +x, to the right).
- image: pixel (u, v) of the left colour camera `image_2`, reached from rect through P2.
LiDAR → rect is R0_rect · Tr_velo_to_cam · [x y z 1]ᵀ; rect → image is P2 · [x y z 1]ᵀ.
Every problem with user input raises `InputError` naming the file (and line), never a library traceback.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import InputError
from common.io import atomic_path

# Sub-folders of a KITTI split folder and the extension of each frame's file in them.
PART_SUFFIX: dict[str, str] = {"velodyne": ".bin", "calib": ".txt", "image_2": ".png", "label_2": ".txt"}
# One velodyne record: four float32 values (x, y, z, reflectance).
VELODYNE_FIELDS = 4
VELODYNE_RECORD_BYTES = VELODYNE_FIELDS * np.dtype(np.float32).itemsize
# Label lines have 15 fields; result lines add a 16th, the score.
LABEL_FIELDS = 15
RESULT_FIELDS = 16
DONTCARE = "DontCare"
# Calibration matrices and the number of values each line holds.
_CALIB_SHAPES: dict[str, tuple[int, int]] = {
    "P0": (3, 4), "P1": (3, 4), "P2": (3, 4), "P3": (3, 4),
    "R0_rect": (3, 3), "Tr_velo_to_cam": (3, 4), "Tr_imu_to_velo": (3, 4),
}
_CALIB_REQUIRED = ("P2", "R0_rect", "Tr_velo_to_cam")
# A frame id names files (`velodyne/<id>.bin`): a plain name, never a path (KITTI's are six digits).
_FRAME_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# KITTI's occlusion levels (0 visible … 3 unknown), -1 in DontCare lines and result files.
_OCCLUSION_LEVELS = (-1, 0, 1, 2, 3)


def check_frame_id(frame_id: str, source: str | Path | None = None) -> str:
    """Refuse a frame id that is not a plain file name (`../x`, `/abs`, empty): it would read outside the folder."""
    if not isinstance(frame_id, str) or not _FRAME_ID.fullmatch(frame_id) or ".." in frame_id:
        raise InputError(source, f"frame id {str(frame_id)[:60]!r} is not a plain file name "
                                 "(letters, digits, '_', '-', '.'; no folder or '..')")
    return frame_id


def _check_inside(path: Path, folder: Path) -> None:
    """Refuse a frame file that is a symlink (or under a symlinked folder) resolving outside the split folder."""
    target, inside = path.resolve(), folder.resolve()
    if inside not in target.parents:
        raise InputError(path, f"is a symlink to {target}, outside the input folder {folder} (copy the file in, "
                               "or point at the folder that holds it)")


def _homogeneous(pts: np.ndarray) -> np.ndarray:
    """(N, 3) points as (N, 4) with a trailing 1, in float64 so chained transforms stay exact."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    return np.hstack([pts, np.ones((len(pts), 1))])


def _as_4x4(matrix: np.ndarray) -> np.ndarray:
    """Pad a 3x3 or 3x4 transform to 4x4 so it can be chained and inverted."""
    out = np.eye(4)
    out[: matrix.shape[0], : matrix.shape[1]] = matrix
    return out


@dataclass
class KittiCalib:
    """One frame's calibration: projection matrices of the four cameras and the sensor-to-sensor transforms."""

    P2: np.ndarray  # (3, 4) rect camera → left colour image
    R0_rect: np.ndarray  # (3, 3) reference camera → rectified camera
    Tr_velo_to_cam: np.ndarray  # (3, 4) LiDAR → reference camera
    P0: np.ndarray | None = None
    P1: np.ndarray | None = None
    P3: np.ndarray | None = None
    Tr_imu_to_velo: np.ndarray | None = None

    @property
    def velo_to_rect_4x4(self) -> np.ndarray:
        """LiDAR → rect camera as one 4x4 matrix: R0_rect · Tr_velo_to_cam."""
        return _as_4x4(self.R0_rect) @ _as_4x4(self.Tr_velo_to_cam)

    def velo_to_rect(self, pts: np.ndarray) -> np.ndarray:
        """LiDAR (N, 3) → rect camera (N, 3), the frame the labels are written in."""
        return (_homogeneous(pts) @ self.velo_to_rect_4x4.T)[:, :3]

    def rect_to_velo(self, pts: np.ndarray) -> np.ndarray:
        """Rect camera (N, 3) → LiDAR (N, 3): the exact inverse of `velo_to_rect`."""
        return (_homogeneous(pts) @ np.linalg.inv(self.velo_to_rect_4x4).T)[:, :3]

    def rect_to_image(self, pts_rect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (u, v) (N, 2) of rect points through P2, and their depth (rect z, metres) to spot points behind."""
        hom = _homogeneous(pts_rect) @ np.asarray(self.P2, dtype=np.float64).T
        depth = hom[:, 2] - self.P2[2, 3]  # P2's third row is (0, 0, 1, t): the homogeneous w is z + t
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = hom[:, :2] / hom[:, 2:3]
        return uv, depth

    def velo_to_image(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (u, v) and depth of LiDAR points: P2 · R0_rect · Tr_velo_to_cam, for painting points with colour."""
        return self.rect_to_image(self.velo_to_rect(pts))


@dataclass
class KittiObject:
    """One label or result line: a 3D box in rect camera coordinates plus its 2D box in image_2."""

    type: str
    truncated: float
    occluded: int
    alpha: float  # observation angle, radians
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 pixels
    dimensions: tuple[float, float, float]  # h, w, l metres
    location: tuple[float, float, float]  # x, y, z of the box's bottom centre, rect camera, metres
    rotation_y: float  # yaw about the camera y axis, radians
    score: float | None = None  # detections only

    def camera_box(self) -> np.ndarray:
        """The 3D box as [x, y, z, h, w, l, ry] (rect camera, bottom centre), the array form `boxes` uses."""
        return np.array([*self.location, *self.dimensions, self.rotation_y], dtype=np.float64)


def camera_box_array(objects: list[KittiObject]) -> np.ndarray:
    """(N, 7) [x, y, z, h, w, l, ry] of a list of objects (shape (0, 7) for none), for vectorised box maths."""
    if not objects:
        return np.zeros((0, 7))
    return np.stack([obj.camera_box() for obj in objects])


# --------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------
def _require_file(path: Path, what: str) -> None:
    """Raise one clear line when a frame file is missing or is a folder."""
    if not path.exists():
        kind = "a broken symlink" if path.is_symlink() else "not found"
        raise InputError(path, f"{what} file {kind}")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "a FIFO or device"
        raise InputError(path, f"expected a {what} file, got {kind}")


def _read_text(path: Path, what: str) -> str:
    """A text file's content, with unreadable or non-text files turned into InputError."""
    _require_file(path, what)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read {what} file as text ({type(exc).__name__})") from None


def read_calib(path: str | Path) -> KittiCalib:
    """Parse a KITTI calib/NNNNNN.txt (lines `KEY: v1 v2 …`) so points can move between LiDAR, camera and image."""
    path = Path(path)
    values: dict[str, np.ndarray] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(_read_text(path, "calibration").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep:
            raise InputError(path, f"line {number}: expected 'KEY: values', got {line.strip()[:40]!r}")
        if key not in _CALIB_SHAPES:
            continue  # other keys (e.g. from raw-data calibrations) are not needed
        try:
            numbers = np.array([float(tok) for tok in rest.split()], dtype=np.float64)
        except ValueError:
            raise InputError(path, f"line {number}: {key} has a value that is not a number") from None
        shape = _CALIB_SHAPES[key]
        if numbers.size != shape[0] * shape[1]:
            raise InputError(path, f"line {number}: {key} needs {shape[0] * shape[1]} values, got {numbers.size}")
        if not np.all(np.isfinite(numbers)):
            raise InputError(path, f"line {number}: {key} has a non-finite value")
        if key in values:
            raise InputError(path, f"line {number}: {key} given twice (also line {lines[key]})")
        values[key], lines[key] = numbers.reshape(shape), number
    missing = [key for key in _CALIB_REQUIRED if key not in values]
    if missing:
        raise InputError(path, f"calibration lacks {', '.join(missing)}")
    # Points go LiDAR → rect and back (the inverse), and rect → image: these parts must be invertible.
    for key, part in (("P2", values["P2"][:, :3]), ("R0_rect", values["R0_rect"]),
                      ("Tr_velo_to_cam", values["Tr_velo_to_cam"][:, :3])):
        scale = np.abs(part).max()
        if scale == 0 or not np.isfinite(scale) or abs(np.linalg.det(part / scale)) < 1e-9:
            raise InputError(path, f"line {lines[key]}: {key} is singular (no inverse): not a camera calibration")
    return KittiCalib(**values)


def read_velodyne(path: str | Path) -> np.ndarray:
    """A LiDAR scan as (N, 4) float32 (x, y, z, reflectance), checked to be whole 16-byte records."""
    path = Path(path)
    _require_file(path, "velodyne")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "empty velodyne scan (0 bytes)")
    if size % VELODYNE_RECORD_BYTES:
        raise InputError(
            path, f"size {size} bytes is not a multiple of {VELODYNE_RECORD_BYTES} (float32 x, y, z, reflectance)"
        )
    points = np.fromfile(path, dtype=np.float32).reshape(-1, VELODYNE_FIELDS)
    if not np.all(np.isfinite(points)):
        raise InputError(path, "velodyne scan has non-finite values (not a float32 x, y, z, reflectance file?)")
    return points


def _parse_label_line(path: Path, number: int, line: str) -> KittiObject:
    """One label/result line → KittiObject; any bad field is an InputError naming file and line."""
    fields = line.split()
    if len(fields) not in (LABEL_FIELDS, RESULT_FIELDS):
        raise InputError(
            path, f"line {number}: expected {LABEL_FIELDS} fields (or {RESULT_FIELDS} with a score), got {len(fields)}"
        )
    try:
        nums = [float(tok) for tok in fields[1:]]
    except ValueError:
        raise InputError(path, f"line {number}: a field after the class name is not a number") from None
    if not all(math.isfinite(v) for v in nums):
        raise InputError(path, f"line {number}: non-finite value")
    if nums[1] not in _OCCLUSION_LEVELS:
        raise InputError(path, f"line {number}: occluded must be -1, 0, 1, 2 or 3, got {fields[2]}")
    if not -1 <= nums[0] <= 1:
        raise InputError(path, f"line {number}: truncated must be in [0, 1] (or -1), got {fields[1]}")
    if fields[0] != DONTCARE and min(nums[7:10]) < 0 and nums[7:10] != [-1.0, -1.0, -1.0]:
        raise InputError(path, f"line {number}: negative box dimensions (h w l = {' '.join(fields[8:11])})")
    return KittiObject(
        type=fields[0],
        truncated=nums[0],
        occluded=int(nums[1]),
        alpha=nums[2],
        bbox=(nums[3], nums[4], nums[5], nums[6]),
        dimensions=(nums[7], nums[8], nums[9]),
        location=(nums[10], nums[11], nums[12]),
        rotation_y=nums[13],
        score=nums[14] if len(nums) == RESULT_FIELDS - 1 else None,
    )


def read_label(path: str | Path) -> list[KittiObject]:
    """All objects of a label_2 (15 fields) or result (16 fields, with score) file; DontCare lines are kept."""
    path = Path(path)
    text = _read_text(path, "label")
    return [
        _parse_label_line(path, number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def read_image(path: str | Path) -> np.ndarray:
    """The camera image as (H, W, 3) uint8 RGB, whatever the PNG's own mode (grey, palette, RGBA)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _require_file(path, "image")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise InputError(path, f"image too large to decode ({_one_line(exc)})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(path, f"not a readable image ({type(exc).__name__})") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160]


# --------------------------------------------------------------------------------------------------
# Folder layout
# --------------------------------------------------------------------------------------------------
def kitti_split_dir(root: str | Path, subset: str = "training") -> Path:
    """The folder holding velodyne/, calib/ …: root/<subset>, or root itself when it already is one."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, "KITTI folder not found")
    if not root.is_dir():
        raise InputError(root, "expected a KITTI folder (with training/ or velodyne/), got a file")
    if (root / subset / "velodyne").is_dir():
        return root / subset
    if (root / "velodyne").is_dir():
        return root
    raise InputError(root, f"no {subset}/velodyne/ or velodyne/ folder (expected the KITTI object layout)")


def frame_file(split_dir: str | Path, part: str, frame_id: str) -> Path:
    """Path of one frame's file in one part (velodyne, calib, image_2, label_2)."""
    return Path(split_dir) / part / f"{frame_id}{PART_SUFFIX[part]}"


def _image_set(root: Path, split_dir: Path, split: str) -> tuple[Path, list[str]]:
    """Frame ids listed in ImageSets/<split>.txt, looked for beside training/ or inside the split folder."""
    candidates = [root / "ImageSets", split_dir / "ImageSets", split_dir.parent / "ImageSets"]
    for folder in dict.fromkeys(candidates):
        path = folder / f"{split}.txt"
        if path.is_file():
            ids: dict[str, int] = {}
            for number, line in enumerate(_read_text(path, "image set").splitlines(), start=1):
                for token in line.split():
                    check_frame_id(token, f"{path}: line {number}")
                    if token in ids:
                        raise InputError(path, f"line {number}: frame {token} listed twice (also line {ids[token]})")
                    ids[token] = number
            if not ids:
                raise InputError(path, "image set lists no frames")
            return path, list(ids)
    raise InputError(root, f"ImageSets/{split}.txt not found (looked in {', '.join(map(str, candidates))})")


def find_frames(
    root: str | Path,
    split: str | None = None,
    subset: str = "training",
    labels: bool | None = None,
    images: bool = True,
) -> list[str]:
    """Sorted frame ids of a KITTI folder, every one checked to have all its files, so later reads cannot miss.

    `split` ("train", "val", "test", …) restricts to ImageSets/<split>.txt, in that file's order.
    `labels`: None requires label_2 files only when a label_2/ folder exists (a testing folder has none).
    """
    root = Path(root)
    split_dir = kitti_split_dir(root, subset)
    parts = ["velodyne", "calib"]
    if images:
        parts.append("image_2")
    if labels or (labels is None and (split_dir / "label_2").is_dir()):
        parts.append("label_2")
    for part in parts:
        if not (split_dir / part).is_dir():
            raise InputError(split_dir / part, f"{part}/ folder not found")

    if split is not None:
        set_path, ids = _image_set(root, split_dir, split)
        for frame_id in ids:
            if not frame_file(split_dir, "velodyne", frame_id).is_file():
                raise InputError(
                    frame_file(split_dir, "velodyne", frame_id), f"frame {frame_id} (listed in {set_path}) not found"
                )
    else:
        ids = sorted(
            {
                entry.stem
                for part in parts
                for entry in (split_dir / part).iterdir()
                if entry.suffix == PART_SUFFIX[part] and not entry.name.startswith(".")
            }
        )
        if not ids:
            raise InputError(split_dir, "no frames found (expected velodyne/NNNNNN.bin)")
    for frame_id in ids:
        for part in parts:
            path = frame_file(split_dir, part, frame_id)
            if not path.is_file():
                kind = ("is a broken symlink" if path.is_symlink() and not path.exists()
                        else "is not a regular file" if path.exists() else "has no")
                raise InputError(path, f"frame {frame_id} {kind} {part} file" if kind == "has no"
                                 else f"frame {frame_id}'s {part} file {kind}")
    return ids


@dataclass
class KittiFrame:
    """Everything stored for one frame, read and checked."""

    frame_id: str
    points: np.ndarray  # (N, 4) float32 LiDAR x, y, z, reflectance
    calib: KittiCalib
    image: np.ndarray | None  # (H, W, 3) uint8, None when not read
    objects: list[KittiObject] | None  # None when the frame has no label file


def read_frame(split_dir: str | Path, frame_id: str, image: bool = True, labels: bool = True) -> KittiFrame:
    """Read one frame's scan, calibration, optional image and (if present and wanted) labels from a split folder.

    The frame id must be a plain name, and every file must lie inside `split_dir` (a symlink leading
    out of it is refused); the image must hold the calibration's principal point (the right size).
    """
    split_dir = Path(split_dir)
    check_frame_id(frame_id, split_dir)
    paths = {part: frame_file(split_dir, part, frame_id) for part in PART_SUFFIX}
    wanted = ["velodyne", "calib", *(["image_2"] if image else [])]
    if labels and (paths["label_2"].exists() or paths["label_2"].is_symlink()):
        wanted.append("label_2")
    for part in wanted:
        if paths[part].exists():
            _check_inside(paths[part], split_dir)
    calib = read_calib(paths["calib"])
    pixels = read_image(paths["image_2"]) if image else None
    if pixels is not None:
        _check_image_fits(paths["image_2"], pixels.shape, calib)
    return KittiFrame(
        frame_id=frame_id,
        points=read_velodyne(paths["velodyne"]),
        calib=calib,
        image=pixels,
        objects=read_label(paths["label_2"]) if "label_2" in wanted else None,
    )


def _check_image_fits(path: Path, shape: tuple[int, ...], calib: KittiCalib) -> None:
    """KITTI's principal point lies near the image centre: outside the image, the image or calib is the wrong one."""
    height, width = shape[:2]
    cx, cy = calib.P2[0, 2], calib.P2[1, 2]
    if not (0 < cx < width and 0 < cy < height):
        raise InputError(path, f"image is {width}x{height} px but the calibration's principal point "
                               f"({cx:.1f}, {cy:.1f}) lies outside it: wrong image or calibration for this frame?")


def read_label_dir(folder: str | Path, frame_ids: list[str]) -> dict[str, list[KittiObject]]:
    """Labels or results of the given frames from a folder of NNNNNN.txt, e.g. to evaluate a scoring output."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "label/result folder not found")
    return {frame_id: read_label(folder / f"{frame_id}.txt") for frame_id in frame_ids}


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------
def format_kitti_line(obj: KittiObject) -> str:
    """One KITTI line: the 15 label fields, plus the score when the object has one (result format)."""
    if obj.type.split() != [obj.type]:
        raise ValueError(f"KITTI class names cannot be empty or contain spaces or line breaks: {obj.type!r}")
    numbers = (obj.truncated, obj.occluded, obj.alpha, *obj.bbox, *obj.dimensions, *obj.location, obj.rotation_y,
               *(() if obj.score is None else (obj.score,)))
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"a KITTI line cannot hold NaN or infinity: {obj}")
    x1, y1, x2, y2 = obj.bbox
    h, w, length = obj.dimensions
    x, y, z = obj.location
    line = (
        f"{obj.type} {obj.truncated:.2f} {int(obj.occluded)} {obj.alpha:.4f} "
        f"{x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} {h:.4f} {w:.4f} {length:.4f} "
        f"{x:.4f} {y:.4f} {z:.4f} {obj.rotation_y:.4f}"
    )
    return line if obj.score is None else f"{line} {obj.score:.6f}"


def write_kitti_result(path: str | Path, objects: list[KittiObject]) -> None:
    """Write one frame's detections in KITTI result format, atomically; no detections → an empty file."""
    text = "".join(f"{format_kitti_line(obj)}\n" for obj in objects)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
