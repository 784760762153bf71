"""A corpus of broken and hostile inputs for every reader, generated from a tiny valid dataset per domain.

Each case is a `Case`: `build(tmp)` writes the valid dataset under `tmp`, breaks one thing, and returns
a zero-argument call of the reader on it. `expect` is what the user must see: fragments of the one
error line (the file's name first, then the problem). `outcome` says what a reader does with it:
- "refused": raises InputError naming the file and the problem (the CLI: exit 2 and that line);
- "skipped": the reader goes on without it and warns, naming it (`warn` holds the warning's fragments);
- "read": accepted as valid (e.g. a PaySim name that looks like a path is only a name).
"""
from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from real_kitti import REAL

from apps.driving.dataset import read_driving_frames
from apps.driving.kitti import find_frames, read_calib, read_frame, read_image, read_label, read_velodyne
from apps.fraud.reader import PAYSIM_COLUMNS, read_paysim
from apps.medical.dataset import read_luna16_folder
from apps.medical.reader import (
    find_luna16_volumes,
    read_ct_volume,
    read_luna16_annotations,
    read_luna16_candidates,
    read_luna16_excluded,
    usable_volumes,
)


@dataclass
class Case:
    name: str
    build: Callable[[Path], Callable[[], object]]
    expect: tuple[str, ...]  # fragments of the error line (refused) or of the warning (skipped)
    outcome: str = "refused"
    warn: tuple[str, ...] = field(default_factory=tuple)
    needs_non_root: bool = False  # chmod 000 does not stop root from reading


# =================================================================================================
# fraud: PaySim CSV / Parquet
# =================================================================================================
PAYSIM_HEADER = ",".join(PAYSIM_COLUMNS)
PAYSIM_ROWS = [  # the public data set's first rows, plus one later step
    "1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0",
    "1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0",
    "2,CASH_OUT,181.0,C840083671,181.0,0.0,C38997010,21182.0,0.0,1,0",
]


def paysim_text(rows: list[str] | None = None) -> str:
    return "\n".join([PAYSIM_HEADER, *(PAYSIM_ROWS if rows is None else rows)]) + "\n"


def paysim_cell(row: int, column: str, value: str) -> str:
    """The valid CSV with one cell replaced (data row `row` from 0 is on line row + 2)."""
    rows = [line.split(",") for line in PAYSIM_ROWS]
    rows[row][PAYSIM_COLUMNS.index(column)] = value
    return paysim_text([",".join(r) for r in rows])


def _paysim(content: str | bytes | None, name: str = "transactions.csv", require_labels: bool = True):
    def build(tmp: Path) -> Callable[[], object]:
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content, encoding="utf-8")
        return lambda: read_paysim(path, require_labels=require_labels)
    return build


def _paysim_special(kind: str):
    def build(tmp: Path) -> Callable[[], object]:
        path = tmp / "transactions.csv"
        if kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dangling":
            path.symlink_to(tmp / "gone.csv")
        elif kind == "unreadable":
            path.write_text(paysim_text())
            path.chmod(0)
        elif kind == "gzip-truncated":
            path = tmp / "transactions.csv.gz"
            path.write_bytes(gzip.compress(paysim_text().encode() * 40)[:60])
        elif kind.startswith("parquet"):
            path = tmp / "transactions.parquet"
            frame = pd.read_csv(pd.io.common.StringIO(paysim_text()))
            if kind == "parquet-nan":
                frame.loc[1, "amount"] = np.nan
            elif kind == "parquet-text-amount":
                frame["amount"] = frame["amount"].astype(str)
                frame.loc[2, "amount"] = "lots"
            frame.to_parquet(path)
            if kind == "parquet-truncated":
                path.write_bytes(path.read_bytes()[:200])
        return lambda: read_paysim(path)
    return build


