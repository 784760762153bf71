"""MLflow tracking: the embedded SQLite store by default, a team server through MLFLOW_TRACKING_URI.

Also what makes runs comparable and champions honest: run tags (domain, data fingerprint, split, git
commit), curve tables, and the rule that `champion` moves only between runs on the same data.
Credentials never leave this module in clear: a `user:password@` in the URI is moved into MLflow's
own `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD` and every message goes through `redact`.
"""
from __future__ import annotations

import fcntl
import logging
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pandas as pd  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

import mlflow  # noqa: E402
from common.errors import InputError  # noqa: E402
from common.redaction import redact  # noqa: E402, F401  (re-exported: tracking.redact)

CHAMPION_ALIAS = "champion"
TAG_DOMAIN = "suite.domain"
TAG_DATA_FINGERPRINT = "suite.data_fingerprint"
TAG_SPLIT = "suite.split"
TAG_GIT_COMMIT = "suite.git_commit"
TAG_RUN_ID = "suite.run_id"  # on a model version: the run it came from
CURVES_FOLDER = "curves"  # run artifacts: one small JSON table per test curve
SERVER_CHECK_TIMEOUT_S = 5.0


def repo_root() -> Path:
    """The checkout this package lives in; the default store sits in its `mlflow/` folder."""
    return Path(__file__).resolve().parents[1]


def default_tracking_uri() -> str:
    return f"sqlite:///{repo_root() / 'mlflow' / 'mlflow.db'}"


