"""LUNA16 FROC analysis, CPM and its bootstrap interval, computed as the official evaluation script does.

The protocol of `noduleCADEvaluationLUNA16.py` (the LUNA16 challenge script), rule by rule:

1. Scans. Only the scans of the series list count (`seriesuids.csv`, one uid per line); their number is
   the divisor of "false positives per scan", so a scan without any mark still lowers FPs/scan, and the
   nodules of a scan without marks are all missed. Marks and findings of other scans are ignored.
2. Mark cap. A scan with more than 100 marks keeps only those whose probability is strictly greater than
   the 101st highest: the top 100 when probabilities are distinct, fewer when marks tie at the cut (all
   marks tied with the 101st are dropped). No error is raised.
3. Hit rule. A mark hits a finding when its squared distance to the finding's centre is strictly below
   the squared radius, (dx² + dy²) + dz² < (diameter / 2)² in world mm; a diameter < 0 (−1: "size
   unknown", common in `annotations_excluded.csv`) counts as 10 mm. A mark exactly on the sphere misses.
4. Nodules (`annotations.csv`). Each nodule counts once, with the highest probability among the marks
   hitting it; the other marks on it are neither true nor false positives. A mark inside two nodules
   detects both. A nodule without a hit stays in the total (sensitivity's denominator) but never enters
   the ROC analysis, so it is missed at every threshold.
5. Excluded findings (`annotations_excluded.csv`: non-nodules, nodules < 3 mm, nodules accepted by fewer
   than 3 of 4 radiologists). A mark hitting one and no nodule is ignored: not a false positive. Nodules
   are matched first, so a mark hitting both a nodule and an excluded finding still detects the nodule.
6. FROC. Every other mark is a false positive. Thresholds sweep the distinct probabilities of the
   detected nodules and false positives (ties form one operating point); the curve starts at (0, 0) and
   joins its operating points by straight lines in the linear FPs/scan axis (`np.interp`), flat after the
   last point. With no false positive at all every point sits at 0 FPs/scan. FPs/scan and sensitivity
   are rounded as the script's sklearn-based arithmetic rounds them ((fp / n_fp) · n_fp / n_scans), so a
   rate that falls exactly on a vertical step is read on the same side of the step (np.interp takes the
   last of equal abscissae).
7. Sensitivity at 1/8, 1/4, 1/2, 1, 2, 4, 8 FPs/scan is read from that polyline with `np.interp`;
   CPM = their mean.
8. Bootstrap. 1000 resamples of the series list with replacement (`randint(n_scans, size=n_scans)` of
   NumPy's legacy Mersenne-Twister, one call per resample, a scan drawn twice contributes its nodules and
   marks twice, the divisor stays n_scans); each resample's FROC is read as in 7. The official script
   sorts the resampled values and takes element ⌊0.025·n⌋ and ⌊0.975·n⌋ (of each FP rate's column); here
   the same sort-and-index rule is applied to each resample's CPM, which gives the CPM's 95 % interval.
   Seeded (`BOOTSTRAP_SEED` = 0 by default) where the script uses the global, unseeded generator:
   `np.random.seed(seed)` before the official resampling draws exactly the same resamples.

Where this differs from the script, on purpose, only in degenerate cases: when no nodule is detected at
all the script's sklearn call returns NaN sensitivities (0/0); here they are 0. A resample without any
nodule has no CPM and is left out of the interval (the script sorts such NaNs last, so its upper bound
can come out NaN). A resample without a single ROC entry crashes the script; here it scores 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.errors import InputError

FROC_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1, 2, 4, 8)
MAX_MARKS_PER_SCAN = 100
UNSIZED_DIAMETER_MM = 10.0  # what a diameter < 0 (−1 in annotations_excluded.csv) stands for
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
BOOTSTRAP_CONFIDENCE = 0.95
METRIC_KEYS: tuple[str, ...] = ("cpm", "cpm_ci_low", "cpm_ci_high",
                                *(f"sensitivity_at_{rate:g}" for rate in FROC_FP_RATES))

_COORDS = ["coordX", "coordY", "coordZ"]
_FINDING_COLUMNS = ["seriesuid", *_COORDS, "diameter_mm"]
_MARK_COLUMNS = ["seriesuid", *_COORDS, "probability"]


@dataclass
class FROCResult:
    """FROC curve, sensitivities at the LUNA16 FP rates and their mean (CPM)."""

    cpm: float
    sensitivities: tuple[float, ...]  # at FROC_FP_RATES, read by linear interpolation
    fps_per_scan: np.ndarray  # operating points, thresholds descending, starting at (0, 0)
    sensitivity_curve: np.ndarray
    n_nodules: int
    n_scans: int
    thresholds: np.ndarray  # probability threshold of each operating point (+inf for the first)
    n_detected: int = 0  # nodules hit by at least one kept mark
    n_marks_ignored: int = 0  # marks on excluded findings only
    n_marks_over_cap: int = 0  # marks dropped by the 100-marks-per-scan cap


@dataclass
class FROCBootstrap:
    """Bootstrap over scans: each resample's CPM and sensitivities, and the percentile intervals."""

    cpm_low: float
    cpm_high: float
    cpm_samples: np.ndarray  # (resamples,), in draw order
    sensitivity_low: tuple[float, ...]  # per FP rate, the script's per-rate band read at FROC_FP_RATES
    sensitivity_high: tuple[float, ...]


