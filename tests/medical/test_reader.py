"""Reading LUNA16 volumes, CSVs and DICOM series; every bad input is one InputError line naming the file."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from apps.medical.reader import (
    CTVolume,
    find_luna16_excluded,
    find_luna16_volumes,
    read_ct_volume,
    read_dicom_series,
    read_luna16_annotations,
    read_luna16_candidates,
    read_luna16_excluded,
    read_luna16_excluded_in,
    read_luna16_table,
    voxel_to_world,
    world_to_voxel,
)
from common.errors import InputError

UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260"
SPACING = (0.7, 0.7, 2.5)
ORIGIN = (-171.3, -205.8, -340.25)


def write_mhd(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=None) -> Path:
    """Write an int16 (z, y, x) array as .mhd/.raw the way LUNA16 stores it."""
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def ramp(shape=(4, 5, 6)) -> np.ndarray:
    """A volume whose every voxel value is distinct, to catch axis mix-ups."""
    return (np.arange(np.prod(shape)).reshape(shape) - 1000).astype(np.int16)


def one_line(exc: pytest.ExceptionInfo) -> str:
    """The message the CLI would print, asserted to be a single line."""
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- volumes ---------------------------------------------------------------------------------------
def test_read_ct_volume_keeps_hu_axes_and_geometry(tmp_path):
    array = ramp()
    volume = read_ct_volume(write_mhd(tmp_path / f"{UID}.mhd", array))
    assert isinstance(volume, CTVolume)
    assert volume.seriesuid == UID
    assert volume.array.dtype == np.float32 and volume.array.shape == (4, 5, 6)  # (z, y, x)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.spacing, SPACING)
    np.testing.assert_allclose(volume.origin, ORIGIN)


def test_world_to_voxel_is_the_luna16_mapping():
    world = np.array([[-171.3, -205.8, -340.25], [-171.3 + 0.7 * 3, -205.8 + 0.7 * 2, -340.25 + 2.5]])
    np.testing.assert_allclose(world_to_voxel(world, ORIGIN, SPACING), [[0, 0, 0], [3, 2, 1]], atol=1e-9)
    np.testing.assert_allclose(voxel_to_world(world_to_voxel(world, ORIGIN, SPACING), ORIGIN, SPACING), world)


def test_flipped_transform_matrix_is_reoriented_to_identity(tmp_path):
    array = ramp()
    flipped = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)  # x axis runs right to left
    path = write_mhd(tmp_path / "flip.mhd", array, direction=flipped)
    # Voxel (x=1, y=2, z=3) sits at world x = origin_x - 1 * spacing_x under the flipped matrix.
    world = np.array([ORIGIN[0] - 1 * SPACING[0], ORIGIN[1] + 2 * SPACING[1], ORIGIN[2] + 3 * SPACING[2]])
    with pytest.warns(UserWarning, match="flipped"):
        volume = read_ct_volume(path)
    x, y, z = np.rint(world_to_voxel(world, volume.origin, volume.spacing)).astype(int)
    assert volume.array[z, y, x] == array[3, 2, 1]


def test_oblique_volume_is_rejected(tmp_path):
    c, s = np.cos(0.3), np.sin(0.3)
    path = write_mhd(tmp_path / "oblique.mhd", ramp(), direction=(c, -s, 0, s, c, 0, 0, 0, 1))
    with pytest.raises(InputError, match="TransformMatrix must be identity"):
        read_ct_volume(path)


def test_find_volumes_searches_subfolders(tmp_path):
    write_mhd(tmp_path / "subset0" / "a.mhd", ramp())
    write_mhd(tmp_path / "subset1" / "deep" / "b.mhd", ramp())
    found = find_luna16_volumes(tmp_path)
    assert sorted(found) == ["a", "b"]
    assert found["b"] == tmp_path / "subset1" / "deep" / "b.mhd"


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="data folder not found") as exc:
        find_luna16_volumes(tmp_path / "nope")
    assert str(tmp_path / "nope") in one_line(exc)


def test_folder_with_no_volumes(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no .mhd volumes found") as exc:
        find_luna16_volumes(tmp_path)
    assert one_line(exc).startswith(str(tmp_path))


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(InputError, match="got a file"):
        find_luna16_volumes(tmp_path / "x.csv")


def test_duplicate_seriesuid(tmp_path):
    write_mhd(tmp_path / "subset0" / "a.mhd", ramp())
    write_mhd(tmp_path / "subset1" / "a.mhd", ramp())
    with pytest.raises(InputError, match="duplicate seriesuid a"):
        find_luna16_volumes(tmp_path)


def test_truncated_raw(tmp_path):
    path = write_mhd(tmp_path / "t.mhd", ramp())
    raw = tmp_path / "t.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(InputError) as exc:
        read_ct_volume(path)
    assert one_line(exc) == f"{raw}: truncated pixel data: 100 bytes, header needs 240"


def test_missing_raw(tmp_path):
    path = write_mhd(tmp_path / "t.mhd", ramp())
    (tmp_path / "t.raw").unlink()
    with pytest.raises(InputError, match="pixel data file t.raw not found") as exc:
        read_ct_volume(path)
    assert one_line(exc).startswith(str(path))


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("ElementSpacing = 0.69999999999999996", "ElementSpacing = 0", "ElementSpacing must be > 0"),
        ("NDims = 3", "NDims = 2", "expected a 3-D volume"),
        ("ElementType = MET_SHORT", "ElementType = MET_WEIRD", "unsupported ElementType"),
        ("Offset = -171.30000000000001", "Offset = abc", "header Offset is not numeric"),
    ],
)
def test_bad_header(tmp_path, old, new, problem):
    path = write_mhd(tmp_path / "h.mhd", ramp())
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(InputError, match=problem) as exc:
        read_ct_volume(path)
    assert one_line(exc).startswith(str(path))


def test_missing_volume_file(tmp_path):
    with pytest.raises(InputError, match="volume file not found"):
        read_ct_volume(tmp_path / "none.mhd")


# --- CSVs ------------------------------------------------------------------------------------------
CANDIDATES = """seriesuid,coordX,coordY,coordZ,class
1.2.3,-56.08,-67.85,-311.92,0
1.2.3,53.21,-244.41,-245.17,1
4.5.6,103.6,-121.8,-286.6,0
"""


def test_read_candidates_keeps_order_and_types(tmp_path):
    path = tmp_path / "candidates.csv"
    path.write_text(CANDIDATES)
    table = read_luna16_candidates(path)
    assert list(table.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "class"]
    assert table["seriesuid"].tolist() == ["1.2.3", "1.2.3", "4.5.6"]
    assert table["class"].tolist() == [0, 1, 0]
    assert table["coordZ"].tolist() == [-311.92, -245.17, -286.6]


def test_scoring_candidates_may_lack_class(tmp_path):
    path = tmp_path / "candidates.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ\n1.2.3,1,2,3\n")
    table = read_luna16_candidates(path, require_class=False)
    assert list(table.columns) == ["seriesuid", "coordX", "coordY", "coordZ"]
    with pytest.raises(InputError, match="missing column class"):
        read_luna16_candidates(path)


def test_candidates_without_coordz(tmp_path):
    path = tmp_path / "candidates.csv"
    path.write_text("seriesuid,coordX,coordY,class\n1.2.3,1,2,0\n")
    with pytest.raises(InputError) as exc:
        read_luna16_candidates(path)
    assert one_line(exc) == f"{path}: missing column coordZ (need seriesuid, coordX, coordY, coordZ, class)"


def test_non_numeric_coordinate_names_line_and_column(tmp_path):
    path = tmp_path / "candidates.csv"
    path.write_text(CANDIDATES.replace("53.21", "53.2l"))  # a typo'd digit on the second data row
    with pytest.raises(InputError) as exc:
        read_luna16_candidates(path)
    assert one_line(exc) == f"{path}: line 3: column coordX is not a number: '53.2l'"


def test_bad_class_and_missing_file(tmp_path):
    path = tmp_path / "candidates.csv"
    path.write_text(CANDIDATES.replace("-245.17,1", "-245.17,2"))
    with pytest.raises(InputError, match="line 3: column class must be 0 or 1"):
        read_luna16_candidates(path)
    with pytest.raises(InputError, match="file not found"):
        read_luna16_candidates(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="file is empty"):
        read_luna16_candidates(tmp_path / "empty.csv")


def test_read_annotations(tmp_path):
    path = tmp_path / "annotations.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,-128.7,-175.3,-298.4,5.65\n")
    table = read_luna16_annotations(path)
    assert table.iloc[0].to_dict() == {
        "seriesuid": "1.2.3", "coordX": -128.7, "coordY": -175.3, "coordZ": -298.4, "diameter_mm": 5.65,
    }
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,1,2,3,-1\n")
    with pytest.raises(InputError, match="line 2: column diameter_mm must be > 0"):
        read_luna16_annotations(path)


EXCLUDED = "seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,-131.8964945,-155.0567015,-317.8,-1\n1.2.3,1,2,3,2.5\n"


def test_read_excluded_findings_allows_unsized(tmp_path):
    path = tmp_path / "annotations_excluded.csv"
    path.write_text(EXCLUDED)
    table = read_luna16_excluded(path)
    assert table["diameter_mm"].tolist() == [-1.0, 2.5]
    assert table.loc[0, "coordX"] == float("-131.8964945")  # parsed exactly as Python's float()
    for bad in ("0", "-2"):
        path.write_text(EXCLUDED.replace(",2.5", f",{bad}"))
        with pytest.raises(InputError, match="line 3: column diameter_mm must be > 0, or -1"):
            read_luna16_excluded(path)


def test_excluded_findings_found_where_luna16_keeps_them(tmp_path):
    assert find_luna16_excluded(tmp_path) is None and read_luna16_excluded_in(tmp_path) is None
    deep = tmp_path / "evaluationScript" / "annotations" / "annotations_excluded.csv"
    deep.parent.mkdir(parents=True)
    deep.write_text(EXCLUDED)
    assert find_luna16_excluded(tmp_path) == deep
    (tmp_path / "CSVFILES").mkdir()
    (tmp_path / "CSVFILES" / "annotations_excluded.csv").write_text(EXCLUDED)
    assert find_luna16_excluded(tmp_path) == tmp_path / "CSVFILES" / "annotations_excluded.csv"
    (tmp_path / "annotations_excluded.csv").write_text(EXCLUDED.splitlines()[0] + "\n")
    assert find_luna16_excluded(tmp_path) == tmp_path / "annotations_excluded.csv"
    assert read_luna16_excluded_in(tmp_path).empty


def test_table_numbers_must_be_finite(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,probability\n1.2.3,1,2,3,0.5\n1.2.3,1,2,3,-inf\n")
    columns = ("seriesuid", "coordX", "coordY", "coordZ", "probability")
    with pytest.raises(InputError) as exc:
        read_luna16_table(path, columns, columns[1:])
    assert one_line(exc) == f"{path}: line 3: column probability must be finite: '-inf'"
    path.write_bytes(b"seriesuid,coordX,coordY,coordZ,probability\n\xe9,1,2,3,0.5\n")  # Latin-1, not UTF-8
    with pytest.raises(InputError, match="not a valid UTF-8 CSV"):
        read_luna16_table(path, columns, columns[1:])


# --- DICOM -----------------------------------------------------------------------------------------
CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def test_read_real_dicom_slice_in_hu():
    ds = pydicom.dcmread(CT_SMALL)
    volume = read_dicom_series(CT_SMALL)
    assert volume.seriesuid == ds.SeriesInstanceUID
    assert volume.array.shape == (1, 128, 128)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(volume.array[0], expected)
    assert -1100 < volume.array.min() < volume.array.max() < 3100  # plausible HU
    np.testing.assert_allclose(volume.spacing, (*map(float, ds.PixelSpacing), float(ds.SliceThickness)), rtol=1e-6)
    np.testing.assert_allclose(volume.origin, [float(v) for v in ds.ImagePositionPatient], rtol=1e-6)


def test_dicom_folder_is_sorted_by_position_and_skips_other_files(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    z0, pixels = float(ds.ImagePositionPatient[2]), ds.pixel_array.copy()
    for k, name in ((2, "a.dcm"), (0, "b.dcm"), (1, "c.dcm")):  # file names out of slice order
        ds.ImagePositionPatient[2] = z0 + 2.5 * k
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.{k + 1}"
        ds.PixelData = (pixels + 100 * k).astype(pixels.dtype).tobytes()
        ds.save_as(tmp_path / name)
    (tmp_path / "069.xml").write_text("<LidcReadMessage/>")  # LIDC folders hold reader XML too
    volume = read_dicom_series(tmp_path)
    assert volume.array.shape == (3, 128, 128)
    np.testing.assert_allclose(volume.spacing[2], 2.5, rtol=1e-6)
    np.testing.assert_allclose(volume.origin[2], z0, rtol=1e-6)
    np.testing.assert_array_equal(volume.array[2] - volume.array[0], 200)


def test_dicom_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="DICOM file or folder not found"):
        read_dicom_series(tmp_path / "missing")
    (tmp_path / "readme.txt").write_text("not dicom")
    with pytest.raises(InputError, match="no readable DICOM image slices") as exc:
        read_dicom_series(tmp_path)
    assert one_line(exc).startswith(str(tmp_path))
    shutil.copy(tmp_path / "readme.txt", tmp_path / "slice.dcm")
    with pytest.raises(InputError, match="no readable DICOM"):
        read_dicom_series(tmp_path / "slice.dcm")
