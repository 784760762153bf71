"""`suite compare`: runs side by side from MLflow, best first."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import mlflow
from common import tracking
from common.errors import InputError
from pipelines.registry import DOMAINS, KEY_METRICS

SHOWN_PARAMS = ("model.name", "model.sequence", "model.graph", "model.fusion", "train.epochs", "train.loss")


def runs_table(domain: str, metric: str | None, top: int) -> pd.DataFrame:
    """The finished runs of `domain`'s experiment with their test metrics, sorted best first."""
    experiment = mlflow.get_experiment_by_name(domain)
    if experiment is None:
        return pd.DataFrame()
    runs = mlflow.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'")
    if runs.empty:
        return runs
    key = f"metrics.{metric or KEY_METRICS[domain]}"
    if key not in runs.columns:
        raise InputError(None, f"metric {key.removeprefix('metrics.')!r} not logged in {domain!r} runs")
    metrics = sorted(c for c in runs.columns if c.startswith("metrics.test_"))
    params = [f"params.{p}" for p in SHOWN_PARAMS if f"params.{p}" in runs.columns]
    table = runs[["run_id", "start_time", *params, *metrics]].sort_values(key, ascending=False).head(top)
    table = table.rename(columns=lambda c: c.split(".", 1)[-1])
    table.insert(0, "domain", domain)
    table["run_id"] = table["run_id"].str[:8]
    table["start_time"] = pd.to_datetime(table["start_time"]).dt.strftime("%m-%d %H:%M")
    return table


def compare_runs(domain: str | None, metric: str | None, top: int, plot: Path | None) -> str:
    """A printable table of runs per domain, best first; optionally a bar chart of the key metric."""
    if domain is not None and domain not in DOMAINS:
        raise InputError(None, f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    if top < 1:
        raise InputError(None, "--top must be at least 1")
    tracking.configure_tracking()
    tables = [runs_table(d, metric, top) for d in ([domain] if domain else DOMAINS)]
    tables = [t for t in tables if not t.empty]
    if not tables:
        return "no finished runs yet: try `suite run fraud`"
    text = "\n\n".join(t.to_string(index=False, float_format=lambda v: f"{v:.4f}") for t in tables)
    if plot is not None:
        _bar_chart(tables, metric, plot)
        text += f"\n\nplot: {plot}"
    return text


def _bar_chart(tables: list[pd.DataFrame], metric: str | None, path: Path) -> None:
    from common.io import atomic_path
    from common.plotting import plt

    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4), squeeze=False)
    for ax, table in zip(axes[0], tables, strict=True):
        domain = table["domain"].iloc[0]
        key = metric or KEY_METRICS[domain]
        ax.barh(table["run_id"], table[key])
        ax.set(title=domain, xlabel=key)
        ax.invert_yaxis()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
