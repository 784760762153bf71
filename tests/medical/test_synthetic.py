"""The synthetic LUNA16 set: real layout, plausible content, consistent labels, deterministic."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from apps.medical.froc import compute_froc
from apps.medical.reader import (
    find_luna16_excluded,
    find_luna16_volumes,
    read_ct_volume,
    read_luna16_annotations,
    read_luna16_candidates,
    read_luna16_excluded,
    world_to_voxel,
)
from apps.medical.synthetic import LUNA16_UID_PREFIX, SCALES, write_synthetic_luna16
from common.errors import InputError

COORDS = ["coordX", "coordY", "coordZ"]
TINY = dataclasses.replace(SCALES["small"], n_scans=2, shape_zyx=(24, 64, 64), tree_depth=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The 'small' CI dataset, written once for this module."""
    return write_synthetic_luna16(tmp_path_factory.mktemp("luna") / "data", scale="small", seed=0)


@pytest.fixture(scope="module")
def tables(small):
    """(volumes, candidates, annotations) as the pipeline reads them."""
    return (find_luna16_volumes(small), read_luna16_candidates(small / "candidates.csv"),
            read_luna16_annotations(small / "annotations.csv"))


def test_layout_matches_luna16(small, tables):
    volumes, candidates, annotations = tables
    assert len(volumes) == SCALES["small"].n_scans
    assert all(path.parent == small / "subset0" and path.with_suffix(".raw").is_file() for path in volumes.values())
    assert all(uid.startswith(LUNA16_UID_PREFIX) and uid == path.stem for uid, path in volumes.items())
    header = next(iter(volumes.values())).read_text()
    assert "ElementType = MET_SHORT" in header and "TransformMatrix = 1 0 0 0 1 0 0 0 1" in header
    assert set(candidates["seriesuid"]) == set(volumes)  # every scan has candidates
    assert set(annotations["seriesuid"]) <= set(volumes)
    assert len(set(volumes) - set(annotations["seriesuid"])) >= 1  # some scans have no nodule


def test_geometry_is_anisotropic_with_real_looking_origins(tables):
    volumes, _, _ = tables
    for path in list(volumes.values())[:4]:
        volume = read_ct_volume(path)
        sx, sy, sz = volume.spacing
        assert sx == sy and 0.6 <= sx <= 0.9 and 1.0 <= sz <= 2.5
        assert all(o < -50 for o in volume.origin)
        assert volume.array.shape == SCALES["small"].shape_zyx


def test_labels_follow_the_luna16_hit_rule(tables):
    _, candidates, annotations = tables
    assert annotations["diameter_mm"].between(3, 30).all()
    for uid, nodules in annotations.groupby("seriesuid"):
        cand = candidates[candidates["seriesuid"] == uid]
        dist = np.linalg.norm(cand[COORDS].to_numpy()[:, None] - nodules[COORDS].to_numpy()[None], axis=-1)
        hits = dist <= nodules["diameter_mm"].to_numpy()[None] / 2
        assert (hits.any(axis=1) == (cand["class"] == 1).to_numpy()).all()  # class 1 exactly when a hit
        assert hits.any(axis=0).all()  # every nodule has a candidate
    positives = int(candidates["class"].sum())
    assert len(candidates) - positives >= 30 * positives
    per_nodule = len(candidates[candidates["class"] == 1]) / len(annotations)
    assert 1.0 < per_nodule < 2.0  # some nodules have two candidates


def test_excluded_findings_sit_on_negative_candidates(small, tables):
    _, candidates, annotations = tables
    assert find_luna16_excluded(small) == small / "annotations_excluded.csv"
    excluded = read_luna16_excluded(small / "annotations_excluded.csv")
    assert set(excluded["seriesuid"]) <= set(candidates["seriesuid"])
    assert len(excluded) >= SCALES["small"].n_scans  # at least one per scan
    unsized = excluded["diameter_mm"] == -1
    assert 0 < unsized.sum() < len(excluded)  # scars without size and small nodules
    assert excluded.loc[~unsized, "diameter_mm"].between(1, 3, inclusive="left").all()
    radius = np.where(unsized, 5.0, excluded["diameter_mm"] / 2)  # -1 reads as 10 mm
    for (uid, *centre), r in zip(excluded[["seriesuid", *COORDS]].itertuples(index=False), radius, strict=True):
        cand = candidates[candidates["seriesuid"] == uid]
        inside = ((cand[COORDS].to_numpy() - np.asarray(centre)) ** 2).sum(axis=1) < r * r
        assert (cand.loc[inside, "class"] == 0).any()  # a negative strictly inside
    # The FROC ignores those marks: fewer false positives than without the excluded list.
    marks = candidates.assign(probability=np.linspace(0, 1, len(candidates)))
    uids = sorted(set(candidates["seriesuid"]))
    with_excluded = compute_froc(marks, annotations, uids, excluded, max_marks_per_scan=0)  # no cap: every mark
    assert with_excluded.n_marks_ignored >= len(excluded) // 2
    without = compute_froc(marks, annotations, uids, max_marks_per_scan=0)
    assert with_excluded.fps_per_scan[-1] < without.fps_per_scan[-1]


def test_volume_content_is_plausible_hu(tables):
    volumes, _, annotations = tables
    for _, nodule in annotations.head(6).iterrows():
        volume = read_ct_volume(volumes[nodule["seriesuid"]])
        assert volume.array[0, 0, 0] < -900  # air in the corner
        assert volume.array.min() >= -1200 and volume.array.max() <= 1000
        x, y, z = np.rint(world_to_voxel(nodule[COORDS].to_numpy(float), volume.origin, volume.spacing)).astype(int)
        core = volume.array[max(z - 1, 0):z + 2, y - 1:y + 2, x - 1:x + 2].mean()
        assert core > -700  # solid, calcified or ground glass: denser than the lung (~-850)


def test_deterministic_for_a_seed(tmp_path):
    a = write_synthetic_luna16(tmp_path / "a", scale=TINY, seed=7)
    b = write_synthetic_luna16(tmp_path / "b", scale=TINY, seed=7)
    c = write_synthetic_luna16(tmp_path / "c", scale=TINY, seed=8)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * 2 + 3
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "candidates.csv").read_bytes() != (c / "candidates.csv").read_bytes()


def test_rewrite_replaces_previous_volumes(tmp_path):
    write_synthetic_luna16(tmp_path, scale=TINY, seed=1)
    write_synthetic_luna16(tmp_path, scale=TINY, seed=2)
    assert len(find_luna16_volumes(tmp_path)) == 2


def test_unknown_scale():
    with pytest.raises(InputError, match="unknown scale 'huge'"):
        write_synthetic_luna16("unused", scale="huge")
