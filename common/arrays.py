"""Set operations on 1-D integer arrays, as `np.unique` gives them, faster on this stack.

NumPy 2.4's `np.unique` hashes and then sorts: measured on 1.2 M int64 values (2 cores), 0.83 s, against
0.09 s for pandas' hash table plus a sort and 0.09 s for a sort plus run boundaries. The fraud pipeline
calls it per snapshot window and per batch, so it showed up in scoring profiles.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)`: the distinct values, sorted."""
    return np.sort(pd.unique(np.asarray(values).ravel()))


def count_distinct(values: np.ndarray) -> int:
    """`len(np.unique(values))`."""
    return len(pd.unique(np.asarray(values).ravel()))


def runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of equal values in a sorted array: each run's value, its first index and its length
    (`np.unique(sorted_values, return_index=True, return_counts=True)`)."""
    sorted_values = np.asarray(sorted_values)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) if len(sorted_values) else \
        np.zeros(0, np.int64)
    return sorted_values[starts], starts, np.diff(np.r_[starts, len(sorted_values)])


def unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_counts=True)`."""
    distinct, _, counts = runs(np.sort(np.asarray(values).ravel()))
    return distinct, counts


def unique_first(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_index=True)`: the distinct values, sorted, and where each first occurs."""
    values = np.asarray(values).ravel()
    order = np.argsort(values, kind="stable")
    distinct, starts, _ = runs(values[order])
    return distinct, order[starts]
