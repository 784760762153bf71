"""Property-based tests (hypothesis): any bytes given to a reader either read or raise InputError, never
another exception; what the output writers write reads back as written. Deterministic (derandomize)."""
from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from broken_inputs import CANDIDATES, paysim_text, write_luna16
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from real_kitti import REAL, needs_real

from common.errors import InputError

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def mutated(draw, valid: bytes, max_edits: int = 4) -> bytes:
    """`valid` with a few byte edits: replace, insert, delete or truncate (the ways files really break)."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, max_edits))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "token"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "token":
            data[at:at] = draw(st.sampled_from([b"nan", b"inf", b"-inf", b"1e400", b"1e308", b"-1", b",", b"\n",
                                                b'"', b"\xff", b"\x00", b"../", b"=", b" "]))
    return bytes(data)


def reads_or_refuses(read) -> None:
    try:
        read()
    except InputError as exc:
        assert "\n" not in str(exc)


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="prop-"))


# --- fraud -----------------------------------------------------------------------------------------
PAYSIM_VALID = paysim_text().encode()


@SETTINGS
@given(data=st.one_of(st.binary(max_size=400), mutated(PAYSIM_VALID, 6)), labels=st.booleans())
def test_paysim_csv_reads_or_refuses(data, labels, tmp_path):
    from apps.fraud.reader import read_paysim

    path = tmp_path / "transactions.csv"
    path.write_bytes(data)
    with _quiet():
        reads_or_refuses(lambda: read_paysim(path, require_labels=labels))


def _parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pd.read_csv(io.StringIO(paysim_text())).to_parquet(buffer)
    return buffer.getvalue()


@SETTINGS
@given(data=mutated(_parquet_bytes(), 3))
def test_paysim_parquet_reads_or_refuses(data, tmp_path):
    from apps.fraud.reader import read_paysim

    path = tmp_path / "transactions.parquet"
    path.write_bytes(data)
    with _quiet():
        reads_or_refuses(lambda: read_paysim(path))


_cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                   st.text(max_size=6), st.none(), st.booleans())


@SETTINGS
@given(rows=st.lists(st.lists(_cells, min_size=11, max_size=11), min_size=1, max_size=4))
def test_paysim_frames_validate_or_refuse(rows):
    """Model input (pyfunc predict) of any cell values: a typed frame or InputError."""
    from apps.fraud.reader import PAYSIM_COLUMNS, validate_paysim_frame

    frame = pd.DataFrame(rows, columns=list(PAYSIM_COLUMNS))
    reads_or_refuses(lambda: validate_paysim_frame(frame, "model input"))


# --- medical ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def luna(tmp_path_factory):
    return write_luna16(tmp_path_factory.mktemp("luna") / "luna")


@SETTINGS
@given(edit=st.data())
def test_mhd_header_reads_or_refuses(edit, luna, tmp_path):
    from apps.medical.reader import read_ct_volume

    source = sorted((luna / "subset0").glob("*.mhd"))[0]
    folder = tmp_path / "scan"
    folder.mkdir(exist_ok=True)
    raw = source.with_suffix(".raw")
    (folder / raw.name).write_bytes(raw.read_bytes())
    path = folder / source.name
    path.write_bytes(edit.draw(mutated(source.read_bytes(), 4)))
    with _quiet():
        reads_or_refuses(lambda: read_ct_volume(path))


@SETTINGS
@given(data=st.one_of(st.binary(max_size=300), mutated(CANDIDATES.encode(), 6)), labels=st.booleans())
def test_luna16_csv_reads_or_refuses(data, labels, tmp_path):
    from apps.medical.reader import read_luna16_annotations, read_luna16_candidates

    path = tmp_path / "candidates.csv"
    path.write_bytes(data)
    reads_or_refuses(lambda: read_luna16_candidates(path, require_class=labels))
    reads_or_refuses(lambda: read_luna16_annotations(path))


# --- driving ---------------------------------------------------------------------------------------
@needs_real
@SETTINGS
@given(edit=st.data(), part=st.sampled_from(["calib", "label_2", "velodyne"]))
def test_kitti_files_read_or_refuse(edit, part, tmp_path):
    from apps.driving.kitti import read_calib, read_label, read_velodyne

    suffix = ".bin" if part == "velodyne" else ".txt"
    valid = (REAL / part / f"000008{suffix}").read_bytes()
    data = edit.draw(mutated(valid[:4096] if part == "velodyne" else valid, 4))
    path = tmp_path / f"000008{suffix}"
    path.write_bytes(data)
    reader = {"calib": read_calib, "label_2": read_label, "velodyne": read_velodyne}[part]
    reads_or_refuses(lambda: reader(path))


@needs_real
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(edit=st.data())
def test_kitti_image_reads_or_refuses(edit, tmp_path):
    from apps.driving.kitti import read_image

    valid = (REAL / "image_2" / "000008.png").read_bytes()
    path = tmp_path / "000008.png"
    path.write_bytes(edit.draw(mutated(valid, 3)))
    reads_or_refuses(lambda: read_image(path))


# --- output writers --------------------------------------------------------------------------------
# Names as the reader lets them through: any text but control characters (it refuses those).
_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12)
_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@SETTINGS
@given(rows=st.lists(st.tuples(_names, _finite, st.floats(0, 1)), min_size=0, max_size=6),
       parquet=st.booleans())
def test_fraud_write_scores_round_trips(rows, parquet):
    """write_scores writes exactly the frame given (CSV or Parquet), atomically: nothing else is left."""
    from apps.fraud.scorer import write_scores

    folder = _scratch()
    out = folder / ("scores.parquet" if parquet else "scores.csv")
    frame = pd.DataFrame(rows, columns=["nameOrig", "amount", "fraud_probability"]).astype(
        {"nameOrig": object, "amount": "float64", "fraud_probability": "float64"})
    write_scores(frame, out)
    back = pd.read_parquet(out) if parquet else pd.read_csv(out, dtype={"nameOrig": str}, keep_default_na=False)
    assert [p.name for p in folder.iterdir()] == [out.name]
    assert len(back) == len(frame)
    if len(frame):
        np.testing.assert_array_equal(back["amount"].to_numpy(float), frame["amount"].to_numpy(float))
        if parquet:
            assert back["nameOrig"].tolist() == frame["nameOrig"].tolist()


_kitti_type = st.sampled_from(["Car", "Pedestrian", "Van", "DontCare"])
_coord = st.floats(-1e4, 1e4, allow_nan=False)


@SETTINGS
@given(objects=st.lists(st.tuples(_kitti_type, st.floats(0, 1), st.integers(0, 3), st.floats(-math.pi, math.pi),
                                  st.tuples(_coord, _coord, _coord, _coord),
                                  st.tuples(st.floats(0, 50), st.floats(0, 50), st.floats(0, 50)),
                                  st.tuples(_coord, _coord, _coord), st.floats(-math.pi, math.pi),
                                  st.floats(0, 1)), max_size=5))
def test_kitti_results_round_trip(objects):
    """write_kitti_result → read_label gives the same objects to the written precision."""
    from apps.driving.kitti import KittiObject, read_label, write_kitti_result

    written = [KittiObject(*fields) for fields in objects]
    path = _scratch() / "000001.txt"
    write_kitti_result(path, written)
    back = read_label(path)
    assert len(back) == len(written)
    for got, want in zip(back, written, strict=True):
        assert got.type == want.type and got.occluded == want.occluded
        np.testing.assert_allclose(got.camera_box(), want.camera_box(), atol=1e-4)
        np.testing.assert_allclose(got.bbox, want.bbox, atol=5e-3)
        assert got.score == pytest.approx(want.score, abs=1e-6)


@SETTINGS
@given(bad=st.sampled_from(["", "Big Car", "Car\n", "Car\tVan"]),
       value=st.sampled_from([0.0, math.nan, math.inf, -math.inf]))
def test_kitti_writer_refuses_what_it_cannot_write_and_leaves_no_file(bad, value):
    from apps.driving.kitti import KittiObject, write_kitti_result

    folder = _scratch()
    obj = KittiObject(bad if value == 0.0 else "Car", 0.0, 0, 0.0, (0, 0, 1, 1), (1, 1, 1), (0, 0, value), 0.0, 0.5)
    with pytest.raises(ValueError):
        write_kitti_result(folder / "000001.txt", [obj])
    assert not any(folder.iterdir())


_uids = st.text(st.sampled_from("0123456789."), min_size=1, max_size=20).filter(lambda u: u not in (".", ".."))


@SETTINGS
@given(rows=st.lists(st.tuples(_uids, st.floats(-1e5, 1e5), st.floats(-1e5, 1e5), st.floats(-1e5, 1e5),
                               st.floats(0, 1)), min_size=1, max_size=6))
def test_medical_submission_writer_round_trips(rows):
    """MedicalPyfuncModel.score_file writes a LUNA16 submission that the LUNA16 table reader reads back exactly."""
    from apps.medical.reader import read_luna16_table
    from apps.medical.scorer import OUTPUT_COLUMNS, MedicalPyfuncModel

    scores = pd.DataFrame(rows, columns=OUTPUT_COLUMNS)

    class Fixed:  # stands for MedicalScorer: the writer is what is tested
        def score_folder(self, root, batch_size, engine=None):
            return scores.copy()

    model = MedicalPyfuncModel.from_scorer(Fixed())
    out = _scratch() / "submission.csv"
    model.score_file(out.parent, out, 8)
    back = read_luna16_table(out, tuple(OUTPUT_COLUMNS), tuple(OUTPUT_COLUMNS[1:]))
    assert back["seriesuid"].tolist() == scores["seriesuid"].tolist()
    np.testing.assert_array_equal(back[OUTPUT_COLUMNS[1:]].to_numpy(), scores[OUTPUT_COLUMNS[1:]].to_numpy())


class _quiet:
    """Readers warn about what they skip; the properties are about exceptions only."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

