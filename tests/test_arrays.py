"""The fast set operations give exactly what np.unique gives."""
import numpy as np
import pytest

from common.arrays import count_distinct, runs, unique_counts, unique_first, unique_sorted


@pytest.mark.parametrize("values", [np.zeros(0, np.int64), np.array([7]), np.array([3, 1, 3, 3, 0, -2, 1]),
                                    np.random.default_rng(0).integers(-50, 50, 1000),
                                    np.random.default_rng(1).integers(0, 10**9, 500).astype(np.int32)])
def test_each_equals_np_unique(values):
    expected, first, counts = np.unique(values, return_index=True, return_counts=True)
    assert np.array_equal(unique_sorted(values), expected) and unique_sorted(values).dtype == values.dtype
    assert count_distinct(values) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(unique_counts(values), (expected, counts), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(unique_first(values), (expected, first), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(runs(np.sort(values)),
                                                     np.unique(np.sort(values), return_index=True,
                                                               return_counts=True), strict=True))
