"""Data identity: a fingerprint that says whether two runs saw the same input, cheap on terabyte sets.

The fingerprint of a file or folder is a BLAKE2b hash over every regular file below it, in sorted
relative-path order, of: the relative path (none for a single file, so a renamed copy keeps it), the
size in bytes, and the bytes themselves — all of them for a file up to `FULL_HASH_BYTES`, else
`SAMPLE_BYTES` from the start, the middle and the end.
Modification times are not used, so a copy of a dataset (rsync, `cp`, another mount) keeps its
fingerprint; any change of length, any edit near a file's start, middle or end, and any added, removed
or renamed file changes it. Hidden files and folders (`.name`, e.g. our own `.complete` markers and
temp files) are skipped.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

FULL_HASH_BYTES = 4 << 20  # files up to 4 MiB are hashed whole
SAMPLE_BYTES = 1 << 20  # larger ones: 1 MiB at the start, the middle and the end
FINGERPRINT_CHARS = 16  # hex characters kept: 64 bits, plenty to tell datasets apart


def _files(root: Path) -> list[Path]:
    """Regular files under `root` (or `root` itself), sorted, hidden entries skipped; so are entries that are
    not readable files (a dangling symlink, a FIFO), which the readers skip with a warning or refuse."""
    if root.is_file():
        return [root]
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(p for p in (Path(folder) / n for n in names if not n.startswith(".")) if p.is_file())
    return sorted(found)


def _hash_contents(path: Path, size: int, digest: "hashlib._Hash") -> None:
    with open(path, "rb") as handle:
        if size <= FULL_HASH_BYTES:
            digest.update(handle.read())
            return
        for offset in (0, (size - SAMPLE_BYTES) // 2, size - SAMPLE_BYTES):
            handle.seek(offset)
            digest.update(handle.read(SAMPLE_BYTES))


def data_fingerprint(path: str | Path) -> str:
    """A short hex fingerprint of the file or folder `path` (see the module docstring for what it covers)."""
    root = Path(path)
    digest = hashlib.blake2b(digest_size=16)
    for file in _files(root):
        size = file.stat().st_size
        relative = "" if file == root else file.relative_to(root).as_posix()  # a renamed single file is the same data
        digest.update(f"{relative}\0{size}\0".encode())
        _hash_contents(file, size, digest)
    return digest.hexdigest()[:FINGERPRINT_CHARS]
