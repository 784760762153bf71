"""The medical split is by scan, seeded, and gives every split scans with nodules."""
import pandas as pd
import pytest

from apps.medical.split import MedicalDataConfig, split_scans, subsample_negatives
from common.errors import InputError


def _candidates(n_scans: int, n_with_nodule: int) -> pd.DataFrame:
    rows = [(f"scan{s:02d}", int(s < n_with_nodule and k == 0)) for s in range(n_scans) for k in range(4)]
    return pd.DataFrame(rows, columns=["seriesuid", "class"])


def test_scans_are_split_whole_seeded_and_every_split_has_a_nodule():
    candidates = _candidates(20, 6)
    train, val, test = split_scans(candidates, MedicalDataConfig())
    assert set(train).isdisjoint(val) and set(train).isdisjoint(test) and set(val).isdisjoint(test)
    assert len(train) + len(val) + len(test) == 20
    with_nodule = set(candidates.loc[candidates["class"] == 1, "seriesuid"])
    assert all(with_nodule & set(split) for split in (train, val, test))
    assert (train, val, test) == split_scans(candidates, MedicalDataConfig())
    assert (train, val, test) != split_scans(candidates, MedicalDataConfig(split_seed=1))


def test_too_few_nodule_scans_are_refused():
    with pytest.raises(InputError, match="at least 3 scans with a nodule"):
        split_scans(_candidates(10, 2), MedicalDataConfig())


def test_negatives_are_subsampled_per_positive_and_positives_all_kept():
    candidates = _candidates(10, 5)
    kept = subsample_negatives(candidates, per_positive=2, seed=0)
    assert (kept["class"] == 1).sum() == 5 and (kept["class"] == 0).sum() == 10
    assert subsample_negatives(candidates, 0, seed=0).equals(candidates)