@dataclass
class _Entries:
    """The script's FROC vectors: one entry per nodule and per false positive, with its scan."""

    is_nodule: np.ndarray  # bool
    probability: np.ndarray  # float; -inf for a missed nodule (kept out of the ROC analysis)
    scan: np.ndarray  # int index into the scan list
    n_scans: int
    n_marks_ignored: int = 0
    n_marks_over_cap: int = 0
    # Entries in the ROC analysis sorted by descending probability, and where each distinct value ends.
    _order: np.ndarray = field(init=False, repr=False)
    _ends: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ranked = np.flatnonzero(np.isfinite(self.probability))
        self._order = ranked[np.argsort(-self.probability[ranked], kind="stable")]
        values = self.probability[self._order]
        self._ends = np.flatnonzero(np.r_[values[1:] != values[:-1], True]) if len(values) else np.empty(0, int)

    def curve(self, scan_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(FPs per scan, sensitivity, threshold) at (0, 0) and each distinct probability, descending.

        `scan_weights` counts how often each scan is in the set (a bootstrap resample); None = once each.
        A zero weight can repeat an operating point, which leaves the interpolated curve unchanged.
        """
        weight = np.ones(self.n_scans) if scan_weights is None else np.asarray(scan_weights, dtype=float)
        entry_weight = weight[self.scan]
        n_nodules = float(entry_weight[self.is_nodule].sum())
        ranked_weight = entry_weight[self._order]
        ranked_nodule = self.is_nodule[self._order]
        tp = np.r_[0.0, np.cumsum(np.where(ranked_nodule, ranked_weight, 0.0))[self._ends]]
        fp = np.r_[0.0, np.cumsum(np.where(ranked_nodule, 0.0, ranked_weight))[self._ends]]
        # Rounded as the script's ROC-based arithmetic rounds, (fp / n_fp) · n_fp / n_scans: a rate that falls
        # exactly on a vertical step of the curve is read on the same side of the step as there.
        n_fp, n_detected = fp[-1], tp[-1]
        fps = fp / n_fp * n_fp / self.n_scans if n_fp > 0 else np.zeros(len(fp))
        if n_nodules == 0:
            sens = np.full(len(tp), np.nan)
        else:
            sens = tp / n_detected * n_detected / n_nodules if n_detected > 0 else np.zeros(len(tp))
        thresholds = np.r_[np.inf, self.probability[self._order][self._ends]]
        return fps, sens, thresholds


def _numbers(table: pd.DataFrame, name: str, columns: list[str]) -> np.ndarray:
    """Columns as float64, refusing text, missing and infinite values with one line."""
    try:
        values = table[columns].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise InputError(None, f"{name}: non-numeric values in {', '.join(columns)}") from None
    bad = ~np.isfinite(values)
    if bad.any():
        column = columns[int(np.flatnonzero(bad.any(axis=0))[0])]
        raise InputError(None, f"{name}: column {column} has missing or non-finite values")
    return values


def _need(table: pd.DataFrame, name: str, columns: list[str]) -> None:
    """Fail with one line when a table lacks a column."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(None, f"{name}: missing column {missing[0]}")


def _by_scan(table: pd.DataFrame, name: str, columns: list[str], wanted: set[str]) -> dict[str, np.ndarray]:
    """Numeric columns of the rows of each wanted scan, in file order."""
    _need(table, name, columns)
    uids = table["seriesuid"].astype(str).str.strip().to_numpy()
    keep = np.isin(uids, list(wanted))
    values = _numbers(table.loc[keep], name, columns[1:])
    uids = uids[keep]
    if not len(uids):
        return {}
    order = np.argsort(uids, kind="stable")
    starts = np.flatnonzero(np.r_[True, uids[order][1:] != uids[order][:-1]])
    return {uids[order[s]]: values[order[s:e]] for s, e in zip(starts, np.r_[starts[1:], len(order)], strict=True)}


def _squared_radius(diameters: np.ndarray) -> np.ndarray:
    """(diameter / 2)², a negative diameter standing for `UNSIZED_DIAMETER_MM`."""
    diameter = np.where(diameters < 0.0, UNSIZED_DIAMETER_MM, diameters)
    return (diameter / 2.0) * (diameter / 2.0)


def _hits(marks_xyz: np.ndarray, findings: np.ndarray) -> np.ndarray:
    """(marks, findings) bool: squared distance strictly below the squared radius, summed x, y, z in order."""
    diff = findings[None, :, :3] - marks_xyz[:, None, :]
    squared = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]
    return squared < _squared_radius(findings[:, 3])[None, :]


