import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.metrics import binary_metrics
from common.trainer import TrainConfig, Trainer, seed_everything


class Interrupted(Exception):
    pass


def make_problem(seed=0):
    """Two Gaussian blobs: a model that learns reaches AUC near 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(400, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


class DictModel(nn.Module):
    """The trainer calls model(batch); batches here are (x, y) tuples."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, batch):
        return self.net(batch[0])


def build(tmp_path, epochs=4, interrupt_after=None, patience=5):
    seed_everything(0)
    x, y = make_problem()
    loader = DataLoader(TensorDataset(x[:300], y[:300]), batch_size=32, shuffle=True)
    model = DictModel()
    cfg = TrainConfig(epochs=epochs, lr=0.05, patience=patience, monitor="val_auc", monitor_mode="max")

    def validate(m):
        with torch.no_grad():
            probs = torch.softmax(m.net(x[300:]), 1)[:, 1].numpy()
        return {"val_loss": 0.0, "val_auc": binary_metrics(y[300:].numpy(), probs)["auc"]}

    def on_epoch_end(epoch, metrics):
        if interrupt_after is not None and epoch == interrupt_after:
            raise Interrupted

    trainer = Trainer(model, cfg, lambda out, batch: nn.functional.cross_entropy(out, batch[1]), validate,
                      tmp_path / "ckpt", on_epoch_end)
    return trainer, loader


def test_training_learns_and_keeps_the_best_weights(tmp_path):
    trainer, loader = build(tmp_path)
    result = trainer.fit(loader)
    assert len(result.history) == 4
    assert result.best_score > 0.95
    assert result.best_score == max(h["val_auc"] for h in result.history)
    assert (tmp_path / "ckpt" / "last.pt").is_file()


def test_resume_continues_where_it_stopped(tmp_path):
    straight, loader = build(tmp_path / "a")
    straight.fit(loader)

    interrupted, loader = build(tmp_path / "b", interrupt_after=1)
    with pytest.raises(Interrupted):
        interrupted.fit(loader)
    resumed, loader = build(tmp_path / "b")
    result = resumed.fit(loader, resume=True)

    assert len(result.history) == 4
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_checkpoint_write_killed_earlier_leaves_no_temporary_file_behind(tmp_path):
    """A SIGKILL inside torch.save leaves atomic_path's temporary file; the next save of the run removes it,
    so a folder kept with train.keep_checkpoints holds only whole checkpoints."""
    trainer, loader = build(tmp_path, epochs=1)
    (tmp_path / "ckpt").mkdir()
    abandoned = tmp_path / "ckpt" / ".last.pt.k1ll3d.tmp"
    abandoned.write_bytes(b"half a checkpoint")
    other = tmp_path / "ckpt" / ".best.pt.k1ll3d.tmp"  # another file's temporary is not this save's business
    other.write_bytes(b"")
    trainer.fit(loader)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [other.name, "last.pt"]


def test_early_stopping_stops_after_patience(tmp_path):
    trainer, loader = build(tmp_path, epochs=30, patience=1)
    calls = []
    original = trainer.validate
    # A metric that never improves after the first epoch: training must stop at epoch 2.
    trainer.validate = lambda m: (calls.append(1), {**original(m), "val_auc": 1.0 / len(calls)})[1]
    result = trainer.fit(loader)
    assert result.stopped_early and len(result.history) == 2 and result.best_epoch == 0
    assert np.isclose(result.best_score, 1.0)
