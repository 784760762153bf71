"""`suite compare` and `suite models`: which run is better and why, straight from the tracking store."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

import mlflow
from common import tracking
from common.errors import InputError
from pipelines.registry import DOMAINS, KEY_METRICS, MODEL_NAMES

FORMATS = ("table", "markdown", "csv", "json")
FINGERPRINT_SHOWN = 8  # characters of the data fingerprint in text tables (JSON has it whole)


@dataclass
class RunSummary:
    """One finished run as the comparison shows it."""

    run_id: str
    experiment: str
    domain: str
    params: dict[str, str]
    metrics: dict[str, float]  # the test_* metrics
    data_fingerprint: str | None
    duration_s: float | None
    champion: bool = False
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)


def _check_choice(name: str, value: str, choices: tuple[str, ...] | dict) -> None:
    if value not in choices:
        raise InputError(None, f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _experiments(client: MlflowClient, domain: str | None, names: list[str]) -> list:
    """The experiments asked for by name, else every experiment that `suite run` tagged with the domain."""
    if names:
        found = []
        for name in names:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise InputError(None, f"no experiment named {name!r} in the tracking store")
            found.append(experiment)
        return found
    wanted = [domain] if domain else list(DOMAINS)
    found = {}
    for d in wanted:
        for experiment in client.search_experiments(filter_string=f"tags.`{tracking.TAG_DOMAIN}` = '{d}'"):
            found[experiment.experiment_id] = experiment
        legacy = client.get_experiment_by_name(d)  # runs from before the domain tag was set
        if legacy is not None:
            found.setdefault(legacy.experiment_id, legacy)
    return list(found.values())


def _run_domain(run: Run, experiment_name: str) -> str | None:
    tagged = run.data.tags.get(tracking.TAG_DOMAIN)
    return tagged or (experiment_name if experiment_name in DOMAINS else None)


def find_runs(domain: str | None, experiments: list[str]) -> list[RunSummary]:
    """Finished runs of the chosen experiments, restricted to `domain` when one is given."""
    client = MlflowClient()
    chosen = _experiments(client, domain, experiments)
    if not chosen:
        return []
    names = {e.experiment_id: e.name for e in chosen}
    runs = mlflow.search_runs(list(names), filter_string="attributes.status = 'FINISHED'", output_format="list")
    found = []
    for run in runs:
        name = names[run.info.experiment_id]
        run_domain = _run_domain(run, name)
        if run_domain is None or (domain and run_domain != domain):
            continue
        end, start = run.info.end_time, run.info.start_time
        found.append(RunSummary(
            run_id=run.info.run_id, experiment=name, domain=run_domain, params=dict(run.data.params),
            metrics={k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
            data_fingerprint=run.data.tags.get(tracking.TAG_DATA_FINGERPRINT),
            duration_s=(end - start) / 1000 if end and start else None,
        ))
    return found


def _rank(runs: list[RunSummary], metric: str, top: int) -> list[RunSummary]:
    """Best first by `metric` (lower first for a loss), runs without it last."""
    lower_is_better = "loss" in metric
    with_metric = [r for r in runs if metric in r.metrics and math.isfinite(r.metrics[metric])]
    without = [r for r in runs if r not in with_metric]
    with_metric.sort(key=lambda r: r.metrics[metric], reverse=not lower_is_better)
    return (with_metric + without)[:top]


def differing_params(runs: list[RunSummary], forced: list[str]) -> list[str]:
    """Params whose values are not the same in every shown run (a param a run lacks counts as differing)."""
    keys = sorted({k for r in runs for k in r.params})
    differ = [k for k in keys if len({r.params.get(k) for r in runs}) > 1]
    return [*dict.fromkeys([*forced, *differ])]


def _mark_champion(runs: list[RunSummary], domain: str) -> None:
    champion = tracking.current_champion(MODEL_NAMES[domain])
    for run in runs:
        run.champion = champion is not None and champion.run_id == run.run_id


def _table(runs: list[RunSummary], params: list[str], full: bool = False) -> pd.DataFrame:
    metric_names = sorted({k for r in runs for k in r.metrics})
    rows = []
    for r in runs:
        fingerprint = r.data_fingerprint or ""
        rows.append({
            "champion": "*" if r.champion else "", "run_id": r.run_id if full else r.run_id[:8],
            "experiment": r.experiment, **{p: r.params.get(p, "") for p in params},
            **{m: r.metrics.get(m, float("nan")) for m in metric_names},
            "data": fingerprint if full else fingerprint[:FINGERPRINT_SHOWN],
            "duration_s": float("nan") if r.duration_s is None else round(r.duration_s, 1),
        })
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) and not math.isnan(v) else ("" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


@dataclass
class Comparison:
    domain: str
    metric: str
    runs: list[RunSummary]
    params: list[str]


def compare_runs(domain: str | None, experiments: list[str], metric: str | None, top: int, plot: Path | None,
                 fmt: str = "table", forced_params: list[str] | None = None) -> str:
    """The runs of each domain's experiments, best first, with only the params that tell them apart."""
    if domain is not None:
        _check_choice("domain", domain, DOMAINS)
    _check_choice("format", fmt, FORMATS)
    if top < 1:
        raise InputError(None, "--top must be at least 1")
    tracking.check_tracking_server(tracking.configure_tracking())
    runs = find_runs(domain, experiments)
    comparisons = []
    for d in DOMAINS:
        of_domain = [r for r in runs if r.domain == d]
        if not of_domain:
            continue
        key = metric or KEY_METRICS[d]
        if not any(key in r.metrics for r in of_domain):
            raise InputError(None, f"metric {key!r} is not logged by any {d!r} run; logged: "
                                   f"{', '.join(sorted({k for r in of_domain for k in r.metrics}))}")
        shown = _rank(of_domain, key, top)
        _mark_champion(shown, d)
        comparisons.append(Comparison(d, key, shown, differing_params(shown, forced_params or [])))
    if not comparisons:
        return "[]" if fmt == "json" else "no finished runs yet: try `suite run fraud`"
    text = _render(comparisons, fmt)
    if plot is not None:
        for c in comparisons:
            for r in c.runs:
                r.curves = tracking.load_curves(r.run_id)
        plot_comparison(comparisons, plot)
        if fmt in ("table", "markdown"):
            text += f"\n\nplot: {plot}"
    return text