FRAUD_CASES = [
    Case("missing file", _paysim(None), ("transactions.csv", "file not found")),
    Case("empty file", _paysim(""), ("transactions.csv", "empty file")),
    Case("header-only CSV", _paysim(PAYSIM_HEADER + "\n"), ("transactions.csv", "no transactions")),
    Case("truncated mid-row", _paysim(paysim_text()[:-30]), ("transactions.csv", "line 4", "missing value")),
    Case("truncated gzip", _paysim_special("gzip-truncated"), ("transactions.csv.gz", "cannot read CSV")),
    Case("a folder instead of the file", _paysim_special("folder"), ("transactions.csv", "not a regular file")),
    Case("a FIFO instead of the file", _paysim_special("fifo"), ("transactions.csv", "not a regular file")),
    Case("dangling symlink", _paysim_special("dangling"), ("transactions.csv", "file not found")),
    Case("unreadable (mode 000)", _paysim_special("unreadable"), ("transactions.csv", "cannot open"),
         needs_non_root=True),
    Case("binary garbage", _paysim(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe" * 20),
         ("transactions.csv", "not a readable CSV text file")),
    Case("non-UTF-8 bytes in a name", _paysim(paysim_cell(1, "nameOrig", "C\xe9").encode("latin-1")),
         ("transactions.csv", "line 3", "not UTF-8")),
    Case("text in a number", _paysim(paysim_cell(1, "amount", "ten")),
         ("transactions.csv", "line 3, column 'amount'", "non-numeric value 'ten'")),
    Case("NaN amount", _paysim(paysim_cell(1, "amount", "nan")), ("line 3, column 'amount'", "missing value")),
    Case("+inf amount", _paysim(paysim_cell(1, "amount", "inf")), ("line 3, column 'amount'", "not a finite")),
    Case("-inf balance", _paysim(paysim_cell(2, "oldbalanceOrg", "-inf")),
         ("line 4, column 'oldbalanceOrg'", "not a finite")),
    Case("amount past float64 (1e400)", _paysim(paysim_cell(0, "amount", "1e400")), ("line 2", "not a finite")),
    Case("huge amount (1e308)", _paysim(paysim_cell(1, "amount", "1e308")), ("line 3", "too large to be real")),
    Case("huge step (1e30)", _paysim(paysim_cell(1, "step", "1e30")), ("line 3, column 'step'", "below 2^53")),
    Case("label 2", _paysim(paysim_cell(1, "isFraud", "2")), ("line 3, column 'isFraud'", "must be 0 or 1")),
    Case("repeated header column", _paysim(PAYSIM_HEADER + ",amount\n" + PAYSIM_ROWS[0] + ",5\n"),
         ("transactions.csv", "column 'amount' appears twice")),
    Case("unclosed quote", _paysim(paysim_text() + '3,"PAYMENT,1,C1,1,0,M1,0,0,0,0\n'),
         ("transactions.csv", "never closed")),
    Case("missing label column", _paysim(paysim_text().replace(",isFraud,isFlaggedFraud", "")
                                         .replace(",0,0\n", "\n").replace(",1,0\n", "\n")),
         ("transactions.csv", "missing required column", "isFraud")),
    Case("truncated Parquet", _paysim_special("parquet-truncated"), ("transactions.parquet", "not a readable Parquet")),
    Case("NaN in Parquet", _paysim_special("parquet-nan"), ("transactions.parquet", "row 2, column 'amount'")),
    Case("text in a Parquet number column", _paysim_special("parquet-text-amount"),
         ("transactions.parquet", "row 3, column 'amount'", "'lots'")),
    Case("duplicate rows (training)", _paysim(paysim_text([*PAYSIM_ROWS, PAYSIM_ROWS[1]])),
         ("transactions.csv", "repeat an earlier row", "skipped", "line 5, same as line 3"), outcome="skipped"),
    Case("duplicate rows (scoring)", _paysim(paysim_text([*PAYSIM_ROWS, PAYSIM_ROWS[1]]), require_labels=False),
         ("transactions.csv", "repeat an earlier row", "scored like any other row"), outcome="skipped"),
    Case("a name that looks like a path", _paysim(paysim_cell(1, "nameOrig", "../../etc/passwd")), (),
         outcome="read"),
]


# =================================================================================================
# medical: LUNA16 folder (.mhd/.raw, candidates.csv, annotations.csv, annotations_excluded.csv)
# =================================================================================================
UIDS = ("1.3.6.1.4.1.14519.5.2.1.6279.6001.100", "1.3.6.1.4.1.14519.5.2.1.6279.6001.200")
CANDIDATES = ("seriesuid,coordX,coordY,coordZ,class\n"
              f"{UIDS[0]},2.0,3.0,4.0,1\n{UIDS[0]},5.0,5.0,5.0,0\n{UIDS[1]},1.0,1.0,1.0,0\n")
ANNOTATIONS = f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{UIDS[0]},2.0,3.0,4.0,5.0\n"


def write_luna16(root: Path) -> Path:
    """Two 8³ int16 scans in subset0/, candidates.csv and annotations.csv: the smallest valid LUNA16 folder."""
    for i, uid in enumerate(UIDS):
        image = sitk.GetImageFromArray((np.arange(512).reshape(8, 8, 8) - 1000 + i).astype(np.int16))
        image.SetSpacing((0.7, 0.7, 2.5))
        image.SetOrigin((-10.0, -10.0, -10.0))
        (root / "subset0").mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(root / "subset0" / f"{uid}.mhd"))
    (root / "candidates.csv").write_text(CANDIDATES)
    (root / "annotations.csv").write_text(ANNOTATIONS)
    return root


