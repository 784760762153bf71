"""Scoring that survives being killed: finished parts kept in `<output>.partial/` until the output is whole.

A scoring job is a list of parts (scans, chunks of frames, ranges of steps). Each finished part's result
is written atomically (temp file, fsync, rename) as `part-NNNNNN.pkl` beside a `manifest.json` that
names the model, the input's fingerprint and the settings. Re-running the same command after a kill
loads the finished parts and scores only the rest, so the output is byte-identical to an uninterrupted
job's; a different model, input or settings refuses to mix with the folder. The folder goes once the
output has been written.

Part files are read with a restricted unpickler: only NumPy arrays and the suite's own dataclasses can
come back, so a file planted in the folder cannot run code.
"""
from __future__ import annotations

import dataclasses
import importlib
import io
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

from common.errors import InputError
from common.io import atomic_path

_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
}
_SAFE_BUILTINS = {"tuple", "list", "dict", "set", "frozenset", "complex"}
_OWN_PACKAGES = ("apps.", "common.")


class _PartUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, plain containers and the suite's dataclasses; refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or (module == "builtins" and name in _SAFE_BUILTINS):
            return super().find_class(module, name)
        if module == "pathlib" and name in ("PosixPath", "PurePosixPath", "Path"):
            return super().find_class(module, name)
        if module.startswith(_OWN_PACKAGES):
            found = getattr(importlib.import_module(module), name, None)
            if isinstance(found, type) and dataclasses.is_dataclass(found):
                return found
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


class PartialResults:
    """The `<output>.partial/` folder of one scoring job: which parts are done, and their results."""

    def __init__(self, output: str | Path, manifest: dict[str, Any]):
        self.output = Path(output)
        self.folder = self.output.with_name(self.output.name + ".partial")
        self.manifest = {key: str(value) for key, value in manifest.items()}
        self._opened = False

    def open(self) -> None:
        """Create the folder, or check that the one there belongs to this very job."""
        manifest_path = self.folder / "manifest.json"
        if self.folder.exists():
            try:
                found = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                found = None
            if not isinstance(found, dict):
                raise InputError(self.folder, "holds no readable manifest.json; delete the folder to score afresh")
            differing = sorted(k for k in set(found) | set(self.manifest) if found.get(k) != self.manifest.get(k))
            if differing:
                raise InputError(self.folder, f"holds parts of another scoring job (differs in: "
                                              f"{', '.join(differing)}); delete the folder to score afresh, "
                                              "or rerun the original command")
        else:
            self.folder.mkdir(parents=True)
            with atomic_path(manifest_path) as tmp:
                tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True))
        self._opened = True

    def _path(self, index: int) -> Path:
        return self.folder / f"part-{index:06d}.pkl"

    def done(self, index: int) -> bool:
        return self._opened and self._path(index).is_file()

    def load(self, index: int) -> Any:
        path = self._path(index)
        try:
            return _PartUnpickler(io.BytesIO(path.read_bytes())).load()
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as exc:
            raise InputError(path, f"unreadable partial result ({exc}); delete {self.folder} to score afresh") from None

    def save(self, index: int, result: Any) -> None:
        with atomic_path(self._path(index)) as tmp:
            tmp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))

    def count_done(self, n_parts: int) -> int:
        return sum(self.done(i) for i in range(n_parts))

    def abandon(self) -> None:
        """The job failed: keep the folder only if it holds finished parts to resume from."""
        if self.folder.is_dir() and not any(self.folder.glob("part-*.pkl")):
            shutil.rmtree(self.folder, ignore_errors=True)

    def finish(self) -> None:
        """The output is complete: the parts are no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)
