"""The fraud split is by time: training never sees a step that validation or test holds."""
import numpy as np
import pytest

from apps.fraud.split import temporal_split
from common.errors import InputError


def test_the_latest_steps_are_held_out_and_no_step_is_cut():
    step = np.repeat(np.arange(1, 21), 5)[::-1].copy()  # 20 steps of 5 rows, file not in time order
    train, val, test = temporal_split(step, 0.15, 0.15)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    assert step[train].max() < step[val].min() and step[val].max() < step[test].min()
    assert len(test) == 15 and len(val) == 15


def test_fewer_than_three_steps_cannot_be_split():
    with pytest.raises(InputError, match="at least 3 distinct steps"):
        temporal_split(np.array([1, 1, 2, 2]), 0.15, 0.15)