def mhd_of(root: Path, i: int = 0) -> Path:
    return root / "subset0" / f"{UIDS[i]}.mhd"


def raw_of(root: Path, i: int = 0) -> Path:
    return root / "subset0" / f"{UIDS[i]}.raw"


def _header(old: str, new: str):
    """Scan 0's header with one line replaced (`old` a key: its whole line becomes `new`)."""
    def build(tmp: Path) -> Callable[[], object]:
        root = write_luna16(tmp / "luna")
        path = mhd_of(root)
        lines = path.read_text().splitlines()
        if old:
            lines = [new if line.split(" = ")[0] == old else line for line in lines]
        else:
            lines.insert(0, new)
        path.write_text("\n".join(lines) + "\n")
        return lambda: read_ct_volume(path)
    return build


def _scan(kind: str):
    def build(tmp: Path) -> Callable[[], object]:
        root = write_luna16(tmp / "luna")
        mhd, raw = mhd_of(root), raw_of(root)
        if kind == "empty header":
            mhd.write_text("")
        elif kind == "binary header":
            mhd.write_bytes(b"\x89\x00\x01\x02 garbage without a key\n" * 4)
        elif kind == "truncated raw":
            raw.write_bytes(raw.read_bytes()[:100])
        elif kind == "missing raw":
            raw.unlink()
        elif kind == "raw is a folder":
            raw.unlink()
            raw.mkdir()
        elif kind == "raw is a FIFO":
            raw.unlink()
            os.mkfifo(raw)
        elif kind == "NaN voxels":
            mhd.write_text(mhd.read_text().replace("MET_SHORT", "MET_FLOAT"))
            raw.write_bytes(np.full(512, np.nan, np.float32).tobytes())
        elif kind == "corrupt compressed data":
            text = mhd.read_text().replace("CompressedData = False", "CompressedData = True")
            mhd.write_text(text)
        elif kind == "raw outside the folder":
            shutil.move(raw, tmp / "elsewhere.raw")
            text = mhd.read_text().replace(f"ElementDataFile = {raw.name}", "ElementDataFile = ../../elsewhere.raw")
            mhd.write_text(text)
        elif kind == "raw by absolute path":
            mhd.write_text(mhd.read_text().replace(f"ElementDataFile = {raw.name}", f"ElementDataFile = {raw}"))
        return lambda: read_ct_volume(mhd)
    return build


def _folder(kind: str):
    def build(tmp: Path) -> Callable[[], object]:
        root = write_luna16(tmp / "luna")
        if kind == "missing folder":
            shutil.rmtree(root)
        elif kind == "no volumes":
            for path in root.rglob("*.mhd"):
                path.unlink()
        elif kind == "same seriesuid twice":
            (root / "subset1").mkdir()
            shutil.copy(mhd_of(root), root / "subset1")
            shutil.copy(raw_of(root), root / "subset1")
        elif kind == "symlink outside":
            outside = write_luna16(tmp / "other")
            mhd_of(root, 1).unlink()
            mhd_of(root, 1).symlink_to(mhd_of(outside, 1))
        elif kind == "dangling symlink":
            (root / "subset0" / "1.2.3.gone.mhd").symlink_to(tmp / "nowhere.mhd")
        return lambda: find_luna16_volumes(root)
    return build


