"""read_paysim: real PaySim rows read with the right dtypes; every bad input is one clear InputError."""
from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import pandas as pd
import pytest

from apps.fraud.reader import (
    LABEL_COLUMNS,
    PAYSIM_COLUMNS,
    TRANSACTION_TYPES,
    read_paysim,
    validate_paysim_frame,
)
from common.errors import InputError

# The first rows of the public PaySim data set (see shared/fixtures/README.md).
HEADER = ",".join(PAYSIM_COLUMNS)
REAL_ROWS = [
    "1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0",
    "1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0",
    "1,CASH_OUT,181.0,C840083671,181.0,0.0,C38997010,21182.0,0.0,1,0",
]
REAL_CSV = "\n".join([HEADER, *REAL_ROWS]) + "\n"

EXPECTED_DTYPES = {
    "step": "int64", "amount": "float64", "oldbalanceOrg": "float64", "newbalanceOrig": "float64",
    "oldbalanceDest": "float64", "newbalanceDest": "float64", "isFraud": "int8", "isFlaggedFraud": "int8",
}


def write(tmp_path: Path, text: str, name: str = "transactions.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def with_cell(row: int, column: str, value: str) -> str:
    """REAL_CSV with one cell replaced (row counts data rows from 0; it is on line row + 2)."""
    rows = [line.split(",") for line in REAL_ROWS]
    rows[row][PAYSIM_COLUMNS.index(column)] = value
    return "\n".join([HEADER, *(",".join(r) for r in rows)]) + "\n"


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        read_paysim(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, "the CLI prints the error as one line"
    assert message.startswith(f"{path}: "), "the message names the file first"
    return message


def assert_paysim_dtypes(frame: pd.DataFrame) -> None:
    for column, dtype in EXPECTED_DTYPES.items():
        if column in frame.columns:
            assert str(frame[column].dtype) == dtype, column
    for column in ("type", "nameOrig", "nameDest"):
        assert pd.api.types.is_string_dtype(frame[column]), column


# --- reading ---------------------------------------------------------------------------------


def test_reads_real_paysim_rows_with_paysim_dtypes(tmp_path):
    frame = read_paysim(write(tmp_path, REAL_CSV))

    assert list(frame.columns) == list(PAYSIM_COLUMNS)
    assert len(frame) == 3
    assert_paysim_dtypes(frame)
    assert frame["type"].tolist() == ["PAYMENT", "TRANSFER", "CASH_OUT"]
    assert frame["amount"].tolist() == [9839.64, 181.0, 181.0]
    assert frame["nameOrig"].iloc[0] == "C1231006815"
    assert frame["isFraud"].tolist() == [0, 1, 1]


def test_columns_in_any_order_keep_their_file_order(tmp_path):
    original = pd.read_csv(write(tmp_path, REAL_CSV))
    shuffled = original[["nameDest", "isFraud", "amount", "step", "type", "newbalanceDest", "nameOrig",
                         "oldbalanceOrg", "isFlaggedFraud", "newbalanceOrig", "oldbalanceDest"]]
    path = tmp_path / "shuffled.csv"
    shuffled.to_csv(path, index=False)

    frame = read_paysim(path)

    assert list(frame.columns) == list(shuffled.columns)
    assert_paysim_dtypes(frame)
    assert frame["amount"].tolist() == [9839.64, 181.0, 181.0]


def test_extra_columns_are_kept_in_place(tmp_path):
    lines = REAL_CSV.splitlines()
    text = "\n".join([lines[0] + ",branch"] + [f"{line},b{i}" for i, line in enumerate(lines[1:])]) + "\n"

    frame = read_paysim(write(tmp_path, text))

    assert list(frame.columns) == [*PAYSIM_COLUMNS, "branch"]
    assert frame["branch"].tolist() == ["b0", "b1", "b2"]


def test_scoring_input_may_lack_the_labels(tmp_path):
    unlabelled = pd.read_csv(write(tmp_path, REAL_CSV)).drop(columns=list(LABEL_COLUMNS))
    path = tmp_path / "to_score.csv"
    unlabelled.to_csv(path, index=False)

    frame = read_paysim(path, require_labels=False)

    assert list(frame.columns) == [c for c in PAYSIM_COLUMNS if c not in LABEL_COLUMNS]
    assert_paysim_dtypes(frame)
    assert "isFraud" in error_of(path)  # training needs the label


def test_isflaggedfraud_is_optional_for_training(tmp_path):
    path = tmp_path / "no_flag.csv"
    pd.read_csv(write(tmp_path, REAL_CSV)).drop(columns=["isFlaggedFraud"]).to_csv(path, index=False)

    assert "isFlaggedFraud" not in read_paysim(path).columns


def test_parquet_input(tmp_path):
    path = tmp_path / "transactions.parquet"
    pd.read_csv(write(tmp_path, REAL_CSV)).to_parquet(path)

    frame = read_paysim(path)

    assert list(frame.columns) == list(PAYSIM_COLUMNS)
    assert_paysim_dtypes(frame)
    assert frame["amount"].tolist() == [9839.64, 181.0, 181.0]


def test_gzipped_csv_input(tmp_path):
    path = tmp_path / "transactions.csv.gz"
    path.write_bytes(gzip.compress(REAL_CSV.encode()))

    assert read_paysim(path)["nameDest"].tolist() == ["M1979787155", "C553264065", "C38997010"]


def test_chunked_reading_gives_the_same_frame(tmp_path):
    path = write(tmp_path, "\n".join([HEADER, *(REAL_ROWS * 5)]) + "\n")

    pd.testing.assert_frame_equal(read_paysim(path, chunksize=4), read_paysim(path))


def test_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path, REAL_CSV.replace("\n1,TRANSFER", "\n\n1,TRANSFER") + "\n")

    assert len(read_paysim(path)) == 3


# --- errors: one line naming the file, the line and the column ---------------------------------


def test_missing_file(tmp_path):
    assert "not found" in error_of(tmp_path / "nope.csv")


def test_folder_instead_of_file(tmp_path):
    assert "not a regular file" in error_of(tmp_path)


def test_empty_file(tmp_path):
    assert "no transactions" in error_of(write(tmp_path, ""))


def test_header_only(tmp_path):
    assert "no transactions" in error_of(write(tmp_path, HEADER + "\n"))


def test_binary_garbage(tmp_path):
    path = tmp_path / "transactions.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd" * 20)

    assert "not a readable CSV" in error_of(path)


