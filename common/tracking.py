"""MLflow tracking: the embedded SQLite store by default, a team server through MLFLOW_TRACKING_URI."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.tracking import MlflowClient  # noqa: E402

import mlflow  # noqa: E402

CHAMPION_ALIAS = "champion"


def repo_root() -> Path:
    """The checkout this package lives in; the default store sits in its `mlflow/` folder."""
    return Path(__file__).resolve().parents[1]


def default_tracking_uri() -> str:
    return f"sqlite:///{repo_root() / 'mlflow' / 'mlflow.db'}"


def configure_tracking() -> str:
    """Point MLflow at MLFLOW_TRACKING_URI, or at `<repo>/mlflow/mlflow.db`; return the URI in use."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """Return the experiment id for `name`, creating it; a SQLite store keeps artifacts beside its file."""
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        # Without this MLflow would drop artifacts into ./mlruns of whatever folder the user is in.
        folder = Path(uri.removeprefix("sqlite:///")).parent / "artifacts" / name
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.as_uri()
    return client.create_experiment(name, artifact_location=location)


def log_params(params: dict[str, Any]) -> None:
    """Log every resolved config value; MLflow params are strings of at most 6000 characters."""
    mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})


def log_metrics(metrics: dict[str, float], step: int | None = None, prefix: str = "") -> None:
    """Log finite metrics (MLflow rejects NaN on some stores; a NaN means 'undefined' here)."""
    clean = {prefix + k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    mlflow.log_metrics(clean, step=step)


def log_figure(figure: Any, filename: str) -> None:
    """Store a matplotlib figure as a PNG artifact under `plots/` and free it."""
    import matplotlib.pyplot as plt

    mlflow.log_figure(figure, f"plots/{filename}")
    plt.close(figure)


def promote_champion(model_name: str, version: str | int, metric: str, higher_is_better: bool = True) -> bool:
    """Move the `champion` alias to `version` when its run's `metric` beats the current champion's."""
    client = MlflowClient()
    new_run = client.get_run(client.get_model_version(model_name, str(version)).run_id)
    new_value = new_run.data.metrics.get(metric)
    if new_value is None:
        return False
    try:
        current = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except mlflow.exceptions.MlflowException:
        current = None
    if current is not None:
        old_value = client.get_run(current.run_id).data.metrics.get(metric)
        if old_value is not None and not (new_value > old_value if higher_is_better else new_value < old_value):
            return False
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version))
    return True
