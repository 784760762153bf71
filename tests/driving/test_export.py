"""The PointPillars network exported to ONNX gives the eager network's maps under ONNX Runtime."""
import numpy as np
import torch

from apps.driving.export import OnnxPointPillars, export_onnx
from apps.driving.model import DrivingModelConfig, PointPillarsNet
from apps.driving.pillars import PillarGrid, Pillarizer


def scan(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = np.column_stack([rng.uniform(0, 60, n), rng.uniform(-30, 30, n), rng.uniform(-2, 0.5, n)])
    return np.column_stack([xyz, rng.uniform(0, 1, (n, 2))]).astype(np.float32)  # + reflectance, paint


def test_onnx_runtime_matches_eager_for_any_pillar_count(tmp_path):
    torch.manual_seed(0)
    grid = PillarGrid()
    net = PointPillarsNet(DrivingModelConfig(fusion="painting"), grid).eval()
    pillarizer = Pillarizer(grid)
    batches = []
    for n, seed in ((3000, 0), (8000, 1)):  # traced on the first, run on a different pillar count too
        batches.append(pillarizer.batch([scan(n, seed)]))
    session = OnnxPointPillars(export_onnx(net, batches[0], tmp_path / "net.onnx"))
    for batch in batches:
        with torch.no_grad():
            eager = net(batch)
        exported = session(batch)
        for key in ("heatmap", "regression"):
            np.testing.assert_allclose(exported[key].numpy(), eager[key].numpy(), atol=1e-4)