def _keep_most_suspicious(probs: np.ndarray, cap: int) -> np.ndarray:
    """Mask of the marks the script keeps: all when ≤ cap, else those strictly above the (cap+1)-th highest."""
    if cap <= 0 or len(probs) <= cap:
        return np.ones(len(probs), dtype=bool)
    return probs > np.sort(probs)[::-1][cap]


def _match(predictions: pd.DataFrame, annotations: pd.DataFrame, excluded: pd.DataFrame | None,
           scans: list[str], max_marks_per_scan: int) -> _Entries:
    """Apply the cap and the hit rules scan by scan, producing the script's FROC entries."""
    wanted = set(scans)
    marks = _by_scan(predictions, "predictions", _MARK_COLUMNS, wanted)
    nodules = _by_scan(annotations, "annotations", _FINDING_COLUMNS, wanted)
    others = {} if excluded is None else _by_scan(excluded, "excluded findings", _FINDING_COLUMNS, wanted)
    is_nodule, probability, scan_of = [], [], []
    ignored = over_cap = 0
    for index, uid in enumerate(scans):
        scan_marks = marks.get(uid, np.empty((0, 4)))
        keep = _keep_most_suspicious(scan_marks[:, 3], max_marks_per_scan)
        over_cap += int((~keep).sum())
        scan_marks = scan_marks[keep]
        xyz, probs = scan_marks[:, :3], scan_marks[:, 3]
        scan_nodules = nodules.get(uid, np.empty((0, 4)))
        on_nodule = _hits(xyz, scan_nodules)
        best = np.where(on_nodule, probs[:, None], -np.inf).max(axis=0, initial=-np.inf)
        on_nodule_any = on_nodule.any(axis=1)
        on_excluded = _hits(xyz, others.get(uid, np.empty((0, 4)))).any(axis=1) & ~on_nodule_any
        ignored += int(on_excluded.sum())
        false_positive = probs[~on_nodule_any & ~on_excluded]
        is_nodule += [np.ones(len(best), bool), np.zeros(len(false_positive), bool)]
        probability += [best, false_positive]
        scan_of.append(np.full(len(best) + len(false_positive), index))
    return _Entries(np.concatenate(is_nodule), np.concatenate(probability).astype(float),
                    np.concatenate(scan_of).astype(int), len(scans), ignored, over_cap)


def _read_out(fps: np.ndarray, sens: np.ndarray) -> np.ndarray:
    """Sensitivities at FROC_FP_RATES by linear interpolation of the FROC polyline (flat past its end)."""
    return np.interp(np.asarray(FROC_FP_RATES, dtype=float), fps, sens)


def _result(entries: _Entries) -> FROCResult:
    """FROCResult of matched entries."""
    fps, sens, thresholds = entries.curve()
    n_nodules = int(entries.is_nodule.sum())
    at_rates = _read_out(fps, sens)
    return FROCResult(
        cpm=float(np.mean(at_rates)), sensitivities=tuple(float(s) for s in at_rates), fps_per_scan=fps,
        sensitivity_curve=sens, n_nodules=n_nodules, n_scans=entries.n_scans, thresholds=thresholds,
        n_detected=int((entries.is_nodule & np.isfinite(entries.probability)).sum()),
        n_marks_ignored=entries.n_marks_ignored, n_marks_over_cap=entries.n_marks_over_cap,
    )


def _scan_list(seriesuids: list[str]) -> list[str]:
    """Scans in order, once each."""
    scans = list(dict.fromkeys(str(s).strip() for s in seriesuids))
    if not scans:
        raise InputError(None, "FROC needs at least one scan")
    return scans