def _damaged_among_many(tmp: Path) -> Callable[[], object]:
    root = write_luna16(tmp / "luna")
    raw_of(root, 1).write_bytes(b"\0" * 10)
    return lambda: usable_volumes(find_luna16_volumes(root))


def _table(reader: str, content: str | bytes):
    def build(tmp: Path) -> Callable[[], object]:
        root = write_luna16(tmp / "luna")
        name = {"candidates": "candidates.csv", "scoring": "candidates.csv", "annotations": "annotations.csv",
                "excluded": "annotations_excluded.csv", "folder": "candidates.csv"}[reader]
        path = root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return {
            "candidates": lambda: read_luna16_candidates(path),
            "scoring": lambda: read_luna16_candidates(path, require_class=False),
            "annotations": lambda: read_luna16_annotations(path),
            "excluded": lambda: read_luna16_excluded(path),
            "folder": lambda: read_luna16_folder(root),
        }[reader]
    return build


CAND_HEADER = "seriesuid,coordX,coordY,coordZ,class\n"
ANN_HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"

MEDICAL_CASES = [
    Case("data folder missing", _folder("missing folder"), ("luna", "data folder not found")),
    Case("no volumes", _folder("no volumes"), ("luna", "no .mhd volumes found")),
    Case("same seriesuid twice", _folder("same seriesuid twice"), (".mhd", "duplicate seriesuid")),
    Case(".mhd symlink pointing outside", _folder("symlink outside"), (".mhd", "outside the data folder")),
    Case("dangling .mhd symlink", _folder("dangling symlink"), ("1.2.3.gone.mhd", "not a readable file", "skipped"),
         outcome="skipped"),
    Case("one damaged scan among many", _damaged_among_many,
         ("skipping scan", UIDS[1], "truncated pixel data"), outcome="skipped"),
    Case("empty header", _scan("empty header"), (".mhd", "NDims")),
    Case("binary header", _scan("binary header"), (".mhd", "not a MetaImage header")),
    Case("truncated .raw", _scan("truncated raw"), (".raw", "truncated pixel data")),
    Case("missing .raw", _scan("missing raw"), (".mhd", "not found beside the header")),
    Case(".raw is a folder", _scan("raw is a folder"), (".raw", "not a regular file")),
    Case(".raw is a FIFO", _scan("raw is a FIFO"), (".raw", "not a regular file")),
    Case("NaN voxels", _scan("NaN voxels"), (".mhd", "NaN or infinite")),
    Case("corrupt compressed data", _scan("corrupt compressed data"), (".raw", "compressed pixel data is corrupt")),
    Case("ElementDataFile with ../", _scan("raw outside the folder"), (".mhd", "must name a file beside the header")),
    Case("ElementDataFile absolute", _scan("raw by absolute path"), (".mhd", "must name a file beside the header")),
    Case("DimSize NaN", _header("DimSize", "DimSize = nan 8 8"), (".mhd", "DimSize has a non-finite")),
    Case("DimSize +inf", _header("DimSize", "DimSize = 1e400 8 8"), (".mhd", "DimSize has a non-finite")),
    Case("DimSize huge", _header("DimSize", "DimSize = 100000 100000 100000"), (".raw", "truncated pixel data")),
    Case("Offset NaN", _header("Offset", "Offset = nan 0 0"), (".mhd", "Offset has a non-finite")),
    Case("Offset huge", _header("Offset", "Offset = 1e300 0 0"), (".mhd", "Offset is beyond")),
    Case("ElementSpacing 0", _header("ElementSpacing", "ElementSpacing = 0 0.7 2.5"), (".mhd", "must be > 0")),
    Case("ElementSpacing huge", _header("ElementSpacing", "ElementSpacing = 1e308 0.7 2.5"), (".mhd", "at most 1000")),
    Case("TransformMatrix singular", _header("TransformMatrix", "TransformMatrix = 0 0 0 0 0 0 0 0 0"),
         (".mhd", "TransformMatrix is singular")),
    Case("HeaderSize not a number", _header("", "HeaderSize = x"), (".mhd", "HeaderSize is not numeric")),
    Case("ElementNumberOfChannels not a number", _header("", "ElementNumberOfChannels = two"),
         (".mhd", "ElementNumberOfChannels is not numeric")),
    Case("ElementDataFile LIST", _header("ElementDataFile", "ElementDataFile = LIST"), (".mhd", "not supported")),
    Case("candidates empty", _table("candidates", ""), ("candidates.csv", "file is empty")),
    Case("candidates header-only", _table("folder", CAND_HEADER), ("candidates.csv", "no candidates")),
    Case("candidates truncated", _table("candidates", CANDIDATES[:-12]), ("candidates.csv", "line 4", "not a number")),
    Case("candidates non-UTF-8", _table("candidates", (CAND_HEADER + "1.\xe9,1,1,1,0\n").encode("latin-1")),
         ("candidates.csv", "not a valid UTF-8 CSV")),
    Case("candidates NaN", _table("candidates", CAND_HEADER + f"{UIDS[0]},nan,1,1,0\n"),
         ("candidates.csv", "line 2: column coordX must be finite")),
    Case("candidates -inf", _table("scoring", CAND_HEADER + f"{UIDS[0]},1,-inf,1,0\n"),
         ("candidates.csv", "line 2: column coordY must be finite")),
    Case("candidates huge coordinate", _table("candidates", CAND_HEADER + f"{UIDS[0]},1,1,1e308,0\n"),
         ("candidates.csv", "line 2: column coordZ is beyond")),
    Case("candidates text coordinate", _table("candidates", CAND_HEADER + f"{UIDS[0]},left,1,1,0\n"),
         ("candidates.csv", "line 2: column coordX is not a number")),
    Case("candidates class 0.5", _table("candidates", CAND_HEADER + f"{UIDS[0]},1,1,1,0.5\n"),
         ("candidates.csv", "class must be 0 or 1")),
    Case("candidates seriesuid with ../", _table("candidates", CAND_HEADER + "../../etc/passwd,1,1,1,0\n"),
         ("candidates.csv", "line 2", "is not a series id")),
    Case("candidates absolute seriesuid", _table("scoring", CAND_HEADER + "/etc/passwd,1,1,1,0\n"),
         ("candidates.csv", "line 2", "is not a series id")),
    Case("candidates repeated column",
         _table("candidates", CAND_HEADER.strip() + ",coordX\n" + f"{UIDS[0]},1,1,1,0,9\n"),
         ("candidates.csv", "column coordX appears twice")),
    Case("annotations diameter NaN", _table("annotations", ANN_HEADER + f"{UIDS[0]},1,1,1,nan\n"),
         ("annotations.csv", "diameter_mm must be finite")),
    Case("annotations diameter 0", _table("annotations", ANN_HEADER + f"{UIDS[0]},1,1,1,0\n"),
         ("annotations.csv", "diameter_mm must be > 0")),
    Case("annotations diameter huge", _table("annotations", ANN_HEADER + f"{UIDS[0]},1,1,1,1e300\n"),
         ("annotations.csv", "diameter_mm is beyond")),
    Case("excluded diameter -2", _table("excluded", ANN_HEADER + f"{UIDS[0]},1,1,1,-2\n"),
         ("annotations_excluded.csv", "or -1")),
]


