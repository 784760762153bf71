"""Read LUNA16 inputs (MetaImage volumes, candidate and annotation CSVs) and LIDC-style DICOM series.

Conventions used everywhere in `apps.medical`:
- `CTVolume.array` is float32 Hounsfield units with axes (z, y, x), as SimpleITK returns it;
- `spacing` and `origin` are (x, y, z) millimetres, as written in the .mhd (`ElementSpacing`, `Offset`);
- world (x, y, z) mm = origin + spacing * voxel index (x, y, z), i.e. the TransformMatrix is identity.
  A volume whose direction is diagonal with entries ±1 (axis flips) is flipped to identity on read;
  an oblique or axis-permuted one is rejected.
Every problem with user input raises `InputError` naming the file, never a library traceback.
"""
from __future__ import annotations

import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from common.errors import InputError, warn_input

LUNA16_COORDS = ("coordX", "coordY", "coordZ")
CANDIDATE_COLUMNS = ("seriesuid", *LUNA16_COORDS)
ANNOTATION_COLUMNS = ("seriesuid", *LUNA16_COORDS, "diameter_mm")

# Bytes per voxel of the MetaImage element types, to check a .raw file's size before decoding it.
_MET_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
# Tolerance when deciding that a direction matrix is diagonal with entries ±1.
_DIRECTION_TOL = 1e-3
# Magnitudes past which a geometry value cannot come from a CT scanner (mm); beyond them the
# world → voxel arithmetic loses all precision or overflows.
MAX_WORLD_MM = 1e6
MAX_SPACING_MM = 1e3
# What a seriesuid may not contain: it names files (`<seriesuid>.mhd`, cache files), so never a path.
_UID_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


@dataclass
class CTVolume:
    """One CT scan in HU with the geometry needed to map LUNA16 world coordinates to voxels."""

    seriesuid: str
    array: np.ndarray  # float32 HU, axes (z, y, x)
    spacing: tuple[float, float, float]  # mm, (x, y, z) as in the .mhd
    origin: tuple[float, float, float]  # mm, (x, y, z) world position of voxel (0, 0, 0)


def world_to_voxel(world_xyz: np.ndarray, origin, spacing) -> np.ndarray:
    """Continuous voxel index (x, y, z) of world points (…, 3) in mm: the LUNA16 mapping."""
    world = np.asarray(world_xyz, dtype=np.float64)
    return (world - np.asarray(origin, dtype=np.float64)) / np.asarray(spacing, dtype=np.float64)