def compute_froc(predictions: pd.DataFrame, annotations: pd.DataFrame, seriesuids: list[str],
                 excluded: pd.DataFrame | None = None,
                 max_marks_per_scan: int = MAX_MARKS_PER_SCAN) -> FROCResult:
    """FROC and CPM of marks (seriesuid, coordX/Y/Z, probability) over the scans `seriesuids`.

    `excluded`: findings whose marks are ignored (annotations_excluded.csv). Rows of other scans are
    ignored; CPM is NaN when those scans hold no nodule. `max_marks_per_scan` = 0 disables the cap.
    """
    entries = _match(predictions, annotations, excluded, _scan_list(seriesuids), max_marks_per_scan)
    return _result(entries)


def _percentile_pair(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The script's interval: sort, take elements ⌊Pz·n⌋ and ⌊(1 − Pz)·n⌋, Pz = (1 − c) / 2.

    Resamples without any nodule (undefined, NaN) are left out; the script would sort its NaNs last and
    could return one as the upper bound. NaN when no resample is defined.
    """
    ranked = np.sort(values[~np.isnan(values)])
    if not len(ranked):
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    return float(ranked[math.floor(tail * len(ranked))]), float(ranked[math.floor((1.0 - tail) * len(ranked))])


def _bootstrap(entries: _Entries, resamples: int, seed: int, confidence: float) -> FROCBootstrap:
    """Resample scans with replacement as the script does (same legacy-RNG calls, same order)."""
    rng = np.random.RandomState(seed)
    per_rate = np.empty((resamples, len(FROC_FP_RATES)))
    for i in range(resamples):
        drawn = rng.randint(entries.n_scans, size=entries.n_scans)
        fps, sens, _ = entries.curve(np.bincount(drawn, minlength=entries.n_scans))
        per_rate[i] = _read_out(fps, sens)
    cpm = per_rate.mean(axis=1)
    low, high = _percentile_pair(cpm, confidence)
    bands = [_percentile_pair(per_rate[:, j], confidence) for j in range(len(FROC_FP_RATES))]
    return FROCBootstrap(low, high, cpm, tuple(b[0] for b in bands), tuple(b[1] for b in bands))


def bootstrap_froc(predictions: pd.DataFrame, annotations: pd.DataFrame, seriesuids: list[str],
                   excluded: pd.DataFrame | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED, confidence: float = BOOTSTRAP_CONFIDENCE) -> FROCBootstrap:
    """Bootstrap interval of the CPM (and per-rate bands) over scans, reproducible for a seed."""
    if resamples < 1:
        raise InputError(None, "bootstrap needs at least one resample")
    entries = _match(predictions, annotations, excluded, _scan_list(seriesuids), MAX_MARKS_PER_SCAN)
    return _bootstrap(entries, resamples, seed, confidence)


def evaluate_submission(annotations: pd.DataFrame, submission: pd.DataFrame, excluded: pd.DataFrame | None,
                        seriesuids: list[str] | None, bootstrap: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """The `suite evaluate medical` metrics (METRIC_KEYS) of a LUNA16 submission.

    Scans evaluated: `seriesuids` (a submission row of another scan is an error), else the submission's
    scans in order of appearance. `bootstrap` = 0 skips the interval (NaN bounds).
    """
    _need(submission, "submission", _MARK_COLUMNS)
    _need(annotations, "annotations", _FINDING_COLUMNS)
    if excluded is not None:
        _need(excluded, "excluded findings", _FINDING_COLUMNS)
    if bootstrap < 0:
        raise InputError(None, "bootstrap must be 0 (no interval) or a number of resamples")
    submitted = submission["seriesuid"].astype(str).str.strip()
    if seriesuids is None:
        scans = list(dict.fromkeys(submitted))
    else:
        scans = [str(s).strip() for s in seriesuids]
        seen: set[str] = set()
        for uid in scans:
            if uid in seen:
                raise InputError(None, f"series list: seriesuid {uid} appears twice")
            seen.add(uid)
        stray = ~submitted.isin(seen).to_numpy()
        if stray.any():
            row = int(np.flatnonzero(stray)[0])
            raise InputError(None, f"submission: row {row + 1}: seriesuid {submitted.iloc[row]} is not in the "
                                   "series list")
    if not scans:
        raise InputError(None, "no scan to evaluate (empty submission and no series list)")
    entries = _match(submission, annotations, excluded, scans, MAX_MARKS_PER_SCAN)
    if not entries.is_nodule.any():
        raise InputError(None, f"annotations: no nodule in the {len(scans)} evaluated scans, so sensitivity "
                               "is undefined")
    result = _result(entries)
    low = high = float("nan")
    if bootstrap:
        interval = _bootstrap(entries, bootstrap, seed, BOOTSTRAP_CONFIDENCE)
        low, high = interval.cpm_low, interval.cpm_high
    metrics = {"cpm": result.cpm, "cpm_ci_low": low, "cpm_ci_high": high}
    metrics.update({f"sensitivity_at_{rate:g}": s for rate, s in zip(FROC_FP_RATES, result.sensitivities,
                                                                    strict=True)})
    return metrics


# --------------------------------------------------------------------------------------------------
# Files: the CLI's `suite evaluate medical`
# --------------------------------------------------------------------------------------------------
def read_series_list(path: Path) -> list[str]:
    """seriesuids, one per line (the first comma-separated field, as the script's CSV read takes it).

    Blank lines and a first line `seriesuid` (a header) are skipped; a uid listed twice is an error,
    since the script would count that scan twice in FPs/scan.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text (expected one seriesuid per line)") from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror})") from None
    uids: list[str] = []
    line_of: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        uid = line.split(",", 1)[0].strip()
        if not uid or (not uids and uid == "seriesuid"):
            continue
        if uid in line_of:
            raise InputError(path, f"line {number}: seriesuid {uid} listed twice (first on line {line_of[uid]})")
        line_of[uid] = number
        uids.append(uid)
    if not uids:
        raise InputError(path, "no seriesuid listed")
    return uids


def evaluate_files(annotations: Path, submission: Path, excluded: Path | None, series: Path | None,
                   bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, float]:
    """`evaluate_submission` on CSV files; every bad input is an InputError naming the file and line."""
    from apps.medical.reader import read_luna16_table

    truth = read_luna16_table(annotations, tuple(_FINDING_COLUMNS), tuple(_FINDING_COLUMNS[1:]))
    marks = read_luna16_table(submission, tuple(_MARK_COLUMNS), tuple(_MARK_COLUMNS[1:]))
    ignored = None
    if excluded is not None:
        ignored = read_luna16_table(excluded, tuple(_FINDING_COLUMNS), tuple(_FINDING_COLUMNS[1:]))
    scans = None
    if series is not None:
        scans = read_series_list(series)
        listed = set(scans)
        stray = np.flatnonzero(~marks["seriesuid"].isin(listed).to_numpy())
        if len(stray):
            row = int(stray[0])
            raise InputError(submission, f"line {row + 2}: seriesuid {marks['seriesuid'].iloc[row]} is not in "
                                         f"the series list {series}")
    elif marks.empty:
        raise InputError(submission, "no marks, and no --series to say which scans were evaluated")
    evaluated = set(scans if scans is not None else marks["seriesuid"])
    if not truth["seriesuid"].isin(evaluated).any():
        raise InputError(annotations, f"no nodule in the {len(evaluated)} evaluated scans, so sensitivity is "
                                      "undefined")
    return evaluate_submission(truth, marks, ignored, scans, bootstrap, seed)


# --------------------------------------------------------------------------------------------------
# Plot and curve table
# --------------------------------------------------------------------------------------------------
_PLOT_RANGE = (FROC_FP_RATES[0] / 2, FROC_FP_RATES[-1] * 2)


def interpolated_froc(result: FROCResult, points: int = 257) -> tuple[np.ndarray, np.ndarray]:
    """The FROC as CPM reads it (linear interpolation in FPs/scan), sampled on a log grid for drawing."""
    fp_rates = np.geomspace(*_PLOT_RANGE, points)
    return fp_rates, np.interp(fp_rates, result.fps_per_scan, result.sensitivity_curve)


def froc_curve_table(result: FROCResult) -> pd.DataFrame:
    """The interpolated FROC as a small table (`curves/froc_test.json`, overlaid by `suite compare --plot`)."""
    fp_rates, sens = interpolated_froc(result, points=97)
    return pd.DataFrame({"fp_per_scan": fp_rates, "sensitivity": sens})


def plot_froc(result: FROCResult) -> Figure:
    """FROC on a log FP/scan axis: the interpolated curve CPM reads, its seven points marked (Agg, no pyplot)."""
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    fp_rates, sens = interpolated_froc(result)
    ax.plot(fp_rates, sens, color="C0", label="FROC (interpolated)")
    ax.plot(FROC_FP_RATES, result.sensitivities, "o", color="C3", label="LUNA16 FP rates")
    ax.set_xscale("log")
    ax.set_xlim(*_PLOT_RANGE)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(FROC_FP_RATES, [f"{r:g}" for r in FROC_FP_RATES])
    ax.set_xlabel("average false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"FROC: CPM {result.cpm:.3f} ({result.n_nodules} nodules, {result.n_scans} scans)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig
