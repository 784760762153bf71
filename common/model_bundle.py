"""A model on disk as weights + a YAML spec: no pickled classes, readable by any version of this code."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import yaml

from common.errors import InputError
from common.io import atomic_path

WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "spec.yaml"


def save_bundle(folder: str | Path, state_dict: dict[str, torch.Tensor], spec: dict[str, Any]) -> Path:
    """Write `weights.pt` and `spec.yaml` into `folder` (each atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)
    with atomic_path(folder / SPEC_FILE) as tmp:
        tmp.write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def load_bundle(folder: str | Path, kind: str, domain: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read back what `save_bundle` wrote; a missing or foreign folder, or a bundle whose spec `kind` is not
    `kind` (another domain's model), is a clear InputError."""
    folder = Path(folder)
    for name in (WEIGHTS_FILE, SPEC_FILE):
        if not (folder / name).is_file():
            raise InputError(folder, f"not a Domain Suite model bundle ({name} missing)")
    try:
        spec = yaml.safe_load((folder / SPEC_FILE).read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        spec = None
    if not isinstance(spec, dict):
        raise InputError(folder / SPEC_FILE, "not a readable model spec (a YAML mapping)")
    if spec.get("kind") != kind:
        raise InputError(folder, f"holds a {spec.get('kind')!r} model, not a {domain} model")
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses anything but tensors and plain containers
        raise InputError(folder / WEIGHTS_FILE, "refused: holds objects other than tensors (a pickle that could "
                                                "run code); not a Domain Suite weights file") from None
    return state, spec