# =================================================================================================
# driving: KITTI object layout (the real frame 000008, and a copy of it as 000009)
# =================================================================================================
def write_kitti(root: Path, second: bool = False) -> Path:
    """The real KITTI frame 000008 under root/training (and a copy of it as 000009 when `second`)."""
    split = root / "training"
    shutil.copytree(REAL, split)
    if second:
        for part, suffix in (("velodyne", ".bin"), ("image_2", ".png"), ("calib", ".txt"), ("label_2", ".txt")):
            shutil.copy(split / part / f"000008{suffix}", split / part / f"000009{suffix}")
    for path in split.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the fixture is read-only
    return root


def _kitti(part: str, how: str):
    """Break one file of frame 000008 and read the frame through the reader of that file."""
    readers = {"velodyne": read_velodyne, "calib": read_calib, "label_2": read_label, "image_2": read_image}
    suffix = {"velodyne": ".bin", "calib": ".txt", "label_2": ".txt", "image_2": ".png"}[part]

    def build(tmp: Path) -> Callable[[], object]:
        split = write_kitti(tmp / "kitti") / "training"
        path = split / part / f"000008{suffix}"
        data = path.read_bytes()
        text = data.decode("utf-8", "replace")
        if how == "empty":
            path.write_bytes(b"")
        elif how == "size 17":
            path.write_bytes(data[:17])
        elif how == "nan":
            path.write_bytes(np.full(8, np.nan, np.float32).tobytes())
        elif how == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif how == "non-UTF-8":
            path.write_bytes(data + b"\xff\xfe\n")
        elif how.startswith("line:"):  # replace the line starting with KEY (calib) or append a line (label)
            _, key, new = how.split(":", 2)
            lines = text.splitlines()
            lines = [new if line.startswith(key + ":") else line for line in lines] if key else [*lines, new]
            path.write_text("\n".join(lines) + "\n")
        elif how == "drop P2":
            path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("P2:")) + "\n")
        elif how == "P2 twice":
            path.write_text(text + "P2: 1 0 0 0 0 1 0 0 0 0 1 0\n")
        elif how == "small":
            from PIL import Image
            Image.new("RGB", (20, 10)).save(path)
        elif how == "bomb":
            from PIL import Image
            Image.new("1", (20000, 9000)).save(path)
        elif how == "folder":
            path.unlink()
            path.mkdir()
        if how == "small":  # the image alone is fine: it is the frame that is inconsistent
            return lambda: read_frame(split, "000008")
        return lambda: readers[part](path)
    return build


