"""Synthetic chest CT in the LUNA16 layout, so the medical pipeline runs and is tested without real data.

`write_synthetic_luna16(out_dir, scale, seed)` writes:
- `subset0/<seriesuid>.mhd` + `.raw`: int16 HU (MET_SHORT) volumes, axes (z, y, x) on disk as MetaIO
  expects, anisotropic spacing (x = y in 0.6–0.9 mm, z in 1.0–2.5 mm), origins at negative hundreds of
  mm, TransformMatrix identity; seriesuids look like LUNA16's `1.3.6.1.4.1.14519.5.2.1.6279.6001.<30 digits>`;
- `candidates.csv` (seriesuid, coordX, coordY, coordZ, class) and `annotations.csv` (seriesuid, coordX,
  coordY, coordZ, diameter_mm), world millimetres;
- `annotations_excluded.csv` (same columns): findings that are not nodules, as LUNA16 lists them for its
  evaluation, whose marks the FROC ignores.

Each volume: air (−1000 HU) outside an elliptic body; a subcutaneous fat rim (~−100 HU) around soft tissue
(~40 HU, the mediastinum and chest wall); two ellipsoid lungs (~−850 HU with low-frequency texture) that
taper towards the ends of the scan; in each lung two branching vessel trees (tubes, +50..+200 HU, radius
shrinking from ~2.5 mm to sub-voxel at each bifurcation) plus extra vessels that cross existing ones (in
thick slices a crossing looks like a blob); nodules as soft-edged, slightly ellipsoidal spheres of
3–30 mm diameter (mostly solid, some ground-glass, some calcified), placed free in the lung,
juxtavascular (touching a vessel) or juxtapleural (touching the lung wall); then a partial-volume blur
and Gaussian noise. Some scans have no nodule, as in LUNA16.

Candidates: every nodule gives one (30 %: two) class-1 candidate jittered by up to half its radius
(≤ 3 mm), like a detector's output, so each still hits its nodule under the LUNA16 rule. Class-0
hard negatives, at least `negatives_per_positive` per positive in each scan: points on vessels,
bifurcations, vessel crossings, the pleura, random lung and random soft-tissue points, never within a
nodule's radius + margin. Annotations: every nodule (all are ≥ 3 mm), true centre and diameter.
Excluded findings: 1–4 per scan, each centred close to a class-0 candidate so that candidate strictly hits
it (and the FROC ignores it): non-nodules such as scars with diameter −1 (the LUNA16 script reads 10 mm)
or nodules < 3 mm (1–3 mm). They are labels only (nothing extra is drawn) and come from their own random
stream, so adding them left volumes, candidates and annotations unchanged.

Deterministic for a seed: each scan draws from its own child of `numpy.random.SeedSequence(seed)`.
Sizes on disk: small ≈ 34 MB (16 scans, tests, ~3 s), medium ≈ 360 MB (60 scans, ~20 s), large ≈ 2.4 GB (160 scans).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from common.errors import InputError
from common.io import atomic_dir, atomic_path

LUNA16_UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."
UID_DIGITS = 30
SUBSET = "subset0"


@dataclass(frozen=True)
class SyntheticScale:
    """How much data one scale makes: number and size of scans, nodules and candidates."""

    n_scans: int
    shape_zyx: tuple[int, int, int]
    nodules_per_scan: tuple[int, int] = (1, 3)  # inclusive range for scans that have nodules
    nodule_free_share: float = 0.2  # scans with no nodule at all (they still count for FP/scan)
    nodule_diameter_mm: tuple[float, float] = (3.0, 30.0)
    median_diameter_mm: float = 7.0  # log-normal size distribution, most nodules small as in LIDC
    negatives_per_positive: int = 35
    min_negatives_per_scan: int = 40
    tree_depth: int = 5  # bifurcation levels per vessel tree
    trees_per_lung: int = 3
    crossings_per_lung: int = 3


SCALES: dict[str, SyntheticScale] = {
    "small": SyntheticScale(n_scans=20, shape_zyx=(64, 128, 128), nodules_per_scan=(2, 5),
                            nodule_diameter_mm=(3.0, 20.0)),
    "medium": SyntheticScale(n_scans=60, shape_zyx=(96, 176, 176), crossings_per_lung=4),
    "large": SyntheticScale(n_scans=160, shape_zyx=(112, 256, 256), nodules_per_scan=(1, 4),
                            crossings_per_lung=5),
}


@dataclass(frozen=True)
class Appearance:
    """Tissue values (HU) and acquisition ranges; plausible for low-dose chest CT."""

    air_hu: float = -1000.0
    fat_hu: float = -100.0
    soft_tissue_hu: float = 40.0
    lung_hu: float = -850.0
    lung_texture_hu: float = 25.0
    lung_texture_sigma_mm: float = 3.0
    vessel_hu: tuple[float, float] = (50.0, 200.0)
    solid_hu: tuple[float, float] = (-50.0, 80.0)
    ground_glass_hu: tuple[float, float] = (-650.0, -350.0)
    calcified_hu: tuple[float, float] = (250.0, 600.0)
    nodule_kind_p: tuple[float, float, float] = (0.75, 0.15, 0.10)  # solid, ground glass, calcified
    noise_hu: tuple[float, float] = (15.0, 35.0)
    edge_mm: float = 1.0  # width of the soft edge of tubes and spheres
    blur_mm: float = 0.6  # partial-volume blur
    spacing_xy_mm: tuple[float, float] = (0.6, 0.9)
    spacing_z_mm: tuple[float, float] = (1.0, 2.5)
    origin_xy_mm: tuple[float, float] = (-230.0, -140.0)
    origin_z_mm: tuple[float, float] = (-400.0, -60.0)
    vessel_root_radius_mm: tuple[float, float] = (1.8, 2.6)
    vessel_radius_decay: tuple[float, float] = (0.68, 0.8)
    vessel_length_decay: float = 0.8
    branch_angle_deg: tuple[float, float] = (25.0, 50.0)
    min_vessel_radius_mm: float = 0.4
    placement_p: tuple[float, float, float] = (0.5, 0.25, 0.25)  # free, juxtavascular, juxtapleural
    second_candidate_p: float = 0.3
    max_jitter_mm: float = 3.0
    negative_margin_mm: float = 3.0  # negatives stay this far outside every nodule radius
    negative_kind_p: dict[str, float] = field(default_factory=lambda: {
        "vessel": 0.30, "bifurcation": 0.15, "crossing": 0.15, "pleura": 0.15, "lung": 0.15, "tissue": 0.10,
    })
    excluded_per_scan: tuple[int, int] = (1, 4)  # inclusive range of excluded findings per scan
    excluded_unsized_p: float = 0.4  # share of non-nodules written with diameter -1
    excluded_small_mm: tuple[float, float] = (1.0, 3.0)  # nodules < 3 mm
    excluded_offset: float = 0.4  # centre offset from its candidate, as a fraction of the radius read


APPEARANCE = Appearance()


@dataclass
class _Segment:
    """A vessel piece: a capsule from p0 to p1 (local mm, x, y, z) of radius r."""

    p0: np.ndarray
    p1: np.ndarray
    r: float
    hu: float


@dataclass
class _Scan:
    """One synthetic scan: the int16 volume, its geometry and its findings in local mm."""

    volume: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    nodules: list[tuple[np.ndarray, float]]  # (centre, radius)
    candidates: list[tuple[np.ndarray, int]]  # (point, class)


class _Phantom:
    """Builds one scan; holds the grid geometry and the anatomy drawn so far."""

    def __init__(self, rng: np.random.Generator, scale: SyntheticScale, look: Appearance):
        self.rng, self.scale, self.look = rng, scale, look
        nz, ny, nx = scale.shape_zyx
        sxy = float(rng.uniform(*look.spacing_xy_mm))
        self.spacing = np.array([sxy, sxy, rng.uniform(*look.spacing_z_mm)])  # (x, y, z)
        self.shape = np.array([nx, ny, nz])
        self.extent = (self.shape - 1) * self.spacing  # local mm of the last voxel
        self.centre = self.extent / 2
        self.body_axes = np.array([0.47, 0.4]) * self.extent[:2]
        side_offset = 0.21 * self.extent[0]
        lung_axes = np.array([0.17, 0.29, 0.65]) * self.extent
        self.lungs = [
            (self.centre + np.array([sign * side_offset, -0.02 * self.extent[1], 0.0]),
             lung_axes * rng.uniform(0.9, 1.05, size=3))
            for sign in (-1.0, 1.0)
        ]
        self.segments: list[_Segment] = []
        self.bifurcations: list[np.ndarray] = []
        self.crossings: list[np.ndarray] = []

    # -- geometry helpers ------------------------------------------------------------------------
    def axes_mm(self, lo: np.ndarray | None = None, hi: np.ndarray | None = None):
        """Index slices and broadcastable local-mm coordinates (z, y, x grids) of a voxel box."""
        lo_idx = np.zeros(3, int) if lo is None else np.clip(np.floor(lo / self.spacing).astype(int), 0, self.shape)
        hi_idx = self.shape if hi is None else np.clip(np.ceil(hi / self.spacing).astype(int) + 1, 0, self.shape)
        if np.any(hi_idx <= lo_idx):
            return None
        x = np.arange(lo_idx[0], hi_idx[0]) * self.spacing[0]
        y = np.arange(lo_idx[1], hi_idx[1]) * self.spacing[1]
        z = np.arange(lo_idx[2], hi_idx[2]) * self.spacing[2]
        box = (slice(lo_idx[2], hi_idx[2]), slice(lo_idx[1], hi_idx[1]), slice(lo_idx[0], hi_idx[0]))
        return box, z[:, None, None], y[None, :, None], x[None, None, :]

    def lung_q(self, p: np.ndarray) -> float:
        """Smallest normalised ellipsoid radius over both lungs: < 1 means inside a lung."""
        return min(float(np.sum(((p - c) / a) ** 2)) for c, a in self.lungs)

    def in_volume(self, p: np.ndarray, margin: float = 0.0) -> bool:
        """Whether a local-mm point lies in the scanned box, `margin` mm away from its faces."""
        return bool(np.all(p >= margin) and np.all(p <= self.extent - margin))

    def random_unit(self) -> np.ndarray:
        """Uniform random direction."""
        v = self.rng.normal(size=3)
        return v / np.linalg.norm(v)

    def perpendicular(self, v: np.ndarray) -> np.ndarray:
        """A random unit vector orthogonal to v."""
        u = self.random_unit()
        u -= u.dot(v) / v.dot(v) * v
        return u / np.linalg.norm(u)

    # -- anatomy ---------------------------------------------------------------------------------
    def background(self) -> np.ndarray:
        """Air, fat rim, soft tissue and textured lungs, float32 HU (z, y, x)."""
        look = self.look
        _, z, y, x = self.axes_mm()
        body_r = ((x - self.centre[0]) / self.body_axes[0]) ** 2 + ((y - self.centre[1]) / self.body_axes[1]) ** 2
        vol = np.full(tuple(self.shape[::-1]), look.air_hu, dtype=np.float32)
        vol[np.broadcast_to(body_r < 1.0, vol.shape)] = look.fat_hu
        vol[np.broadcast_to(body_r < 0.85, vol.shape)] = look.soft_tissue_hu
        lung = np.zeros(vol.shape, dtype=bool)
        for c, a in self.lungs:
            lung |= ((x - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2 + ((z - c[2]) / a[2]) ** 2 < 1.0
        texture = ndimage.gaussian_filter(
            self.rng.normal(size=vol.shape).astype(np.float32), look.lung_texture_sigma_mm / self.spacing[::-1]
        )
        texture *= look.lung_texture_hu / max(float(texture.std()), 1e-6)
        vol[lung] = look.lung_hu + texture[lung]
        return vol

    def grow_trees(self) -> None:
        """Two branching vessel trees per lung, rooted at the hilum, kept inside the lung."""
        look = self.look
        for (c, a), side in zip(self.lungs, (1.0, -1.0), strict=True):  # side points to the mediastinum
            for up in np.linspace(1.0, -1.0, self.scale.trees_per_lung):
                root = c + np.array([side * 0.6 * a[0], self.rng.uniform(-0.2, 0.2) * a[1],
                                     up * self.rng.uniform(0.0, 0.15) * a[2]])
                direction = np.array([-side, self.rng.uniform(-0.7, 0.7), up + self.rng.uniform(-0.4, 0.4)])
                radius = float(self.rng.uniform(*look.vessel_root_radius_mm))
                hu = float(self.rng.uniform(*look.vessel_hu))
                self._branch(root, direction / np.linalg.norm(direction), radius, 0.5 * a[0], hu, 0)

    def _branch(self, start: np.ndarray, direction: np.ndarray, radius: float, length: float, hu: float,
                depth: int) -> None:
        """Draw one segment, then recurse into two children turned away from each other."""
        end = None
        for _ in range(3):
            candidate = start + direction * length
            if self.lung_q(candidate) < 0.95:
                end = candidate
                break
            length /= 2
        if end is None:
            return
        self.segments.append(_Segment(start, end, radius, hu))
        if depth >= self.scale.tree_depth or radius < self.look.min_vessel_radius_mm:
            return
        self.bifurcations.append(end)
        normal = self.perpendicular(direction)
        for sign in (1.0, -1.0):
            angle = np.deg2rad(self.rng.uniform(*self.look.branch_angle_deg))
            child = np.cos(angle) * direction + sign * np.sin(angle) * normal
            self._branch(end, child / np.linalg.norm(child), radius * self.rng.uniform(*self.look.vessel_radius_decay),
                         length * self.look.vessel_length_decay, hu, depth + 1)

    def add_crossings(self) -> None:
        """Extra vessels that pass through existing ones at a right-ish angle (blob-like in thick slices)."""
        thick = [s for s in self.segments if s.r >= 0.8]
        wanted = self.scale.crossings_per_lung * len(self.lungs)
        for _ in range(wanted * 10):
            if len(self.crossings) >= wanted or not thick:
                break
            seg = thick[int(self.rng.integers(len(thick)))]
            axis = seg.p1 - seg.p0
            point = seg.p0 + self.rng.uniform(0.3, 0.7) * axis
            direction = self.perpendicular(axis)
            r = min(seg.r * float(self.rng.uniform(0.7, 1.1)), 2.5)
            shift = self.perpendicular(direction) * self.rng.uniform(0.0, 0.5) * (seg.r + r)
            half = float(self.rng.uniform(5.0, 10.0))
            p0, p1 = point + shift - direction * half, point + shift + direction * half
            if self.lung_q(p0) < 0.95 and self.lung_q(p1) < 0.95:
                self.segments.append(_Segment(p0, p1, r, float(self.rng.uniform(*self.look.vessel_hu))))
                self.crossings.append(point + shift / 2)

    def draw_vessels(self, vol: np.ndarray) -> None:
        """Blend every capsule into the volume with a soft edge (the strongest occupancy wins)."""
        occupancy = np.zeros(vol.shape, dtype=np.float32)
        value = np.zeros(vol.shape, dtype=np.float32)
        edge = self.look.edge_mm
        for seg in self.segments:
            pad = seg.r + edge
            grid = self.axes_mm(np.minimum(seg.p0, seg.p1) - pad, np.maximum(seg.p0, seg.p1) + pad)
            if grid is None:
                continue
            box, z, y, x = grid
            v = seg.p1 - seg.p0
            t = ((x - seg.p0[0]) * v[0] + (y - seg.p0[1]) * v[1] + (z - seg.p0[2]) * v[2]) / max(v.dot(v), 1e-9)
            t = np.clip(t, 0.0, 1.0)
            d2 = (x - seg.p0[0] - t * v[0]) ** 2 + (y - seg.p0[1] - t * v[1]) ** 2 + (z - seg.p0[2] - t * v[2]) ** 2
            occ = np.clip((seg.r - np.sqrt(d2)) / edge + 0.5, 0.0, 1.0).astype(np.float32)
            better = occ > occupancy[box]
            occupancy[box] = np.where(better, occ, occupancy[box])
            value[box] = np.where(better, seg.hu, value[box])
        np.multiply(vol, 1.0 - occupancy, out=vol)
        vol += value * occupancy

    def place_nodules(self) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Nodule centres, radii and axis ratios: free in the lung, on a vessel, or on the pleura."""
        lo, hi = self.scale.nodules_per_scan
        wanted = 0 if self.rng.random() < self.scale.nodule_free_share else int(self.rng.integers(lo, hi + 1))
        nodules: list[tuple[np.ndarray, float, np.ndarray]] = []
        for _ in range(wanted * 50):
            if len(nodules) >= wanted:
                break
            d_min, d_max = self.scale.nodule_diameter_mm
            diameter = float(np.clip(np.exp(self.rng.normal(np.log(self.scale.median_diameter_mm), 0.5)), d_min, d_max))
            r = diameter / 2
            kind = self.rng.choice(3, p=self.look.placement_p)
            c, a = self.lungs[int(self.rng.integers(2))]
            if kind == 0:  # free in the lung
                centre = c + self.random_unit() * a * self.rng.uniform(0.0, 0.8)
                ok = self._depth_in_lung(centre) > r + 2.0
            elif kind == 1:  # touching a vessel
                seg = self.segments[int(self.rng.integers(len(self.segments)))] if self.segments else None
                if seg is None:
                    continue
                on_axis = seg.p0 + self.rng.uniform(0.2, 0.8) * (seg.p1 - seg.p0)
                centre = on_axis + self.perpendicular(seg.p1 - seg.p0) * (r + 0.5 * seg.r)
                ok = self._depth_in_lung(centre) > r
            else:  # touching the pleura: a surface point moved inwards by less than the radius
                surface = c + a * self.random_unit()
                inward = (c - surface) / np.linalg.norm(c - surface)
                centre = surface + inward * r * self.rng.uniform(0.6, 0.95)
                ok = self.lung_q(centre) < 1.0
            ok = ok and self.in_volume(centre, margin=r + 1.0)
            ok = ok and all(np.linalg.norm(centre - o) > r + ro + 5.0 for o, ro, _ in nodules)
            if ok:
                ratios = self.rng.uniform(0.85, 1.15, size=3)
                nodules.append((centre, r, ratios / np.prod(ratios) ** (1 / 3)))
        return nodules

    def _depth_in_lung(self, p: np.ndarray) -> float:
        """Approximate distance (mm) from p to the wall of the lung holding it (≤ 0 when outside)."""
        return max(float((1.0 - np.sqrt(np.sum(((p - c) / a) ** 2))) * a.min()) for c, a in self.lungs)

    def draw_nodules(self, vol: np.ndarray, nodules: list[tuple[np.ndarray, float, np.ndarray]]) -> None:
        """Blend soft-edged ellipsoids; max() keeps vessels visible through ground-glass nodules."""
        look = self.look
        kinds = (look.solid_hu, look.ground_glass_hu, look.calcified_hu)
        for centre, r, ratios in nodules:
            hu = float(self.rng.uniform(*kinds[self.rng.choice(3, p=look.nodule_kind_p)]))
            pad = r * ratios.max() + look.edge_mm
            grid = self.axes_mm(centre - pad, centre + pad)
            if grid is None:
                continue
            box, z, y, x = grid
            d = np.sqrt(((x - centre[0]) / ratios[0]) ** 2 + ((y - centre[1]) / ratios[1]) ** 2
                        + ((z - centre[2]) / ratios[2]) ** 2)
            occ = np.clip((r - d) / look.edge_mm + 0.5, 0.0, 1.0).astype(np.float32)
            vol[box] = np.maximum(vol[box], vol[box] * (1.0 - occ) + hu * occ)

    # -- candidates ------------------------------------------------------------------------------
    def candidates(self, nodules: list[tuple[np.ndarray, float, np.ndarray]]) -> list[tuple[np.ndarray, int]]:
        """Jittered positives (1–2 per nodule) and hard negatives away from every nodule."""
        look = self.look
        out: list[tuple[np.ndarray, int]] = []
        for centre, r, _ in nodules:
            copies = 2 if self.rng.random() < look.second_candidate_p else 1
            for _ in range(copies):
                jitter = self.random_unit() * self.rng.uniform(0.0, min(0.5 * r, look.max_jitter_mm))
                out.append((centre + jitter, 1))
        n_neg = max(self.scale.negatives_per_positive * len(out), self.scale.min_negatives_per_scan)
        kinds = list(look.negative_kind_p)
        weights = np.array([look.negative_kind_p[k] for k in kinds])
        negatives = 0
        for _ in range(n_neg * 50):
            if negatives >= n_neg:
                break
            point = self._negative(kinds[self.rng.choice(len(kinds), p=weights / weights.sum())])
            if point is None or not self.in_volume(point):
                continue
            if any(np.linalg.norm(point - c) <= r * ratios.max() + look.negative_margin_mm for c, r, ratios in nodules):
                continue
            out.append((point, 0))
            negatives += 1
        return out

    def _negative(self, kind: str) -> np.ndarray | None:
        """One hard-negative point of the given kind (local mm), or None if the kind has none."""
        jitter = self.rng.normal(scale=0.7, size=3)
        if kind == "vessel" and self.segments:
            radii = np.array([s.r for s in self.segments])
            seg = self.segments[self.rng.choice(len(radii), p=radii / radii.sum())]
            return seg.p0 + self.rng.uniform(0.1, 0.9) * (seg.p1 - seg.p0) + jitter
        if kind == "bifurcation" and self.bifurcations:
            return self.bifurcations[int(self.rng.integers(len(self.bifurcations)))] + jitter
        if kind == "crossing" and self.crossings:
            return self.crossings[int(self.rng.integers(len(self.crossings)))] + jitter
        if kind == "pleura":
            c, a = self.lungs[int(self.rng.integers(2))]
            return c + a * self.random_unit() + jitter
        if kind == "tissue":
            angle = self.rng.uniform(0, 2 * np.pi)
            rho = np.sqrt(self.rng.uniform(0, 0.8))
            xy = self.centre[:2] + rho * self.body_axes * np.array([np.cos(angle), np.sin(angle)])
            point = np.array([xy[0], xy[1], self.rng.uniform(0, self.extent[2])])
            return point if self.lung_q(point) > 1.1 else None
        c, a = self.lungs[int(self.rng.integers(2))]  # "lung" and fall-back
        return c + self.random_unit() * a * self.rng.uniform(0.0, 0.9)

    # -- acquisition -----------------------------------------------------------------------------
    def acquire(self, vol: np.ndarray) -> np.ndarray:
        """Partial-volume blur plus Gaussian noise, rounded to int16 HU."""
        vol = ndimage.gaussian_filter(vol, self.look.blur_mm / self.spacing[::-1])
        vol += self.rng.normal(scale=self.rng.uniform(*self.look.noise_hu), size=vol.shape).astype(np.float32)
        return np.clip(np.rint(vol), np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(np.int16)


def make_scan(rng: np.random.Generator, scale: SyntheticScale, look: Appearance = APPEARANCE) -> _Scan:
    """Generate one scan in memory (volume in HU, findings in local mm)."""
    phantom = _Phantom(rng, scale, look)
    vol = phantom.background()
    phantom.grow_trees()
    phantom.add_crossings()
    phantom.draw_vessels(vol)
    nodules = phantom.place_nodules()
    phantom.draw_nodules(vol, nodules)
    candidates = phantom.candidates(nodules)
    origin = (float(rng.uniform(*look.origin_xy_mm)), float(rng.uniform(*look.origin_xy_mm)),
              float(rng.uniform(*look.origin_z_mm)))
    spacing = (float(phantom.spacing[0]), float(phantom.spacing[1]), float(phantom.spacing[2]))
    return _Scan(phantom.acquire(vol), spacing, origin, [(c, r) for c, r, _ in nodules], candidates)


def resolve_scale(scale: str | SyntheticScale) -> SyntheticScale:
    """A named scale or a custom `SyntheticScale` (tests use tiny ones)."""
    if isinstance(scale, SyntheticScale):
        return scale
    if scale not in SCALES:
        raise InputError(None, f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    return SCALES[scale]


def _seriesuids(rng: np.random.Generator, n: int) -> list[str]:
    """Distinct LUNA16-looking seriesuids."""
    uids: list[str] = []
    while len(uids) < n:
        digits = str(rng.integers(1, 10)) + "".join(map(str, rng.integers(0, 10, size=UID_DIGITS - 1)))
        uid = LUNA16_UID_PREFIX + digits
        if uid not in uids:
            uids.append(uid)
    return uids


UNSIZED_DIAMETER_MM = -1.0  # annotations_excluded.csv's "no size"; the LUNA16 script reads it as 10 mm
UNSIZED_READ_AS_MM = 10.0


def excluded_findings(rng: np.random.Generator, scan: _Scan, look: Appearance = APPEARANCE) -> list[tuple]:
    """Findings to exclude from the FROC (local mm centre, diameter_mm), each on a class-0 candidate.

    The centre is moved from the candidate by less than half the radius the evaluation reads, so the
    candidate hits the finding strictly even after coordinates are rounded to 1e-4 mm.
    """
    negatives = [point for point, label in scan.candidates if label == 0]
    lo, hi = look.excluded_per_scan
    wanted = min(int(rng.integers(lo, hi + 1)), len(negatives))
    findings = []
    for index in rng.choice(len(negatives), size=wanted, replace=False):
        unsized = rng.random() < look.excluded_unsized_p
        diameter = UNSIZED_DIAMETER_MM if unsized else float(rng.uniform(*look.excluded_small_mm))
        radius_read = (UNSIZED_READ_AS_MM if unsized else diameter) / 2
        offset = rng.normal(size=3)
        offset *= look.excluded_offset * radius_read * rng.uniform(0.0, 1.0) / np.linalg.norm(offset)
        findings.append((negatives[int(index)] + offset, diameter))
    return findings


def write_synthetic_luna16(out_dir: str | Path, scale: str | SyntheticScale = "small", seed: int = 0) -> Path:
    """Write a synthetic LUNA16 dataset (volumes, candidates.csv, annotations.csv, annotations_excluded.csv)."""
    spec = resolve_scale(scale)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder")
    seeds = np.random.SeedSequence(seed)
    uid_seed, *scan_seeds = seeds.spawn(spec.n_scans + 1)
    uids = _seriesuids(np.random.default_rng(uid_seed), spec.n_scans)
    excluded_rng = np.random.default_rng(seeds.spawn(1)[0])  # its own stream: the scans stay as they were
    cand_rows: list[tuple] = []
    ann_rows: list[tuple] = []
    excluded_rows: list[tuple] = []
    with atomic_dir(out_dir / SUBSET) as subset:
        for uid, scan_seed in zip(uids, scan_seeds, strict=True):
            rng = np.random.default_rng(scan_seed)
            scan = make_scan(rng, spec)
            image = sitk.GetImageFromArray(scan.volume)  # (z, y, x) array -> (x, y, z) image
            image.SetSpacing(scan.spacing)
            image.SetOrigin(scan.origin)
            sitk.WriteImage(image, str(subset / f"{uid}.mhd"))
            origin = np.asarray(scan.origin)
            order = rng.permutation(len(scan.candidates))
            for i in order:
                point, label = scan.candidates[i]
                cand_rows.append((uid, *np.round(point + origin, 4), label))
            for centre, r in scan.nodules:
                ann_rows.append((uid, *np.round(centre + origin, 4), round(2 * r, 4)))
            for centre, diameter in excluded_findings(excluded_rng, scan):
                excluded_rows.append((uid, *np.round(centre + origin, 4), round(diameter, 4)))
    finding_columns = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
    candidates = pd.DataFrame(cand_rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "class"])
    annotations = pd.DataFrame(ann_rows, columns=finding_columns)
    excluded = pd.DataFrame(excluded_rows, columns=finding_columns)
    for name, table in (("annotations.csv", annotations), ("annotations_excluded.csv", excluded),
                        ("candidates.csv", candidates)):
        with atomic_path(out_dir / name) as tmp:
            table.to_csv(tmp, index=False)
    return out_dir

