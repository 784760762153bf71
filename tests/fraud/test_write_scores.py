"""The scored file: written with pyarrow's CSV writer, read back as the frame it was made from."""
import numpy as np
import pandas as pd
import pytest

from apps.fraud.scorer import write_scores


@pytest.fixture
def scored():
    return pd.DataFrame({"step": [1, 1, 2], "type": ["TRANSFER", "CASH_OUT", "PAYMENT"], "amount": [10.5, 0.0, 3e-7],
                         "nameOrig": ["C1", "C2", "C3"], "isFraud": [0, 1, 0],
                         "fraud_probability": [0.5243334770202637, 1e-9, 0.99]})


def test_csv_reads_back_as_the_frame_and_is_unquoted_like_pandas(scored, tmp_path):
    write_scores(scored, tmp_path / "s.csv")
    text = (tmp_path / "s.csv").read_text()
    assert text.splitlines()[0] == ",".join(scored.columns) and '"' not in text
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s.csv"), scored)


def test_values_with_commas_or_quotes_are_quoted(scored, tmp_path):
    scored["note"] = ['a, b', 'say "hi"', None]
    write_scores(scored, tmp_path / "s.csv")
    back = pd.read_csv(tmp_path / "s.csv")
    assert back["note"].iloc[:2].tolist() == ['a, b', 'say "hi"'] and np.isnan(back["note"].iloc[2])


def test_a_column_arrow_cannot_type_falls_back_to_pandas(scored, tmp_path):
    scored["mixed"] = [1, "two", 3.0]
    write_scores(scored, tmp_path / "s.csv")
    assert pd.read_csv(tmp_path / "s.csv")["mixed"].astype(str).tolist() == ["1", "two", "3.0"]
    assert not list(tmp_path.glob("*.tmp"))
