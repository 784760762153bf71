"""Shared fixtures: every test that tracks runs gets its own throw-away MLflow store."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store and checkpoint folder under tmp_path (the repo's store stays untouched)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SUITE_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    from common import tracking

    tracking.configure_tracking()
    return uri
