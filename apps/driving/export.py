"""ONNX export of the PointPillars network and ONNX Runtime inference, for deployment outside PyTorch.

The voxeliser (mmcv) and the box decoder stay in Python: what is exported is pillars → head maps,
the part that holds all the arithmetic. Pillar count is a dynamic axis.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from apps.driving.model import ExportablePointPillars, PointPillarsNet
from common.io import atomic_path

ONNX_OPSET = 17
INPUT_NAMES = ["pillars", "counts", "coords"]
OUTPUT_NAMES = ["heatmap", "regression"]


def export_onnx(net: PointPillarsNet, example: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write the network as ONNX (atomically), traced on one scan's pillars from `Pillarizer.batch`."""
    wrapper = ExportablePointPillars(net.cpu()).eval()  # the wrapper too: export follows its mode
    args = tuple(example[name].cpu() for name in INPUT_NAMES)
    dynamic = {"pillars": {0: "n_pillars"}, "counts": {0: "n_pillars"}, "coords": {0: "n_pillars"}}
    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(wrapper, args, str(tmp), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False)
    return Path(path)


class OnnxPointPillars:
    """The exported network under ONNX Runtime, returning the same maps as `PointPillarsNet`."""

    def __init__(self, path: str | Path, threads: int | None = None):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feeds = {name: np.ascontiguousarray(batch[name].cpu().numpy()) for name in INPUT_NAMES}
        heatmap, regression = self.session.run(OUTPUT_NAMES, feeds)
        return {"heatmap": torch.from_numpy(heatmap), "regression": torch.from_numpy(regression)}