def test_row_with_too_many_fields(tmp_path):
    path = write(tmp_path, REAL_CSV.replace("C553264065,", "C553264065,extra,"))

    message = error_of(path)
    assert "line 3" in message and "12 fields" in message and "11" in message


def test_unclosed_quote(tmp_path):
    assert "line 3" in error_of(write(tmp_path, with_cell(1, "nameOrig", '"C1305486145')))


def test_missing_columns_are_listed(tmp_path):
    path = tmp_path / "transactions.csv"
    pd.read_csv(write(tmp_path, REAL_CSV)).drop(columns=["amount", "nameDest"]).to_csv(path, index=False)

    message = error_of(path)
    assert "missing required column" in message
    assert "amount" in message and "nameDest" in message


@pytest.mark.parametrize(
    ("row", "column", "value", "expected"),
    [
        (1, "amount", "abc", "non-numeric value 'abc'"),
        (2, "oldbalanceDest", '"21,182"', "non-numeric value '21,182'"),
        (0, "nameOrig", "", "missing value"),
        (2, "oldbalanceOrg", "", "missing value"),
        (1, "type", "WIRE", "unknown transaction type 'WIRE'"),
        (0, "amount", "-9839.64", "negative amount"),
        (2, "newbalanceDest", "-1.5", "negative balance"),
        (1, "step", "1.5", "whole, non-negative"),
        (1, "step", "-1", "whole, non-negative"),
        (2, "isFraud", "2", "must be 0 or 1"),
        (0, "isFlaggedFraud", "yes", "non-numeric value 'yes'"),
        (0, "amount", "inf", "not a finite number"),
    ],
)
def test_bad_value_names_line_and_column(tmp_path, row, column, value, expected):
    message = error_of(write(tmp_path, with_cell(row, column, value)))

    assert f"line {row + 2}" in message  # the header is line 1
    assert f"'{column}'" in message
    assert expected in message


def test_unknown_type_lists_the_allowed_types(tmp_path):
    message = error_of(write(tmp_path, with_cell(0, "type", "payment")))

    assert all(kind in message for kind in TRANSACTION_TYPES)


def test_first_problem_in_file_order_is_reported(tmp_path):
    text = with_cell(2, "amount", "x").replace("C1305486145", "")  # line 4 amount, line 3 nameOrig

    assert "line 3, column 'nameOrig'" in error_of(write(tmp_path, text))


@pytest.mark.parametrize("bad", ["abc", "-5"])
def test_line_numbers_stay_right_across_chunks(tmp_path, bad):
    rows = REAL_ROWS * 4
    rows[8] = rows[8].replace("181.0,C840083671", f"{bad},C840083671")  # 3rd chunk
    path = write(tmp_path, "\n".join([HEADER, *rows]) + "\n")

    message = error_of(path, chunksize=4)
    assert "line 10, column 'amount'" in message


