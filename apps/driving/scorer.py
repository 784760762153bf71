"""Detection on KITTI frames with a trained fusion (or LiDAR-only) detector, KITTI result files, and the
MLflow pyfunc wrapper.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from apps.driving.boxes import lidar_boxes_to_kitti_objects
from apps.driving.camera import CameraConfig, CameraDetector, paint_points, prepare_image, score_map
from apps.driving.center_head import HEAD_MAP_CHANNELS, CenterHeadConfig, decode_boxes
from apps.driving.dataset import TARGET_CLASS, DrivingFrame, read_driving_frames
from apps.driving.kitti import KittiObject, find_frames, kitti_split_dir, write_kitti_result
from apps.driving.model import DrivingModelConfig, PointPillarsNet
from apps.driving.pillars import PillarGrid, Pillarizer
from common.bundled_model import BundledModel, scorer_of
from common.errors import InputError
from common.io import atomic_dir
from common.model_bundle import load_bundle, save_bundle
from common.trainer import move_to_device

KIND = "driving-fusion-detector"
FRAMES_PER_PASS = 8  # frames through the camera and LiDAR networks at once when scoring
FRAMES_PER_READ = 64  # frames held in memory at once when scoring
RESULT_COLUMNS = ["frame_id", "type", "truncated", "occluded", "alpha", "x1", "y1", "x2", "y2", "h", "w", "l",
                  "x", "y", "z", "rotation_y", "score"]


@torch.no_grad()
def camera_evidence(camera: CameraDetector, frames: list[DrivingFrame], batch_size: int = 8,
                    desc: str = "camera") -> list[np.ndarray]:
    """Per frame, the camera's car score map at the detector's resolution."""
    maps = []
    for start in tqdm(range(0, len(frames), batch_size), desc=desc, unit="batch", disable=None):
        images = [prepare_image(f.image, camera.cfg.image_scale) for f in frames[start:start + batch_size]]
        for img, (boxes, scores) in zip(images, camera.detect(images), strict=True):
            maps.append(score_map(boxes, scores, img.shape[:2]))
    return maps


def paint_frames(camera: CameraDetector, frames: list[DrivingFrame], batch_size: int = 8) -> list[DrivingFrame]:
    """PointPainting: a copy of each frame whose points carry the camera's car score as a fifth value."""
    maps = camera_evidence(camera, frames, batch_size, desc="painting points")
    return [DrivingFrame(f.frame_id, paint_points(f.points, f.calib, m, camera.cfg.image_scale), f.calib, f.image,
                         f.objects) for f, m in zip(frames, maps, strict=True)]


