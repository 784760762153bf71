"""Domain name → pipeline, imported lazily so `suite --help` stays fast."""
from __future__ import annotations

import importlib

from common.errors import InputError
from pipelines.domain import Domain

DOMAINS = {"medical": "pipelines.medical", "driving": "pipelines.driving", "fraud": "pipelines.fraud"}
MODEL_NAMES = {"medical": "medical-nodule-3dcnn", "driving": "driving-fusion-detector", "fraud": "fraud-lstm-gat"}
KEY_METRICS = {"medical": "test_cpm", "driving": "test_ap_bev", "fraud": "test_auc"}
# How each domain holds out its test split (logged as the `suite.split` tag with the `data.*` settings).
SPLIT_RULES = {"medical": "by seriesuid, seeded shuffle", "driving": "ImageSets lists, else seeded shuffle of frames",
               "fraud": "by time: latest steps held out"}


def get_domain(name: str) -> Domain:
    """The pipeline for `name`; an unknown or not-yet-built domain is one clear line, exit 2."""
    if name not in DOMAINS:
        raise InputError(None, f"unknown domain {name!r}; choose one of {', '.join(DOMAINS)}")
    try:
        module = importlib.import_module(DOMAINS[name])
    except ModuleNotFoundError as exc:
        if exc.name == DOMAINS[name]:
            raise InputError(None, f"the {name} pipeline is not available in this version yet") from None
        raise
    return module.DOMAIN