def _layout(kind: str):
    def build(tmp: Path) -> Callable[[], object]:
        root = write_kitti(tmp / "kitti", second=kind.startswith("frames"))
        split = root / "training"
        sets = root / "ImageSets"
        if kind == "missing folder":
            shutil.rmtree(root)
        elif kind == "no velodyne":
            shutil.rmtree(split / "velodyne")
        elif kind == "calib missing":
            (split / "calib" / "000008.txt").unlink()
        elif kind.startswith("image set "):
            sets.mkdir()
            listing = {"image set twice": "000008\n000008\n", "image set dotdot": "../../../etc/passwd\n",
                       "image set absolute": "/etc/passwd\n", "image set empty": "\n"}[kind]
            (sets / "train.txt").write_text(listing)
            return lambda: find_frames(root, split="train")
        elif kind == "calib symlink outside":
            outside = write_kitti(tmp / "other")
            target = split / "calib" / "000008.txt"
            target.unlink()
            target.symlink_to(outside / "training" / "calib" / "000008.txt")
            return lambda: read_frame(split, "000008")
        elif kind == "velodyne symlink to a device":
            target = split / "velodyne" / "000008.bin"
            target.unlink()
            target.symlink_to("/dev/zero")
        elif kind == "dangling calib symlink":
            target = split / "calib" / "000008.txt"
            target.unlink()
            target.symlink_to(tmp / "nowhere.txt")
        elif kind == "frames twice":
            return lambda: read_driving_frames(split, ["000008", "000008"])
        elif kind == "frames with ../":
            return lambda: read_driving_frames(split, ["../training/000008"])
        elif kind.startswith("frames damaged"):
            (split / "velodyne" / "000009.bin").write_bytes(b"\0" * 10)
            skipping = kind == "frames damaged, skipped"
            return lambda: read_driving_frames(split, ["000008", "000009"], skip_unreadable=skipping)
        return lambda: find_frames(root)
    return build