@torch.no_grad()
def detect_boxes(net: PointPillarsNet, pillarizer: Pillarizer, head: CenterHeadConfig, scans: list[np.ndarray],
                 batch_size: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """LiDAR boxes and scores per scan (scans already painted when the network expects it)."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(scans), batch_size):
        batch = move_to_device(pillarizer.batch(scans[start:start + batch_size]), device)
        out.extend(decode_boxes(net(batch), pillarizer.grid, head))
    return out


def in_image(objects: list[KittiObject]) -> list[KittiObject]:
    """Drop detections whose 2D box collapsed at the image border (KITTI only labels what the camera sees)."""
    return [o for o in objects if o.bbox[2] - o.bbox[0] >= 1 and o.bbox[3] - o.bbox[1] >= 1 and o.location[2] > 0]


def detect_frames(net: PointPillarsNet, pillarizer: Pillarizer, head: CenterHeadConfig, frames: list[DrivingFrame],
                  batch_size: int = 4) -> dict[str, list[KittiObject]]:
    """KITTI result objects per frame id from the LiDAR network (frames already painted if it expects that)."""
    found = detect_boxes(net, pillarizer, head, [f.points for f in frames], batch_size)
    return {f.frame_id: in_image(lidar_boxes_to_kitti_objects(boxes, scores, f.calib, f.image_shape, TARGET_CLASS))
            for f, (boxes, scores) in zip(frames, found, strict=True)}


class DrivingScorer:
    """A trained detector with the geometry it was trained on: KITTI frames in, KITTI result objects out."""

    def __init__(self, net: PointPillarsNet, camera: CameraDetector | None, model_cfg: DrivingModelConfig,
                 grid: PillarGrid, head: CenterHeadConfig):
        if (camera is None) != (model_cfg.fusion == "none"):
            raise ValueError("a painting detector needs its camera branch, a LiDAR-only one has none")
        self.net, self.camera = net.eval(), camera.eval() if camera is not None else None
        self.model_cfg, self.grid, self.head = model_cfg, grid, head
        self.pillarizer = Pillarizer(grid)

    def save(self, folder: str | Path) -> Path:
        state = {f"lidar.{k}": v for k, v in self.net.state_dict().items()}
        if self.camera is not None:
            state.update({f"camera.{k}": v for k, v in self.camera.state_dict().items()})
        spec = {"kind": KIND, "model": asdict(self.model_cfg), "grid": asdict(self.grid), "head": asdict(self.head),
                "camera": asdict(self.camera.cfg) if self.camera is not None else None}
        return save_bundle(folder, state, spec)

    @classmethod
    def load(cls, folder: str | Path) -> DrivingScorer:
        state, spec = load_bundle(folder, KIND, "driving")
        model_cfg, grid, head = (DrivingModelConfig(**spec["model"]), PillarGrid(**spec["grid"]),
                                 CenterHeadConfig(**spec["head"]))
        head_maps = state.get("lidar.regression.weight")
        if head_maps is not None and head_maps.shape[0] != HEAD_MAP_CHANNELS:
            raise InputError(folder, f"holds a detector with {head_maps.shape[0]} head channels, this version has "
                                     f"{HEAD_MAP_CHANNELS} (headings with a direction bin): retrain it")
        net = PointPillarsNet(model_cfg, grid)
        net.load_state_dict({k[len("lidar."):]: v for k, v in state.items() if k.startswith("lidar.")})
        camera = None
        if spec["camera"] is not None:
            camera = CameraDetector(CameraConfig(**spec["camera"]))
            camera.load_state_dict({k[len("camera."):]: v for k, v in state.items() if k.startswith("camera.")})
        return cls(net, camera, model_cfg, grid, head)

    def detect(self, frames: list[DrivingFrame], batch_size: int = 4) -> dict[str, list[KittiObject]]:
        """KITTI result objects (camera coordinates, 2D boxes, scores) per frame id."""
        if self.camera is not None:
            frames = paint_frames(self.camera, frames, batch_size)
        return detect_frames(self.net, self.pillarizer, self.head, frames, batch_size)

    def score_folder(self, root: Path, output: Path, batch_size: int = FRAMES_PER_PASS,
                     engine=None) -> tuple[Path, int]:
        """Detect on every frame of a KITTI folder (training/ or testing/), one result file per frame.

        Returns the split folder scored and the number of frames. At most `FRAMES_PER_PASS` frames go
        through the networks at once and `FRAMES_PER_READ` are held in memory, whatever `batch_size` says.
        `engine` (common.scoring_engines): where the chunks of frames are scored; default: here. An engine that
        wants N parts (`--partitions N`) gets chunks of at most ceil(frames / N) frames.
        """
        from common.scoring_engines import LocalEngine

        split_dir = _scoring_split(root)
        _refuse_overlap(split_dir, Path(output))
        frame_ids = find_frames(split_dir, labels=False)
        per_pass = max(1, min(batch_size, FRAMES_PER_PASS))
        engine = engine or LocalEngine(self)
        per_chunk = frames_per_chunk(len(frame_ids), engine.wanted_parts())
        chunks = [FrameChunk(split_dir, tuple(frame_ids[start:start + per_chunk]), per_pass)
                  for start in range(0, len(frame_ids), per_chunk)]
        detected = engine.map(chunks, score_chunk, "scoring frames")
        with atomic_dir(output) as tmp:
            for chunk_detections in detected:
                for frame_id, objects in chunk_detections.items():
                    write_kitti_result(tmp / f"{frame_id}.txt", objects)
        return split_dir, len(frame_ids)

    def score_chunk(self, chunk: FrameChunk) -> dict[str, list[KittiObject]]:
        """Detections of one chunk of frames, each read from its own files."""
        frames = read_driving_frames(chunk.split_dir, list(chunk.frame_ids), "reading", labels=False)
        return self.detect(frames, chunk.frames_per_pass)


def frames_per_chunk(n_frames: int, wanted_parts: int | None) -> int:
    """Frames per part: `FRAMES_PER_READ`, or fewer when the user asks for more parts (`--partitions`), so a
    small job still spreads over that many tasks."""
    if not wanted_parts:
        return FRAMES_PER_READ
    return max(1, min(FRAMES_PER_READ, -(-n_frames // wanted_parts)))


@dataclass(frozen=True)
class FrameChunk:
    """A chunk of a scoring job: which frames of which split folder, and how many go through at once."""

    split_dir: Path
    frame_ids: tuple[str, ...]
    frames_per_pass: int


def score_chunk(model: DrivingPyfuncModel | DrivingScorer, chunk: FrameChunk) -> dict[str, list[KittiObject]]:
    """What a scoring engine runs per part (a Spark task: with the model its worker loaded)."""
    return scorer_of(model).score_chunk(chunk)


def _refuse_overlap(split_dir: Path, output: Path) -> None:
    """The output folder replaces whatever is at its path: never let that be the input or hold it."""
    source, target = split_dir.resolve(), output.resolve()
    if target == source or target in source.parents or source in target.parents:
        raise InputError(output, f"the output folder must lie outside the input {split_dir} (it is replaced whole)")


def _scoring_split(root: Path) -> Path:
    """The folder to score: root itself when it holds velodyne/, else its training/ or testing/."""
    root = Path(root)
    if (root / "velodyne").is_dir() or not root.is_dir():
        return kitti_split_dir(root)
    for subset in ("testing", "training"):
        if (root / subset / "velodyne").is_dir():
            return root / subset
    return kitti_split_dir(root)


def objects_to_frame(detections: dict[str, list[KittiObject]]) -> pd.DataFrame:
    """Detections as a table with KITTI's result fields, one row per box."""
    rows = [[frame_id, o.type, o.truncated, o.occluded, o.alpha, *o.bbox, *o.dimensions, *o.location, o.rotation_y,
             o.score] for frame_id, objects in detections.items() for o in objects]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


class DrivingPyfuncModel(BundledModel):
    """MLflow face of DrivingScorer: a table of (`split_dir`, `frame_id`) in, one row per detected car out."""

    scorer_class = DrivingScorer
    domain = "driving"

    def part_layout(self) -> str:
        return f"at most {FRAMES_PER_READ} frames, fewer to fill --partitions"

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or not {"split_dir", "frame_id"} <= set(model_input.columns):
            raise InputError(None, "expected a table with columns split_dir and frame_id")
        frames = []
        for split_dir, frame_id in zip(model_input["split_dir"], model_input["frame_id"], strict=True):
            frames.extend(read_driving_frames(split_dir, [str(frame_id)], desc="reading", labels=False))
        return objects_to_frame(self.scorer.detect(frames))

    def score_file(self, input_path: Path, output_path: Path, batch_size: int, engine=None,
                   context_path: Path | None = None) -> str:
        """KITTI result folder: one NNNNNN.txt per input frame (empty when nothing is found), written atomically."""
        started = time.perf_counter()
        split_dir, n_frames = self.scorer.score_folder(Path(input_path), Path(output_path), batch_size, engine)
        seconds = time.perf_counter() - started
        return (f"scored {n_frames} frames of {split_dir} in {seconds:.1f} s "
                f"({1000 * seconds / max(n_frames, 1):.0f} ms/frame); wrote {output_path}"
                f"{engine.describe() if engine else ''}")