def test_bad_parquet(tmp_path):
    path = tmp_path / "transactions.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")

    assert "not a readable Parquet file" in error_of(path)


def test_bad_value_in_parquet_names_the_row(tmp_path):
    path = tmp_path / "transactions.parquet"
    frame = pd.read_csv(write(tmp_path, REAL_CSV))
    frame.loc[1, "type"] = "WIRE"
    frame.to_parquet(path)

    message = error_of(path)
    assert "row 2, column 'type'" in message and "WIRE" in message


# --- in-memory tables (e.g. an MLflow model's input) get the same checks -----------------------


def test_validate_an_in_memory_frame(tmp_path):
    raw = pd.read_csv(write(tmp_path, REAL_CSV)).drop(columns=list(LABEL_COLUMNS))
    raw["step"] = raw["step"].astype(float)

    frame = validate_paysim_frame(raw, "model input", require_labels=False)

    assert_paysim_dtypes(frame)
    raw.loc[2, "amount"] = -1.0
    with pytest.raises(InputError, match=r"^model input: row 3, column 'amount': negative amount -1$"):
        validate_paysim_frame(raw, "model input", require_labels=False)


ROW = REAL_ROWS[0]
FAST_PATH_CASES = {
    "plain": REAL_CSV,
    "windows line ends": REAL_CSV.replace("\n", "\r\n"),
    "a line of commas among the rows": "\n".join([HEADER, ROW, "," * 10, *REAL_ROWS[1:]]) + "\n",
    "blank lines": "\n".join([HEADER, ROW, "", *REAL_ROWS[1:]]) + "\n\n",
    "quoted fields": "\n".join([HEADER, '1,"PAYMENT",9839.64,"C1,23","170136.0",160296.36,M1,0.0,0.0,0,0']) + "\n",
    "NA as a name": "\n".join([HEADER, ROW.replace("C1231006815", "NA")]) + "\n",
    "numbers written differently":
        "\n".join([HEADER, "1,PAYMENT,1e3,C1,+170136.0,0.10000000000000000555,M1, 0,0.0,0,0"]) + "\n",
    "a value that is no number": "\n".join([HEADER, ROW.replace("9839.64", "9839,64")]) + "\n",
    "labels columns missing": "\n".join([HEADER.rsplit(",", 2)[0], *(r.rsplit(",", 2)[0] for r in REAL_ROWS)]) + "\n",
    "an extra column": "\n".join([HEADER + ",note", *(r + ",x" for r in REAL_ROWS)]) + "\n",
    "a repeated row": "\n".join([HEADER, ROW, ROW]) + "\n",
    "no rows": HEADER + "\n",
}


@pytest.mark.parametrize("case", FAST_PATH_CASES)
def test_the_fast_csv_parser_reads_what_the_pandas_path_reads(tmp_path, case):
    """A plain `.csv` of PaySim columns goes through pyarrow's parser; the same text under another name
    (`.txt`) through pandas' chunked one. Both give the same frame, or the same one-line refusal."""
    def read(name: str) -> tuple[str, object]:
        path = tmp_path / name
        path.write_text(FAST_PATH_CASES[case])
        try:
            with warnings.catch_warnings(record=True):  # a repeated row warns on both paths
                return "frame", read_paysim(path, require_labels=False)
        except InputError as exc:
            return "refused", exc.problem

    fast, slow = read("t.csv"), read("t.txt")
    assert fast[0] == slow[0]
    if fast[0] == "frame":
        pd.testing.assert_frame_equal(fast[1], slow[1])
    else:
        assert fast[1] == slow[1]


def test_the_fast_csv_parser_takes_plain_files_and_declines_the_rest(tmp_path):
    from apps.fraud.reader import _parse_plain_csv

    path = tmp_path / "t.csv"
    for case, taken in (("plain", True), ("windows line ends", True), ("blank lines", True),
                        ("an extra column", False), ("a value that is no number", False)):
        path.write_text(FAST_PATH_CASES[case])
        columns = FAST_PATH_CASES[case].splitlines()[0].split(",")
        assert (_parse_plain_csv(path, columns, "infer") is not None) == taken, case


def test_the_fast_parser_knows_the_missing_value_words_of_pandas():
    from pandas._libs.parsers import STR_NA_VALUES

    from apps.fraud.reader import PANDAS_NA_WORDS

    assert set(PANDAS_NA_WORDS) == set(STR_NA_VALUES)