DRIVING_CASES = [
    Case("KITTI folder missing", _layout("missing folder"), ("kitti", "KITTI folder not found")),
    Case("no velodyne/ folder", _layout("no velodyne"), ("kitti", "velodyne")),
    Case("a frame without calib", _layout("calib missing"), ("000008.txt", "has no calib file")),
    Case("velodyne symlink to /dev/zero", _layout("velodyne symlink to a device"),
         ("000008.bin", "is not a regular file")),
    Case("dangling calib symlink", _layout("dangling calib symlink"), ("000008.txt", "broken symlink")),
    Case("calib symlink pointing outside", _layout("calib symlink outside"),
         ("000008.txt", "outside the input folder")),
    Case("same frame twice in ImageSets", _layout("image set twice"), ("train.txt", "line 2", "listed twice")),
    Case("ImageSets id with ../", _layout("image set dotdot"), ("train.txt", "line 1", "not a plain file name")),
    Case("ImageSets absolute id", _layout("image set absolute"), ("train.txt", "not a plain file name")),
    Case("ImageSets empty", _layout("image set empty"), ("train.txt", "lists no frames")),
    Case("same frame requested twice", _layout("frames twice"), ("training", "requested twice")),
    Case("frame id with ../", _layout("frames with ../"), ("training", "not a plain file name")),
    Case("one damaged frame, refused", _layout("frames damaged"), ("000009.bin", "not a multiple of 16")),
    Case("one damaged frame among many, skipped", _layout("frames damaged, skipped"),
         ("skipping frame 000009", "000009.bin", "not a multiple of 16"), outcome="skipped"),
    Case("velodyne empty", _kitti("velodyne", "empty"), ("000008.bin", "empty velodyne scan")),
    Case("velodyne size not a multiple of 16", _kitti("velodyne", "size 17"), ("000008.bin", "not a multiple of 16")),
    Case("velodyne NaN", _kitti("velodyne", "nan"), ("000008.bin", "non-finite")),
    Case("velodyne is a folder", _kitti("velodyne", "folder"), ("000008.bin", "got a folder")),
    Case("image empty", _kitti("image_2", "empty"), ("000008.png", "not a readable image")),
    Case("image truncated", _kitti("image_2", "truncated"), ("000008.png", "not a readable image")),
    Case("image of the wrong size", _kitti("image_2", "small"), ("000008.png", "20x10", "principal point")),
    Case("image decompression bomb", _kitti("image_2", "bomb"), ("000008.png", "too large to decode")),
    Case("calib empty", _kitti("calib", "empty"), ("000008.txt", "lacks P2")),
    Case("calib missing P2", _kitti("calib", "drop P2"), ("000008.txt", "lacks P2")),
    Case("calib P2 twice", _kitti("calib", "P2 twice"), ("000008.txt", "P2 given twice")),
    Case("calib P2 NaN", _kitti("calib", "line:P2:P2: nan 0 0 0 0 1 0 0 0 0 1 0"), ("000008.txt", "non-finite")),
    Case("calib P2 text", _kitti("calib", "line:P2:P2: a b c d e f g h i j k l"), ("000008.txt", "not a number")),
    Case("calib P2 short", _kitti("calib", "line:P2:P2: 1 2 3"), ("000008.txt", "P2 needs 12 values")),
    Case("calib R0_rect singular", _kitti("calib", "line:R0_rect:R0_rect: 0 0 0 0 0 0 0 0 0"),
         ("000008.txt", "R0_rect is singular")),
    Case("calib non-UTF-8", _kitti("calib", "non-UTF-8"), ("000008.txt", "cannot read calibration file as text")),
    Case("label ten fields", _kitti("label_2", "line::Car 0 0 0 1 2 3 4 5 6"), ("000008.txt", "expected 15 fields")),
    Case("label NaN", _kitti("label_2", "line::Car 0 0 0 0 0 9 9 1.5 1.6 nan 0 1.7 10 0"),
         ("000008.txt", "non-finite")),
    Case("label occluded 7", _kitti("label_2", "line::Car 0 7 0 0 0 9 9 1.5 1.6 3.9 0 1.7 10 0"),
         ("000008.txt", "occluded must be")),
    Case("label negative size", _kitti("label_2", "line::Car 0 0 0 0 0 9 9 -1.5 1.6 3.9 0 1.7 10 0"),
         ("000008.txt", "negative box dimensions")),
    Case("label non-UTF-8", _kitti("label_2", "non-UTF-8"), ("000008.txt", "cannot read label file as text")),
]

ALL_CASES = {"fraud": FRAUD_CASES, "medical": MEDICAL_CASES, "driving": DRIVING_CASES}
