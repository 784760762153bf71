"""`suite evaluate`: the reference protocols (KITTI devkit, LUNA16 script) on files, for any team's output."""
from __future__ import annotations

import json
import math
from pathlib import Path

from common.errors import InputError
from common.io import atomic_path


def _report(metrics: dict[str, float], json_path: Path | None) -> str:
    """Metrics one per line; the same values as JSON (atomically) when asked."""
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                       for k, v in metrics.items()}, indent=2) + "\n")
    lines = [f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}" for key, value in metrics.items()]
    if json_path is not None:
        lines.append(f"wrote {json_path}")
    return "\n".join(lines)


def evaluate_driving(labels: Path, results: Path, json_path: Path | None) -> str:
    """KITTI AP (2D, BEV, 3D; easy/moderate/hard; IoU 0.7 and 0.5) and AOS of result files against labels."""
    from apps.driving.kitti_eval import evaluate_folders

    return _report(evaluate_folders(labels, results), json_path)


def evaluate_medical(annotations: Path, submission: Path, excluded: Path | None, series: Path | None,
                     bootstrap: int, seed: int, json_path: Path | None) -> str:
    """LUNA16 sensitivities at 1/8…8 FPs per scan, CPM and its bootstrap interval, as the official script."""
    from apps.medical.froc import evaluate_files

    if bootstrap < 0:
        raise InputError(None, "--bootstrap must be 0 (no interval) or a number of resamples")
    return _report(evaluate_files(annotations, submission, excluded, series, bootstrap, seed), json_path)