def _split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """`https://user:pass@host/x` → (`https://host/x`, user, pass); other URIs unchanged."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host)), parts.username, parts.password


def configure_tracking() -> str:
    """Point MLflow at MLFLOW_TRACKING_URI, or at `<repo>/mlflow/mlflow.db`; return the URI in use.

    Credentials in the URI move into MLflow's own environment variables (explicit ones win), so
    the URI that MLflow, our params and our messages see carries none.
    """
    uri, user, password = _split_credentials(os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri())
    if user:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
    if password:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", password)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = uri  # child processes (torchrun ranks) inherit the clean form
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:///"):
        _create_sqlite_store_once(Path(uri.removeprefix("sqlite:///")), uri)
    return uri


def _create_sqlite_store_once(db: Path, uri: str) -> None:
    """Create a new SQLite store's tables under a file lock: two jobs started at once on a fresh store would
    otherwise both run MLflow's migrations, and one fails ("table _alembic_tmp_experiments already exists")."""
    db.parent.mkdir(parents=True, exist_ok=True)
    if db.is_file() and db.stat().st_size > 0:
        return
    quiet = logging.getLogger("mlflow.store.db.utils")  # "Creating initial MLflow database tables...": not news
    level = quiet.level
    with open(db.parent / f".{db.name}.create-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        quiet.setLevel(logging.WARNING)
        try:
            MlflowClient(uri).search_experiments(max_results=1)  # the first query creates (or finds) the tables
        finally:
            quiet.setLevel(level)


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
        location = folder.resolve().as_uri()  # `sqlite:///mlflow.db` (MLflow's docs) is relative to the cwd
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another job created it a moment ago
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


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


def check_tracking_server(uri: str, timeout: float = SERVER_CHECK_TIMEOUT_S) -> None:
    """Fail in seconds, with one line, when a remote tracking server is unreachable or refuses us.

    MLflow's own client retries for minutes and then prints a raw HTTP body; a job should learn
    before its first epoch that it cannot log.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() not in ("1", "true")
    try:
        answer = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                              auth=(user, password or "") if user else None, headers=headers, timeout=timeout,
                              verify=verify)
    except requests.exceptions.RequestException as exc:
        reason = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "connection failed"
        raise InputError(redact(uri), f"cannot reach the MLflow tracking server ({reason} within "
                                      f"{timeout:g} s); check MLFLOW_TRACKING_URI") from None
    if answer.status_code == 401:
        hint = ("the credentials in MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD were rejected" if user
                else "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
        raise InputError(redact(uri), f"the tracking server requires authentication (HTTP 401): {hint}")
    if answer.status_code == 403:
        raise InputError(redact(uri), f"the tracking server denies user {user!r} access (HTTP 403)")
    if answer.status_code >= 400:
        raise InputError(redact(uri), f"the tracking server answered HTTP {answer.status_code} to a search; "
                                      "is this an MLflow server?")


def git_commit() -> str:
    """The code's commit (`+dirty` when the work tree has changes), or `unknown` outside a git checkout."""
    try:
        run = lambda *args: subprocess.run(["git", "-C", str(repo_root()), *args], capture_output=True,  # noqa: E731
                                           text=True, timeout=10, check=True).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def log_curves(curves: dict[str, pd.DataFrame]) -> None:
    """Store each test curve as a small table artifact `curves/<name>.json`, so runs can be overlaid later."""
    for name, table in curves.items():
        mlflow.log_table(table.reset_index(drop=True), artifact_file=f"{CURVES_FOLDER}/{name}.json")


def load_curves(run_id: str) -> dict[str, pd.DataFrame]:
    """The curve tables a run logged (none for runs older than curve logging)."""
    import json
    import tempfile

    client = MlflowClient()
    curves = {}
    with tempfile.TemporaryDirectory() as folder:
        for artifact in client.list_artifacts(run_id, CURVES_FOLDER):
            if artifact.path.endswith(".json"):
                local = client.download_artifacts(run_id, artifact.path, folder)
                table = json.loads(Path(local).read_text())  # log_table's {"columns": [...], "data": [...]}
                curves[Path(artifact.path).stem] = pd.DataFrame(table["data"], columns=table["columns"])
    return curves


def tag_model_version(model_name: str, version: str | int, tags: dict[str, str]) -> None:
    """Say on the registered version which run, data, split and commit it came from."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)


def current_champion(model_name: str) -> Any | None:
    """The model version holding the `champion` alias; None only when there is none.

    Any other registry error (server down, permission, a bug) propagates: taking it for "no champion"
    would crown whatever ran last.
    """
    try:
        return MlflowClient().get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and (
                "alias" in str(exc).lower() or "not found" in str(exc).lower()):
            return None
        raise


@dataclass
class ChampionDecision:
    crowned: bool
    reason: str


def promote_champion(model_name: str, version: str | int, metric: str,
                     higher_is_better: bool = True) -> ChampionDecision:
    """Move `champion` to `version` when its run beats the champion's `metric` on the same data and split.

    A champion from before data fingerprints were logged is compared by the metric alone.
    """
    client = MlflowClient()
    new_run = client.get_run(client.get_model_version(model_name, str(version)).run_id)
    new_value = new_run.data.metrics.get(metric)
    if new_value is None:
        return ChampionDecision(False, f"the run logged no {metric}, so it cannot be compared")
    current = current_champion(model_name)
    if current is None:
        reason = "first champion of this model"
    else:
        old_run = client.get_run(current.run_id)
        legacy = TAG_DATA_FINGERPRINT not in old_run.data.tags
        for tag, what in () if legacy else ((TAG_DATA_FINGERPRINT, "data"), (TAG_SPLIT, "split")):
            new_tag, old_tag = new_run.data.tags.get(tag), old_run.data.tags.get(tag)
            if new_tag != old_tag:
                return ChampionDecision(False, f"not compared with champion version {current.version}: other {what} "
                                               f"({tag} {new_tag} vs {old_tag})")
        old_value = old_run.data.metrics.get(metric)
        if old_value is not None and not (new_value > old_value if higher_is_better else new_value < old_value):
            return ChampionDecision(False, f"{metric} {new_value:.4f} does not beat champion version "
                                           f"{current.version} ({old_value:.4f})")
        reason = (f"beats version {current.version}" + (" (by metric alone: that champion predates data "
                  "fingerprints)" if legacy else " on the same data and split"))
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version))
    return ChampionDecision(True, reason)