def _render(comparisons: list[Comparison], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([
            {"run_id": r.run_id, "experiment": r.experiment, "domain": c.domain,
             "params": {p: r.params.get(p) for p in c.params}, "metrics": r.metrics,
             "data_fingerprint": r.data_fingerprint, "duration_s": r.duration_s, "champion": r.champion}
            for c in comparisons for r in c.runs], indent=2)
    parts = []
    for c in comparisons:
        table = _table(c.runs, c.params, full=fmt == "csv")
        if fmt == "csv":
            parts.append(table.assign(domain=c.domain).to_csv(index=False).rstrip("\n"))
            continue
        heading = f"{c.domain} — best first by {c.metric}; * = champion"
        body = _markdown(table) if fmt == "markdown" else table.to_string(
            index=False, float_format=lambda v: f"{v:.4f}")
        parts.append(f"{'## ' if fmt == 'markdown' else ''}{heading}\n{body}")
    return "\n\n".join(parts)


def plot_comparison(comparisons: list[Comparison], path: Path) -> None:
    """One PNG: per domain, the key metric per run as bars and the runs' logged test curves overlaid."""
    from common.io import atomic_path
    from common.plotting import plt

    curve_names = [sorted({n for r in c.runs for n in r.curves}) for c in comparisons]
    columns = 1 + max(len(n) for n in curve_names)
    fig, axes = plt.subplots(len(comparisons), columns, figsize=(4.5 * columns, 3.8 * len(comparisons)),
                             squeeze=False)
    for row, (c, names) in zip(axes, zip(comparisons, curve_names, strict=True), strict=True):
        labels = [f"{r.run_id[:8]} {r.experiment}" + (" *" if r.champion else "") for r in c.runs]
        row[0].barh(labels, [r.metrics.get(c.metric, float("nan")) for r in c.runs], color="C0")
        row[0].set(title=f"{c.domain}: {c.metric}", xlabel=c.metric)
        row[0].invert_yaxis()
        for ax, name in zip(row[1:], names, strict=False):
            for i, r in enumerate(c.runs):
                if name in r.curves:
                    table = r.curves[name]
                    ax.plot(table.iloc[:, 0], table.iloc[:, 1], color=f"C{i % 10}", label=labels[i])
            x_name, y_name = next(r.curves[name].columns[:2] for r in c.runs if name in r.curves)
            ax.set(title=f"{c.domain}: {name}", xlabel=x_name, ylabel=y_name)
            if name.startswith("froc"):
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        for ax in row[1 + len(names):]:
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def list_models(domain: str | None, fmt: str = "table") -> str:
    """Registered versions of each domain's model: aliases, key metric, source run and data fingerprint."""
    if domain is not None:
        _check_choice("domain", domain, DOMAINS)
    _check_choice("format", fmt, ("table", "json"))
    tracking.check_tracking_server(tracking.configure_tracking())
    client = MlflowClient()
    rows = []
    for d in [domain] if domain else list(DOMAINS):
        name = MODEL_NAMES[d]
        versions = client.search_model_versions(f"name = '{name}'")
        for version in sorted(versions, key=lambda v: -int(v.version)):
            full = client.get_model_version(name, version.version)  # search results may omit aliases
            run = client.get_run(full.run_id) if full.run_id else None
            rows.append({
                "name": name, "version": str(full.version), "aliases": sorted(full.aliases or []),
                "run_id": full.run_id, "key_metric": None if run is None else run.data.metrics.get(KEY_METRICS[d]),
                "data_fingerprint": full.tags.get(tracking.TAG_DATA_FINGERPRINT)
                or (None if run is None else run.data.tags.get(tracking.TAG_DATA_FINGERPRINT)),
            })
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if not rows:
        return "no registered models yet: try `suite run fraud`"
    table = pd.DataFrame(rows).assign(aliases=lambda t: t["aliases"].map(",".join),
                                      run_id=lambda t: t["run_id"].str[:8])
    return table.to_string(index=False, float_format=lambda v: f"{v:.4f}")
