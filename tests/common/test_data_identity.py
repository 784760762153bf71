"""The data fingerprint: same bytes → same fingerprint wherever they lie; any real change → another one."""
import os
import shutil

from common.data_identity import SAMPLE_BYTES, data_fingerprint


def _dataset(root):
    (root / "subset0").mkdir(parents=True)
    (root / "subset0" / "a.raw").write_bytes(bytes(range(256)) * 40_000)  # > 4 MiB: sampled
    (root / "candidates.csv").write_text("seriesuid,coordX\n1,2.5\n")
    return root


def test_a_copy_has_the_same_fingerprint_even_with_other_mtimes(tmp_path):
    original = _dataset(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    os.utime(copy / "candidates.csv", (0, 0))
    (copy / ".complete").write_text("marker files are not data")
    assert data_fingerprint(original) == data_fingerprint(copy)
    assert len(data_fingerprint(original)) == 16


def test_edits_renames_and_new_files_change_it(tmp_path):
    root = _dataset(tmp_path / "a")
    before = data_fingerprint(root)
    (root / "candidates.csv").write_text("seriesuid,coordX\n1,2.6\n")
    edited = data_fingerprint(root)
    assert edited != before
    raw = root / "subset0" / "a.raw"
    data = bytearray(raw.read_bytes())
    data[len(data) // 2 - SAMPLE_BYTES // 2 + 7] ^= 1  # a byte inside the sampled middle block
    raw.write_bytes(bytes(data))
    assert data_fingerprint(root) != edited
    moved = data_fingerprint(root)
    raw.rename(root / "subset0" / "b.raw")
    assert data_fingerprint(root) != moved
    (root / "annotations.csv").write_text("x\n")
    assert len({before, edited, moved, data_fingerprint(root)}) == 4


def test_a_single_file_keeps_its_fingerprint_when_renamed(tmp_path):
    first = tmp_path / "day1.csv"
    first.write_text("step,type\n1,PAYMENT\n")
    fingerprint = data_fingerprint(first)
    first.rename(tmp_path / "copy.csv")
    assert data_fingerprint(tmp_path / "copy.csv") == fingerprint


def test_entries_that_are_not_readable_files_are_left_out(tmp_path):
    """The readers skip a dangling symlink or a FIFO with a warning; the fingerprint must not fail on them."""
    root = _dataset(tmp_path / "a")
    before = data_fingerprint(root)
    (root / "subset0" / "gone.mhd").symlink_to(tmp_path / "nowhere.mhd")
    os.mkfifo(root / "subset0" / "pipe.mhd")
    assert data_fingerprint(root) == before
