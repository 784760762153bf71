"""Model files are data, never code: a poisoned bundle or checkpoint is refused, not executed."""
import os
import pickle

import pytest
import torch

from common.errors import InputError
from common.model_bundle import SPEC_FILE, WEIGHTS_FILE, load_bundle, save_bundle


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/suite-pwned",))


def test_a_bundle_whose_weights_run_code_is_refused(tmp_path):
    folder = save_bundle(tmp_path / "bundle", {"w": torch.zeros(2)}, {"kind": "fraud-lstm-gat"})
    with open(folder / WEIGHTS_FILE, "wb") as handle:
        torch.save({"w": Exploit()}, handle, pickle_module=pickle)
    if os.path.exists("/tmp/suite-pwned"):
        os.remove("/tmp/suite-pwned")
    with pytest.raises(InputError, match="refused"):
        load_bundle(folder, "fraud-lstm-gat", "fraud")
    assert not os.path.exists("/tmp/suite-pwned")
    assert (folder / SPEC_FILE).is_file()


def test_another_domains_bundle_is_refused_by_kind(tmp_path):
    folder = save_bundle(tmp_path / "bundle", {"w": torch.zeros(2)}, {"kind": "medical-nodule-3dcnn"})
    with pytest.raises(InputError, match="holds a 'medical-nodule-3dcnn' model, not a fraud model"):
        load_bundle(folder, "fraud-lstm-gat", "fraud")
    (folder / SPEC_FILE).write_bytes(b"\xff\xfe not yaml")
    with pytest.raises(InputError, match="not a readable model spec"):
        load_bundle(folder, "fraud-lstm-gat", "fraud")


def test_a_poisoned_checkpoint_is_refused(tmp_path):
    from common.trainer import TrainConfig, Trainer

    torch.save({"model": Exploit()}, tmp_path / "last.pt")
    trainer = Trainer(torch.nn.Linear(2, 2), TrainConfig(), lambda out, batch: out.sum(), lambda m: {}, tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        trainer._load_last()
    assert not os.path.exists("/tmp/suite-pwned")
