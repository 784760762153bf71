"""The patch classifiers: shapes, FLOP count, and that the small CNN can learn a bright-blob task."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.medical.model import MODEL_NAMES, MedicalModelConfig, NoduleCNN3D, build_medical_model, count_flops
from common.errors import ConfigError, InputError


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core CI box, 2 threads thrash and make steps 5-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_maps_patches_to_two_logits(name):
    model = build_medical_model(MedicalModelConfig(name=name)).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 32, 32, 32))
    assert logits.shape == (2, 2)


def test_cnn_flops_match_the_conv_arithmetic():
    model = NoduleCNN3D(channels=(16, 32, 64))
    # 2 FLOPs per multiply-add; 3x3x3 kernels; each block halves the edge: 32 -> 16 -> 8.
    convs = 2 * 27 * (1 * 16 * 32**3 + 16 * 32 * 16**3 + 32 * 64 * 8**3)
    assert count_flops(model, 32) == convs + 2 * 64 * 2  # + the linear head
    assert model.training  # count_flops restores the mode


def test_bad_model_config():
    with pytest.raises(ConfigError, match="model.name must be one of"):
        build_medical_model(MedicalModelConfig(name="vit"))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="dropout"):
        build_medical_model(MedicalModelConfig(dropout=1.5))


def blob_or_noise(n: int, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the patches hold a bright blob at the centre (label 1), the rest only noise (label 0)."""
    labels = rng.integers(0, 2, size=n)
    grid = np.indices((size,) * 3) - size // 2
    blob = np.exp(-(grid**2).sum(0) / (2 * 2.0**2))
    x = rng.normal(0.2, 0.05, size=(n, 1, size, size, size)) + 0.6 * labels[:, None, None, None, None] * blob
    return torch.tensor(x, dtype=torch.float32), torch.tensor(labels)


def test_small_cnn_learns_a_blob_task():
    rng = np.random.default_rng(0)
    x, y = blob_or_noise(32, 16, rng)
    x_new, y_new = blob_or_noise(64, 16, rng)
    model = build_medical_model(MedicalModelConfig(channels=[8, 16], dropout=0.0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    # ~60 steps: train-mode accuracy is 1.0 after ~10, but eval mode (BatchNorm running statistics)
    # predicts one class until the margins outgrow the lag of the running mean.
    for _ in range(60):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_new).argmax(1) == y_new).float().mean().item()
    assert accuracy > 0.9