def voxel_to_world(voxel_xyz: np.ndarray, origin, spacing) -> np.ndarray:
    """World mm of continuous voxel indices (x, y, z): the inverse of `world_to_voxel`."""
    voxel = np.asarray(voxel_xyz, dtype=np.float64)
    return voxel * np.asarray(spacing, dtype=np.float64) + np.asarray(origin, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------------------------------
def find_luna16_volumes(root: str | Path) -> dict[str, Path]:
    """Map each seriesuid to its .mhd anywhere under `root`, so callers never guess subset folders."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, "data folder not found")
    if not root.is_dir():
        raise InputError(root, "expected a folder of LUNA16 .mhd/.raw volumes, got a file")
    found: dict[str, Path] = {}
    inside = root.resolve()
    broken: list[str] = []
    for mhd in sorted(root.rglob("*.mhd")):
        if mhd.is_dir():
            continue  # a folder that happens to end in .mhd
        if not mhd.is_file():  # a dangling or looping symlink, a FIFO, a device
            broken.append(mhd.name)
            continue
        _check_inside(mhd, root, inside)
        uid = mhd.stem
        if uid in found:
            raise InputError(mhd, f"duplicate seriesuid {uid} (also {found[uid]})")
        found[uid] = mhd
    if broken:
        warn_input(root, f"{len(broken)} .mhd entr{'y is' if len(broken) == 1 else 'ies are'} not a readable "
                         f"file (broken symlink, FIFO or device) and skipped: {', '.join(broken[:3])}"
                         f"{' …' if len(broken) > 3 else ''}")
    if not found:
        raise InputError(root, "no .mhd volumes found (expected <seriesuid>.mhd + .raw, any subfolder)")
    return found


def _check_inside(path: Path, root: Path, inside: Path) -> None:
    """Refuse a file under `root` that is a symlink resolving outside it: the input is that folder alone."""
    if not path.is_symlink() and not any(p.is_symlink() for p in path.relative_to(root).parents if p != Path(".")):
        return
    target = path.resolve()
    if target != inside and inside not in target.parents:
        raise InputError(path, f"is a symlink to {target}, outside the data folder {root} (copy the file in, "
                               "or point at the folder that holds it)")


def usable_volumes(volumes: dict[str, Path]) -> tuple[dict[str, Path], list[InputError]]:
    """Check every scan's header and pixel-data size (cheap: no voxels read) before any work starts.

    A damaged scan among many is skipped with a warning naming it (the problems are returned, so a
    summary can count them; `common.errors.strict_inputs` refuses it instead); a folder where every scan
    is damaged is refused (the first problem is raised).
    """
    good: dict[str, Path] = {}
    problems: list[InputError] = []
    for uid, mhd in volumes.items():
        try:
            _check_mhd(Path(mhd))
        except InputError as exc:
            problems.append(exc)
            warn_input(exc.path, f"{exc.problem}; skipping scan {uid}")
            continue
        good[uid] = mhd
    if problems and not good:
        raise problems[0]
    return good, problems


def _read_mhd_header(mhd_path: Path) -> dict[str, str]:
    """Parse the `Key = Value` lines of a MetaImage header (stops at ElementDataFile, like MetaIO)."""
    header: dict[str, str] = {}
    try:
        with open(mhd_path, "rb") as fh:
            for raw_line in fh:
                line = raw_line.decode("latin-1").strip()
                if not line:
                    continue
                if "=" not in line:
                    raise InputError(mhd_path, f"not a MetaImage header (line {line[:40]!r})")
                key, value = (part.strip() for part in line.split("=", 1))
                header[key] = value
                if key == "ElementDataFile":
                    break
    except OSError as exc:
        raise InputError(mhd_path, f"cannot read ({exc.strerror})") from None
    return header


def _floats(mhd_path: Path, header: dict[str, str], key: str, count: int) -> list[float] | None:
    """Numbers of one header key, checked for count; None when absent."""
    if key not in header:
        return None
    try:
        values = [float(v) for v in header[key].split()]
    except ValueError:
        raise InputError(mhd_path, f"header {key} is not numeric: {header[key]!r}") from None
    if len(values) != count:
        raise InputError(mhd_path, f"header {key} needs {count} numbers, got {header[key]!r}")
    if not all(np.isfinite(values)):
        raise InputError(mhd_path, f"header {key} has a non-finite number: {header[key]!r}")
    return values


def _whole(mhd_path: Path, header: dict[str, str], key: str, default: int) -> int:
    """A whole-number header key (HeaderSize, ElementNumberOfChannels), default when absent."""
    values = _floats(mhd_path, header, key, 1)
    if values is None:
        return default
    if values[0] != int(values[0]) or abs(values[0]) > 2**62:
        raise InputError(mhd_path, f"header {key} must be a whole number, got {header[key]!r}")
    return int(values[0])


def _check_mhd(mhd_path: Path) -> None:
    """Validate a LUNA16 header and its .raw size before SimpleITK sees it (its errors mislead)."""
    header = _read_mhd_header(mhd_path)
    if header.get("ObjectType", "Image") != "Image":
        raise InputError(mhd_path, f"ObjectType {header['ObjectType']!r} is not an Image")
    if header.get("NDims") != "3":
        raise InputError(mhd_path, f"expected a 3-D volume (NDims = 3), got NDims = {header.get('NDims')}")
    dims = _floats(mhd_path, header, "DimSize", 3)
    if dims is None or any(d < 1 or d != int(d) for d in dims):
        raise InputError(mhd_path, f"header DimSize missing or invalid: {header.get('DimSize')!r}")
    spacing_key = "ElementSpacing" if "ElementSpacing" in header else "ElementSize"
    spacing = _floats(mhd_path, header, spacing_key, 3)
    if spacing is not None and any(s <= 0 or s > MAX_SPACING_MM for s in spacing):
        raise InputError(mhd_path, f"{spacing_key} must be > 0 and at most {MAX_SPACING_MM:g} mm, "
                                   f"got {header.get(spacing_key)!r}")
    matrix = _floats(mhd_path, header, "TransformMatrix", 9)
    if matrix is not None and abs(np.linalg.det(np.reshape(matrix, (3, 3)))) < _DIRECTION_TOL:
        raise InputError(mhd_path, f"header TransformMatrix is singular: {header['TransformMatrix']!r}")
    for key in ("Offset", "Origin", "Position"):
        origin = _floats(mhd_path, header, key, 3)
        if origin is not None and any(abs(o) > MAX_WORLD_MM for o in origin):
            raise InputError(mhd_path, f"header {key} is beyond ±{MAX_WORLD_MM:g} mm: {header[key]!r}")
    data_file = header.get("ElementDataFile")
    if data_file is None:
        raise InputError(mhd_path, "header has no ElementDataFile")
    if data_file == "LOCAL":
        return  # pixel data inline after the header: SimpleITK checks it
    if data_file.startswith("LIST") or "%" in data_file:
        raise InputError(mhd_path, f"ElementDataFile {data_file[:40]!r}: slices split over several files are not "
                                   "supported (LUNA16 keeps one .raw beside each .mhd)")
    if Path(data_file).name != data_file or data_file in (".", ".."):
        raise InputError(mhd_path, f"ElementDataFile {data_file[:60]!r} must name a file beside the header "
                                   "(no folder, no absolute path)")
    raw_path = mhd_path.parent / data_file
    if not raw_path.exists():
        raise InputError(mhd_path, f"pixel data file {data_file} not found beside the header")
    if not raw_path.is_file():
        raise InputError(raw_path, "pixel data is not a regular file (a folder, FIFO or device)")
    _check_inside(raw_path, mhd_path.parent, mhd_path.parent.resolve())
    element = header.get("ElementType", "")
    if element not in _MET_BYTES:
        raise InputError(mhd_path, f"unsupported ElementType {element!r}")
    channels = _whole(mhd_path, header, "ElementNumberOfChannels", 1)
    if channels < 1:
        raise InputError(mhd_path, f"header ElementNumberOfChannels must be at least 1, got {channels}")
    skip = max(0, _whole(mhd_path, header, "HeaderSize", 0))  # -1: the data are the file's last bytes
    needed = int(np.prod(dims)) * _MET_BYTES[element] * channels
    if header.get("CompressedData", "False").lower() == "true":
        _check_compressed(raw_path, skip, needed)
        return
    actual = raw_path.stat().st_size
    if actual < needed + skip:
        raise InputError(raw_path, f"truncated pixel data: {actual} bytes, header needs {needed + skip}")


def _check_compressed(raw_path: Path, skip: int, needed: int) -> None:
    """Inflate zlib-compressed pixel data without keeping it: ITK prints "Uncompress failed" for a damaged
    stream and hands back a volume of zeros, so a corrupt or short stream must be caught here."""
    inflater, produced = zlib.decompressobj(), 0
    try:
        with raw_path.open("rb") as handle:
            handle.seek(skip)
            while produced < needed:
                block = handle.read(1 << 20)
                if not block:
                    break
                produced += len(inflater.decompress(block, needed - produced + 1))
                while inflater.unconsumed_tail and produced < needed:
                    produced += len(inflater.decompress(inflater.unconsumed_tail, needed - produced + 1))
    except zlib.error as exc:
        raise InputError(raw_path, f"compressed pixel data is corrupt ({exc})") from None
    except OSError as exc:
        raise InputError(raw_path, f"cannot read ({exc.strerror or exc})") from None
    if produced < needed:
        raise InputError(raw_path, f"truncated compressed pixel data: {produced} bytes inflated, header needs {needed}")


def _to_identity_direction(
    path: Path, array: np.ndarray, spacing: tuple[float, ...], origin: tuple[float, ...], direction
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Flip axes whose direction is -1 so that world = origin + spacing * index holds; reject oblique."""
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    diag = np.diag(matrix)
    if np.abs(matrix - np.diag(diag)).max() > _DIRECTION_TOL or np.abs(np.abs(diag) - 1).max() > _DIRECTION_TOL:
        raise InputError(path, "oblique or permuted orientation (TransformMatrix must be identity)")
    new_origin = list(origin)
    for xyz_axis in range(3):
        if diag[xyz_axis] < 0:
            zyx_axis = 2 - xyz_axis
            n = array.shape[zyx_axis]
            array = np.flip(array, axis=zyx_axis)
            new_origin[xyz_axis] = origin[xyz_axis] - spacing[xyz_axis] * (n - 1)
    if (diag < 0).any():
        warnings.warn(f"{path}: axes flipped to an identity TransformMatrix", stacklevel=3)
    return np.ascontiguousarray(array), (new_origin[0], new_origin[1], new_origin[2])


def _from_sitk(path: Path, image: sitk.Image, seriesuid: str) -> CTVolume:
    """Wrap a SimpleITK image as a CTVolume in float32 HU with identity orientation."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected a 3-D single-channel volume, got {image.GetDimension()}-D")
    spacing = tuple(float(s) for s in image.GetSpacing())
    if any(s <= 0 for s in spacing):
        raise InputError(path, f"voxel spacing must be > 0 mm, got {spacing}")
    origin = tuple(float(o) for o in image.GetOrigin())
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(path, f"{bad} voxel value(s) are NaN or infinite (expected Hounsfield units)")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():  # float64 HU beyond float32's range
        raise InputError(path, "voxel values beyond float32's range (expected Hounsfield units)")
    array, origin = _to_identity_direction(path, array, spacing, origin, image.GetDirection())
    return CTVolume(seriesuid=seriesuid, array=array, spacing=spacing, origin=origin)  # type: ignore[arg-type]


def read_ct_volume(mhd_path: str | Path) -> CTVolume:
    """Read one LUNA16 .mhd/.raw scan (seriesuid = file stem), checking the header and data size first."""
    mhd_path = Path(mhd_path)
    if not mhd_path.is_file():
        raise InputError(mhd_path, "volume file not found")
    _check_mhd(mhd_path)
    try:
        image = sitk.ReadImage(str(mhd_path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputError(mhd_path, f"cannot read MetaImage ({reason})") from None
    return _from_sitk(mhd_path, image, mhd_path.stem)


# --------------------------------------------------------------------------------------------------
# DICOM (LIDC-IDRI)
# --------------------------------------------------------------------------------------------------
def _dicom_headers(files: list[Path]) -> dict[str, list[tuple[float, Path]]]:
    """Group readable CT image files by SeriesInstanceUID with their position along the slice normal."""
    series: dict[str, list[tuple[float, Path]]] = {}
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, AttributeError, EOFError):
            continue
        if "PixelSpacing" not in ds or "SeriesInstanceUID" not in ds:
            continue  # not an image slice (e.g. a structured report)
        position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
        offset = float(ds.get("InstanceNumber") or 0)
        if position is not None and orientation is not None and len(orientation) == 6:
            normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
            offset = float(np.dot(normal, np.asarray(position, float)))
        series.setdefault(str(ds.SeriesInstanceUID), []).append((offset, path))
    return series


def read_dicom_series(folder_or_file: str | Path) -> CTVolume:
    """Read an LIDC-IDRI style DICOM CT series (a folder, or one slice file) into HU via SimpleITK.

    pydicom scans the headers (skipping XML and other non-image files) and orders the slices by
    position; SimpleITK decodes the pixels and applies RescaleSlope/RescaleIntercept. A folder with
    several series yields the one with the most slices. seriesuid = SeriesInstanceUID, as in LUNA16.
    """
    path = Path(folder_or_file)
    if not path.exists():
        raise InputError(path, "DICOM file or folder not found")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    series = _dicom_headers(files)
    if not series:
        raise InputError(path, "no readable DICOM image slices found")
    uid, slices = max(series.items(), key=lambda item: len(item[1]))
    ordered = [str(p) for _, p in sorted(slices, key=lambda s: s[0])]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(ordered)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputError(path, f"cannot decode DICOM series {uid} ({reason})") from None
    return _from_sitk(path, image, uid)


# --------------------------------------------------------------------------------------------------
# CSV tables
# --------------------------------------------------------------------------------------------------
def _exact_floats(path: Path, table: pd.DataFrame, column: str) -> np.ndarray:
    """A text column as float64 parsed by Python's float(), as the LUNA16 script parses it (a mark on a
    nodule's boundary must fall on the same side), refusing text and non-finite values by line."""
    text = table[column].str.strip().to_numpy(dtype=object)
    try:
        values = np.asarray(text, dtype=np.float64)
    except (TypeError, ValueError):
        parsed = (_float_or_none(v) for v in text)
        values = np.array([np.nan if v is None else v for v in parsed], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row = int(bad[0])
        raw = table[column].iloc[row]
        what = "is not a number" if _float_or_none(raw) is None else "must be finite"
        raise InputError(path, f"line {row + 2}: column {column} {what}: {raw!r}")
    return values


def _float_or_none(text: object) -> float | None:
    """float(text), or None when it does not parse."""
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def read_luna16_table(path: str | Path, required: tuple[str, ...], numeric: tuple[str, ...]) -> pd.DataFrame:
    """Read a LUNA16 CSV as text, then check columns and numbers so errors can name the line.

    Numbers must be finite; `seriesuid` is stripped and must not be empty; other columns are kept as text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(path, "file is empty (expected a header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"not a valid UTF-8 CSV ({detail})") from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    _check_unique_header(path, table)
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(path, f"missing column {missing[0]} (need {', '.join(required)})")
    table["seriesuid"] = table["seriesuid"].str.strip()
    empty_uid = np.flatnonzero(table["seriesuid"].to_numpy() == "")
    if len(empty_uid):
        raise InputError(path, f"line {empty_uid[0] + 2}: empty seriesuid")
    bad_uid = np.flatnonzero(table["seriesuid"].str.contains(_UID_FORBIDDEN).to_numpy(dtype=bool)
                             | table["seriesuid"].isin([".", ".."]).to_numpy())
    if len(bad_uid):
        shown = table["seriesuid"].iloc[bad_uid[0]]
        raise InputError(path, f"line {bad_uid[0] + 2}: seriesuid {shown[:60]!r} is not a series id "
                               "(it may not hold '/', '\\', control characters, or be '.' or '..')")
    for column in numeric:
        table[column] = _exact_floats(path, table, column)
        if column in LUNA16_COORDS or column == "diameter_mm":
            far = np.flatnonzero(np.abs(table[column].to_numpy()) > MAX_WORLD_MM)
            if len(far):
                raise InputError(path, f"line {far[0] + 2}: column {column} is beyond ±{MAX_WORLD_MM:g} mm: "
                                       f"{table[column].iloc[far[0]]:g}")
    return table


def _check_unique_header(path: Path, table: pd.DataFrame) -> None:
    """pandas renames a repeated column (`coordX` → `coordX.1`): read the raw header line to refuse it."""
    if len(table.columns) < 2:
        return
    try:
        names = [str(c).strip() for c in pd.read_csv(path, nrows=1, header=None, dtype=str, keep_default_na=False,
                                                        skipinitialspace=True).iloc[0].tolist()]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, IndexError):
        return
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(path, f"column {name} appears twice in the header")
        seen.add(name)


def read_luna16_candidates(path: str | Path, require_class: bool = True) -> pd.DataFrame:
    """Candidates (seriesuid, coordX/Y/Z mm [, class 0/1]) in file order; `class` optional for scoring."""
    has_class = require_class
    if not require_class and Path(path).is_file():
        try:
            has_class = "class" in pd.read_csv(path, nrows=0, skipinitialspace=True).columns.str.strip()
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
            has_class = False  # read_luna16_table reports the problem
    required = CANDIDATE_COLUMNS + (("class",) if has_class else ())
    table = read_luna16_table(path, required, numeric=required[1:])
    if has_class:
        labels = table["class"]
        bad = np.flatnonzero(~labels.isin([0.0, 1.0]).to_numpy())
        if len(bad):
            raise InputError(path, f"line {bad[0] + 2}: column class must be 0 or 1, got {labels.iloc[bad[0]]:g}")
        table["class"] = labels.astype(np.int64)
    return table[list(required)].reset_index(drop=True)


def read_luna16_annotations(path: str | Path) -> pd.DataFrame:
    """Nodule annotations (seriesuid, coordX/Y/Z mm, diameter_mm > 0): the FROC ground truth."""
    table = read_luna16_table(path, ANNOTATION_COLUMNS, numeric=ANNOTATION_COLUMNS[1:])
    bad = np.flatnonzero(table["diameter_mm"].to_numpy() <= 0)
    if len(bad):
        raise InputError(path, f"line {bad[0] + 2}: column diameter_mm must be > 0")
    return table[list(ANNOTATION_COLUMNS)].reset_index(drop=True)


EXCLUDED_CSV = "annotations_excluded.csv"
UNSIZED_DIAMETER = -1.0  # diameter_mm of an excluded finding without a size (the LUNA16 script reads 10 mm)


def read_luna16_excluded(path: str | Path) -> pd.DataFrame:
    """Excluded findings (annotations_excluded.csv: same columns as annotations, diameter_mm > 0 or -1).

    Findings that are neither nodules nor false positives (non-nodules, nodules < 3 mm, nodules with
    too few readers): a mark on one is ignored by the FROC.
    """
    table = read_luna16_table(path, ANNOTATION_COLUMNS, numeric=ANNOTATION_COLUMNS[1:])
    diameters = table["diameter_mm"].to_numpy()
    bad = np.flatnonzero((diameters <= 0) & (diameters != UNSIZED_DIAMETER))
    if len(bad):
        raise InputError(path, f"line {bad[0] + 2}: column diameter_mm must be > 0, or -1 for a finding "
                               f"without size, got {diameters[bad[0]]:g}")
    return table[list(ANNOTATION_COLUMNS)].reset_index(drop=True)


def find_luna16_excluded(root: str | Path) -> Path | None:
    """annotations_excluded.csv of a LUNA16 folder: at the top, in CSVFILES/, else the first one deeper
    (the LUNA16 download keeps it in evaluationScript/annotations/); None when there is none."""
    root = Path(root)
    for candidate in (root / EXCLUDED_CSV, root / "CSVFILES" / EXCLUDED_CSV):
        if candidate.is_file():
            return candidate
    found = sorted(root.rglob(EXCLUDED_CSV)) if root.is_dir() else []
    return found[0] if found else None


def read_luna16_excluded_in(root: str | Path) -> pd.DataFrame | None:
    """The folder's excluded findings, or None when it has no annotations_excluded.csv (optional)."""
    path = find_luna16_excluded(root)
    return None if path is None else read_luna16_excluded(path)
