"""Secrets kept out of what users read: every error line and summary goes through `redact`.

A module of its own (no MLflow import), so the CLI can print a refusal without loading MLflow.
"""
from __future__ import annotations

import os
import re


def redact(text: str) -> str:
    """`text` with any tracking password (URI userinfo or MLFLOW_TRACKING_PASSWORD) replaced by ***."""
    text = re.sub(r"(?<=://)[^/@\s:]+:[^/@\s]+@", "***@", str(text))
    for secret in (os.environ.get("MLFLOW_TRACKING_PASSWORD"), os.environ.get("MLFLOW_TRACKING_TOKEN")):
        if secret:
            text = text.replace(secret, "***")
    return text
